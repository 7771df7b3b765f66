"""One rule picks the default training precision (`hardware.default_training_precision`): BF16 mixed precision where
the card has a BF16 rate, FP16 with loss scaling where it has only FP16, none otherwise. `plan` (through
`hardware.training_precision`) and `step`/`memory` (through `memory.precision.storage_precision`) both follow it.

Reference: the rate columns of data/gpu_specs.csv, read here with the csv module, not through the database code.
Found while merging the two pickers: `step --precision bf16-mixed` on a card with only an FP32 rate said the card
"has neither bf16 nor fp16 ... choose a precision it has with --precision" (exit 2), telling the user to give the
option they had given, because the example precision of the refusal came from the default picker, which raises there.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from flopscalc.cli import run
from flopscalc.hardware import Precision, builtin_database, default_training_precision, training_precision
from flopscalc.memory.precision import MemoryPrecision, storage_precision

CSV = Path(__file__).resolve().parents[1] / "data" / "gpu_specs.csv"
STORAGE = {Precision.bf16: MemoryPrecision.bf16_mixed, Precision.fp16: MemoryPrecision.fp16_mixed}


def _rows() -> dict[str, dict[str, str]]:
    with CSV.open(encoding="utf-8") as f:
        return {row["key"]: row for row in csv.DictReader(f)}


def test_every_card_defaults_to_bf16_or_else_fp16_by_its_csv_row():
    rows = _rows()
    db = builtin_database()
    assert len(rows) == len(db)
    fallbacks = 0
    for g in db:
        row = rows[g.key]
        expected = (Precision.bf16 if row["bf16_tflop_per_s"].strip() else
                    Precision.fp16 if row["fp16_tflop_per_s"].strip() else None)
        assert default_training_precision(g) is expected, g.key
        if expected is None:
            continue
        fallbacks += expected is Precision.fp16
        assert training_precision(g, None, Precision.bf16)[0] is expected, g.key  # plan, plot, finetune
        storage, note = storage_precision(None, g)  # step, memory
        assert storage is STORAGE[expected], g.key
        assert (note is None) == (expected is Precision.bf16), g.key
    assert fallbacks >= 2  # V100 and T4 at least: the fallback is exercised


def test_a_cpu_keeps_bf16_mixed():
    assert storage_precision(None, None) == (MemoryPrecision.bf16_mixed, None)


@pytest.fixture
def fp32_only(tmp_path) -> Path:
    p = tmp_path / "old.csv"
    p.write_text("key,name,memory_gib,memory_bandwidth_gb_per_s,fp32_tflop_per_s\nold,Old Card,8,300,5\n",
                 encoding="utf-8")
    return p


def test_an_explicit_precision_the_card_lacks_is_refused_with_the_ones_it_has(capsys, fp32_only):
    code = run(["step", "--model", "gpt2", "--gpu", "old", "--gpu-csv", str(fp32_only), "--precision", "bf16-mixed"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert "--precision bf16-mixed cannot be timed; accepted on this card: fp32 (e.g. --precision fp32)" in err
    assert "neither" not in err
    assert run(["step", "--model", "gpt2", "--gpu", "old", "--gpu-csv", str(fp32_only), "--precision", "fp32",
                "--json"]) == 0  # the suggestion runs
    capsys.readouterr()


def test_no_precision_on_such_a_card_asks_for_one(capsys, fp32_only):
    code = run(["memory", "--model", "gpt2", "--gpu", "old", "--gpu-csv", str(fp32_only)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "neither bf16 nor fp16" in err and "fp32" in err
