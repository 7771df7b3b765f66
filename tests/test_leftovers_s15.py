"""Three leftovers of stop 15 (brief b75): Kaplan's allocation spends its budget; ZeRO over a data-parallel
group of one is refused on the layout path; (comments only in the layout tests)."""

from __future__ import annotations

import json

import pytest

from flopscalc.scaling.allocate import optimal
from flopscalc.scaling.laws import PF_DAY_FLOPS
from flopscalc.scaling.names import get_law

# Kaplan et al. 2020, Table 5: B_crit = 2.0e6 C_min^0.24 tokens, S_min = 5.4e3 C_min^0.03 steps, C_min in PF-days
KAPLAN_B_E_TOKENS = 2.0e6
KAPLAN_S_E_STEPS = 5.4e3
# Kaplan et al. 2020, Table 5: D_opt = 2e10 C_min^0.27 tokens, a run at B = B_crit (2 E_min, eq. 5.4)
KAPLAN_D_E_TOKENS = 2e10


@pytest.mark.parametrize("c_flops", [1e18, 1e20, PF_DAY_FLOPS, 1e24])
def test_kaplan_allocation_spends_exactly_its_budget(c_flops):
    """The budget row says C = 6ND; before, D was Table 5's D_opt and 6ND was 1.81 C (1.45B x 20.8B at 1e20)."""
    a = optimal(get_law("kaplan2020"), c_flops)
    assert 6 * a.n_params * a.n_tokens == pytest.approx(c_flops, rel=1e-12)


def test_kaplan_tokens_are_e_min_of_table5():
    """At C_min = 1 PF-day, D = C/6N is Kaplan's E_min = B_crit S_min (Table 5) to the table's 2-figure rounding
    (observed 2.6%); Table 5's D_opt is the run at B_crit, 2 E_min (eq. 5.4), to its 1-figure rounding (observed
    7.6%)."""
    a = optimal(get_law("kaplan2020"), PF_DAY_FLOPS)
    assert a.n_params == pytest.approx(1.3e9, rel=1e-12)  # N_e, Table 5
    assert a.n_tokens == pytest.approx(KAPLAN_B_E_TOKENS * KAPLAN_S_E_STEPS, rel=0.04)
    assert 2 * a.n_tokens == pytest.approx(KAPLAN_D_E_TOKENS, rel=0.25)
    # the exponent of D follows Table 5's B_crit x S_min: 0.24 + 0.03 = 0.27
    ratio = optimal(get_law("kaplan2020"), 100 * PF_DAY_FLOPS).n_tokens / a.n_tokens
    assert ratio == pytest.approx(100 ** (0.24 + 0.03), rel=1e-9)


def test_kaplan_cli_json_spends_the_budget(capsys):
    from flopscalc.cli import run

    assert run(["scaling", "optimal", "--flops", "1e20", "--law", "kaplan2020", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert 6 * d["n_params"] * d["n_tokens"] == pytest.approx(1e20, rel=1e-9)
    assert "D = C/6N" in d["flop_convention"]


# ---- 2. ZeRO over a data-parallel group of one -----------------------------------------------------------------

@pytest.mark.parametrize("zero", [1, 2, 3])
def test_layout_refuses_zero_without_data_or_context_ranks(zero):
    """ZeRO shards over dp x cp (Megatron-LM's distributed optimizer; `layout.search` skips z > 0 where
    dp * cp == 1); over one rank it shards nothing, and ZeRO-3 moved the estimate (+105 MiB of gather buffers for
    Llama 2 7B at TP 8) for a sharding that does not exist. Before, the layout was accepted."""
    from flopscalc.errors import UsageError
    from flopscalc.layout.spec import Layout

    with pytest.raises(UsageError, match="data x context-parallel ranks"):
        Layout(tp=8, dp=1, zero_stage=zero)
    assert Layout(tp=4, dp=1, cp=2, zero_stage=zero if zero < 3 else 1).zero_stage > 0  # shards over 2 CP ranks
    assert Layout(tp=8, dp=1).zero_stage == 0


def test_step_with_tp_taking_every_gpu_refuses_zero_in_one_line(capsys):
    from flopscalc.cli import run

    argv = ["step", "--model", "llama2-7b", "--gpu", "h100", "--n-gpus", "8", "--tp", "8"]
    assert run([*argv, "--zero", "1"]) == 2
    err = capsys.readouterr().err
    assert "drop --zero" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert run([*argv, "--json"]) == 0
    # a split the model cannot take keeps its own message (the stand-in layout of that check has no DP yet)
    assert run(["step", "--model", "llama2-7b", "--gpu", "h100", "--n-gpus", "12", "--pp", "5", "--zero", "1"]) == 2
    assert "not a multiple" in capsys.readouterr().err
