"""QA pass 2, bug 6: `infer --usd-per-gpu-hour inf` printed "$inf" per million tokens, and `--int4-group 100000`
was accepted on a model whose rows are 4,096 inputs wide. Prices must be positive and finite; an int4 group runs
along a GEMM row (gpt-fast quantize.py, WeightOnlyInt4Linear: ``groupsize`` consecutive inputs per scale and zero),
so it must divide every GEMM input width. Widths from Meta's Llama 3.1 8B config.json: hidden_size 4096,
intermediate_size 14336 (32 heads x 128 = 4096 at the attention output)."""

from __future__ import annotations

import math

import pytest

from flopscalc.cli import run
from flopscalc.errors import UsageError
from flopscalc.perf.inference import InferenceSetup

LLAMA31_8B_HIDDEN, LLAMA31_8B_INTERMEDIATE = 4096, 14336
BASE = ("infer", "--model", "llama-3.1-8b", "--gpu", "h100", "--context", "4k")


@pytest.mark.parametrize("price", ["inf", "nan", "-inf"])
def test_a_gpu_hour_price_must_be_finite_and_positive(capsys, price):
    assert run([*BASE, "--usd-per-gpu-hour", price]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "finite" in err and "$inf" not in err
    with pytest.raises(UsageError):
        InferenceSetup(batch=1, context=1, usd_per_gpu_hour=float(price))


@pytest.mark.parametrize("group", [100_000, LLAMA31_8B_HIDDEN * 2, 3 * 1024])  # wider than a row, or leaving a partial group
def test_an_int4_group_that_does_not_divide_the_rows_is_refused_with_the_range(capsys, group):
    assert LLAMA31_8B_HIDDEN % group or LLAMA31_8B_INTERMEDIATE % group  # the premise, from the config
    assert run([*BASE, "--weights", "int4", "--int4-group", str(group)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert str(LLAMA31_8B_HIDDEN) in err and f"a divisor of {math.gcd(LLAMA31_8B_HIDDEN, LLAMA31_8B_INTERMEDIATE)}" in err


@pytest.mark.parametrize("group", [32, 128, math.gcd(LLAMA31_8B_HIDDEN, LLAMA31_8B_INTERMEDIATE)])
def test_a_group_dividing_every_row_is_accepted(capsys, group):
    assert run([*BASE, "--weights", "int4", "--int4-group", str(group), "--json"]) == 0
    capsys.readouterr()
