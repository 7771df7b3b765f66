"""The plan names the kernels its per-operation speed assumes (eager PyTorch: unpadded GEMMs, the residual stream's
width by setup), since the H200 sweep showed eager and compiled runs of one model differ by up to 1.9x; a stated
--mfu prices no kernels, so it names none."""

from __future__ import annotations

import json

from flopscalc.cli import run


def _assumptions(capsys, *extra) -> dict:
    assert run(["plan", "--gpu", "h200", "--days", "7", *extra, "--json"]) == 0
    return {a["name"]: a for a in json.loads(capsys.readouterr().out)["assumptions"]}


def test_the_per_operation_plan_says_it_prices_eager_kernels(capsys):
    kernels = _assumptions(capsys)["kernels"]
    assert "eager" in kernels["value"] and "unaligned" in kernels["value"]
    assert "3-18% too fast" in kernels["source"]


def test_a_stated_mfu_names_no_kernels(capsys):
    assert "kernels" not in _assumptions(capsys, "--mfu", "0.4")
