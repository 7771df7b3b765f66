"""`flopscalc gpus` in a narrow terminal or piped with a narrow COLUMNS: every figure prints whole, on its GPU's line.

Found by trying the CLI at COLUMNS=60, piped: the number columns were cut without a mark, so the RTX 3090 printed
'35' W and '$149' for its 350 W and $1,499, and 360 GB/s printed as '36' (in a terminal rich ended them in '…'). Each
printed figure is read back and compared with the database row it belongs to, within the rounding it is printed at.
"""

from __future__ import annotations

import io
import math

import pytest
from rich.console import Console

from flopscalc.cli import run
from flopscalc.hardware import load_database
from flopscalc.report.gpus import gpu_table

GIB, GIGA, TERA = 2**30, 1e9, 1e12
RATES = {"fp32": "fp32", "tf32": "tf32", "bf16": "bf16", "f16a16": "fp16_acc16", "fp8": "fp8"}


def _expected(g) -> dict[str, float | None]:
    """Each column's figure from the GpuSpec, in the column's unit."""
    out = {"GiB": g.memory_bytes / GIB, "GB/s": _scaled(g.memory_bandwidth_bytes_per_s, GIGA),
           "W": g.board_power_w, "$": g.launch_price_usd}
    for header, name in RATES.items():
        out[header] = _scaled(getattr(g, name + "_flop_per_s"), TERA)
    return out


def _scaled(x, unit):
    return None if x is None else x / unit


def _read_tables(out: str) -> dict[str, dict[str, str]]:
    """{gpu key: {column header: printed cell}} over every part; the tables have no vertical rules and one-word cells."""
    seen: dict[str, dict[str, str]] = {}
    headers: list[str] | None = None
    for line in out.splitlines():
        words = line.split()
        if words[:1] == ["key"]:
            headers = words
        elif headers and len(words) == len(headers) and not set(line.strip()) <= {"─"}:
            row = seen.setdefault(words[0], {})
            for h, cell in zip(headers[1:], words[1:], strict=True):
                assert h not in row, (words[0], h)  # each figure printed once
                row[h] = cell
        elif not words:
            headers = None
    return seen


@pytest.mark.parametrize("columns", [40, 50, 60, 70, 79, 80, 100, 160])
def test_every_figure_prints_whole_on_its_gpus_line(capsys, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    assert run(["gpus"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= columns
    printed = _read_tables(out)
    db = load_database(())
    assert set(printed) == {g.key for g in db}
    for g in db:
        row = printed[g.key]
        for header, value in _expected(g).items():
            cell = row[header]
            if value is None:
                assert cell == "-", (g.key, header, cell)
                continue
            decimals = len(cell.split(".")[1]) if "." in cell else 0
            assert math.isclose(float(cell), value, abs_tol=0.5 * 10**-decimals + 1e-9), (g.key, header, cell, value)


@pytest.mark.parametrize("columns", [40, 60, 79, 100])
def test_plain_renderer_and_rich_print_the_same_characters(columns):
    from flopscalc.report.plain import plain_tables

    def draw(plain: bool) -> str:
        buf = io.StringIO()
        console = Console(file=buf, width=columns, color_system=None, emoji=False, highlight=False)
        table = gpu_table(load_database(()), columns)
        console.print(plain_tables(table, console) if plain else table)
        return buf.getvalue()

    assert draw(True) == draw(False)


def test_wide_enough_is_one_table_as_before(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    assert run(["gpus"]) == 0
    piped = capsys.readouterr().out
    assert sum(line.split()[:1] == ["key"] for line in piped.splitlines()) == 1
