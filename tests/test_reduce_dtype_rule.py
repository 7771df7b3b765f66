"""One rule for when the gradients' reduction dtype is used (review leftovers, item b).

`memory.settings.reduce_dtype_used` decides it; the setup's warning, `--reduce-dtype`'s refusal and the bytes on
the wire all follow it. Checked by the effect, not by restating the rule: for every precision and ZeRO stage, the
choice is refused (CLI) and warned about (setup) exactly where it moves no byte on the wire.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from conftest import cli

from flopscalc.memory import MemoryPrecision, TrainingSetup
from flopscalc.memory.settings import grad_wire_bytes_per_param

CASES = list(itertools.product(MemoryPrecision, (0, 1, 2, 3)))


def _moves_the_wire(precision, zero) -> bool:
    setup = TrainingSetup(precision=precision, zero_stage=zero, n_gpus=8)
    return (grad_wire_bytes_per_param(dataclasses.replace(setup, reduce_fp32=True))
            != grad_wire_bytes_per_param(dataclasses.replace(setup, reduce_fp32=False)))


def test_the_dtype_moves_the_wire_only_under_mixed_precision_with_zero():
    # Rajbhandari et al. 2020 sec. 7.2.1: mixed precision under ZeRO reduces 16-bit gradients (or fp32 as FSDP2's
    # reduce_dtype); fp32 and pure bf16 send the weights' dtype; DDP under autocast its fp32 gradients
    used = {(p, z) for p, z in CASES if _moves_the_wire(p, z)}
    assert used == {(p, z) for p in (MemoryPrecision.bf16_mixed, MemoryPrecision.fp16_mixed) for z in (1, 2, 3)}


@pytest.mark.parametrize("precision,zero", CASES, ids=lambda c: str(getattr(c, "value", c)))
def test_the_setup_warns_and_the_cli_refuses_exactly_where_the_dtype_moves_nothing(capsys, precision, zero):
    moves = _moves_the_wire(precision, zero)
    setup = TrainingSetup(precision=precision, zero_stage=zero, n_gpus=8, reduce_fp32=True)
    assert setup.reduce_dtype_used is moves
    warned = any("reduce dtype" in w for w in setup.warnings())
    assert warned is not moves
    code, _, err = cli(capsys, "step", "--model", "gpt2", "--gpu", "h100", "--n-gpus", "8", "--zero", str(zero),
                       "--precision", precision.value, "--reduce-dtype", "fp32", "--json")
    assert (code == 2) is not moves, err
    if not moves:
        assert "would be ignored" in err and len(err.strip().splitlines()) == 1
