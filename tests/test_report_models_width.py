"""`flopscalc models` never folds a number: at any terminal width that can hold the count columns (80 and 100 tested,
and wider) every count of every preset prints whole on one line, each as `count_params` gives it."""

from __future__ import annotations

import re

import pytest

from flopscalc.cli import run
from flopscalc.model import ALL_PRESETS, count_params
from flopscalc.report.models import TITLE


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
    numbers = set(re.findall(r"(?<![\d,])\d{1,3}(?:,\d{3})+(?![\d,])|(?<![\d,])\d+(?![\d,])", out))
    for name, cfg in ALL_PRESETS.items():
        pc = count_params(cfg)
        for n in (pc.total, pc.active, pc.non_embedding, cfg.n_layer, cfg.n_embd, cfg.n_inner):
            assert f"{n:,}" in numbers or str(n) in numbers, (name, n, columns)
        for n in (cfg.block_size, cfg.vocab_size):
            assert f"{n:,}" in numbers, (name, n, columns)
        assert f"{cfg.n_head} ({cfg.kv_heads})" in out, (name, columns)


def test_one_table_where_it_fits_three_parts_where_it_does_not(capsys, monkeypatch):
    natural = _printed(capsys, monkeypatch, None)
    assert natural.startswith(TITLE) and "Sources" not in natural
    narrow = _printed(capsys, monkeypatch, 100)
    assert TITLE not in narrow
    titles = [line.rstrip() for line in narrow.splitlines() if line.startswith(("Model presets", "Sources"))]
    assert titles[0] == "Model presets: shapes" and titles[2] == "Sources"
    assert titles[1].startswith("Model presets: exact parameter counts")
