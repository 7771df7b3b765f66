"""The plan's 'batch grown' row says where growth stopped in words that match its numbers. Found on
`plan --gpu h100 --n-gpus 16384 --days 30`: '3.1M -> 6.3M tokens/step ... stops at the critical batch size: 9.5M
tokens' - the batch stopped at 6.3M, short of 9.5M, because growth doubles and 12.6M would pass it."""

from __future__ import annotations

import json

from flopscalc.cli import run

ARGV = ["plan", "--gpu", "h100", "--n-gpus", "16384", "--days", "30"]


def test_a_batch_short_of_the_critical_batch_is_not_said_to_be_at_it(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    assert run([*ARGV, "--json"]) == 0
    g = json.loads(capsys.readouterr().out)["recommended"]["batch_growth"]
    assert g["reason"] == "critical batch size"
    assert g["tokens_per_step"] < g["critical_batch_tokens"] < 2 * g["tokens_per_step"]  # the case in question
    assert run(ARGV) == 0
    text = " ".join(capsys.readouterr().out.split())
    crit = f"{g['critical_batch_tokens'] / 1e6:.1f}M tokens"
    assert f"stops below the critical batch size (doubling again would pass it): {crit}" in text
    assert "stops at the critical batch size" not in text
