"""The planner's question, `PlanRequest`: validated on construction, typed, and the planner's only entry.

`plan(PlanRequest(...))` and the keyword form `plan(gpu, duration_s, **fields)` must refuse the same inputs with
the same one line (the keyword form builds the request), and the planner must take a resolved law: reading saved
laws is the face's job (docs/architecture.md: engines and the planner do no I/O).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from flopscalc.calibration import CalibrationPoint, CalibrationProfile
from flopscalc.errors import UsageError
from flopscalc.hardware import Precision, get_gpu
from flopscalc.model import PRESETS, count_params
from flopscalc.planner import Plan, plan
from flopscalc.planner.request import DEFAULT_SEQ_LEN, PlanRequest
from flopscalc.scaling import BUILTIN_LAWS

DAY_S = 86400.0
GPU = get_gpu("4070ti")


def _profile_on(gpu_key: str) -> CalibrationProfile:
    """A one-point profile measured on ``gpu_key`` (the numbers are never used: the request refuses it first)."""
    cfg = PRESETS["gpt2"]
    point = CalibrationPoint(
        model=cfg, n_params=count_params(cfg).total, micro_batch=4, seq_len=1024, grad_accum=1, n_devices=1,
        precision="bf16", compiled=False, step_time_s=1.0, tokens_per_s=4096, model_flops_per_token=1e9,
        achieved_flop_per_s=4e12, peak_flop_per_s=1e13, mfu=0.4)
    return CalibrationProfile(gpu_key, gpu_key, "2.13.0", "2026-11-28", (point,))


# Each malformed or contradictory request, and the words of the one line that refuses it.
REFUSED = [
    ({}, "give exactly one budget"),
    ({"duration_s": DAY_S, "flops": 1e20}, r"got 2 \(a time and a FLOP budget\)"),
    ({"n_tokens": 1e9}, "--tokens fixes the training tokens of a fixed model"),
    ({"model": PRESETS["gpt2"], "n_tokens": 1e9, "target_loss": 3.0}, "not both"),
    ({"model": PRESETS["gpt2"], "n_tokens": 1e9, "duration_s": DAY_S}, "--tokens already fixes the run"),
    ({"duration_s": DAY_S, "n_gpus": 0}, "whole number >= 1, got 0"),
    ({"duration_s": DAY_S, "n_gpus": 1.5}, "whole number >= 1, got 1.5"),
    ({"duration_s": DAY_S, "dataset_tokens": -1.0}, "dataset size"),
    ({"duration_s": DAY_S, "mfu": 0.3, "calibration": _profile_on("rtx-4070-ti")}, "give --mfu or --calibration"),
    ({"duration_s": DAY_S, "calibration_any_device": True}, "give the profile too"),
    ({"duration_s": DAY_S, "calibration": _profile_on("h100-sxm")}, "measured on h100-sxm"),
    ({"duration_s": DAY_S, "seq_len": 0}, "sequence length must be a positive whole number"),
    ({"duration_s": DAY_S, "inference_tokens": 1e12, "dataset_tokens": 1e9}, "no form for repeated data"),
    ({"duration_s": DAY_S, "inference_tokens": 1e12, "law": BUILTIN_LAWS["kaplan2020"]}, "has none"),
    ({"duration_s": DAY_S, "inference_tokens": 1e12, "model": PRESETS["gpt2"]}, "--model/--params fixes it"),
    ({"duration_s": DAY_S, "model": PRESETS["gpt2"], "family": "llama"}, "drop --family"),
    ({"budget_usd": 100.0}, "a money budget needs a price"),
    ({"duration_s": DAY_S, "utilization": 0.0}, r"utilization must be a fraction in \(0, 1\]"),
    ({"duration_s": DAY_S, "mfu": 1.5}, r"mfu must be a fraction in \(0, 1\]"),
]


@pytest.mark.parametrize("fields,says", REFUSED)
def test_a_bad_request_is_one_line_on_construction_and_plan_says_the_same(fields, says):
    with pytest.raises(UsageError, match=says) as built:
        PlanRequest(GPU, **fields)
    assert "\n" not in str(built.value)
    fields = dict(fields)
    with pytest.raises(UsageError) as keywords:  # the keyword form: the same request, the same line
        plan(GPU, fields.pop("duration_s", None), **fields)
    assert str(keywords.value) == str(built.value)


def test_the_request_holds_the_types_it_names():
    r = PlanRequest(GPU, DAY_S, precision="fp32", seq_len=None, models=[PRESETS["gpt2"]])
    assert r.precision is Precision.fp32 and r.seq_len == DEFAULT_SEQ_LEN == 1024
    assert r.models == (PRESETS["gpt2"],) and r.law is BUILTIN_LAWS["besiroglu2024"]
    assert (r.budget_kind, r.objective, r.fixed) == ("time", "loss", True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.n_gpus = 2  # type: ignore[misc]
    # no field typed `object` where a real type exists, in the question or in the answer
    for cls in (PlanRequest, Plan):
        assert not [f.name for f in dataclasses.fields(cls) if str(f.type).startswith("object")], cls


def test_the_planner_takes_a_law_not_a_name():
    with pytest.raises(TypeError, match="resolve_law"):
        PlanRequest(GPU, DAY_S, law="chinchilla")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="the request alone"):
        plan(PlanRequest(GPU, DAY_S), DAY_S)


def test_request_and_keywords_give_the_same_plan():
    a = plan(PlanRequest(GPU, 30 * DAY_S, mfu=0.4, law=BUILTIN_LAWS["chinchilla"], explain=False))
    b = plan(GPU, 30 * DAY_S, mfu=0.4, law=BUILTIN_LAWS["chinchilla"], explain=False)
    assert a.recommended == b.recommended and a.law.name == "chinchilla"
    # the law moves the answer: Chinchilla's constants, not the default law's, price the recommended run
    r = a.recommended
    assert r.loss == pytest.approx(BUILTIN_LAWS["chinchilla"].loss(r.n_params, r.n_tokens), rel=1e-12)


def test_planning_reads_no_law_file():
    """A whole plan imports nothing that reads saved laws (scaling.io): the face resolved the law."""
    code = ("import sys\n"
            "from flopscalc.hardware import get_gpu\n"
            "from flopscalc.planner import plan\n"
            "plan(get_gpu('4070ti'), 30 * 86400.0, explain=False)\n"
            "print('flopscalc.scaling.io' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
