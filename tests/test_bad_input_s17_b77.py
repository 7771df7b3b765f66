"""Review r4, helper b77: non-finite JSON, overflow tracebacks, unbounded numbers, messages about internal quantities.

Each case failed before its fix: a traceback (OverflowError, ZeroDivisionError), ``Infinity``/``NaN`` in ``--json``
(not JSON, RFC 8259 sec. 6), float garbage with exit 0 (``--micro-batch 1e23`` -> "84088640213012692598784.00
GiB"), or an error naming a quantity the user never typed ("the FLOP budget ... got inf"). Every test drives the real
app in-process (`flopscalc.cli.run`) and checks the contract: the exit code, ONE line starting "flopscalc: error:",
what it names; and, at each bound, that the bound itself is still accepted (the cap refuses only what is past it).
"""

from __future__ import annotations

import csv
import io
import json
import math

import pytest
from conftest import cli

from flopscalc.cli import bounds, output
from flopscalc.units import MAX_FLOPS, MAX_N_PARAMS, MAX_N_TOKENS

HUGE = "99999999999999999999999"  # the reviewer's integer: past every cap, and past float's exact integers


def refused(capsys, *argv, code: int = 2) -> str:
    """The one error line of a refused command line (exit ``code``), never a traceback."""
    got, out, err = cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert got == code and len(lines) == 1 and lines[0].startswith("flopscalc: error: "), (got, out, err)
    assert "Traceback" not in err and out == ""
    return lines[0]


def _no_constant(name: str):
    raise AssertionError(f"{name} in --json output: not JSON (RFC 8259 sec. 6)")


def strict_json(capsys, *argv) -> dict:
    """The command's --json output parsed the way strict parsers (jq, JSON.parse) read it: Infinity/NaN refused."""
    got, out, err = cli(capsys, *argv, "--json")
    assert got == 0, err
    return json.loads(out, parse_constant=_no_constant)


# ------------------------------------------------------------------ 1. overflow in the scaling maths


@pytest.mark.parametrize("params", ["1e200", "1e250", "1e290", "1e17"])
def test_scaling_budget_params_past_the_bound_is_one_line(capsys, params):
    line = refused(capsys, "scaling", "budget", "--params", params)
    assert f"--params {params} is too large" in line and "at most 1e16 parameters" in line


def test_params_tokens_flops_bounds_are_accepted_and_finite(capsys):
    """At the bounds themselves the answer exists and every number in it is finite (the bounds keep 6ND and the
    laws' powers inside float range)."""
    data = strict_json(capsys, "scaling", "budget", "--params", f"{MAX_N_PARAMS:g}")
    assert data["n_params"] == MAX_N_PARAMS and data["c_flops"] > 0 and data["n_tokens"] > 0
    data = strict_json(capsys, "scaling", "loss", "--params", f"{MAX_N_PARAMS:g}", "--tokens", f"{MAX_N_TOKENS:g}")
    assert data["c_flops"] == pytest.approx(6 * MAX_N_PARAMS * MAX_N_TOKENS)  # Kaplan/Hoffmann C = 6ND
    data = strict_json(capsys, "scaling", "optimal", "--flops", f"{MAX_FLOPS:g}")
    assert data["c_flops"] == MAX_FLOPS and data["n_params"] * data["n_tokens"] > 0


@pytest.mark.parametrize("argv, option", [
    (["scaling", "optimal", "--flops", "1e36"], "--flops"),
    (["scaling", "loss", "--params", "1e9", "--tokens", "1e300"], "--tokens"),
    (["scaling", "hparams", "--model", "gpt2", "--tokens", "1e300"], "--tokens"),
    (["flops", "--model", "gpt2", "--tokens", "1e300"], "--tokens"),
    (["plan", "--gpu", "4090", "--model", "gpt2", "--tokens", "1e300"], "--tokens"),
    (["plan", "--gpu", "4090", "--flops", "1e300"], "--flops"),
    (["plan", "--gpu", "4090", "--days", "1", "--inference-tokens", "1e300"], "--inference-tokens"),
    (["finetune", "--model", "llama-3.1-8b", "--gpu", "4090", "--dataset-tokens", "1e300"], "--dataset-tokens"),
])
def test_counts_past_their_bound_name_the_option(capsys, argv, option):
    line = refused(capsys, *argv)
    assert f"{option} 1e3" in line and "too large" in line and "FLOP budget" not in line


def test_hparams_loss_above_a_uniform_guess_is_refused(capsys):
    """As 'scaling budget' and 'plan --target-loss' refuse it: --loss 100 printed "critical batch 0.06 tokens" and
    --loss 1e300 overflowed."""
    for loss in ("100", "1e300", f"{math.log(50257) + 1e-9:.12f}"):
        line = refused(capsys, "scaling", "hparams", "--model", "gpt2", "--tokens", "1e9", "--loss", loss)
        assert "--loss" in line and "uniform guess" in line and "ln 50257 = 10.82" in line  # GPT-2's vocabulary
    got, _, err = cli(capsys, "scaling", "hparams", "--model", "gpt2", "--tokens", "1e9", "--loss", "10.8")
    assert got == 0, err  # just below ln 50257 = 10.825: a loss a model can still have


def test_hparams_tiny_loss_is_one_line_not_a_zero_division(capsys):
    line = refused(capsys, "scaling", "hparams", "--model", "gpt2", "--tokens", "1e9", "--loss", "1e-300", code=1)
    assert "critical batch" in line and "1e-300" in line


def test_saved_law_whose_constants_overflow_is_one_line(capsys, monkeypatch, tmp_path):
    """A saved law with A = 1e308 overflowed computing G (Hoffmann eq. 4) in every command that allocates."""
    from flopscalc.scaling.io import get_law, law_to_dict

    monkeypatch.setenv("FLOPSCALC_HOME", str(tmp_path))
    data = law_to_dict(get_law("chinchilla"))
    data["name"], data["loss_form"]["A"] = "hugeA", 1e308
    (tmp_path / "laws").mkdir()
    (tmp_path / "laws" / "hugeA.json").write_text(json.dumps(data), encoding="utf-8")
    for argv in (["scaling", "optimal", "--flops", "1e21"], ["scaling", "budget", "--params", "1e9"],
                 ["scaling", "budget", "--loss", "3"], ["plan", "--gpu", "4090", "--days", "1"],
                 ["scaling", "optimal", "--flops", "1e21", "--inference-tokens", "1e12"]):
        line = refused(capsys, *argv, "--law", "hugeA", code=1)
        assert "law 'hugeA'" in line and "float range" in line and "--law" in line


# ------------------------------------------------------------------ 2. --json is JSON


def test_emit_writes_non_finite_floats_as_null(capsys):
    output.emit(None, {"a": math.inf, "b": [-math.inf, 1.5, {"c": math.nan}], "d": (math.nan,)}, True)
    out = capsys.readouterr().out
    assert json.loads(out, parse_constant=_no_constant) == {"a": None, "b": [None, 1.5, {"c": None}], "d": [None]}


def test_plan_target_unreachable_says_so_in_json(capsys):
    """gpt2 never reaches loss 2.5 on one 4090: its tokens, time and FLOPs are infinite. They were written
    ``Infinity``; now null, with "reaches_target": false beside them."""
    data = strict_json(capsys, "plan", "--gpu", "4090", "--target-loss", "2.5")
    rows = data["options"] + data["candidates"]
    unreachable = [o for o in rows if o["reaches_target"] is False]
    assert unreachable, "the reviewer's case: the gpt2 candidate cannot reach 2.5"
    for o in unreachable:
        assert o.get("n_tokens", o.get("budget_tokens")) is None
    assert data["recommended"]["reaches_target"] is True and data["recommended"]["n_tokens"] > 0
    got, out, err = cli(capsys, "plan", "--gpu", "4090", "--target-loss", "2.5", "--csv")  # the CSV agrees: empty
    rows = list(csv.DictReader(io.StringIO(out)))
    assert got == 0 and len(rows) == len(data["options"]), err
    assert [r["n_tokens"] == "" for r in rows] == [o["n_tokens"] is None for o in data["options"]]
    assert "inf" not in out and "nan" not in out
    budget = strict_json(capsys, "plan", "--gpu", "4090", "--days", "1")  # no target: no such field
    assert "reaches_target" not in budget["recommended"]


@pytest.mark.parametrize("argv", [
    ["plan", "--gpu", "4070ti", "--days", "365"],  # the main job
    ["flops", "--model", "gpt2", "--tokens", "1e18"],
    ["finetune", "--model", "llama-3.1-8b", "--gpu", "4090", "--dataset-tokens", "1e18"],
    ["memory", "--model", "gpt2", "--gpu", "4090", "--cuda-context", "24GiB"],
    ["scaling", "loss", "--params", "1e16", "--tokens", "1e18"],
    ["scaling", "hparams", "--model", "gpt2", "--tokens", "1e18"],
    ["step", "--model", "gpt2", "--gpu", "4090", "--micro-batch", "1000000"],
    ["infer", "--model", "gpt2", "--gpu", "4090", "--context", "512"],
])
def test_json_outputs_parse_strictly(capsys, argv):
    strict_json(capsys, *argv)


def test_metrics_log_writes_a_diverged_loss_as_null_and_says_it_was_nan(tmp_path):
    from flopscalc.train.metrics import MetricsLog

    log = MetricsLog(tmp_path / "m.jsonl")
    log({"step": 1, "loss": 2.5})
    log({"step": 2, "loss": math.nan, "grad_norm": math.inf})
    log.close()
    rows = [json.loads(line, parse_constant=_no_constant)
            for line in (tmp_path / "m.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rows[0] == {"step": 1, "loss": 2.5}
    assert rows[1] == {"step": 2, "loss": None, "grad_norm": None, "loss_nonfinite": "nan",
                       "grad_norm_nonfinite": "inf"}


# ------------------------------------------------------------------ 3. whole-number options have upper bounds

GPT2_MEMORY = ["memory", "--model", "gpt2", "--gpu", "4090"]
SHAPE_MEMORY = ["memory", "--gpu", "4090", "--n-layer", "12", "--n-head", "12", "--n-embd", "768"]


@pytest.mark.parametrize("argv, option, cap", [
    (GPT2_MEMORY, "--micro-batch", bounds.MAX_MICRO_BATCH),
    (GPT2_MEMORY, "--grad-accum", bounds.MAX_GRAD_ACCUM),
    (["step", "--model", "gpt2", "--gpu", "4090"], "--micro-batch", bounds.MAX_MICRO_BATCH),
    (["step", "--model", "gpt2", "--gpu", "4090"], "--grad-accum", bounds.MAX_GRAD_ACCUM),
    (["flops", "--model", "gpt2", "--tokens", "1e9"], "--micro-batch", bounds.MAX_MICRO_BATCH),
    (["flops", "--model", "gpt2", "--tokens", "1e9"], "--grad-accum", bounds.MAX_GRAD_ACCUM),
    (["memory", "--model", "llama-3.1-8b", "--gpu", "4090"], "--seq", bounds.MAX_SEQ_TOKENS),
    (["step", "--model", "llama-3.1-8b", "--gpu", "4090"], "--seq", bounds.MAX_SEQ_TOKENS),
    (["finetune", "--model", "llama-3.1-8b", "--gpu", "4090", "--dataset-tokens", "1e6"], "--micro-batch",
     bounds.MAX_MICRO_BATCH),
    (["infer", "--model", "gpt2", "--gpu", "4090", "--context", "512"], "--batch", bounds.MAX_MICRO_BATCH),
    (["step", "--model", "gpt2", "--gpu", "4090", "--search", "--n-gpus", "8"], "--global-batch",
     bounds.MAX_MICRO_BATCH),
    (["plan", "--gpu", "4090", "--days", "1"], "--seq", bounds.MAX_SEQ_TOKENS),
])
def test_whole_number_caps(capsys, argv, option, cap):
    for value in (HUGE, str(cap + 1)):
        line = refused(capsys, *argv, option, value)
        assert f"{option} {value} is too large: at most {cap:,}" in line
    got, _, err = cli(capsys, *argv, option, str(cap), "--json")  # the cap itself is accepted
    assert "too large" not in err and got in (0, 1), err


@pytest.mark.parametrize("option, cap", [("--n-layer", bounds.MAX_N_LAYER), ("--n-head", bounds.MAX_N_HEAD),
                                         ("--n-embd", bounds.MAX_N_EMBD)])
def test_shape_caps(capsys, option, cap):
    argv = [a if a != option else "SKIP" for a in SHAPE_MEMORY]
    i = argv.index("SKIP")
    del argv[i:i + 2]  # the other two shape options stay
    line = refused(capsys, *argv, option, HUGE)
    assert f"{option} {HUGE} is too large: at most {cap:,}" in line and "parameters" not in line


def test_infer_context_cap(capsys):
    line = refused(capsys, "infer", "--model", "llama-3.1-8b", "--gpu", "h100", "--context", f"{10**11}k")
    assert "--context" in line and f"at most {bounds.MAX_SEQ_TOKENS:,} tokens" in line


# ------------------------------------------------------------------ 4. errors say what was typed


def test_money_budget_past_the_time_bound_names_the_options(capsys):
    line = refused(capsys, "plan", "--gpu", "4090", "--budget-usd", "1e300", "--usd-per-gpu-hour", "1")
    assert "--budget-usd" in line and "--usd-per-gpu-hour" in line and "FLOP budget" not in line and "inf" not in line


@pytest.mark.parametrize("typed", ["-1GiB", "1e300GiB", "25GiB"])
def test_cuda_context_out_of_range_echoes_what_was_typed(capsys, typed):
    line = refused(capsys, *GPT2_MEMORY, "--cuda-context", typed)
    assert f"--cuda-context {typed}" in line and "1073741824" not in line and "24.00 GiB" in line  # 4090: 24 GiB


def test_inference_optimum_not_found_rounds_the_loss(capsys, monkeypatch):
    from flopscalc.scaling import inference

    monkeypatch.setattr(inference, "ROOT_BRACKET_DECADES", 0)  # no bracket: the no-root message
    line = refused(capsys, "plan", "--gpu", "4090", "--days", "1", "--inference-tokens", "1e15", code=1)
    loss = line.split("for loss ")[1].split()[0]
    assert len(loss.replace(".", "")) <= 4 and "fewer inference tokens" in line


def test_missing_required_option_says_what_to_give(capsys):
    line = refused(capsys, "infer", "--model", "gpt2", "--gpu", "4090")
    assert "--context" in line and "8k = 8192" in line and "flopscalc infer --help" in line
    line = refused(capsys, "infer", "--model", "gpt2", "--context", "8k")
    assert "--gpu" in line and "GPU name" in line

