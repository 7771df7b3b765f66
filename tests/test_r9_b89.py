"""Review r9, helper b89: train's whole-number options are bounded (one line, exit 2, never a traceback or a hang),
the --new-schedule note labels the checkpoint's derived warm-up as the default, and the warm-up's default share is
worded once, from the constants."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from flopscalc.cli import run
from flopscalc.cli.bounds import MAX_SEED
from flopscalc.train.config import (
    DEFAULT_MAX_STEPS,
    DEFAULT_WARMUP_STEPS,
    DEFAULT_WARMUP_WORDS,
    warmup_for_run,
)

ROOT = Path(__file__).resolve().parents[1]
HUGE = "99999999999999999999"  # past int64: numpy, torch and struct packing all raised on it
SHAPE = ["--n-layer", "1", "--n-head", "1", "--n-embd", "32", "--block-size", "32", "--vocab-size", "64"]
TRAIN = ["--synthetic", *SHAPE, "--seq", "16", "--eval-interval", "0", "--eval-batches", "1", "--device", "cpu",
         "--micro-batch", "2"]


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# ---- 1. every whole-number option of train is bounded ----------------------------------------------------------

BASE = ["train", "--synthetic", "--n-layer", "1", "--n-embd", "64", "--n-head", "1", "--device", "cpu", "--steps", "1"]


@pytest.mark.parametrize("option", ["--vocab-size", "--seed", "--block-size", "--eval-batches", "--eval-interval",
                                    "--checkpoint-interval", "--micro-batch"])
def test_a_huge_value_is_refused_in_one_line(option, capsys):
    # r9: ValueError 'high is out of bounds for int64', numpy's seed error, 'Overflow when unpacking long long', and
    # --eval-batches ran until killed
    extra = ["--checkpoint", "unused.pt"] if option == "--checkpoint-interval" else []
    assert run([*BASE, *extra, option, HUGE]) == 2
    err = _err_line(capsys)
    assert f"{option} {HUGE} is too large: at most " in err and f"give a smaller {option}" in err


def test_gpt2_block_size_huge_and_zero_are_said_in_the_options_name(capsys):
    assert run(["train", "--synthetic", "--model", "gpt2", "--device", "cpu", "--block-size", HUGE]) == 2
    assert "--block-size 99999999999999999999 is too large" in _err_line(capsys)
    assert run(["train", "--synthetic", "--model", "gpt2", "--device", "cpu", "--block-size", "0"]) == 2
    assert _err_line(capsys).startswith("flopscalc: error: --block-size 0 is too small: give --block-size from 1 to ")


def test_the_vocabulary_lower_bound_is_said_one_way(capsys):
    assert run([*BASE, "--vocab-size", "0"]) == 2
    assert "--vocab-size 0 is too small: give --vocab-size from 1 to 100,000,000 tokens" in _err_line(capsys)


def test_the_seed_bound_is_numpys_seed_range(capsys):
    np.random.seed(MAX_SEED)  # the largest seed numpy takes ...
    with pytest.raises(ValueError):
        np.random.seed(MAX_SEED + 1)  # ... and one past it is numpy's traceback r9 saw
    assert run([*BASE, "--seed", str(MAX_SEED + 1)]) == 2
    assert f"--seed {MAX_SEED + 1} is too large: at most {MAX_SEED:,}" in _err_line(capsys)
    assert run([*BASE, "--seed", "-1"]) == 2
    assert f"--seed -1 is too small: give --seed from 0 to {MAX_SEED:,}" in _err_line(capsys)


# ---- 2. the --new-schedule note names no --warmup-steps nobody typed ------------------------------------------


def _note(capsys) -> str:
    captured = capsys.readouterr()
    notes = json.loads(captured.out)["notes"]
    return next(n for n in notes if n.startswith("--new-schedule:"))


def test_the_note_labels_the_checkpoints_derived_warm_up(tmp_path, capsys, one_torch_thread):
    ck = tmp_path / "ck.pt"
    assert run(["train", *TRAIN, "--checkpoint", str(ck), "--steps", "20"]) == 0
    capsys.readouterr()
    assert run(["train", *TRAIN, "--checkpoint", str(ck), "--steps", "30", "--resume", "--new-schedule",
                "--json"]) == 0
    note = _note(capsys)
    assert "--warmup-steps" not in note, note  # r9: "where the checkpoint's (--steps 20, --warmup-steps 2)"
    # 20 and 30 steps cut the default's share: 2 and 3 steps of warm-up
    assert f"(--steps 30, warm-up 3 ({DEFAULT_WARMUP_WORDS}))" in note
    assert f"where the checkpoint's (--steps 20, warm-up 2 ({DEFAULT_WARMUP_WORDS}))" in note


def test_a_typed_checkpoint_warm_up_is_still_named_as_the_option(tmp_path, capsys, one_torch_thread):
    ck = tmp_path / "ck.pt"
    assert run(["train", *TRAIN, "--checkpoint", str(ck), "--steps", "20", "--warmup-steps", "5"]) == 0
    capsys.readouterr()
    assert run(["train", *TRAIN, "--checkpoint", str(ck), "--steps", "30", "--resume", "--new-schedule",
                "--json"]) == 0
    assert "where the checkpoint's (--steps 20, --warmup-steps 5)" in _note(capsys)


# ---- 3. the default's share worded once, from the constants ----------------------------------------------------


def test_the_cut_note_uses_the_shared_phrase_and_the_share_it_names():
    steps = 20
    cut, note = warmup_for_run(DEFAULT_WARMUP_STEPS, steps, given=False)
    assert cut == Fraction(DEFAULT_WARMUP_STEPS, DEFAULT_MAX_STEPS) * steps  # 100 of 1,000 -> 2 of 20
    assert DEFAULT_WARMUP_WORDS in note and "the default's tenth" not in note


def test_no_message_writes_the_share_by_hand():
    for module in ("flopscalc/train/checkpoint.py", "flopscalc/cli/train.py"):
        assert "tenth" not in (ROOT / module).read_text(), module
