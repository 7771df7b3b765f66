"""`flopscalc step` says which time model priced the step, and the reason it gives for the two models' different
MFU on the same run is the whole difference.

Without layout options the per-operation model prices the step (data parallelism as `flopscalc train` runs it);
``--tp/--pp/...`` switch to the layout model. The note claims the two share compute and optimizer pricing and differ
in the data-parallel gradient buckets (and, for Megatron layouts, the sustained fraction); the tests check that
claim against the two models' own outputs: with one GPU they agree, and on 64 GPUs everything but the exposed
data-parallel communication agrees.
"""

from __future__ import annotations

import json

import pytest

from flopscalc.cli import run

RUN = ["step", "--model", "gpt2-xl", "--gpu", "h100", "--micro-batch", "8", "--json"]
LAYOUT = ["--tp", "1", "--pp", "1"]


def _json(capsys, *argv) -> dict:
    assert run([*argv]) == 0
    return json.loads(capsys.readouterr().out)


def _text(capsys, *argv) -> str:
    assert run([*argv]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("extra,model", [([], "per-operation"), (LAYOUT, "layout")])
def test_the_report_and_the_json_name_the_time_model(capsys, extra, model):
    argv = [a for a in RUN if a != "--json"] + ["--n-gpus", "64", *extra]
    text = " ".join(_text(capsys, *argv).split())  # unwrapped
    assert f"priced by the {model} model" in text or f"priced by the {model} step model" in text
    assert "gradient buckets" in text and "another MFU" in text  # says why the other model differs
    data = _json(capsys, *RUN, "--n-gpus", "64", *extra)
    assert data["step_model"] == model
    assert any(f"priced by the {model}" in n for n in data["notes"])


def test_on_one_gpu_the_two_models_price_the_same_step(capsys):
    """No data parallelism, a layout that needs no Megatron-LM: nothing the note names applies, so they agree."""
    per_op = _json(capsys, *RUN, "--n-gpus", "1")
    layout = _json(capsys, *RUN, "--n-gpus", "1", *LAYOUT)
    assert layout["engine"].startswith("flopscalc train")  # not a Megatron layout: the PyTorch-loop fraction
    assert per_op["step_s"] == pytest.approx(layout["step_s"], rel=1e-12)
    assert per_op["mfu"] == pytest.approx(layout["mfu"], rel=1e-12)
    assert (per_op["step_model"], layout["step_model"]) == ("per-operation", "layout")
    assert "notes" not in per_op and "notes" not in layout  # nothing to explain: no note


def test_on_64_gpus_only_the_exposed_data_parallel_communication_differs(capsys):
    per_op = _json(capsys, *RUN, "--n-gpus", "64")
    layout = _json(capsys, *RUN, "--n-gpus", "64", *LAYOUT)
    assert per_op["mfu"] < layout["mfu"] - 0.05  # the reported symptom: 31.5% against 40.6%
    per_op_rest = per_op["step_s"] - per_op["class_seconds"]["communication exposed"]
    layout_rest = layout["step_s"] - layout["time_s"]["data-parallel comm (exposed)"]
    assert per_op_rest == pytest.approx(layout_rest, rel=1e-12)  # compute + optimizer: the same pricing
    # DDP's 25 MiB buckets: 1.56B fp32 gradients (6.2 GB) need 238 all-reduces; Megatron's 64M-parameter buckets 25
    assert per_op["class_seconds"]["communication exposed"] > 10 * layout["time_s"]["data-parallel comm (exposed)"]
