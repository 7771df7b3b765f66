"""Published runs, predicted against what their authors reported, within a tolerance stated HERE with its reason.

The tolerances used to be a column of data/published_runs.csv, the table under test, where whoever edits a row
also sets how far off it may be (issue 17, item 4). Each is now a constant of this test, with why that run is
looser than a same-run steady-state figure would be and the error observed when it was set (the per-row
discussion is docs/published_runs.md, "Why each run is off").
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import pytest

from flopscalc.runs import compare, get_run, published_runs


class Tolerance(NamedTuple):
    rel: float  # allowed |predicted / reported - 1| of the headline comparison (`runs.compare`)
    observed: float  # the error when the tolerance was set (2026-11-28), for the reader; not asserted
    reason: str


# Same-run figures on one node with no reported failures: the reported time is a rounded "~90 minutes" / "24 hours"
# and llm.c's "up to ~60%" MFU is a best case (its script's 300 ms/iter is 56%), so 10% covers rounding, not downtime.
SAME_RUN_ONE_NODE = 0.10
# Wall clock with restarts, evaluations, checkpoints and a small-batch start that the steady-state rate never sees
# (OPT: 35+ manual restarts, sec. 2.5; PaLM: "some downtime and repeated steps", App.; BLOOM: batch 192 at ~73
# TFLOPs before 2048, tr11 README; Llama 3: ">90% effective training time", sec. 3.3.4). The worst observed is
# OPT's -39%: 39% of its calendar went to failures (docs/published_runs.md), so 45%.
DOWNTIME_INCLUDED = 0.45

TOLERANCES = {
    "llmc-gpt2-124m": Tolerance(SAME_RUN_ONE_NODE, -0.017, "llm.c Discussion #481: '~90 minutes', 'up to ~60%' MFU"),
    "llmc-gpt2-1558m": Tolerance(SAME_RUN_ONE_NODE, +0.037, "llm.c #677: '24 hours'; the script states 2.80 s/iter "
                                 "but its own arithmetic uses 2.7 s (4%)"),
    # Not a measurement: Narayanan et al. 2021's own estimate by eq. 4 (8TP/nX); flopscalc counts eq. 3 with the
    # exact shape, ~3% more FLOPs at the same 140 TFLOP/s. Bookkeeping only, so the tightest tolerance.
    "megatron-gpt3-175b-estimate": Tolerance(0.05, +0.022, "eq. 3 vs eq. 4: the LM head and attention core"),
    "opt-175b": Tolerance(DOWNTIME_INCLUDED, -0.390, "56 calendar days with 35+ manual restarts; 'up to' 147 TFLOP/s"),
    "bloom-176b": Tolerance(DOWNTIME_INCLUDED, -0.100, "118 days incl. evaluations, checkpoints, restarts and the "
                            "batch ramp-up; GPU-hours are allocation"),
    "palm-540b": Tolerance(DOWNTIME_INCLUDED, -0.335, "chip-hours incl. downtime, repeated steps and batch 512/1024 "
                           "start (sec. 5)"),
    # The MFU is MosaicML's benchmark of the same size on 128 GPUs with a later llm-foundry, not the 440-GPU run's
    # own; whether the 9.5 days include restarts is not stated.
    "mpt-7b": Tolerance(0.30, -0.237, "borrowed MFU (llm-foundry benchmarking README), not the run's"),
    "llama31-405b": Tolerance(DOWNTIME_INCLUDED, -0.158, "41% is one of three stages (43/41/38%); model-card hours "
                              "cover every stage and failures"),
}
PREDICTABLE = [r for r in published_runs() if r.available_bases]


def test_every_predictable_run_has_a_tolerance_and_a_reason_here():
    assert {r.run for r in PREDICTABLE} == set(TOLERANCES)  # a new row with a rate needs a line above
    for r in PREDICTABLE:
        assert r.reported_gpu_hours is not None or r.reported_wall_clock_days is not None, r.run
        assert r.basis in r.available_bases, r.run
        t = TOLERANCES[r.run]
        assert 0 < t.rel < 0.5 and t.reason, r.run
    assert "tolerance" not in {f for r in PREDICTABLE for f in r.as_dict()}  # the data holds no tolerance


@pytest.mark.parametrize("run", PREDICTABLE, ids=[r.run for r in PREDICTABLE])
def test_prediction_within_the_tolerance_stated_here(run):
    c, t = compare(run), TOLERANCES[run.run]
    assert abs(c.error) <= t.rel, f"{run.run}: {c.error:+.1%} against {t.rel:.0%} ({t.reason})"


@pytest.mark.parametrize("name", ["megatron-gpt3-175b-estimate", "opt-175b"])
def test_the_tolerance_tells_a_figure_read_in_the_wrong_flop_convention_apart(name):
    """Megatron's TFLOP/s count the recomputed forward (eq. 3, 1.33x flopscalc's model FLOPs): read as if in
    flopscalc's convention, the prediction is 23% (Megatron) and 54% (OPT) short, outside each tolerance above."""
    run = get_run(name)
    assert abs(compare(run).error) <= TOLERANCES[name].rel
    wrong = compare(replace(run, flop_convention="exact"))
    assert abs(wrong.error) > TOLERANCES[name].rel, f"{name}: {wrong.error:+.1%}"
