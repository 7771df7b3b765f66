"""Final reader FR-B #5 (b108): the frontier chart's star is the optimum `plan` states for the same budget.

Since the plan converts its model-FLOP budget to the law's C = 6ND before taking the law's optimum
(`scaling.optimal_per_token`), `flopscalc plot frontier --gpu 4070ti --days 365` drew the plan's budget
(1.0566e21 model FLOP) but its star at the law's optimum for that number taken as 6ND: 2.858e9 parameters on
61.6e9 tokens, where `plan --json` says compute_optimal 2.766e9 on 59.74e9 (law_flops 9.91e20). The reference
here is `plan` itself (its JSON), and the law's own line: the star lies on it at the budget as the law counts it.
"""

from __future__ import annotations

import json

import pytest

from flopscalc.scaling import BUILTIN_LAWS, optimal

matplotlib = pytest.importorskip("matplotlib")

# (plot/plan options): the main job; a long sequence, where attention is most of the model FLOPs per token and the
# conversion moves the optimum most (C_law / C = 0.55 here); 64 H100s, planned by the layout search (its family
# shapes for tensor parallelism)
CASES = [
    ("--gpu", "4070ti", "--days", "365"),
    ("--gpu", "4070ti", "--days", "30", "--seq", "8192"),
    ("--gpu", "h100", "--days", "30", "--n-gpus", "64"),
]


def _json(argv, capsys) -> dict:
    from flopscalc.cli import run

    assert run(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("argv", CASES, ids=["4070ti-365d", "seq8192", "64xh100"])
def test_frontier_star_is_the_plans_compute_optimal(argv, capsys):
    budget = _json(["plot", "frontier", *argv, "--json", "--no-published"], capsys)["budget"]
    planned = _json(["plan", *argv, "--json"], capsys)["compute_optimal"]
    star = budget["optimal"][0]  # the first law's: besiroglu2024, plan's default law
    assert star["law"] == "besiroglu2024"
    assert budget["c_flops"] == planned["c_flops"]  # the same budget, model FLOPs
    # the same function places both: equal, not close (at fb1d209's successor: 2.858e9 vs 2.766e9 on the main job)
    assert (star["n_params"], star["n_tokens"]) == (planned["n_params"], planned["n_tokens"])
    assert star["law_flops"] == planned["law_flops"]  # where it is drawn: the budget as the law counts it (6ND)
    assert budget["counted_as"].startswith("model FLOPs")


def test_the_star_is_drawn_on_the_laws_line_at_the_budget_as_the_law_counts_it(capsys):
    from flopscalc import plots

    data = _json(["plot", "frontier", "--gpu", "4070ti", "--days", "365", "--json", "--no-published"], capsys)
    star = data["budget"]["optimal"][0]
    law = BUILTIN_LAWS["besiroglu2024"]
    # on the law's line: its closed-form optimum (Hoffmann eq. 4) at 6ND is this (N, D); and 6ND is below the
    # model FLOPs (attention counted), so the star sits left of the budget line, not on it
    on_line = optimal(law, 6 * star["n_params"] * star["n_tokens"])
    assert on_line.n_params == pytest.approx(star["n_params"], rel=1e-9)
    assert on_line.n_tokens == pytest.approx(star["n_tokens"], rel=1e-9)
    assert 6 * star["n_params"] * star["n_tokens"] == pytest.approx(star["law_flops"], rel=1e-12)
    assert star["law_flops"] < data["budget"]["c_flops"]
    fig = plots.draw_frontier(data)
    for ax, key in zip(fig.axes[:2], ("n_params", "n_tokens")):
        marks = [a for a in ax.collections if a.get_gid() == "budget_optimum"]
        assert len(marks) == 1
        x, y = marks[0].get_offsets()[0]
        assert (x, y) == (star["law_flops"], star[key])
        line = next(a for a in ax.get_lines() if a.get_gid() == "budget")
        assert list(line.get_xdata()) == [data["budget"]["c_flops"]] * 2
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    # the label says where the star is and why: the budget converted as plan converts it, to the law's 6ND
    assert "N_opt at the budget as plan converts it (besiroglu2024, 6ND = 9.9e20): 2.8B" in labels
    assert any(t.startswith("budget 1.1e21 model FLOP") for t in labels)


def test_other_laws_stars_are_what_plan_states_under_that_law():
    """The other laws' optima get the same conversion: under chinchilla, frontier_data's star for a plan's model
    FLOPs is that plan's own compute-optimal allocation."""
    from flopscalc.hardware import get_gpu
    from flopscalc.planner import PlanRequest, plan
    from flopscalc.plots import frontier_data
    from flopscalc.units import SECONDS_PER_DAY

    req = PlanRequest(get_gpu("4070ti"), 365 * SECONDS_PER_DAY, law=BUILTIN_LAWS["chinchilla"], explain=False)
    p = plan(req)
    base = PlanRequest(get_gpu("4070ti"), 365 * SECONDS_PER_DAY, explain=False)  # the chart's: the default law
    data = frontier_data(["besiroglu2024", "chinchilla"], budget_flops=p.budget.model_flops, published=False,
                         budget_request=base)
    star = data["budget"]["optimal"][1]
    assert star["law"] == "chinchilla"
    assert (star["n_params"], star["n_tokens"], star["law_flops"]) == (
        p.allocation.n_params, p.allocation.n_tokens, p.allocation.law_flops)


def test_a_flops_budget_is_still_taken_in_the_laws_convention(capsys):
    """--flops C has no model behind it: the star stays the law's optimum for C itself (C = 6ND), on the line."""
    budget = _json(["plot", "frontier", "--flops", "1e21", "--json", "--no-published"], capsys)["budget"]
    a = optimal(BUILTIN_LAWS["besiroglu2024"], 1e21)
    star = budget["optimal"][0]
    assert (star["n_params"], star["n_tokens"], star["law_flops"]) == (a.n_params, a.n_tokens, 1e21)
    assert budget["counted_as"] == "the laws' C = 6ND"
