"""`flopscalc models` never folds a number: at any terminal width that can hold the count columns (80 and 100 tested,
and wider) every count of every preset prints whole on one line, each as `count_params` gives it."""

from __future__ import annotations

import pytest

from flopscalc.cli import run
from flopscalc.report.models import TITLE
from tests.models_output import assert_every_count_whole


def _printed(capsys, monkeypatch, columns: int | None) -> str:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", str(columns))
    assert run(["models"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("columns", [80, 100, 120, 160, 240, None])
def test_every_count_prints_whole(capsys, monkeypatch, columns):
    out = _printed(capsys, monkeypatch, columns)
    if columns is not None:
        assert max(len(line) for line in out.splitlines()) <= columns
    assert_every_count_whole(out, columns)


def test_one_table_where_it_fits_three_parts_where_it_does_not(capsys, monkeypatch):
    natural = _printed(capsys, monkeypatch, None)
    assert natural.startswith(TITLE) and "Sources" not in natural
    narrow = _printed(capsys, monkeypatch, 100)
    assert TITLE not in narrow
    titles = [line.rstrip() for line in narrow.splitlines() if line.startswith(("Model presets", "Sources"))]
    assert titles[0] == "Model presets: shapes" and titles[2] == "Sources"
    assert titles[1].startswith("Model presets: exact parameter counts")
