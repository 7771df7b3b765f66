"""The H200 measurements of the project's own trainer (benchmarks/results/calibration_h200-sxm_20261128_*.json)
against the step-time model: every point is priced, and device factors fitted on the small models' eager points
carry to GPT-2 XL (issue 11 items 4 and 6, on a GPU). No timing: the measurements are the committed profiles."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from flopscalc.calibration import load_profile
from flopscalc.flops import Recompute
from flopscalc.hardware import get_gpu
from flopscalc.perf import estimate_step
from flopscalc.perf.calibrate import calibrated_step, fit_device_factors, measured_steps, point_setup

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SCRIPT = ROOT / "benchmarks" / "bench_perf_own_gpu.py"
GPU = "h200-sxm"
PROFILES = sorted(RESULTS.glob(f"calibration_{GPU}_20261128_*.json"))
# The 8192^3 bf16 matmul timed beside the 124M recomputation run: the GEMM rate the fit holds, as
# `flopscalc calibrate` holds its own probe.
PROBE_PROFILE = RESULTS / f"calibration_{GPU}_20261128_recompute-full-gpt2.json"
# Small models the fit reads: GPT-2 124M (4 eager points) and 355M (1), 5 = the fit's MIN_POINTS.
FIT_MAX_PARAMS = 4e8
# Bound on the calibrated prediction of the three GPT-2 XL rows (no / full / selective recomputation, 12.5x the
# smallest and 4.4x the largest fitted model): median |error| <= 6% and each <= 12%. Seen on 2026-11-28 with the
# fp32 residual stream priced: +2.8%, +9.0% (full recomputation), +1.9% (median 2.8%; 3.4% over the four
# cross-size rows with GPT-2 large). The bound leaves 3 points of room on the worst row and rejects the
# uncalibrated raw model of the same date (-8.6%, -3.2%, -9.1%: median 8.6%, asserted below) and a constant MFU
# carried from 355M (+32.7%).
MEDIAN_BOUND = 0.06
EACH_BOUND = 0.12


def _within_bound(errors: list[float]) -> bool:
    return statistics.median(abs(e) for e in errors) <= MEDIAN_BOUND and max(abs(e) for e in errors) <= EACH_BOUND


def _eager_points():
    out = []
    for path in PROFILES:
        prof = load_profile(path)
        out += [(p, m, prof) for p, m in zip(prof.points, measured_steps(prof)) if not p.compiled]
    return out


def _fit_and_predict(step_s_of=lambda p, m: m.step_s):
    """Errors of the XL rows predicted from a fit on the small models (times per point from ``step_s_of``)."""
    gpu = get_gpu(GPU)
    eager = _eager_points()
    small = [replace(m, step_s=step_s_of(p, m)) for p, m, _ in eager if p.n_params <= FIT_MAX_PARAMS]
    factors = fit_device_factors(small, gpu, load_profile(PROBE_PROFILE).measured_gemm_flop_per_s)
    profile = replace(load_profile(PROBE_PROFILE), device_factors=factors)
    xl = [(p, m) for p, m, _ in eager if p.model.name == "gpt2-xl"]
    return {p.recompute: calibrated_step(m.model, m.setup, profile, gpu).step_s / m.step_s - 1 for p, m in xl}, small


def test_the_profiles_hold_the_measured_rows():
    eager = _eager_points()
    assert len(PROFILES) == 7  # eager, eager-sizes, 3 recomputation files, compiled, compiled-pad64
    assert sorted((p.model.name, p.micro_batch, p.recompute) for p, _, _ in eager) == sorted([
        ("gpt2", 8, "none"), ("gpt2", 16, "none"), ("gpt2", 32, "none"), ("gpt2", 16, "full"),
        ("gpt2-medium", 8, "none"), ("gpt2-large", 8, "none"),
        ("gpt2-xl", 8, "none"), ("gpt2-xl", 8, "full"), ("gpt2-xl", 8, "selective")])


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem.split("20261128_")[1])
def test_every_point_is_priced_with_the_setup_it_ran(path):
    gpu = get_gpu(GPU)
    prof = load_profile(path)
    for p in prof.points:
        setup = point_setup(p)
        assert (setup.micro_batch, setup.seq_len, setup.n_gpus, setup.recompute.value, setup.flash) == (
            p.micro_batch, p.seq_len, p.n_devices, p.recompute, p.attention == "sdpa")
        est = estimate_step(p.model, setup, gpu)
        assert math.isfinite(est.step_s) and est.step_s > 0
        if p.recompute != "none":  # recomputation is priced: a second forward costs time (the old column ignored it)
            assert est.step_s > estimate_step(p.model, replace(setup, recompute=Recompute.none), gpu).step_s


def test_cross_size_calibration_carries_to_gpt2_xl():
    errors, small = _fit_and_predict()
    assert sorted((m.model.name, m.setup.micro_batch) for m in small) == sorted(
        [("gpt2", 8), ("gpt2", 16), ("gpt2", 32), ("gpt2", 16), ("gpt2-medium", 8)])
    assert set(errors) == {"none", "full", "selective"}
    assert _within_bound(list(errors.values())), errors


def test_the_bound_rejects_predictions_that_ignore_the_measurements():
    # A fit that ignored how the measured time grows with size and micro-batch: every small point given the
    # 124M micro-batch 8 time (seen: -23.2%, -18.2%, -23.9%).
    first = min((m.step_s for p, m, _ in _eager_points() if p.n_params <= FIT_MAX_PARAMS))
    flat, _ = _fit_and_predict(lambda p, m: first)
    assert not _within_bound(list(flat.values())), flat
    # The old way: one measured rate (355M's model FLOP/s, i.e. a constant MFU) carried to GPT-2 XL.
    rows = {(p.model.name, p.recompute): p for p, _, _ in _eager_points()}
    src, xl = rows[("gpt2-medium", "none")], rows[("gpt2-xl", "none")]
    rate = src.model_flops_per_token * src.micro_batch * src.seq_len / src.step_time_s
    const_error = xl.model_flops_per_token * xl.micro_batch * xl.seq_len / rate / xl.step_time_s - 1
    assert not _within_bound([const_error]), const_error


def test_the_bound_rejects_the_uncalibrated_raw_model():
    # The calibration must earn its place: the raw model (datasheet rates, no fitted factors) on the same XL rows.
    gpu = get_gpu(GPU)
    raw = [estimate_step(p.model, point_setup(p), gpu).step_s / p.step_time_s - 1
           for p, _, _ in _eager_points() if p.model.name == "gpt2-xl"]
    assert len(raw) == 3 and not _within_bound(raw), raw


def _run_script(*args, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "out.json"), *args],
                          check=False, capture_output=True, text=True, env=env, timeout=120)


def test_script_reports_every_point_and_the_committed_file_holds_the_measurements(tmp_path):
    r = _run_script(tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads((tmp_path / "out.json").read_text())
    every = sorted(RESULTS.glob(f"calibration_{GPU}_*.json"))  # what the script reads by default, any date
    points = [(path.name, p) for path in every for p in load_profile(path).points]
    assert len(out["points"]) == len(points)
    by_key = {(r["source"], r["model"], r["micro_batch"]): r for r in out["points"]}
    for name, p in points:
        row = by_key[(name, p.model.name, p.micro_batch)]
        assert row["measured_s"] == p.step_time_s
        assert row["raw_error"] == pytest.approx(row["raw_predicted_s"] / p.step_time_s - 1, rel=1e-12)
    dated = [r for r in out["points"] if "_20261128_" in r["source"]]
    assert sum(not r["compiled"] for r in dated) == 9 and sum(r["compiled"] for r in dated) == 5
    assert {t["model"] for t in out["cross_size"]["targets"]} >= {"gpt2-large", "gpt2-xl"}
    # The committed file is what docs/performance_model.md quotes: measured as recorded, and the predictions and
    # the cross-size summary as today's code gives them (a model change that moves them must re-record the file).
    committed = json.loads((RESULTS / "perf_own_gpu.json").read_text())
    assert {(r["source"], r["model"], r["micro_batch"]): r["measured_s"] for r in committed["points"]} == {
        k: r["measured_s"] for k, r in by_key.items()}
    for r in committed["points"]:
        now = by_key[(r["source"], r["model"], r["micro_batch"])]
        assert r["raw_predicted_s"] == pytest.approx(now["raw_predicted_s"], rel=1e-9), r
        assert r["calibrated_s"] == (None if now["calibrated_s"] is None else pytest.approx(now["calibrated_s"],
                                                                                            rel=1e-9)), r
    _assert_close(committed["summary"], out["summary"])
    _assert_close(committed["cross_size"]["summary"], out["cross_size"]["summary"])
    assert [(t["model"], t["recompute"]) for t in committed["cross_size"]["targets"]] == [
        (t["model"], t["recompute"]) for t in out["cross_size"]["targets"]]
    for old, now in zip(committed["cross_size"]["targets"], out["cross_size"]["targets"]):
        assert old["calibrated_s"] == pytest.approx(now["calibrated_s"], rel=1e-9), old


def _assert_close(recorded, now, path="") -> None:
    """Nested JSON equal up to float rounding (rel 1e-9)."""
    if isinstance(now, dict):
        assert set(recorded) == set(now), path
        for k in now:
            _assert_close(recorded[k], now[k], f"{path}.{k}")
    elif isinstance(now, list):
        assert len(recorded) == len(now), path
        for i, (a, b) in enumerate(zip(recorded, now)):
            _assert_close(a, b, f"{path}[{i}]")
    elif isinstance(now, float):
        assert recorded == pytest.approx(now, rel=1e-9), path
    else:
        assert recorded == now, path


@pytest.mark.parametrize("args, code, needle", [
    (["--gpu", "h100"], 2, "no calibration profiles of h100-sxm"),
    (["--gpu", "h100", "--profile", str(PROBE_PROFILE)], 2, "measured on h200-sxm, not h100-sxm"),
    (["--gpu", "no-such-gpu"], 2, "unknown GPU"),
    (["--profile", str(PROBE_PROFILE)], 2, "the cross-size fit needs 5+ eager points"),
])
def test_script_bad_input_is_one_line(tmp_path, args, code, needle):
    r = _run_script(*args, tmp_path=tmp_path)
    assert r.returncode == code and needle in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
