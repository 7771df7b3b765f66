"""Bad input across the CLI, review r4 (helper b79): options without bounds, messages that name options a command
does not have or values the user never gave, contradictory options accepted, lookups without a near match.

Each case failed before its fix (a segfault, a wrong or missing suggestion, a silent choice); now it is ONE line on
stderr starting "flopscalc: error:" and exit 2. Tests drive the real app (`flopscalc.cli.run`) or, where the process
itself matters, a subprocess; suggestions are checked against arithmetic done here (divisors, nearest names), never
against our own output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from flopscalc.train.config import usable_cores

ROOT = Path(__file__).resolve().parent.parent
TINY_BENCH = ["--n-layer", "1", "--n-head", "1", "--n-embd", "8", "--block-size", "8", "--vocab-size", "16",
              "--micro-batch", "1", "--steps", "1", "--warmup-steps", "1", "--device", "cpu"]


def refused(capsys, *argv, code: int = 2) -> str:
    """The one error line of a refused command line (exit ``code``), never a traceback."""
    got, out, err = cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert got == code and len(lines) == 1 and lines[0].startswith("flopscalc: error: "), (got, out, err)
    return lines[0]


# ------------------------------------------------------------------ 1. --threads above the usable cores


def test_usable_cores_is_the_affinity_mask():
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no affinity call on this platform")
    assert usable_cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("command", [["calibrate", "--out", "{tmp}/p.json"], ["bench", *TINY_BENCH]])
def test_threads_above_the_cores_is_refused_saying_how_many(capsys, tmp_path, command):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in command]
    line = refused(capsys, *argv, "--threads", str(usable_cores() + 1))
    assert f"the {usable_cores()} CPU core" in line and f"1 to {usable_cores()}" in line
    assert not (tmp_path / "p.json").exists()


def test_threads_100000_no_longer_crashes_the_process(tmp_path):
    """Before: exit 139 (SIGSEGV in torch.set_num_threads), nothing on stderr."""
    proc = subprocess.run([sys.executable, "-m", "flopscalc", "calibrate", "--out", str(tmp_path / "p.json"),
                           "--threads", "100000"], check=False, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("flopscalc: error: --threads 100000 is more than")


# ------------------------------------------------------------------ 2. "name the model" lists the command's own options

GPT2_CONFIG_JSON = '{"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 64, "vocab_size": 100, "n_positions": 128}'


def _command_options(*path: str) -> set[str]:
    """Every option spelling of ``flopscalc <path>``, read from the parser (not from our messages)."""
    import typer

    from flopscalc.cli.group import app

    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return {opt for p in command.params for opt in (*p.opts, *getattr(p, "secondary_opts", ()))}


@pytest.mark.parametrize(("argv", "command"), [
    (["infer", "--gpu", "4090", "--context", "100"], ("infer",)),
    (["infer", "--model", "gpt2", "--config", "{cfg}", "--gpu", "4090", "--context", "100"], ("infer",)),
    (["finetune", "--model", "llama-3.1-8b", "--config", "{cfg}", "--gpu", "4090", "--dataset-tokens", "1M"],
     ("finetune",)),
    (["plan", "--model", "gpt2", "--params", "1B", "--gpu", "4090", "--days", "1"], ("plan",)),
    (["scaling", "hparams", "--tokens", "1e9"], ("scaling", "hparams")),
    (["flops", "--tokens", "1e9"], ("flops",)),
])
def test_name_the_model_suggests_only_options_the_command_has(capsys, tmp_path, argv, command):
    import re

    cfg = tmp_path / "c.json"
    cfg.write_text(GPT2_CONFIG_JSON)
    line = refused(capsys, *[a.replace("{cfg}", str(cfg)) for a in argv])
    assert "name the model" in line
    named = set(re.findall(r"--[a-z][a-z-]*", line))
    assert named and named <= _command_options(*command), named - _command_options(*command)
    model_ways = {"--model", "--config", "--params", "--n-layer"} & _command_options(*command)
    assert model_ways <= named  # every way the command has is offered


# ------------------------------------------------------------------ 3. a width the heads don't divide


def _nearest_divisors(n_embd: int, n_head: int) -> list[int]:
    """Brute force: the divisors of n_embd nearest n_head from below and from above."""
    divisors = [d for d in range(1, n_embd + 1) if n_embd % d == 0]
    below = [d for d in divisors if d < n_head]
    above = [d for d in divisors if d > n_head]
    return ([below[-1]] if below else []) + ([above[0]] if above else [])


@given(st.integers(1, 5000), st.integers(1, 300))
@settings(max_examples=300, deadline=None)
def test_head_count_fixes_are_the_nearest_divisors_and_multiples(n_embd, n_head):
    from flopscalc.model.option_words import head_count_fixes

    assume(n_embd % n_head)  # the error's case: n_head does not divide n_embd
    heads, widths = head_count_fixes(n_embd, n_head)
    assert list(heads) == _nearest_divisors(n_embd, n_head)
    assert all(w % n_head == 0 and w > 0 for w in widths)
    assert all(abs(w - n_embd) < n_head for w in widths)  # nothing nearer is skipped: consecutive multiples


@pytest.mark.parametrize(("n_head", "n_embd"), [(8, 500), (7, 500), (12, 1000), (16, 8)])
def test_the_suggested_head_counts_divide_the_width_and_are_options(capsys, n_head, n_embd):
    # was: "n_embd (500) must be divisible by n_head (8); try n_head=7, or give the head width (head_size)" (7 does not
    # divide 500; --n-head 7 was answered "try n_head=7"; 12 x 1000 got "try n_head=15")
    line = refused(capsys, "flops", "--n-layer", "2", "--n-head", str(n_head), "--n-embd", str(n_embd),
                   "--tokens", "1e9")
    expected = " or ".join(map(str, _nearest_divisors(n_embd, n_head)))
    assert f"--n-embd {n_embd} is not divisible by --n-head {n_head}" in line
    assert f"try --n-head {expected}" in line
    assert "n_embd" not in line and "n_head" not in line and "head_size" not in line  # no internal field names


def test_a_file_width_is_named_as_the_models_and_only_the_given_option_is_suggested(capsys, tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(GPT2_CONFIG_JSON)  # n_embd 64
    line = refused(capsys, "flops", "--config", str(cfg), "--n-head", "3", "--tokens", "1e9")
    assert "the model's width (64) is not divisible by --n-head 3" in line and "try --n-head 2 or 4" in line
    assert "--n-embd" not in line


# ------------------------------------------------------------------ 4. MoE options in the user's words


@pytest.mark.parametrize("command", [["flops", "--tokens", "1e9"], ["infer", "--gpu", "4090", "--context", "100"],
                                     ["memory", "--gpu", "4090"], ["step", "--gpu", "h100"]])
def test_experts_without_top_k_asks_for_top_k(capsys, command):
    # was: "top_k must be between 1 and n_expert (8), got 0": a field name and a value nobody typed
    line = refused(capsys, *command, "--model", "gpt2", "--experts", "8")
    assert "--experts 8 needs --top-k (experts per token, 1-8), e.g. --top-k 2" in line
    assert "got 0" not in line and "top_k" not in line


def test_the_example_top_k_fits_a_small_expert_count(capsys):
    line = refused(capsys, "flops", "--tokens", "1e9", "--model", "gpt2", "--experts", "1")
    assert "(experts per token, 1-1), e.g. --top-k 1" in line


def test_top_k_without_experts_names_both_options(capsys):
    # was: "top_k describe a mixture of experts; give n_expert (--experts) too"
    line = refused(capsys, "flops", "--tokens", "1e9", "--model", "gpt2", "--top-k", "2")
    assert "--top-k 2 describes a mixture of experts, but the model is dense: add --experts N" in line
    assert "n_expert" not in line and "top_k" not in line


@pytest.mark.parametrize(("extra", "words"), [(["--experts", "8", "--top-k", "9"], "(--experts 8)"),
                                              (["--experts", "8", "--top-k", "0"], "(--experts 8)")])
def test_top_k_out_of_range_says_the_range(capsys, extra, words):
    line = refused(capsys, "flops", "--tokens", "1e9", "--model", "gpt2", *extra)
    assert f"--top-k {extra[-1]} is not between 1 and 8 {words}" in line


# ------------------------------------------------------------------ 5. contradictory or ignored options

TINY_TRAIN = ["train", "--synthetic", "--n-layer", "1", "--n-head", "1", "--n-embd", "8", "--block-size", "8",
              "--vocab-size", "16", "--micro-batch", "1", "--seq", "8", "--eval-interval", "0", "--eval-batches", "1",
              "--device", "cpu"]


def test_train_refuses_gpu_with_peak_tflops(capsys):
    # was accepted: --peak-tflops won and --gpu played no part (a run's --gpu only names MFU's peak)
    line = refused(capsys, *TINY_TRAIN, "--steps", "2", "--warmup-steps", "1", "--gpu", "4090", "--peak-tflops", "100")
    assert "--gpu and --peak-tflops" in line


def test_bench_keeps_gpu_with_peak_tflops_and_says_what_each_does(monkeypatch):
    """In bench and calibrate --gpu also names the device the profile describes (its gpu_key, which 'step
    --calibration' matches): kept, and the note says the stated peak, not the row's, is MFU's. Checked on the
    lookup bench uses (`resolve_peak`) for a CUDA device the runtime calls an RTX 4090: a CPU is refused any --gpu
    row there (review r13 and r15, tests/test_s18_b102.py, tests/test_s18_b110.py)."""
    import torch

    from flopscalc.hardware import get_gpu
    from flopscalc.train import bench
    from flopscalc.train.bench import resolve_peak

    monkeypatch.setattr(bench, "pick_device", lambda *a: torch.device("cuda"))
    monkeypatch.setattr(bench, "device_name", lambda d: "NVIDIA GeForce RTX 4090")
    monkeypatch.setattr(bench, "peak_precision", lambda precision, device: precision)  # no CUDA queries here
    _, spec, peak, notes = resolve_peak("cuda", "fp32", "4090", 100.0)
    assert spec.key == get_gpu("4090").key
    assert peak == 100e12  # the stated peak, not the datasheet's
    assert any(f"not {spec.name}'s datasheet peak" in n for n in notes)


@pytest.mark.parametrize(("steps", "warmup"), [("2", "50"), ("50", "50"), ("2", "2")])
def test_an_explicit_warmup_as_long_as_the_run_is_refused(capsys, steps, warmup):
    # was accepted: the learning rate never reached --lr (or only at the last step) and never decayed
    line = refused(capsys, *TINY_TRAIN, "--steps", steps, "--warmup-steps", warmup)
    assert f"--warmup-steps {warmup} is not shorter than --steps {steps}" in line
    assert f"below {steps}" in line


def test_the_default_warmup_is_cut_to_a_tenth_of_a_short_run_and_the_peak_is_reached(capsys, tmp_path):
    import json

    log = tmp_path / "m.jsonl"
    code, out, err = cli(capsys, *TINY_TRAIN, "--steps", "20", "--lr", "1e-3", "--metrics-log", str(log), "--json")
    assert code == 0, err
    notes = json.loads(out)["notes"]
    assert any("warming up over 2 steps" in n for n in notes)  # 20 x 100 / 1000
    lrs = [json.loads(line)["lr"] for line in log.read_text().splitlines()]
    # warm-up (step + 1) / 2 x peak, then the cosine down towards 0.1 x peak (SGDR eq. 5): the peak is reached
    assert lrs[1] == pytest.approx(1e-3) and max(lrs) == pytest.approx(1e-3) and lrs[-1] < 1e-3


@pytest.mark.parametrize(("argv", "option"), [
    (["finetune", "--model", "llama-3.1-8b", "--gpu", "4090", "--dataset-tokens", "1M", "--targets", "q,q"],
     "--targets"),
    (["finetune", "--model", "llama-3.1-8b", "--gpu", "4090", "--dataset-tokens", "1M", "--targets", "v,q_proj,q"],
     "--targets"),
    ([*TINY_TRAIN, "--steps", "2", "--warmup-steps", "1", "--mlp", "swiglu", "--lora-rank", "2",
      "--lora-targets", "q,v,q_proj"], "--lora-targets"),
])
def test_a_repeated_lora_target_is_refused(capsys, argv, option):
    line = refused(capsys, *argv)
    assert f"LoRA target q is given twice in {option}" in line


# ------------------------------------------------------------------ 6. lookups suggest the near match, never take it


@pytest.mark.parametrize(("typed", "meant"), [("gpt-2", "gpt2"), ("gpt2xl", "gpt2-xl"),
                                              ("llama-3.1-7b", "llama-3.1-8b"), ("pythia", "pythia-1b")])
def test_an_unknown_model_suggests_the_presets_it_may_mean(capsys, typed, meant):
    from flopscalc.model import ALL_PRESETS

    assert typed not in ALL_PRESETS and meant in ALL_PRESETS
    line = refused(capsys, "flops", "--model", typed, "--tokens", "1e9")
    suggested = line.split("did you mean ", 1)[1].split("?")[0]
    assert meant in suggested.replace(" or ", ", ").split(", ")
    assert line.index("did you mean") < line.index("accepted:")  # the suggestion is not lost after 24 names


def test_every_pythia_size_is_suggested_for_the_family_name(capsys):
    from flopscalc.model import ALL_PRESETS

    line = refused(capsys, "flops", "--model", "pythia", "--tokens", "1e9")
    suggested = line.split("did you mean ", 1)[1].split("?")[0]
    assert set(suggested.replace(" or ", ", ").split(", ")) == {k for k in ALL_PRESETS if k.startswith("pythia-")}


@pytest.mark.parametrize(("typed", "meant"), [("adam", "adamw"), ("adamw8", "adamw8bit"), ("adamx", "adamw")])
def test_finetune_optimizer_suggests_the_nearest(capsys, typed, meant):
    # was: "try --optimizer adamw8bit" whatever was typed
    line = refused(capsys, "finetune", "--model", "llama-3.1-8b", "--gpu", "4090", "--dataset-tokens", "1M",
                   "--optimizer", typed)
    assert line.endswith(f"did you mean --optimizer {meant}?")


@pytest.mark.parametrize(("typed", "meant"), [("1.5b", "1.5B"), ("300b", "300B"), ("2t", "2T"), ("124m", "124M")])
def test_a_lower_case_count_suffix_is_suggested_not_read(capsys, typed, meant):
    line = refused(capsys, "flops", "--model", "gpt2", "--tokens", typed)
    assert f"did you mean {meant}?" in line


@pytest.mark.parametrize(("typed", "minutes", "days"), [("3mo", "3min", 3 * 365 / 12), ("1m", "1min", 365 / 12)])
def test_minutes_or_months_suggests_both_spellings_and_they_parse(capsys, typed, minutes, days):
    from flopscalc.units import parse_duration

    line = refused(capsys, "plan", "--gpu", "4090", "--duration", typed)
    assert f"write {minutes} for minutes" in line
    day_text = line.split(" for minutes, or ", 1)[1].split(" ", 1)[0]
    assert parse_duration(minutes) == 60 * float(minutes.removesuffix("min"))
    assert parse_duration(day_text) == pytest.approx(days * 86400, rel=1e-3)  # 4 significant digits


def test_months_spelled_out_are_not_called_minutes(capsys):
    line = refused(capsys, "plan", "--gpu", "4090", "--duration", "6months")
    assert "minutes" not in line and "182.5d" in line  # 6 x 365 / 12
