"""The plan names the preset a fixed model is, not another preset of its size (review r3, stop 17).

`plan --model llama-3-70b` is planned in the llama-3.1 family, whose 70B has the same 70,553,706,496 parameters (the
two differ in context length), so the nearest-in-size rule named llama-3.1-70b for a run of llama-3-70b.
"""

from __future__ import annotations

import json

import pytest

from flopscalc.cli import run


def _plan(capsys, *args):
    assert run(["plan", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("preset", ["llama-3-70b", "llama-3.1-70b"])
def test_a_fixed_preset_is_named_as_itself(capsys, preset):
    data = _plan(capsys, "--gpu", "h100", "--n-gpus", "8", "--model", preset, "--tokens", "10B")
    assert data["recommended"]["nearest_preset"] == preset


def test_a_shaped_model_still_gets_the_nearest_preset_by_size(capsys):
    """The main job shapes its own model (30 x 1920, 1.4B): the nearest GPT-2 preset by log-parameters is gpt2-xl
    (1.56B), not a preset of the same name; the rule for shaped models is unchanged."""
    data = _plan(capsys, "--gpu", "4070ti", "--days", "365")
    rec = data["recommended"]
    assert rec["nearest_preset"] == "gpt2-xl"
    assert rec["n_params"] != 1_557_611_200  # not gpt2-xl itself
