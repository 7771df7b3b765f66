"""QA pass 2, bug 8: `report.common.gpu_detail` built each peak row with a lambda that closed over the loop
variable (ruff B023): correct only while `_maybe` calls it at once, wrong the day it is kept for later. The rows
are now made in the loop (ruff B023 is the lint's job, not CI's: the test extra has no ruff). Checked by the
rows against the CSV row (data/gpu_specs.csv, read here with the csv module) and each precision's own label."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from flopscalc.hardware import PRECISION_HELP, Precision, get_gpu
from flopscalc.report.common import gpu_detail

ROOT = Path(__file__).resolve().parents[1]
# the renderer shows one decimal of the largest unit: 989.4 TFLOP/s prints as 1.0 PFLOP/s (1.1% off)
RATE_ROUNDING_REL = 0.05


def test_each_peak_row_carries_its_own_precision_and_the_csv_rate():
    with open(ROOT / "data/gpu_specs.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["key"] == "h100-sxm")
    table = gpu_detail(get_gpu("h100"))
    labels, values = table.columns[0]._cells, table.columns[1]._cells
    peaks = {label.removeprefix("peak "): value for label, value in zip(labels, values) if label.startswith("peak ")}
    assert set(peaks) == {p.value for p in Precision}
    for p in Precision:
        rate = [v for k, v in row.items() if k.startswith(p.name + "_") and "tflop" in k.lower()]
        if peaks[p.value] == "-":
            assert not rate or rate[0] == ""
            continue
        assert f"({PRECISION_HELP[p]}, dense)" in peaks[p.value]
        assert not [q for q in Precision if q is not p and f"({PRECISION_HELP[q]}, dense)" in peaks[p.value]]
        number, unit = peaks[p.value].split()[:2]
        shown_tflops = float(number) * {"TFLOP/s": 1.0, "PFLOP/s": 1e3}[unit]
        assert shown_tflops == pytest.approx(float(rate[0]), rel=RATE_ROUNDING_REL)
