"""`flopscalc scaling hparams`: wiring, --json contracts, every option moves a computed field, exit codes."""

from __future__ import annotations

import json

import pytest

from flopscalc.cli import run


def _hparams(capsys, *args) -> dict:
    assert run(["scaling", "hparams", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_contract(capsys):
    out = _hparams(capsys, "--model", "gpt2", "--tokens", "2.5B")
    assert out["model"] == "gpt2" and out["seq_len"] == 1024  # the preset's context by default
    assert out["batch_tokens"] == out["batch_sequences"] * out["seq_len"]
    assert out["m_flops_per_token"] == 72 * 12 * 768**2 + 12 * 12 * 768 * 1024  # DeepSeek eq. 2 for GPT-2 small
    assert out["c_flops_deepseek"] == out["m_flops_per_token"] * 2.5e9
    assert out["schedule"] == "cosine" and out["min_lr_ratio"] == 0.1
    assert out["critical_batch_tokens"] is None
    assert set(out["sources"]) >= {"batch_tokens", "learning_rate", "warmup_steps", "schedule"}


def test_every_option_moves_a_computed_field(capsys):
    base = _hparams(capsys, "--model", "gpt2", "--tokens", "2.5B")
    assert _hparams(capsys, "--model", "gpt2", "--tokens", "25B")["learning_rate"] < base["learning_rate"]
    assert _hparams(capsys, "--model", "gpt2-xl", "--tokens", "2.5B")["batch_tokens"] > base["batch_tokens"]
    assert _hparams(capsys, "--n-layer", "6", "--n-head", "6", "--n-embd", "384", "--tokens", "2.5B"
                    )["m_flops_per_token"] < base["m_flops_per_token"]
    assert _hparams(capsys, "--model", "gpt2", "--tokens", "2.5B", "--seq", "512"
                    )["m_flops_per_token"] < base["m_flops_per_token"]
    capped = _hparams(capsys, "--model", "gpt2", "--tokens", "2.5B", "--loss", "4.5")
    assert capped["batch_tokens"] < base["batch_tokens"] and capped["critical_batch_tokens"] > 0
    ms = _hparams(capsys, "--model", "gpt2", "--tokens", "2.5B", "--schedule", "multistep")
    assert ms["milestones"] == [[0.8, 0.316], [0.9, 0.1]] and base["milestones"] == []


@pytest.mark.parametrize("args, message", [
    (["--tokens", "1B"], "name the model"),  # the model resolver's own message
    (["--model", "gpt2", "--tokens", "0"], "--tokens must be positive"),
    (["--model", "gpt2", "--tokens", "1B", "--seq", "0"], "--seq must be a positive"),
    (["--model", "gpt2", "--tokens", "1B", "--loss", "-1"], "--loss must be a positive"),
    (["--model", "gpt2", "--tokens", "1B", "--schedule", "wsd"], "'wsd' is not one of"),
])
def test_usage_errors_exit_2_in_one_line(capsys, args, message):
    assert run(["scaling", "hparams", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
