"""The layout face (`flopscalc step` with --tp/--pp/--search) says, as the step face does, when its price includes
GEMMs at cuBLAS's unaligned kernel rate (eager PyTorch with a 16-bit dimension not a multiple of 8: GPT-2's
vocabulary of 50,257), from one function (`report.step.eager_note` on `StepEstimate.unaligned_gemms`).

A layout 'flopscalc train' runs (DDP, FSDP) is priced eager, so GPT-2's LM head is unaligned there; a layout
Megatron-LM runs is priced with padded shapes (its vocabulary padding, `layout.stage_cost`), so no note, although its
rank's vocabulary slice (50,257 / 2 = 25,129 per TP rank) is itself misaligned. The shape the note names is checked
against the flags (tokens x vocabulary x width), not against the code.
"""

from __future__ import annotations

import json

import pytest

from flopscalc.cli import run

BASE = ["step", "--model", "gpt2", "--micro-batch", "16", "--seq", "1024", "--json"]
GPT2_VOCAB, GPT2_WIDTH, TOKENS = 50257, 768, 16 * 1024


def _notes(capsys, *extra, gpu="h200") -> tuple[dict, list[str]]:
    assert run([*BASE, "--gpu", gpu, *extra]) == 0
    data = json.loads(capsys.readouterr().out)
    return data, [n for n in data.get("notes", []) if n.startswith("eager PyTorch:")]


@pytest.mark.parametrize("layout", [["--tp", "1", "--pp", "1"], ["--tp", "1", "--zero", "3"]], ids=["ddp", "fsdp"])
def test_an_eager_layout_names_the_unaligned_lm_head_as_the_step_face_does(capsys, layout):
    data, eager = _notes(capsys, "--n-gpus", "8", *layout)
    assert data["engine"].startswith("flopscalc train")
    assert len(eager) == 1
    assert f"lm head fwd, {TOKENS} x {GPT2_VOCAB} x {GPT2_WIDTH}" in eager[0]
    assert "--compile" in eager[0] and "without layout options" in eager[0]  # the remedy this face can take
    _, step_face = _notes(capsys, "--n-gpus", "8", *(["--zero", "3"] if "--zero" in layout else []))
    # the same finding, word for word, up to the remedy each face accepts
    assert len(step_face) == 1 and step_face[0].split(";")[0] == eager[0].split(";")[0]
    assert step_face[0] != eager[0]


def test_the_search_says_it_for_the_layout_it_details(capsys):
    data, eager = _notes(capsys, "--n-gpus", "1", "--search")
    assert data["ranked"][0]["engine"].startswith("flopscalc train")
    assert len(eager) == 1 and f"{TOKENS // 2} x {GPT2_VOCAB} x {GPT2_WIDTH}" in eager[0]  # its micro-batch, 8


def test_a_megatron_layout_is_priced_padded_so_it_has_no_note(capsys):
    from flopscalc.hardware import get_gpu
    from flopscalc.layout.spec import Layout
    from flopscalc.layout.stage_cost import rank_estimate
    from flopscalc.model import get_preset

    data, eager = _notes(capsys, "--n-gpus", "8", "--tp", "2")
    assert data["engine"] == "Megatron-LM" and eager == []
    # not for want of an unaligned dimension: each TP rank's vocabulary slice is 25,129 (odd)
    est = rank_estimate(get_preset("gpt2"), Layout(tp=2, dp=4, micro_batch=16), get_gpu("h200"), 1024)
    assert any(p.op.misaligned and p.op.gemm_shape[1] == -(-GPT2_VOCAB // 2) for p in est.ops)
    assert est.options.gemm_shape_padding and est.unaligned_gemms == ()


@pytest.mark.parametrize("extra, gpu", [(["--vocab", "50304"], "h200"), ([], "a100-sxm-80gb")],
                         ids=["aligned-vocabulary", "no-measured-unaligned-rate"])
def test_no_note_where_nothing_is_priced_unaligned(capsys, extra, gpu):
    """A vocabulary padded to a multiple of 64 (nanoGPT's 50,304) has no unaligned GEMM; an A100 has no measured
    unaligned rate in data/gpu_perf.csv, so its GEMMs are priced aligned: neither face says it."""
    for layout in (["--tp", "1", "--pp", "1"], []):
        _, eager = _notes(capsys, "--n-gpus", "8", *layout, *extra, gpu=gpu)
        assert eager == [], (layout, extra)
