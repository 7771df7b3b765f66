"""`flopscalc models` in a narrow terminal (40-79 columns; 80 and wider again for the names): every preset
name and every number prints whole, every line fits the width, and rich in a terminal prints the same characters.

Found by trying the CLI at COLUMNS=60: the shapes table gave its name and block columns no width at all (rows began
'│││') and cut the vocabularies mid-digit ('128,25' for 128,256); the counts table folded the names two characters
a line ('gp' / 't2').
"""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from flopscalc.cli import run
from flopscalc.model import ALL_PRESETS, count_params
from flopscalc.report.models import models_table
from tests.models_output import assert_every_count_whole


def _printed(capsys, monkeypatch, columns: int) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    assert run(["models"]) == 0
    return capsys.readouterr().out


def _cells(out: str) -> list[list[str]]:
    """The cells of every table row (lines framed by '│'), stripped."""
    return [[c.strip() for c in line.strip().strip("│").split("│")] for line in out.splitlines()
            if line.lstrip().startswith("│")]


@pytest.mark.parametrize("columns", [40, 50, 60, 70, 79, 80, 100, 150, 180])
def test_narrow_terminal_prints_every_name_and_number_whole(capsys, monkeypatch, columns):
    out = _printed(capsys, monkeypatch, columns)
    assert max(len(line) for line in out.splitlines()) <= columns
    rows = _cells(out)
    assert rows
    for row in rows:  # a number is on its preset's line (a line without a name only continues a folded block)
        assert row[0] or not any(re.fullmatch(r"[\d,]+( \(\d+\))?", cell) for cell in row[1:]), (row, columns)
    names = {row[0] for row in rows if row[0]}
    assert names == set(ALL_PRESETS)  # whole names, never folded ('gpt2-med' / 'ium')
    assert_every_count_whole(out, columns)
    words = {w.rstrip(";") for w in out.split()}
    for name, cfg in ALL_PRESETS.items():
        assert set(cfg.family.split()) <= words, (name, columns)  # the block, folded at most between words


@pytest.mark.parametrize("columns", [40, 60, 79])
def test_each_row_keeps_its_preset_and_its_numbers_together(capsys, monkeypatch, columns):
    """A table split for the width repeats the name in each part, so a vocabulary is read against its preset."""
    out = _printed(capsys, monkeypatch, columns)
    rows = _cells(out)
    for name, cfg in ALL_PRESETS.items():
        pc = count_params(cfg)
        assert [name, f"{cfg.vocab_size:,}"] in [[r[0], r[-1]] for r in rows] or any(
            r[0] == name and f"{cfg.vocab_size:,}" in r for r in rows), (name, columns)
        assert any(r[0] == name and f"{pc.total:,}" in r for r in rows), (name, columns)


@pytest.mark.parametrize("columns", [40, 60, 79])
def test_plain_renderer_and_rich_print_the_same_characters(columns):
    """Piped output (report.plain) against rich drawing the same tables, as in a terminal without colour."""
    from flopscalc.report.plain import plain_tables

    def draw(plain: bool) -> str:
        buf = io.StringIO()
        console = Console(file=buf, width=columns, color_system=None, emoji=False, highlight=False)
        table = models_table(ALL_PRESETS, columns)
        console.print(plain_tables(table, console) if plain else table)
        return buf.getvalue()

    assert draw(True) == draw(False)
