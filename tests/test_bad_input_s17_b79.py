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
