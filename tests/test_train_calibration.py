"""Calibration profiles: JSON round trip, clear errors, atomic writes, interpolated MFU; no torch needed."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from flopscalc.atomic import write_text_atomic
from flopscalc.calibration import (
    CalibrationPoint,
    CalibrationProfile,
    load_profile,
    save_profile,
)
from flopscalc.errors import DomainError, UsageError
from flopscalc.model import ModelConfig


def _point(n_embd=64, micro_batch=8, mfu=0.3):
    m = ModelConfig(n_layer=2, n_head=2, n_embd=n_embd, block_size=64, vocab_size=256)
    return CalibrationPoint(model=m, n_params=1000 * n_embd, micro_batch=micro_batch, seq_len=64, grad_accum=1,
                            n_devices=1, precision="bf16", compiled=False, step_time_s=0.1, tokens_per_s=5120.0,
                            model_flops_per_token=1e6, achieved_flop_per_s=5.12e9, peak_flop_per_s=1e10, mfu=mfu)


def _profile(*points):
    return CalibrationProfile(device_name="NVIDIA H100 80GB HBM3", gpu_key="h100-sxm", torch_version="2.13.0",
                              created="2026-01-01T00:00:00+00:00", points=tuple(points) or (_point(),))


def test_round_trip(tmp_path):
    p = _profile(_point(), _point(128, 16, 0.5))
    assert load_profile(save_profile(p, tmp_path / "prof.json")) == p


def test_file_has_schema_and_version(tmp_path):
    data = json.loads(save_profile(_profile(), tmp_path / "p.json").read_text())
    assert data["schema"] == "flopscalc.calibration" and data["schema_version"] == 1


@pytest.mark.parametrize("text,match", [
    ("{not json", r"bad\.json is not valid JSON"),
    ('{"schema": "something-else"}', r"bad\.json is not a flopscalc calibration profile"),
    ('{"schema": "flopscalc.calibration", "schema_version": 99}', "schema version 99"),
    ('{"schema": "flopscalc.calibration", "schema_version": 1, "device_name": "x"}', "missing field"),
])
def test_corrupt_profiles_name_the_file(tmp_path, text, match):
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    with pytest.raises(UsageError, match=match):
        load_profile(bad)


def test_bad_point_and_missing_file(tmp_path):
    data = _profile().to_dict()
    data["points"][0]["tokens_per_s"] = -1
    bad = tmp_path / "neg.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(UsageError, match=r"neg\.json.*tokens_per_s must be a positive number"):
        load_profile(bad)
    with pytest.raises(UsageError, match="does not exist"):
        load_profile(tmp_path / "none.json")


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "p.json"
    write_text_atomic(path, "old")

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr("flopscalc.atomic.os.fsync", boom)
    with pytest.raises(OSError):
        write_text_atomic(path, "new")
    assert path.read_text() == "old" and [f.name for f in tmp_path.iterdir()] == ["p.json"]


def test_mfu_interpolates_in_log_params_and_clamps():
    small, big = _point(64, 8, 0.2), _point(256, 8, 0.4)  # 64k and 256k parameters
    prof = _profile(small, big)
    assert prof.mfu_for(128_000) == pytest.approx(0.3)  # 128k is the log-midpoint of 64k and 256k
    assert prof.mfu_for(1e3) == pytest.approx(0.2) and prof.mfu_for(1e12) == pytest.approx(0.4)  # no extrapolation


def test_mfu_interpolates_over_micro_batch():
    prof = _profile(_point(64, 4, 0.2), _point(64, 16, 0.4))
    assert prof.mfu_for(64_000, micro_batch=8) == pytest.approx(0.3)  # 8 is the log-midpoint of 4 and 16
    assert prof.mfu_for(64_000) == pytest.approx(0.4)  # default: the largest measured micro-batch


def test_best_of_duplicates_and_nearest_sequence_length():
    from dataclasses import replace

    eager, compiled = _point(64, 8, 0.3), replace(_point(64, 8, 0.5), compiled=True)
    short = replace(_point(64, 8, 0.1), seq_len=16)
    prof = _profile(eager, compiled, short)
    assert prof.mfu_for(64_000) == pytest.approx(0.5)  # compile on is the better measured setting
    assert prof.mfu_for(64_000, seq_len=20) == pytest.approx(0.1)  # 20 is nearer 16 than 64 (in log)


def test_no_mfu_without_a_peak():
    prof = _profile(_point(mfu=None))
    with pytest.raises(DomainError, match="no MFU"):
        prof.mfu_for(1e6)
    assert math.isfinite(prof.points[0].tokens_per_s)


def test_calibration_module_does_not_import_torch():
    code = "import sys, flopscalc.calibration; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
