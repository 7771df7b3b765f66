"""Malformed calibration profile files: one clear UsageError naming the file, never a traceback."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from test_train_calibration import _point

from flopscalc.calibration import CalibrationProfile, DeviceFactors, load_profile, save_profile
from flopscalc.errors import UsageError


def _profile_dict(tmp_path) -> dict:
    point = replace(_point(), round_step_times_s=(0.1, 0.11))
    factors = DeviceFactors(gemm_flop_per_s=1e11, memory_bytes_per_s=1e10, kernel_min_s=1e-5, attention_fraction=0.5,
                            precision="fp32", n_points=1, rms_rel_error=0.0, max_rel_error=0.0)
    prof = CalibrationProfile(device_name="cpu", gpu_key=None, torch_version="2.13.0", created="2026-01-01",
                              points=(point,), device_factors=factors)
    return json.loads(save_profile(prof, tmp_path / "ok.json").read_text())


@pytest.mark.parametrize("edit,match", [
    (lambda d: d["points"][0]["round_step_times_s"].append("fast"), "malformed field"),
    (lambda d: d["points"][0]["model"].update(depth=3), "unknown model field.*depth"),
    (lambda d: d["device_factors"].update(speedup=2), "unknown device factor.*speedup"),
    (lambda d: d["device_factors"].update(kernel_min_s=-1), "kernel_min_s must be a positive number"),
])
def test_malformed_profile_is_one_line_naming_the_file(tmp_path, edit, match):
    data = _profile_dict(tmp_path)
    edit(data)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(UsageError, match=rf"bad\.json.*{match}"):
        load_profile(bad)


def test_the_unedited_profile_loads(tmp_path):
    data = _profile_dict(tmp_path)
    assert load_profile(tmp_path / "ok.json").device_factors.precision == data["device_factors"]["precision"]
