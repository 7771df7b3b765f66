"""QA pass 2, bug 9: `hardware.training_precision`'s fallback note said "choose another with --precision (fp32,
fp16, fp16-acc16)" - the values plan's --precision takes, but memory, step and finetune spell theirs differently
(bf16-mixed, fp16-mixed), so the list was wrong there. The note and its error now name the card's rates (checked
against the CSV row, read here) and offer no list as --precision values that some command would refuse."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from flopscalc.errors import UsageError
from flopscalc.hardware import GpuSpec, Precision, get_gpu, training_precision
from flopscalc.memory import MemoryPrecision

ROOT = Path(__file__).resolve().parents[1]
# the --precision values of each family of commands: plan/plot take hardware.Precision, memory/step/finetune the
# storage precisions
PRECISION_VALUES = {"plan": {p.value for p in Precision}, "memory": {p.value for p in MemoryPrecision}}


def _csv_rates(key: str) -> set[str]:
    with open(ROOT / "data/gpu_specs.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["key"] == key)
    return {p.value for p in Precision if row[f"{p.name}_tflop_per_s"].strip()}


def _offered_as_values(text: str) -> list[str]:
    """Names the text offers directly as --precision values: '--precision (a, b)' or '--precision: a, b'."""
    m = re.search(r"--precision:?\s*\(?([a-z0-9-]+(?:, [a-z0-9-]+)*)(?:\)|;|$)", text)
    return [] if m is None else [w.strip() for w in m[1].split(",") if w.strip()]


def test_the_fallback_note_names_the_cards_rates_and_no_command_specific_values():
    chosen, note = training_precision(get_gpu("v100"), None, Precision.bf16)
    assert chosen is Precision.fp16 and note is not None
    for command, values in PRECISION_VALUES.items():
        assert set(_offered_as_values(note)) <= values, (command, note)
    listed = re.search(r"rates in the GPU database: ([a-z0-9, -]+)\)", note)[1]
    assert set(listed.split(", ")) == _csv_rates("v100-sxm2-32gb")


def test_the_error_without_bf16_or_fp16_is_as_neutral():
    gpu = get_gpu("v100")
    fp32_only = GpuSpec(**{**gpu.__dict__, "bf16_flop_per_s": None, "fp16_flop_per_s": None,
                           "fp16_acc16_flop_per_s": None, "fp8_flop_per_s": None})
    with pytest.raises(UsageError) as err:
        training_precision(fp32_only, None, Precision.bf16)
    for command, values in PRECISION_VALUES.items():
        assert set(_offered_as_values(str(err.value))) <= values, (command, str(err.value))
    assert "rates in the GPU database: fp32" in str(err.value)
