"""The plan's setup row multiplies out: micro-batch x accumulation x data-parallel replicas x sequence = the tokens
per step it states. Found on `plan --gpu h100 --n-gpus 1024 --days 7`: '1 x 48  micro-batch x accumulation = 3.1M
tokens/step at seq 1024' (1 x 48 x 1024 is 49k; the 64 data-parallel replicas were left out), and likewise
'8 x 32 ... = 2.1M' on 8 GPUs."""

from __future__ import annotations

import json
import re

import pytest

from flopscalc.cli import run

UNIT = {"k": 1e3, "M": 1e6, "B": 1e9}


@pytest.mark.parametrize("argv", [
    ["plan", "--gpu", "h100", "--days", "7"],
    ["plan", "--gpu", "h100", "--n-gpus", "8", "--days", "7"],
    ["plan", "--gpu", "h100", "--n-gpus", "1024", "--days", "7"],
])
def test_the_setup_row_multiplies_out(capsys, monkeypatch, argv):
    monkeypatch.setenv("COLUMNS", "300")
    assert run([*argv, "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)["recommended"]
    replicas = rec["layout"]["dp"] if rec.get("layout") else int(argv[argv.index("--n-gpus") + 1]) if (
        "--n-gpus" in argv) else 1
    assert run(argv) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("setup "))
    m = re.search(r"(\d+) x (\d+)\s+micro-batch x accumulation(?: x ([\d,]+) data-parallel replicas)? = "
                  r"([\d.]+)([kMB]) tokens/step at seq (\d+)", row)
    assert m, row
    micro, accum, seq = int(m[1]), int(m[2]), int(m[6])
    shown_replicas = int(m[3].replace(",", "")) if m[3] else 1
    assert shown_replicas == replicas
    assert abs(micro * accum * shown_replicas * seq - float(m[4]) * UNIT[m[5]]) <= 0.05 * UNIT[m[5]], row
