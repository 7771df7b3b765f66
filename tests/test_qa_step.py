"""`flopscalc step` with a CPU calibration profile: the command line the error message suggests must work.

Found: `flopscalc step --gpu cpu --model gpt2` says "calibrate this CPU: 'flopscalc calibrate --out cpu.json', then
--calibration cpu.json"; doing so failed with "calibration profile fitted fp32 matmuls; this setup runs bf16",
because step's --precision defaulted to bf16-mixed whatever the profile fitted. Without --precision the step now
runs the precision the profile was fitted in; given, a different one is still refused.
"""

from __future__ import annotations

import json

import pytest

from flopscalc.calibration import CalibrationPoint, CalibrationProfile, DeviceFactors, save_profile
from flopscalc.cli import run
from flopscalc.model import ModelConfig


@pytest.fixture
def cpu_profile(tmp_path):
    m = ModelConfig(n_layer=2, n_head=2, n_embd=64, block_size=64, vocab_size=256)
    point = CalibrationPoint(model=m, n_params=64_000, micro_batch=8, seq_len=64, grad_accum=1, n_devices=1,
                             precision="fp32", compiled=False, step_time_s=0.1, tokens_per_s=5120.0,
                             model_flops_per_token=1e6, achieved_flop_per_s=5.12e9, peak_flop_per_s=None, mfu=None,
                             round_step_times_s=(0.1, 0.11))
    factors = DeviceFactors(gemm_flop_per_s=1e11, memory_bytes_per_s=1e10, kernel_min_s=1e-5, attention_fraction=0.5,
                            precision="fp32", n_points=1, rms_rel_error=0.0, max_rel_error=0.0)
    prof = CalibrationProfile(device_name="cpu", gpu_key=None, torch_version="2.13.0", created="2026-01-01",
                              points=(point,), device_factors=factors)
    return str(save_profile(prof, tmp_path / "cpu.json"))


def _step(capsys, *argv) -> dict:
    assert run(["step", "--gpu", "cpu", "--model", "gpt2", "--seq", "256", *argv, "--json"]) == 0, \
        capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_cpu_profile_without_precision_runs_its_fitted_precision(capsys, cpu_profile):
    default = _step(capsys, "--calibration", cpu_profile)
    explicit = _step(capsys, "--calibration", cpu_profile, "--precision", "fp32")
    assert default["precision"] == "fp32"
    assert default["step_s"] == explicit["step_s"] and default["peak_flop_per_s"] == 1e11  # the fitted GEMM rate


def test_cpu_profile_with_another_precision_is_still_refused(capsys, cpu_profile):
    argv = ["step", "--gpu", "cpu", "--model", "gpt2", "--calibration", cpu_profile, "--precision", "bf16-mixed"]
    assert run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "fp32" in err


def test_a_throughput_below_one_token_per_second_is_printed_not_rounded_to_zero(capsys, cpu_profile):
    # was: 'tokens/s (all GPUs)  0' for a 70B model on a calibrated CPU (0.216 tokens/s in --json)
    argv = ["step", "--gpu", "cpu", "--model", "llama-3.1-8b", "--seq", "512", "--calibration", cpu_profile]
    out = _json_of(capsys, argv)
    assert 0 < out["tokens_per_s"] < 100
    assert run(argv) == 0
    text = capsys.readouterr().out
    assert f"tokens/s (all GPUs)  {out['tokens_per_s']:.3g}" in text


def _json_of(capsys, argv) -> dict:
    assert run([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)
