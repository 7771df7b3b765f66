"""`flopscalc train prepare` on a text too short to split says how many tokens it has, how many it needs, and what
to do; the numbers it states are checked against what `prepare` itself accepts."""

from __future__ import annotations

import pytest

from flopscalc.cli import run
from flopscalc.errors import DomainError
from flopscalc.train.data import min_tokens_to_split, prepare


def _error(capsys, tmp_path, text: str, *extra: str) -> str:
    src = tmp_path / "short.txt"
    src.write_text(text, encoding="utf-8")
    assert run(["train", "prepare", str(tmp_path / "out"), "--text", str(src), *extra]) == 1  # no answer exists
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_the_message_says_what_the_text_has_needs_and_a_fix(capsys, tmp_path):
    err = _error(capsys, tmp_path, "hello world")  # 11 bytes: the byte tokenizer's 11 tokens
    assert "11 tokens" in err and "byte tokenizer" in err
    assert "10 training and 1 validation" in err  # int(11 x 0.1) = 1 validation token
    assert "at least 20 tokens" in err  # int(20 x 0.1) = 2 validation tokens, 18 training
    assert "--val-fraction 0.19" in err  # int(11 x 0.19) = 2: the nearest fraction that splits this text
    out = tmp_path / "fixed"
    assert run(["train", "prepare", str(out), "--text", str(tmp_path / "short.txt"), "--val-fraction", "0.19"]) == 0
    assert (out / "val.bin").is_file()


def test_a_text_no_fraction_can_split_says_so(capsys, tmp_path):
    err = _error(capsys, tmp_path, "abc")  # 3 tokens: two splits of 2 need 4
    assert "3 tokens" in err and "no fraction splits 3 tokens" in err and "--val-fraction" in err


@pytest.mark.parametrize("fraction", [0.1, 0.19, 0.3, 0.5, 0.9, 0.97])
def test_the_stated_minimum_is_exact(tmp_path, fraction):
    """A text of the stated minimum splits; one token fewer is refused (prepare's own behaviour is the reference)."""
    n = min_tokens_to_split(fraction)
    data = prepare("x" * n, tmp_path / "ok", val_fraction=fraction)
    assert min(data.n_train_tokens, data.n_val_tokens) >= 2
    with pytest.raises(DomainError, match=f"at least {n:,} tokens"):
        prepare("x" * (n - 1), tmp_path / "short", val_fraction=fraction)
