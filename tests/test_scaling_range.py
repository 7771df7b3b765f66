"""Laws used outside their range (issue 14): fitted spans, the uniform-guess ceiling, plan = scaling loss, intervals.

Every expected figure comes from outside the code under test: the papers' printed ranges and standard errors,
the authors' released runs (data/datablations_all_runs.csv), ln(vocabulary), the datablations README's printed
losses, and limit cases.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from flopscalc.cli import run
from flopscalc.scaling.allocate import (
    flops_for_loss,
    optimal,
    optimal_data_constrained,
    predict_loss,
    tokens_for_loss,
)
from flopscalc.scaling.io import get_law
from flopscalc.scaling.laws import BUILTIN_LAWS
from flopscalc.scaling.validity import RANGE_FACTOR, range_warnings

DATA = Path(__file__).resolve().parent.parent / "data"


@dataclass(frozen=True)
class Ref:
    name: str
    expected: object
    source: str


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


# ------------------------------------------------------------------------------------------ fitted ranges

PRINTED_RANGES = [
    Ref("besiroglu2024", {"n_params": (70e6, 16e9), "n_tokens": (5e9, 500e9)},
        "Hoffmann et al. 2022 abstract: 70M to over 16B parameters on 5 to 500B tokens (Besiroglu refit their runs)"),
    Ref("chinchilla", {"n_params": (70e6, 16e9), "n_tokens": (5e9, 500e9)}, "Hoffmann et al. 2022, abstract"),
    Ref("chinchilla-a1", {"n_params": (70e6, 10e9)}, "Hoffmann et al. 2022, sec. 3.1: 70M to over 10B"),
    Ref("chinchilla-a2", {"c_flops": (6e18, 3e21)}, "Hoffmann et al. 2022, sec. 3.2: 6e18 to 3e21 FLOPs"),
    Ref("kaplan2020", {"n_params": (768, 1.5e9), "n_tokens": (22e6, 23e9)},
        "Kaplan et al. 2020, sec. 3: 768 to 1.5B non-embedding parameters, 22M to 23B tokens"),
]


@pytest.mark.parametrize("ref", PRINTED_RANGES, ids=lambda r: r.name)
def test_builtin_ranges_are_the_papers(ref):
    r = BUILTIN_LAWS[ref.name].fitted_range
    for key, span in ref.expected.items():
        assert getattr(r, key) == span, (ref.source, key)


def test_every_builtin_knows_its_range_and_vocabulary():
    for law in BUILTIN_LAWS.values():
        assert law.fitted_range is not None and law.fitted_range.source, law.name
        assert law.vocab_size is not None, law.name


def test_muennighoff_range_is_the_span_of_the_released_runs():
    """The authors' 296 released C4 runs (datablations notebook output) bound N, D and U exactly."""
    with open(DATA / "datablations_all_runs.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(line for line in f if not line.lstrip().startswith("#")))
    col = {k: [float(r[k]) for r in rows] for k in ("n_params", "n_tokens", "unique_tokens")}
    law = BUILTIN_LAWS["muennighoff2023"]
    assert law.fitted_range.n_params == (min(col["n_params"]), max(col["n_params"]))
    assert law.fitted_range.n_tokens == (min(col["n_tokens"]), max(col["n_tokens"]))
    assert law.repetition.unique_tokens == (min(col["unique_tokens"]), max(col["unique_tokens"]))
    # the abstract's "up to 900 billion training tokens and 9 billion parameter models"
    assert max(col["n_tokens"]) == 900e9 and max(col["n_params"]) < 9e9


def test_warning_starts_just_past_the_factor():
    """Limit case at both ends: within RANGE_FACTOR of the span nothing is said; just past it, the factor is."""
    law = BUILTIN_LAWS["chinchilla"]
    lo, hi = law.fitted_range.n_params
    d_ok = 20e9
    assert range_warnings(law, lo / RANGE_FACTOR * 1.001, d_ok) == ()
    assert range_warnings(law, hi * RANGE_FACTOR / 1.001, d_ok) == ()
    (below,) = range_warnings(law, lo / RANGE_FACTOR / 1.001, d_ok)
    assert "3x below" in below and "parameters N" in below
    (above,) = range_warnings(law, hi * 10, d_ok)
    assert "10x above" in above and "Hoffmann et al. 2022" in above


def test_allocation_law_warns_on_compute_and_kaplan_counts_non_embedding():
    a2 = BUILTIN_LAWS["chinchilla-a2"]
    assert not any("compute" in w for w in optimal(a2, 1e20).warnings)  # inside 6e18-3e21
    assert any("training compute C" in w and "3,333x above" in w for w in optimal(a2, 1e25).warnings)
    kaplan = BUILTIN_LAWS["kaplan2020"]
    # Kaplan's smallest model, 768 non-embedding parameters, is inside; 768/4 is past the factor 3
    assert range_warnings(kaplan, 768, 1e9) == ()
    assert range_warnings(kaplan, 768 / 4, 1e9)


def test_scaling_commands_show_range_warnings(capsys):
    assert run(["scaling", "loss", "--params", "1B", "--tokens", "20B", "--json"]) == 0
    assert _json(capsys)["warnings"] == []
    assert run(["scaling", "loss", "--params", "1T", "--tokens", "20T", "--json"]) == 0
    w = _json(capsys)["warnings"]
    assert any("parameters N 1.0T is 62x above" in x for x in w) and any("tokens D 20.0T is 40x above" in x for x in w)
    assert run(["scaling", "optimal", "--flops", "1e27"]) == 0
    assert "is extrapolated" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ ln(vocab)

VOCAB_REFS = [
    Ref("chinchilla", math.log(32000), "SentencePiece, 32,000 tokens: Rae et al. 2021 (Gopher); Hoffmann sec. 4.1"),
    Ref("besiroglu2024", math.log(32000), "same runs as Hoffmann et al. 2022"),
    Ref("kaplan2020", math.log(50257), "GPT-2 BPE, 50,257 tokens: Kaplan et al. 2020 sec. 2.3"),
    Ref("muennighoff2023", math.log(50257), "GPT-2 tokenizer: data/datablations_runs.md"),
]


@pytest.mark.parametrize("ref", VOCAB_REFS, ids=lambda r: r.name)
def test_uniform_guess_is_ln_vocabulary(ref):
    assert BUILTIN_LAWS[ref.name].uniform_loss == pytest.approx(ref.expected, rel=1e-15)


def test_no_loss_above_a_uniform_guess_in_the_engine():
    law = BUILTIN_LAWS["chinchilla"]
    # Hoffmann eq. 10 by hand for a 10k-parameter model on 1M tokens: far above ln(32000) = 10.37
    by_hand = 1.69 + 406.4 / 1e4**0.34 + 410.7 / 1e6**0.28
    p = predict_loss(law, 1e4, 1e6)
    assert p.law_value == pytest.approx(by_hand, rel=1e-12) and by_hand > math.log(32000)
    assert p.loss is None and p.above_uniform and any("uniform guess" in w for w in p.warnings)
    ok = predict_loss(law, 1e9, 20e9)
    assert ok.loss == pytest.approx(1.69 + 406.4 / 1e9**0.34 + 410.7 / 20e9**0.28, rel=1e-12)
    tiny = optimal(law, 1e10)
    assert tiny.loss is None and tiny.above_uniform
    with pytest.raises(Exception, match="uniform guess"):
        flops_for_loss(law, 11.0)


def test_scaling_loss_prints_no_loss_above_a_uniform_guess(capsys):
    assert run(["scaling", "loss", "--params", "10k", "--tokens", "1M", "--law", "chinchilla", "--json"]) == 0
    out = _json(capsys)
    assert out["loss"] is None and out["above_uniform_guess"] is True
    assert run(["scaling", "loss", "--params", "10k", "--tokens", "1M", "--law", "chinchilla"]) == 0
    assert "above a uniform guess (10.37)" in capsys.readouterr().out
    assert run(["scaling", "budget", "--loss", "11"]) == 1


def test_tiny_plan_prints_no_loss_worse_than_a_uniform_guess(capsys):
    """`plan --gpu 4070ti --days 0.0001` printed losses of 11-59 nats; none may exceed ln(vocab) now."""
    # --mfu 0.4: under the per-operation model 8.6 s trains no model a whole optimizer step ('plan' exits 1);
    # this test is about the loss ceiling of tiny models, which only a constant efficiency still plans
    assert run(["plan", "--gpu", "4070ti", "--days", "0.0001", "--mfu", "0.4", "--json"]) == 0
    p = _json(capsys)
    ceiling = math.log(32000)  # besiroglu2024, the default law: MassiveText's 32,000 tokens
    losses = [o["loss"] for o in p["options"]]
    assert all(x is None or x <= ceiling for x in losses)
    assert any(x is None for x in losses) and any(x is not None for x in losses)  # both kinds occur here
    assert all(v is None or v <= ceiling for v in p["loss_by_law"].values())
    assert p["recommended"]["loss"] is not None  # the recommendation is one the law still predicts
    assert any("is extrapolated" in w for w in p["warnings"])


# ------------------------------------------------------------------------------------------ plan = scaling loss


def _loss_cli(capsys, n, d, u=None, law=None) -> dict:
    args = ["scaling", "loss", "--params", repr(float(n)), "--tokens", repr(float(d)), "--json"]
    args += ["--unique-tokens", repr(float(u))] if u is not None else []
    args += ["--law", law] if law else []
    assert run(args) == 0
    return _json(capsys)


@pytest.mark.parametrize("law", [None, "muennighoff2023"])
def test_data_limited_plan_agrees_with_scaling_loss(capsys, law):
    """Every option of a data-limited plan has exactly the loss `scaling loss --unique-tokens` gives the same run."""
    args = ["plan", "--gpu", "4070ti", "--days", "30", "--dataset-tokens", "2B", "--json"]
    assert run(args + (["--law", law] if law else [])) == 0
    p = _json(capsys)
    compared = 0
    for o in p["options"]:
        if not o["fits"]:
            continue
        out = _loss_cli(capsys, o["n_params"], o["n_tokens"], 2e9, law)
        assert out["loss"] == o["loss"], o["n_params"]  # one engine: equal, not close
        assert out["effective_tokens"] == o["effective_tokens"]
        compared += 1
    assert compared >= 3
    rec = p["recommended"]
    assert rec["epochs"] > 1  # the comparison covers repeated data


def test_issue_example_agrees(capsys):
    """The issue's run: 2.0B on 4.3B tokens from 1M unique. Before, plan said 6.88 and scaling loss 12.07; the
    excess-parameter decay [Muennighoff eq. 6] now applies in both, and both find it above a uniform guess."""
    out = _loss_cli(capsys, 2.0e9, 4.3e9, 1e6)
    plan_loss = predict_loss(get_law("besiroglu2024"), 2.0e9, 4.3e9, 1e6)
    assert out["loss"] is None and plan_loss.loss is None and out["above_uniform_guess"]


def test_cli_data_constrained_loss_reproduces_the_datablations_readme(capsys):
    """README 'Parametric Fit': scaling_law(6.34e9, 242e9, 25e9) printed 2.2256440889984477."""
    out = _loss_cli(capsys, 6.34e9, 242e9, 25e9, "muennighoff2023")
    assert out["loss"] == pytest.approx(2.2256440889984477, rel=1e-9)


def test_dataset_tokens_switch_the_header_to_the_data_constrained_optimum(capsys):
    """docs/planner.md: with --dataset-tokens the header is Muennighoff's data-constrained optimum, for the budget
    in the law's C = 6ND (`law_flops`: the model FLOPs converted at the FLOPs per token of the optimum's size)."""
    assert run(["plan", "--gpu", "4070ti", "--days", "30", "--dataset-tokens", "2B", "--json"]) == 0
    p = _json(capsys)
    opt = p["compute_optimal"]
    assert "Muennighoff" in opt["method"]
    assert run(["scaling", "optimal", "--flops", repr(opt["law_flops"]), "--unique-tokens", "2B", "--json"]) == 0
    assert _json(capsys)["n_params"] == pytest.approx(opt["n_params"], rel=1e-12)


def test_unread_data_changes_nothing():
    """Limit case: a run of D tokens sees at most D unique ones, so any dataset of >= D tokens gives one loss;
    and with data to spare the data-constrained optimum is the law's own (same N, same loss)."""
    law = BUILTIN_LAWS["besiroglu2024"]
    assert predict_loss(law, 1e9, 20e9, 20e9).loss == predict_loss(law, 1e9, 20e9, 1e15).loss
    free = optimal(law, 1e21)
    dc = optimal_data_constrained(law, 1e21, 1e3 * free.n_tokens)
    assert dc.n_params == pytest.approx(free.n_params, rel=1e-6)
    assert dc.loss == pytest.approx(free.loss, rel=1e-12)


def test_law_without_a_repetition_form_is_refused_for_data_limits(capsys):
    assert run(["plan", "--gpu", "4070ti", "--days", "30", "--dataset-tokens", "2B", "--law", "kaplan2020"]) == 1
    err = capsys.readouterr().err
    assert "data-constrained" in err and "\n" not in err.strip()
    assert run(["scaling", "loss", "--params", "1B", "--tokens", "20B", "--unique-tokens", "2B",
                "--law", "kaplan2020"]) == 2


# ------------------------------------------------------------------------------------------ intervals

# Besiroglu et al. 2024, sec. 3: each constant with its standard error in parentheses.
BESIROGLU_PRINTED = {"E": (1.8172, 0.03), "A": (482.01, 124.58), "B": (2085.43, 1293.23),
                     "alpha": (0.3478, 0.02), "beta": (0.3658, 0.02)}


def test_besiroglu_intervals_cannot_go_negative_and_are_2_se_in_log_space():
    """B = 2085.43 (SE 1293.23) gave "-501 .. 4672"; in log space ln B +- 2 SE/B it is 603 .. 7208."""
    unc = BUILTIN_LAWS["besiroglu2024"].uncertainty
    for k in ("A", "B"):
        x, se = BESIROGLU_PRINTED[k]
        lo, hi = unc[k]
        assert 0 < lo < x < hi
        assert math.log(hi / x) == pytest.approx(2 * se / x, rel=1e-12)
        assert math.log(x / lo) == pytest.approx(2 * se / x, rel=1e-12)
    for k in ("E", "alpha", "beta"):  # SE/X <= 6%: kept as printed, +-2 SE, and positive
        x, se = BESIROGLU_PRINTED[k]
        assert x - 2 * se > 0
        assert unc[k] == pytest.approx((x - 2 * se, x + 2 * se), rel=1e-12)
    assert unc["B"][0] == pytest.approx(603.3, abs=0.1) and unc["B"][1] == pytest.approx(7208, abs=1)


def test_laws_command_shows_positive_intervals_and_the_range(capsys):
    assert run(["scaling", "laws", "besiroglu2024", "--json"]) == 0
    d = _json(capsys)
    assert all(lo > 0 for lo, _ in d["uncertainty"].values())
    assert d["fitted_range"]["n_params"] == [70e6, 16e9] and d["vocab_size"] == 32000
    assert run(["scaling", "laws", "besiroglu2024"]) == 0
    text = capsys.readouterr().out
    assert "-501" not in text and "603.3 .. 7208" in text and "fitted on" in text


def test_tokens_for_a_target_loss_invert_the_prediction():
    """Round trip: the tokens found for a target give back the target, with and without a data limit; without
    one it is Hoffmann eq. 2 solved by hand; a target below the limit of endless repeats is never reached."""
    law = BUILTIN_LAWS["besiroglu2024"]
    n = 215e6
    by_hand = (2085.43 / (3.0 - 1.8172 - 482.01 / n**0.3478)) ** (1 / 0.3658)
    assert tokens_for_loss(law, n, 3.0) == pytest.approx(by_hand, rel=1e-12)
    for u in (2e9, 5e9):
        d = tokens_for_loss(law, n, 3.0, u)
        assert d > u and predict_loss(law, n, d, u).law_value == pytest.approx(3.0, rel=1e-12)
    assert tokens_for_loss(law, n, 3.0, 1e15) == pytest.approx(by_hand, rel=1e-12)  # data to spare
    assert tokens_for_loss(law, n, 3.0, 200e6) == math.inf  # 200M unique tokens never get 215M there


def test_fitted_laws_know_the_span_of_their_runs():
    """A law fitted to runs holds where they lie: its range is their min and max, and it warns beyond them."""
    import numpy as np

    from flopscalc.scaling.fit import fit_approach3, law_from_fit
    from flopscalc.scaling.fit_power import PowerFit, law_from_power_fit
    from flopscalc.scaling.runs import Runs

    n, d = np.meshgrid([1e8, 3e8, 1e9, 3e9], [2e9, 2e10, 2e11])
    n, d = n.ravel(), d.ravel()
    runs = Runs.from_arrays(n, d, 1.82 + 482 / n**0.348 + 2085 / d**0.366)  # Besiroglu-like, noise-free
    law = law_from_fit(fit_approach3(runs, grid="small"), "mine", "test", runs=runs)
    assert law.fitted_range.n_params == (1e8, 3e9) and law.fitted_range.n_tokens == (2e9, 2e11)
    assert range_warnings(law, 3e9, 2e11) == ()
    assert any("30x above" in w for w in range_warnings(law, 9e10, 2e11))
    c = np.array([1e18, 1e19, 1e20])
    power = PowerFit(approach=2, a=0.5, k_n=0.1, b=0.5, k_d=1.0, c_flops=c, n_opt=0.1 * c**0.5,
                     d_opt=c**0.5 / 0.6, n_runs=30)
    span = law_from_power_fit(power, "mine2", "test").fitted_range
    assert span.c_flops == (1e18, 1e20) and span.n_params == pytest.approx((1e8, 1e9))
