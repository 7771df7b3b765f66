"""`flopscalc step --reduce-dtype`: the dtype ZeRO 1-3 reduces mixed-precision gradients in (DeepSpeed ZeRO-3 with
16-bit communication, FSDP1 with a bf16 reduce_dtype), stated, priced on the wire, refused where it is ignored."""

from __future__ import annotations

import json

import pytest
from conftest import cli

BASE = ("step", "--model", "gpt2-xl", "--gpu", "h100", "--n-gpus", "8", "--micro-batch", "4", "--json")


def _json(capsys, *extra):
    code, out, err = cli(capsys, *BASE, *extra)
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("zero", ["1", "2", "3"])
def test_the_wire_bytes_follow_the_dtype_as_the_zero_paper_counts_them(capsys, zero):
    # Rajbhandari et al. 2020 sec. 7.2: stages 1-2 move 2 Psi of gradient-sized traffic (reduce-scatter + all-gather),
    # stage 3 moves 3 Psi (two weight gathers + the gradient reduce-scatter), all in 16 bits. With the gradients in
    # fp32 (4 bytes) the reduce-scatter's share doubles: stage 1-2 from 2+2 to 4+2 bytes, stage 3 from 2+2+2 to 2+2+4.
    half = _json(capsys, "--zero", zero, "--reduce-dtype", "bf16")
    full = _json(capsys, "--zero", zero, "--reduce-dtype", "fp32")
    assert (half["grad_reduce_dtype"], full["grad_reduce_dtype"]) == ("bf16", "fp32")
    expected = 8 / 6 if zero == "3" else 6 / 4
    assert full["communication_bytes"] / half["communication_bytes"] == pytest.approx(expected, rel=0.01)
    assert full["communication_s"] > half["communication_s"]


def test_the_default_is_fp32_for_fsdp_and_16_bit_for_deepspeeds_zero_1_2(capsys):
    # FSDP2 as 'flopscalc train' and torchtitan run it reduces in fp32; DeepSpeed's stages 1-2 in the weights' dtype
    assert _json(capsys, "--zero", "3")["grad_reduce_dtype"] == "fp32"
    assert _json(capsys, "--zero", "2")["grad_reduce_dtype"] == "bf16"
    assert _json(capsys, "--zero", "3", "--precision", "fp16-mixed", "--reduce-dtype", "fp16")["grad_reduce_dtype"] \
        == "fp16"


@pytest.mark.parametrize("extra, says", [
    (("--zero", "0", "--reduce-dtype", "bf16"), "would be ignored"),  # DDP: fp32 gradients on fp32 weights
    (("--zero", "3", "--precision", "fp32", "--reduce-dtype", "fp32"), "would be ignored"),
    (("--zero", "3", "--reduce-dtype", "fp16"), "weights' 16-bit dtype, bf16"),  # bf16-mixed reduces in bf16
    (("--zero", "3", "--reduce-dtype", "int8"), "use fp32, bf16 or fp16"),
    (("--zero", "1", "--tp", "2", "--reduce-dtype", "fp32"), "not modelled with layout options"),
])
def test_an_ignored_or_contradictory_reduce_dtype_is_refused_in_one_line(capsys, extra, says):
    code, _, err = cli(capsys, *BASE[:-1], *extra)
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_reduce_dtype_on_one_gpu_is_refused(capsys):
    # one GPU sends no gradient anywhere: the dtype named would move nothing (ZeRO 3 there only adds gather buffers)
    code, _, err = cli(capsys, "step", "--model", "gpt2-xl", "--gpu", "h100", "--zero", "3", "--reduce-dtype", "bf16")
    assert code == 2 and "--n-gpus 1" in err and len(err.strip().splitlines()) == 1
