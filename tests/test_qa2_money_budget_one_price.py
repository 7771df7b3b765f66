"""QA pass 2, bug 4: `--budget-usd 500 --usd-per-gpu-hour 2 --usd-per-kwh 0.3` bought 250 GPU-hours of cloud
($500) and then billed $19.24 of electricity on top: a cloud hourly price already pays for power, and a budget is
spent at one price. The pair is refused (house rule for contradictory options: one line, exit 2); each price
alone still plans within the budget; without a budget both costs stay side by side."""

from __future__ import annotations

import json

import pytest

from flopscalc.cli import run
from flopscalc.errors import UsageError
from flopscalc.hardware import get_gpu
from flopscalc.planner import plan

BUDGET_USD, USD_PER_GPU_HOUR, USD_PER_KWH = 500.0, 2.0, 0.3
BASE = ("plan", "--gpu", "4070ti", "--budget-usd", "500")


def test_a_money_budget_with_both_prices_is_refused(capsys):
    code = run([*BASE, "--usd-per-gpu-hour", "2", "--usd-per-kwh", "0.3"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--usd-per-gpu-hour" in err and "--usd-per-kwh" in err and "not both" in err
    with pytest.raises(UsageError):
        plan(get_gpu("4070ti"), budget_usd=BUDGET_USD, usd_per_gpu_hour=USD_PER_GPU_HOUR, usd_per_kwh=USD_PER_KWH)


def test_each_price_alone_spends_the_budget_and_no_more(capsys):
    assert run([*BASE, "--usd-per-gpu-hour", "2", "--json"]) == 0
    e = json.loads(capsys.readouterr().out)["energy"]
    assert e["electricity_usd"] is None
    assert e["gpu_hours"] * USD_PER_GPU_HOUR == pytest.approx(BUDGET_USD, rel=1e-9)  # GPU-hours x price
    assert run([*BASE, "--usd-per-kwh", "0.3", "--json"]) == 0
    e = json.loads(capsys.readouterr().out)["energy"]
    assert e["cloud_usd"] is None and e["electricity_usd"] <= BUDGET_USD * (1 + 1e-9)


def test_without_a_budget_both_prices_are_alternatives_shown_side_by_side(capsys):
    assert run(["plan", "--gpu", "4070ti", "--days", "1", "--usd-per-gpu-hour", "2", "--usd-per-kwh", "0.3",
                "--json"]) == 0
    e = json.loads(capsys.readouterr().out)["energy"]
    assert e["cloud_usd"] == pytest.approx(e["gpu_hours"] * USD_PER_GPU_HOUR, rel=1e-9)
    assert e["electricity_usd"] == pytest.approx(e["facility_energy_kwh"] * USD_PER_KWH, rel=1e-9)
