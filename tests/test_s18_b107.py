"""Final reader FR-A #1: with --inference-tokens a time budget shrank to the family's smallest model.

At df9a2b3 `plan --gpu 4070ti --days 3 --inference-tokens 1T` settled the budget at the life-cycle pick's own MFU
(x MFU 0.147 -> 2.75e18 FLOP, where the plain 3-day plan delivers 9.34e18 at MFU 0.499) and recommended 8.0M at loss
3.996; the same FLOPs given as --flops 9.34e18 recommend 20.1M at 3.430. A small model's low MFU shrank the budget,
the optimum and the price of a nat, and the next pick was smaller still: 3T and 10T both gave 3.3M (GPT-2's 1 x 64).
And `--days 3 --inference-tokens 1B` recommended 279.2M at loss 2.966 where the plain plan's 241.5M reaches 2.965.

The references are independent of the life-cycle code: the plain plan (no --inference-tokens) and the plan for the
equivalent --flops budget, the family's smallest shape counted from its config, and Sardana et al. 2024's objective
(training plus 2NT served FLOPs grows with N at a fixed training budget, so more tokens served never favour a larger
model).
"""

from __future__ import annotations

import itertools
import json

import pytest

from flopscalc.cli import run
from flopscalc.model import ModelConfig, count_params

THREE_DAYS = ("--gpu", "4070ti", "--days", "3")
SWEEP = ("1B", "100B", "300B", "1T", "3T", "10T")


def _plan(capsys, *argv) -> dict:
    code = run(["plan", *argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def plans():
    """The 3-day plan without inference tokens and with each of SWEEP (computed once: ~1 s each)."""
    import contextlib
    import io

    def plan(*argv):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            assert run(["plan", *argv, "--json"]) == 0
        return json.loads(out.getvalue())

    return {None: plan(*THREE_DAYS), **{t: plan(*THREE_DAYS, "--inference-tokens", t) for t in SWEEP}}


def test_time_budget_is_the_plain_plans(plans):
    # the budget the life-cycle pick is weighed in is the one the lowest-loss run settles (9.34e18 at MFU 0.499),
    # not the life-cycle pick's own (2.75e18 at MFU 0.147 at df9a2b3)
    plain = plans[None]
    for t in SWEEP:
        assert plans[t]["model_flops"] == pytest.approx(plain["model_flops"], rel=1e-12), t
        assert plans[t]["mfu"] == pytest.approx(plain["mfu"], rel=1e-12), t
        # and 'flopscalc step''s causal count of that MFU is that run's too, not the life-cycle pick's shape's
        assert plans[t]["mfu_causal"] == pytest.approx(plain["mfu_causal"], rel=1e-12), t


def test_time_budget_lands_near_the_equivalent_flop_budget(capsys, plans):
    # the model FLOPs the plain 3-day plan delivers (9.34e18), given as --flops: each option spends them, so no MFU
    # feeds back; the time budget's pick may differ by the options' own speeds, but not by more than one step of
    # the options' grid (2^(1/2))
    p = plans["1T"]
    flops = _plan(capsys, "--gpu", "4070ti", "--flops", repr(plans[None]["model_flops"]), "--inference-tokens", "1T")
    ratio = p["recommended"]["n_params"] / flops["recommended"]["n_params"]
    assert 2 ** -0.5 <= ratio <= 2 ** 0.5  # df9a2b3: 8.0M vs 20.1M, ratio 0.40


def test_recommended_size_falls_as_inference_tokens_rise_and_stays_above_the_smallest(plans):
    sizes = [plans[t]["recommended"]["n_params"] for t in SWEEP]
    assert all(a > b for a, b in itertools.pairwise(sizes)), sizes
    # GPT-2's smallest shape, 1 layer x 64 wide (one head of 64) at its vocabulary and context: 3.3M
    smallest = count_params(ModelConfig(n_layer=1, n_head=1, n_embd=64)).total
    assert min(o["n_params"] for o in plans["10T"]["options"]) == pytest.approx(smallest, rel=1e-12)
    assert sizes[-1] > smallest  # df9a2b3: 3T and 10T both recommended it


@pytest.mark.parametrize("t", SWEEP)
def test_never_larger_and_worse_than_the_plain_plan(plans, t):
    # more parameters serve more FLOPs (2NT) and a higher loss is worth less: such an option costs more over its
    # life than the plain plan's pick at any T (df9a2b3, 1B: 279.2M at 2.966 against 241.5M at 2.965)
    rec, plain = plans[t]["recommended"], plans[None]["recommended"]
    assert not (rec["n_params"] > plain["n_params"] and rec["loss"] > plain["loss"]), (rec["n_params"], rec["loss"])
    assert rec["n_params"] <= plain["n_params"] * (1 + 1e-12)


def test_header_names_the_run_that_settles_the_budget(capsys):
    assert run(["plan", *THREE_DAYS, "--inference-tokens", "1T"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "model FLOPs the lowest-loss run (the plan without --inference-tokens) delivers" in out


@pytest.mark.parametrize("value", ["-5", "0"])
def test_plan_and_scaling_optimal_refuse_inference_tokens_in_the_same_words(capsys, value):
    # at df9a2b3 plan said "the inference tokens must be a positive number, got -5.0" and scaling optimal
    # "--inference-tokens must be a positive number of tokens, e.g. 2T, got -5; ..."
    errs = []
    for argv in (["plan", *THREE_DAYS], ["scaling", "optimal", "--flops", "1e21"]):
        assert run([*argv, "--inference-tokens", value]) == 2
        errs.append(capsys.readouterr().err.strip())
    want = (f"flopscalc: error: --inference-tokens must be a positive number of tokens, e.g. 2T, got {value}; "
            "leave it out for the compute-optimal model alone")
    assert errs == [want, want]


def test_a_life_cycle_cost_above_the_chinchilla_models_is_no_saving(capsys, plans):
    # 1B served tokens: the pick (the plain plan's 241.5M) costs a little more over its life than the Chinchilla
    # model of its loss (Hoffmann eq. 4 for that loss, plus its 2NT), as --json's inference block says; the text
    # says it as a cost, never as a negative saving (df9a2b3: "saving -1.56e17 FLOP (-1.8%)")
    life = plans["1B"]["inference"]["life_cycle"]
    assert life["lifetime_flops"] > life["chinchilla_lifetime_flops"]
    assert run(["plan", *THREE_DAYS, "--inference-tokens", "1B"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "no saving" in out and "saving -" not in out and "(-" not in out
