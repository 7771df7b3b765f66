"""Calibration that carries across sizes (issue 11, item 4): the fit, the profile fields, the faces, and a small
cross-size prediction on this machine's CPU measured as a benchmark figure (an error ratio, not seconds)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from flopscalc.calibration import (
    CalibrationPoint,
    CalibrationProfile,
    DeviceFactors,
    load_profile,
    save_profile,
)
from flopscalc.cli import run
from flopscalc.errors import UsageError
from flopscalc.hardware import get_gpu
from flopscalc.memory.precision import MemoryPrecision
from flopscalc.memory.settings import Device, TrainingSetup
from flopscalc.model import ModelConfig, count_params
from flopscalc.perf import StepOptions, estimate_step
from flopscalc.perf.calibrate import (
    MeasuredStep,
    calibrated_step,
    device_from_factors,
    fit_device_factors,
)

# Factors of the size `flopscalc calibrate` fits on this machine's CPU (benchmarks/results/calibration_cpu.json).
TRUE = DeviceFactors(gemm_flop_per_s=1.2e11, memory_bytes_per_s=6e9, kernel_min_s=1e-5, attention_fraction=0.15,
                     precision="fp32", n_points=0, rms_rel_error=0.0, max_rel_error=0.0)
# The built-in CPU sweep's shapes (layers, heads, width, micro-batch, sequence), vocabulary 2048.
SWEEP = ((2, 2, 64, 2, 128), (2, 2, 64, 8, 128), (2, 4, 128, 2, 128), (2, 4, 128, 8, 64), (4, 4, 128, 4, 128),
         (3, 2, 96, 4, 64), (2, 2, 64, 4, 32))
# Held out: 4.9x the largest swept model's parameters, at a micro-batch the sweep never runs.
TARGET = (6, 8, 256, 3, 128)


def _shape(L, H, E, b, T, vocab=2048):
    cfg = ModelConfig(n_layer=L, n_head=H, n_embd=E, block_size=T, vocab_size=vocab)
    return cfg, TrainingSetup(micro_batch=b, seq_len=T, precision=MemoryPrecision.fp32, flash=True, device=Device.cpu)


def _model_time(factors, cfg, setup):
    spec, dev = device_from_factors(factors)
    return estimate_step(cfg, setup, spec, StepOptions(sustained_fraction=1.0), device=dev).step_s


def test_target_is_4_to_8_times_the_largest_swept_model():
    largest = max(count_params(_shape(*s)[0]).total for s in SWEEP)
    ratio = count_params(_shape(*TARGET)[0]).total / largest
    assert 4 <= ratio <= 8 and TARGET[3] not in {s[3] for s in SWEEP}


@pytest.mark.parametrize("hold_gemm", [False, True])
def test_fit_recovers_the_factors_that_made_the_times(hold_gemm):
    """Exact model, exact data: step times priced with known factors are fitted back to those factors (all four,
    or three with the GEMM rate held at its true value, as calibrate holds the measured one), and the held-out
    target is predicted to within the fit's tolerance."""
    points = [MeasuredStep(*_shape(*s), _model_time(TRUE, *_shape(*s))) for s in SWEEP]
    fit = fit_device_factors(points, gemm_flop_per_s=TRUE.gemm_flop_per_s if hold_gemm else None)
    assert fit.gemm_source == ("measured" if hold_gemm else "fitted")
    assert fit.rms_rel_error < 1e-6
    for name in ("gemm_flop_per_s", "memory_bytes_per_s", "kernel_min_s", "attention_fraction"):
        assert getattr(fit, name) == pytest.approx(getattr(TRUE, name), rel=1e-3), name
    assert _model_time(fit, *_shape(*TARGET)) == pytest.approx(_model_time(TRUE, *_shape(*TARGET)), rel=1e-6)


def test_fit_needs_more_points_than_factors():
    points = [MeasuredStep(*_shape(*s), 0.01) for s in SWEEP[:4]]
    with pytest.raises(UsageError, match="at least 5 measured setups"):
        fit_device_factors(points)


def test_cpu_device_switches_off_gpu_tile_quantization():
    """A CPU GEMM of width 64 runs at the fitted rate: no 128-wide tile wasting half of it."""
    cfg, setup = _shape(2, 2, 64, 2, 128)
    spec, dev = device_from_factors(TRUE)
    est = estimate_step(cfg, setup, spec, StepOptions(sustained_fraction=1.0), device=dev)
    gemms = [p for p in est.ops if p.op.gemm_shape is not None]
    assert gemms and all(p.efficiency == 1.0 for p in gemms)
    assert est.peak_flop_per_s == TRUE.gemm_flop_per_s  # on a CPU the fitted GEMM rate is the peak


def test_gpu_factors_become_fractions_of_the_datasheet():
    h100 = get_gpu("h100")
    f = replace(TRUE, gemm_flop_per_s=0.5 * h100.peak_flop_per_s("bf16"), precision="bf16",
                memory_bytes_per_s=0.25 * h100.memory_bandwidth_bytes_per_s)
    spec, dev = device_from_factors(f, h100)
    assert spec is h100 and dev.tile_quantization and dev.n_sm is not None
    assert dev.gemm_peak_fraction == pytest.approx(0.5) and dev.mem_bandwidth_fraction == pytest.approx(0.25)
    assert dev.flash_fwd_fraction == pytest.approx(0.5 * TRUE.attention_fraction)


def _profile(factors=TRUE, gpu_key=None):
    cfg, _ = _shape(*SWEEP[0])
    point = CalibrationPoint(model=cfg, n_params=count_params(cfg).total, micro_batch=2, seq_len=128, grad_accum=1,
                             n_devices=1, precision="fp32", compiled=False, step_time_s=0.02, tokens_per_s=12800.0,
                             model_flops_per_token=1e6, achieved_flop_per_s=1.28e10, peak_flop_per_s=None, mfu=None,
                             cpu_step_time_s=0.01, round_step_times_s=(0.02, 0.03), round_cpu_times_s=(0.01, 0.01))
    return CalibrationProfile(device_name="CPU x86_64", gpu_key=gpu_key, torch_version="2.13.0",
                              created="2026-11-28T00:00:00+00:00", points=(point,), device_factors=factors,
                              n_cpu_threads=1, load_avg_1min_start=3.5, n_cores=2, host_memory_bytes=8 * 2**30)


def test_profile_round_trip_keeps_factors_and_conditions(tmp_path):
    p = _profile()
    assert load_profile(save_profile(p, tmp_path / "cpu.json")) == p


def test_version_1_profile_without_factors_still_reads(tmp_path):
    data = _profile().to_dict()
    for key in ("device_factors", "n_cpu_threads", "load_avg_1min_start", "n_cores", "host_memory_bytes"):
        del data[key]
    for key in ("cpu_step_time_s", "round_step_times_s", "round_cpu_times_s", "attention", "recompute"):
        del data["points"][0][key]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    old = load_profile(path)
    assert old.device_factors is None and old.points[0].cpu_step_time_s is None
    cfg, setup = _shape(*TARGET)
    with pytest.raises(UsageError, match="no fitted device factors"):
        calibrated_step(cfg, setup, old)


def test_calibrated_step_refuses_another_device_or_precision():
    cfg, setup = _shape(*TARGET)
    with pytest.raises(UsageError, match="measured on CPU x86_64, not h100-sxm"):
        calibrated_step(cfg, setup, _profile(), get_gpu("h100"))
    with pytest.raises(UsageError, match=r"fitted fp32 matmuls.*--precision fp32"):
        calibrated_step(cfg, replace(setup, precision=MemoryPrecision.bf16_mixed), _profile())
    with pytest.raises(UsageError, match="one CPU process"):
        calibrated_step(cfg, replace(setup, n_gpus=2), _profile())
    with pytest.raises(UsageError, match="not in the GPU database"):  # a CUDA device without a row is no CPU
        calibrated_step(cfg, setup, replace(_profile(), device_name="NVIDIA Future GPU"))


def test_step_cli_reads_the_profile(tmp_path, capsys):
    path = save_profile(_profile(), tmp_path / "cpu.json")
    shape = ["--n-layer", "6", "--n-head", "8", "--n-embd", "256", "--vocab", "2048", "--seq", "128"]
    assert run(["step", "--gpu", "cpu", "--calibration", str(path), *shape, "--micro-batch", "3",
                "--precision", "fp32", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    cfg, setup = _shape(*TARGET)
    cfg = cfg.with_(block_size=1024)  # the CLI's shape keeps the default context (a 1024-row position table)
    assert shown["step_s"] == pytest.approx(calibrated_step(cfg, setup, _profile()).step_s, rel=1e-9)
    assert shown["step_s"] == pytest.approx(_model_time(TRUE, cfg, setup), rel=1e-9)
    # without --precision the step runs the precision the profile was fitted in (fp32 here): the same answer
    assert run(["step", "--gpu", "cpu", "--calibration", str(path), *shape, "--micro-batch", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["step_s"] == shown["step_s"]
    # another precision than the profile's is refused, naming the one it was fitted in
    assert run(["step", "--gpu", "cpu", "--calibration", str(path), *shape, "--micro-batch", "3",
                "--precision", "bf16-mixed"]) == 2
    assert "fp32" in capsys.readouterr().err
    assert run(["step", "--gpu", "h100", "--calibration", str(path), "--model", "gpt2"]) == 2
    assert "not h100-sxm" in capsys.readouterr().err


@pytest.mark.parametrize("extra,match", [
    (["--compile", "on"], "drop --compile"),
    (["--micro-batch", "4"], "--micro-batch would be ignored"),
])
def test_calibrate_cli_refusals(tmp_path, capsys, extra, match):
    assert run(["calibrate", "--out", str(tmp_path / "p.json"), "--device", "cpu", *extra]) == 2
    assert match in capsys.readouterr().err


# Bound on |predicted / measured - 1| for the held-out target in the small CI run below. Observed: the full
# benchmark (benchmarks/results/calibration_cpu.json: 4 rounds x 2 steps, 3 targets 4.9-6.4x, 3 repeats) stays
# within 10%; this cut-down run (3 rounds x 1 step, target 4.9x at micro-batch 3) gave errors within +-10% at a
# load average of 4-6 on 2 cores. 0.25 is 2.5x the worst seen, and it compares two times of the same run, so it
# holds on a faster or slower machine; carrying one measured MFU to the target instead is off by 12-23%.
CROSS_SIZE_BOUND = 0.25
# The fit's own residual over the sweep: observed 1.3-7% rms.
FIT_RMS_BOUND = 0.12


def test_the_recorded_cross_size_benchmark_meets_issue_11s_target():
    """Issue 11 item 4: calibrate on small models, predict a model 4-8x larger at another micro-batch within 15%.
    A timing on a shared CI machine is noise, so CI checks the figure benchmarks/bench_calibration_cpu.py recorded
    (with its machine and load), and that it beats carrying one measured MFU across sizes."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "calibration_cpu.json"
    d = json.loads(path.read_text())
    s = d["summary"]
    assert s["n_predictions"] >= 3
    assert s["max_abs_error"] <= 0.15  # issue 11's target
    assert s["max_abs_error"] < s["constant_mfu_max_abs_error"]
    assert {"load_avg_before", "load_avg_after", "cpu_model", "threads"} <= set(d["conditions"])


@pytest.mark.slow  # times real steps: on a loaded machine the fit residual alone reached 34% (pytest --run-slow)
def test_small_calibration_predicts_a_5x_larger_model_on_this_cpu():
    pytest.importorskip("torch")
    from flopscalc.perf.calibrate import fit_profile, measured_steps
    from flopscalc.train.bench import run_benchmarks
    from flopscalc.train.calibrate import cpu_sweep

    sweep = cpu_sweep(warmup_steps=1, timed_steps=1, sweep=SWEEP)
    target = cpu_sweep(warmup_steps=1, timed_steps=1, sweep=(TARGET,))
    # interleaved: the load falls on sweep and target alike; the matmul probe gives the GEMM rate calibrate holds
    measured = run_benchmarks(sweep + target, n_threads=1, rounds=3, gemm_probe=True)
    fitted = fit_profile(replace(measured, points=measured.points[:-1]))
    assert fitted.device_factors.timing == "process CPU" and fitted.n_cpu_threads == 1
    assert fitted.device_factors.gemm_source == "measured"
    assert fitted.device_factors.rms_rel_error <= FIT_RMS_BOUND
    (held_out,) = measured_steps(replace(measured, points=measured.points[-1:]))
    predicted = calibrated_step(held_out.model, held_out.setup, fitted).step_s
    error = predicted / held_out.step_s - 1
    assert math.isfinite(error) and abs(error) <= CROSS_SIZE_BOUND, (
        f"predicted {predicted:.3f} s, measured {held_out.step_s:.3f} s CPU ({error:+.1%}); factors "
        f"{fitted.device_factors}")


def test_calibrate_cli_fits_and_step_reads_the_result(tmp_path, capsys):
    """Wiring end to end: calibrate on 5 tiny setups writes fitted factors (GEMM measured, CPU seconds), its
    table names them, and 'step --gpu cpu --calibration' prices a model with exactly those factors."""
    pytest.importorskip("torch")
    out = tmp_path / "cpu.json"
    batches = [x for b in (1, 2, 3, 4, 6) for x in ("--micro-batch", str(b))]
    assert run(["calibrate", "--out", str(out), "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size",
                "32", "--vocab-size", "256", *batches, "--device", "cpu", "--warmup-steps", "1", "--steps", "1",
                "--rounds", "2"]) == 0
    assert "fitted for the step-time model (process CPU seconds): GEMM" in capsys.readouterr().out
    prof = load_profile(out)
    f = prof.device_factors
    assert f.gemm_source == "measured" and f.gemm_flop_per_s == prof.measured_gemm_flop_per_s and f.n_points == 5
    assert prof.n_cpu_threads == 1 and prof.load_avg_1min_start is not None
    assert all(len(p.round_cpu_times_s) == 2 for p in prof.points)
    assert run(["step", "--gpu", "cpu", "--calibration", str(out), "--n-layer", "2", "--n-head", "2", "--n-embd",
                "64", "--vocab", "256", "--seq", "32", "--micro-batch", "8", "--precision", "fp32", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    cfg = ModelConfig(n_layer=2, n_head=2, n_embd=64, block_size=1024, vocab_size=256)
    setup = TrainingSetup(micro_batch=8, seq_len=32, precision=MemoryPrecision.fp32, device=Device.cpu)
    assert shown["step_s"] == pytest.approx(_model_time(f, cfg, setup), rel=1e-9)
