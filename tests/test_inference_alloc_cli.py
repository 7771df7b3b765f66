"""`flopscalc scaling optimal --inference-tokens`: wiring, --json contracts, exit codes."""

from __future__ import annotations

import json

import pytest

from flopscalc.cli import run


def _optimal(capsys, *args) -> dict:
    assert run(["scaling", "optimal", "--flops", "1e23", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_has_both_models_and_the_saving(capsys):
    out = _optimal(capsys, "--inference-tokens", "2T")
    ia = out["inference_aware"]
    assert ia["inference_tokens"] == 2e12
    assert ia["chinchilla"]["n_params"] == pytest.approx(out["n_params"], rel=1e-12)  # same budget's optimum
    assert ia["target_loss"] == pytest.approx(out["loss"], rel=1e-12)
    assert ia["inference_aware"]["n_params"] < out["n_params"]
    assert ia["inference_aware"]["n_tokens"] > out["n_tokens"]
    assert 0 < ia["saving_fraction"] < 1 and ia["saving_flops"] > 0
    assert "2401.00448" in ia["source"]


def test_more_inference_moves_further(capsys):
    small = _optimal(capsys, "--inference-tokens", "200B")["inference_aware"]
    large = _optimal(capsys, "--inference-tokens", "20T")["inference_aware"]
    assert large["params_ratio"] < small["params_ratio"] < 1
    assert large["saving_fraction"] > small["saving_fraction"]


def test_law_option_moves_the_answer(capsys):
    default = _optimal(capsys, "--inference-tokens", "2T")["inference_aware"]
    chinchilla = _optimal(capsys, "--inference-tokens", "2T", "--law", "chinchilla")["inference_aware"]
    assert chinchilla["law"] == "chinchilla" and chinchilla["inference_aware"]["n_params"] != pytest.approx(
        default["inference_aware"]["n_params"], rel=0.01)


def test_without_the_flag_there_is_no_inference_block(capsys):
    assert "inference_aware" not in _optimal(capsys)


@pytest.mark.parametrize("args, code, message", [
    (["--inference-tokens", "2T", "--unique-tokens", "1T"], 2, "cannot be combined"),
    (["--inference-tokens", "2T", "--law", "kaplan2020"], 1, "no parametric loss"),
    (["--inference-tokens", "-5"], 2, "--inference-tokens must be a positive number of tokens, e.g. 2T, got -5"),
    (["--inference-tokens", "2TB"], 2, "cannot read --inference-tokens"),
])
def test_refusals_are_one_line(capsys, args, code, message):
    assert run(["scaling", "optimal", "--flops", "1e23", *args]) == code
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_text_report_names_the_saving(capsys):
    assert run(["scaling", "optimal", "--flops", "1e23", "--inference-tokens", "2T"]) == 0
    out = capsys.readouterr().out
    assert "Inference-aware optimum" in out and "life-cycle saving" in out
