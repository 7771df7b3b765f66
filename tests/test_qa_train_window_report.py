"""`flopscalc train` says when it trains attention over a sliding window: a Mistral-style config.json with
sliding_window below the sequence now trains banded attention (today's trainer change), and the run's summary and
--json say so; a window at or above the sequence (the same as causal) and no window say nothing. Found by training a
2-layer config with sliding_window 8 at sequence 32: the summary read 'tinymistral (106.8k parameters)' either way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from flopscalc.cli import run

MISTRAL = json.loads((Path(__file__).resolve().parents[1] / "data/configs/mistral-7b-v0.1.json").read_text())


def _train(capsys, monkeypatch, tmp_path, window, *extra: str) -> str:
    cfg = {**MISTRAL, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
           "num_hidden_layers": 1, "vocab_size": 64, "max_position_embeddings": 64, "sliding_window": window}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    monkeypatch.setenv("COLUMNS", "200")
    assert run(["train", "--config", str(path), "--synthetic", "--steps", "1", "--micro-batch", "1", "--seq", "32",
                "--warmup-steps", "0", "--eval-batches", "1", "--device", "cpu", *extra]) == 0
    return capsys.readouterr().out


def test_a_window_below_the_sequence_is_named(capsys, monkeypatch, tmp_path):
    assert "attention over a sliding window of 8" in _train(capsys, monkeypatch, tmp_path, 8)
    data = json.loads(_train(capsys, monkeypatch, tmp_path, 8, "--json"))
    assert data["attn_window"] == 8 and data["seq_len"] == 32


@pytest.mark.parametrize("window", [None, 32, 4096])
def test_no_window_or_one_that_covers_the_sequence_is_not(capsys, monkeypatch, tmp_path, window):
    assert "sliding window" not in _train(capsys, monkeypatch, tmp_path, window)
