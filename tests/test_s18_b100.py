"""Review r11/r13 findings (s18, b100): calibration plot, scaling-fit bootstrap, GPU family names.

Each test failed on the code before its fix; the comment above it names what was wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flopscalc.cli import run

REPO = Path(__file__).resolve().parents[1]
RUNS = str(REPO / "data" / "datablations_runs.csv")  # Muennighoff et al.'s 41 released runs (data/datablations_runs.md)


def _fit_json(capsys, *argv) -> dict:
    assert run(["scaling", "fit", RUNS, *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# ---- scaling fit --bootstrap: too few resamples, and the blank k_D row (r11 #10) -------------------------------------
# 'scaling fit data/datablations_runs.csv --approach 1 --bootstrap 10' printed "95% bootstrap interval"s that excluded
# the fit (a = 0.5919 in 0.0667 .. 0.5779; b = 0.4081 in 0.4221 .. 0.9333), silently: a percentile interval's limits
# are the (R+1) x 2.5%-th ordered draws (Davison & Hinkley 1997, eq. 5.18), and 10 draws have 0.28 beyond each.
# The k_D row's interval was blank: the draws held no k_D.

def test_too_few_resamples_warn_and_enough_do_not(capsys):
    few = _fit_json(capsys, "--approach", "1", "--bootstrap", "10")
    (w,) = [w for w in few["warnings"] if "resamples are too few" in w]
    assert "10 bootstrap resamples" in w and "--bootstrap 999" in w
    lo, hi = few["bootstrap"]["intervals_95"]["a"]
    assert not lo <= few["a"] <= hi  # the reviewer's case: what the warning is about
    enough = _fit_json(capsys, "--approach", "1", "--bootstrap", "999")
    assert not any("resamples are too few" in w for w in enough["warnings"])
    for k, key in (("a", "a"), ("b", "b"), ("k_N", "k_N"), ("k_D", "k_D")):
        lo, hi = enough["bootstrap"]["intervals_95"][k]
        assert lo <= enough[key] <= hi, k
    # approach 3 says the same in its table and its --json
    boot = _fit_json(capsys, "--grid", "small", "--bootstrap", "8")["bootstrap"]
    assert any("8 bootstrap resamples are too few" in w for w in boot["warnings"])
    assert run(["scaling", "fit", RUNS, "--grid", "small", "--bootstrap", "8"]) == 0
    assert "warning: 8 bootstrap resamples are too few" in capsys.readouterr().out.replace("\n", " ")


def test_k_d_row_has_its_interval(capsys):
    d = _fit_json(capsys, "--approach", "2", "--bootstrap", "200")
    # D_opt = C / 6 N_opt (Hoffmann et al. 2022, sec. 3), so the least-squares k_D of log D on log C, which the fit
    # computes by its own polyfit, is 1 / (6 k_N): the relation each draw's k_D is taken from
    assert d["k_D"] == pytest.approx(1 / (6 * d["k_N"]), rel=1e-9)
    lo, hi = d["bootstrap"]["intervals_95"]["k_D"]
    klo, khi = d["bootstrap"]["intervals_95"]["k_N"]
    assert lo < d["k_D"] < hi
    assert lo < 1 / (6 * klo) and 1 / (6 * khi) < hi  # a decreasing map of the same draws: the ends swap
    assert run(["scaling", "fit", RUNS, "--approach", "2", "--bootstrap", "200"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "k_D" in line)
    assert ".." in row


# ---- scaling fit --bootstrap has an upper bound (r13 #9) --------------------------------------------------------------
# '--bootstrap 100000000' was accepted: 50 approach-3 resamples take 1.6-3.3 s, so 1e8 is months of fitting.

def test_bootstrap_count_is_bounded(capsys):
    from flopscalc.cli.bounds import BOOTSTRAP_TYPE, MAX_BOOTSTRAP
    from flopscalc.scaling.resampling import MIN_PERCENTILE_RESAMPLES

    assert run(["scaling", "fit", RUNS, "--bootstrap", "100000000"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--bootstrap 100000000 is too large" in err and f"{MAX_BOOTSTRAP:,}" in err
    assert MAX_BOOTSTRAP >= 10 * MIN_PERCENTILE_RESAMPLES  # room for 10x what an interval needs
    assert BOOTSTRAP_TYPE.check(MAX_BOOTSTRAP, str(MAX_BOOTSTRAP), "--bootstrap") == MAX_BOOTSTRAP
