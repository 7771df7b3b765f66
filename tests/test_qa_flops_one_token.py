"""`flopscalc flops` says '1 token', not '1 tokens', for a one-token run and for a last step of one token (found by
trying --tokens 1 and --tokens 1025 after today's whole-step wording)."""

from __future__ import annotations

import pytest

from flopscalc.cli import run


@pytest.mark.parametrize(("tokens", "said"), [
    ("1", "1 token, 1,024 tokens/step: 1 step (a partial one of 1 token)"),
    ("1025", "2 steps (1 full and a last one of 1 token)"),
    ("1026", "2 steps (1 full and a last one of 2 tokens)"),
])
def test_one_token_is_singular(capsys, monkeypatch, tokens, said):
    monkeypatch.setenv("COLUMNS", "200")
    assert run(["flops", "--model", "gpt2", "--tokens", tokens]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert said in out
    assert "1 tokens" not in out
