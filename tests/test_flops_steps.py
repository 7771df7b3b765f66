"""`flopscalc flops` shows whole optimizer steps: tokens that do not fill the last step make a last, partial step,
stated with its tokens, instead of a fractional step count ("366.2 steps")."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopscalc.cli import run
from flopscalc.flops.summary import step_count

# GPT-2's context 1024 x micro-batch 4: 4,096 tokens per step
BASE = ["flops", "--model", "gpt2", "--micro-batch", "4"]


def _out(capsys, *argv) -> str:
    assert run([*BASE, *argv]) == 0
    return capsys.readouterr().out


def test_a_partial_last_step_is_stated_with_its_tokens(capsys):
    # 1,500,000 = 366 x 4,096 + 864 (366 x 4,096 = 1,499,136)
    text = " ".join(_out(capsys, "--tokens", "1.5M").split())
    assert "367 steps (366 full and a last one of 864 tokens)" in text
    assert not re.search(r"\d\.\d+ steps", text)  # the old "(366.2 steps)"
    data = json.loads(_out(capsys, "--tokens", "1.5M", "--json"))
    assert (data["n_steps"], data["n_full_steps"], data["last_step_tokens"]) == (367, 366, 864)
    # the run's FLOPs are its tokens' FLOPs: 366 full steps and 864 tokens of the last, nothing padded
    per_run = data["per_step"]["model_flops"] * 366 + data["per_token"]["model_flops"] * 864
    assert data["per_run"]["model_flops"] == pytest.approx(per_run, rel=1e-12)


def test_tokens_that_fill_every_step_show_no_partial_step(capsys):
    text = " ".join(_out(capsys, "--tokens", "1499136").split())
    assert "4,096 tokens/step: 366 steps," in text and "last one" not in text


def test_fewer_tokens_than_one_step_are_one_partial_step(capsys):
    text = " ".join(_out(capsys, "--tokens", "1000").split())
    assert "1 step (a partial one of 1,000 tokens)" in text


@pytest.mark.parametrize("tokens", ["2.5", "1.2345678M", "0.4"])
def test_a_fractional_token_count_is_refused_in_one_line(capsys, tokens):
    assert run([*BASE, "--tokens", tokens]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "whole number of tokens" in err and "e.g. --tokens" in err


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 10**15), per=st.integers(1, 10**7))
def test_whole_steps_add_up_to_the_tokens(n, per):
    c = step_count(float(n), float(per))
    assert c.n_full_steps * per + c.last_step_tokens == n and 0 <= c.last_step_tokens < per
    assert c.n_steps == c.n_full_steps + (c.last_step_tokens > 0) >= 1
