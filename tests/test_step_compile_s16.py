"""`flopscalc step --compile/--eager`: torch.compile's padded GEMM shapes and fused norm/residual kernels against eager
PyTorch's unaligned LM head (perf.op_kinds StepOptions.gemm_shape_padding), checked against the H200 sweep recorded in
benchmarks/results/ (the project's trainer, eager and compiled, GPT-2 124M at micro-batch 16: 69.4 and 36.4 ms)."""

from __future__ import annotations

import json

from flopscalc.cli import run


def _step(capsys, *extra) -> dict:
    assert run(["step", "--model", "gpt2", "--gpu", "h200", "--micro-batch", "16", *extra, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_each_mode_is_nearer_its_own_recorded_measurement(capsys):
    eager, compiled = _step(capsys)["step_s"], _step(capsys, "--compile")["step_s"]
    measured_eager, measured_compiled = 0.0694, 0.0364  # trainer_h200-sxm_20261128_eager.md / _compiled.md
    assert compiled < eager
    assert abs(compiled / measured_compiled - 1) < abs(eager / measured_compiled - 1)
    assert abs(eager / measured_eager - 1) < abs(compiled / measured_eager - 1)
    assert abs(compiled / measured_compiled - 1) < 0.10


def test_the_eager_note_names_the_unaligned_gemms_and_goes_with_a_padded_vocabulary(capsys):
    notes = _step(capsys).get("notes") or []
    assert any("lm head" in n and "50257" in n and "--compile" in n for n in notes)
    assert not any("unaligned" in n for n in (_step(capsys, "--compile").get("notes") or []))
    assert not any("unaligned" in n for n in (_step(capsys, "--vocab", "50304").get("notes") or []))


def test_compile_with_a_layout_is_refused_in_one_line(capsys):
    assert run(["step", "--model", "gpt2", "--gpu", "h100", "--n-gpus", "2", "--tp", "2", "--compile"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--compile" in err[0] and "layout" in err[0]
