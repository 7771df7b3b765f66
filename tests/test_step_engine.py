"""`flopscalc step` says which time model priced the step, and the reason it gives for the two models' different
MFU on the same run is the whole difference.

Without layout options the per-operation model prices the step (data parallelism as `flopscalc train` runs it);
``--tp/--pp/...`` switch to the layout model. The note claims the two share compute and optimizer pricing and, for layouts that need
Megatron-LM, differ in the data-parallel gradient buckets (and the sustained fraction); the tests check that claim
against the two models' own outputs: with one GPU they agree, on 64 GPUs a DDP layout agrees whole, and a
Megatron-LM layout differs only in the exposed data-parallel communication.
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
    assert "gradient buckets" in text  # says which buckets priced it
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


def test_on_64_gpus_a_ddp_layout_is_priced_as_the_per_operation_model_prices_it(capsys):
    """A layout 'flopscalc train' runs (TP 1, PP 1, ZeRO 0: DDP) uses DDP's buckets and DDP's overlap in both models,
    so the whole step agrees, the exposed data-parallel communication included (it was 31.5% against 40.6% MFU when
    the layout model priced Megatron-LM's buckets for it)."""
    per_op = _json(capsys, *RUN, "--n-gpus", "64")
    layout = _json(capsys, *RUN, "--n-gpus", "64", *LAYOUT)
    assert layout["engine"].startswith("flopscalc train")
    per_op_rest = per_op["step_s"] - per_op["class_seconds"]["communication exposed"]
    layout_rest = layout["step_s"] - layout["time_s"]["data-parallel comm (exposed)"]
    assert per_op_rest == pytest.approx(layout_rest, rel=1e-12)  # compute + optimizer: the same pricing
    assert layout["time_s"]["data-parallel comm (exposed)"] == pytest.approx(
        per_op["class_seconds"]["communication exposed"], rel=1e-12)
    assert layout["mfu"] == pytest.approx(per_op["mfu"], rel=1e-12)


def test_a_layout_that_needs_megatron_keeps_megatron_buckets(capsys):
    """ZeRO-1 on TP 1, PP 1 is Megatron-LM's distributed optimizer: fewer, larger buckets than DeepSpeed's ZeRO-1
    (the per-operation model's), so less exposed ring latency; compute + optimizer still agree."""
    per_op = _json(capsys, *RUN, "--n-gpus", "64", "--zero", "1")
    layout = _json(capsys, *RUN, "--n-gpus", "64", "--zero", "1", *LAYOUT)
    assert layout["engine"] == "Megatron-LM"
    assert layout["time_s"]["data-parallel comm (exposed)"] < per_op["class_seconds"]["communication exposed"]


def test_the_layout_models_note_names_the_buckets_of_the_engine_that_runs_the_layout():
    from flopscalc.layout.spec import Engine
    from flopscalc.report.step import LAYOUT_MODEL, engine_note

    ddp = engine_note(LAYOUT_MODEL, Engine.torchrun_ddp.value)
    assert "DDP's 25 MiB" in ddp and "Megatron" not in ddp and "same step" in ddp
    megatron = engine_note(LAYOUT_MODEL, Engine.megatron.value)
    assert "Megatron-LM's gradient buckets" in megatron and "another MFU" in megatron
