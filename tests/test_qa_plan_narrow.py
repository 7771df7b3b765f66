"""The plan's options table at 80 columns, and any table too wide for the terminal when piped: numbers whole, or a cut
marked '…', never silently shortened.

Found by `COLUMNS=80 flopscalc plan --gpu 4070ti --days 365 | less`: the options table printed MFU '0.4' for 0.46,
shape '24x102' for 24x1024, tokens '451.3' for 451.3B and loss '2.44' for 2.443, with nothing to say a digit was
missing (piped tables fold instead of ending in '…', and a column that never wraps is then cut without a mark).
Every figure is read back against the plan's --json.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COUNT = re.compile(r"^\d+(\.\d+)?[kMBT]$")


def _piped(*argv: str, columns: str) -> str:
    r = subprocess.run([sys.executable, "-m", "flopscalc", *argv], capture_output=True, text=True, cwd=ROOT,
                       check=False, env={**os.environ, "COLUMNS": columns})
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return r.stdout


def _option_rows(out: str) -> list[list[str]]:
    """The options table's rows (the line that starts with the parameter count), split on whitespace."""
    lines = out.split("\nOptions around the optimum", 1)[1].split("\nWhat the budget buys", 1)[0].splitlines()
    return [line.split() for line in lines if line.split() and COUNT.match(line.split()[0])]


@pytest.mark.parametrize("argv", [
    ("plan", "--gpu", "4070ti", "--days", "365"),
    ("plan", "--gpu", "h100", "--n-gpus", "1024", "--days", "7"),
])
@pytest.mark.parametrize("columns", ["80", "90"])
def test_the_options_table_prints_every_figure_whole_at_80_columns(argv, columns):
    out = _piped(*argv, columns=columns)
    assert max(len(line) for line in out.splitlines()) <= int(columns)
    options = json.loads(_piped(*argv, "--json", columns=columns))["options"]
    rows = _option_rows(out)
    assert len(rows) == len(options)
    for row, o in zip(rows, options, strict=True):
        shape = f"{o['model']['n_layer']}x{o['model']['n_embd']}"
        assert shape in row, (shape, row)
        if not o["fits"]:
            continue
        loss, tok_p, tokens, hfu, mfu = row[-1], row[-2], row[-3], row[-4], row[-5]
        assert abs(float(mfu) - o["speed"]["mfu"]) <= 0.005 + 1e-12, (mfu, o["speed"]["mfu"])
        assert abs(float(hfu) - o["speed"]["hfu"]) <= 0.005 + 1e-12, (hfu, o["speed"]["hfu"])
        assert abs(float(loss) - o["loss"]) <= 0.0005 + 1e-12, (loss, o["loss"])
        assert abs(float(tok_p) - o["tokens_per_param"]) <= 0.5 + 1e-9, (tok_p, o["tokens_per_param"])
        scale = {"k": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}[tokens[-1]]
        assert abs(float(tokens[:-1]) * scale - o["n_tokens"]) <= 0.05 * scale, (tokens, o["n_tokens"])


def test_a_table_too_narrow_for_its_numbers_marks_the_cut_when_piped():
    """At 50 columns the options table cannot hold its numbers; a cut one ends in '…' as in a terminal (the MFU,
    HFU and loss cells either read back their --json value or are marked)."""
    argv = ("plan", "--gpu", "4070ti", "--days", "365")
    out = _piped(*argv, columns="50")
    options = json.loads(_piped(*argv, "--json", columns="50"))["options"]
    lines = out.split("\nOptions around the optimum", 1)[1].split("\nWhat the budget buys", 1)[0].splitlines()
    fitting = [o for o in options if o["fits"]]
    cells = [line.split() for line in lines if line.split() and re.match(r"^\d", line.split()[0])]
    assert cells
    for row in cells:
        for cell in row:
            if re.fullmatch(r"\d\.\d+", cell):  # an MFU, HFU or loss as printed: whole, else it is marked
                whole = {f"{o['speed']['mfu']:.2f}" for o in fitting} | {f"{o['speed']['hfu']:.2f}" for o in fitting}
                whole |= {f"{o['loss']:.3f}" for o in fitting}
                assert cell in whole or cell.endswith("…"), (cell, row)
