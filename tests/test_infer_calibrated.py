"""Inference on a calibrated device prices its GEMMs by the training step model's rule (`perf.step`).

A calibrated CPU profile (`perf.calibrate.device_from_factors`) switches off cuBLAS's tile and wave quantization
(``DevicePerf.tile_quantization`` False: a CPU BLAS blocks by cache, so the fitted GEMM rate is the rate of every
GEMM). The references here are the training model's pricing of the very same operations (`perf.step.price_ops`,
which the calibration fits through) and the limit it implies: every GEMM's arithmetic at exactly the fitted rate.
On a GPU the tile rules stay: a decode GEMM of m < 16 rows is padded to the MMA instruction's 16 rows (NVIDIA PTX
ISA sec. 9.7.13, mma.m16n8k16).
"""

from __future__ import annotations

import pytest

from flopscalc.calibration import DeviceFactors
from flopscalc.hardware import get_gpu
from flopscalc.memory.precision import MemoryPrecision
from flopscalc.model import ModelConfig
from flopscalc.perf import StepOptions, gemm_efficiency
from flopscalc.perf.calibrate import cpu_spec, device_from_factors
from flopscalc.perf.inference import InferenceSetup, estimate_inference, forward_ops
from flopscalc.perf.op_kinds import Phase
from flopscalc.perf.step import price_ops

# Factors of the size `flopscalc calibrate` fits on a CPU (as tests/test_calibration_cross_size.py), fitted at
# 16-bit so that inference's bf16 GEMMs read the fitted rate.
CPU = DeviceFactors(gemm_flop_per_s=1.2e11, memory_bytes_per_s=6e9, kernel_min_s=1e-5, attention_fraction=0.15,
                    precision="bf16", n_points=0, rms_rel_error=0.0, max_rel_error=0.0)
HOST_MEMORY_BYTES = 8 * 2**30  # a finite host memory, so that the largest batch and context exist
# Width 64 and 3 x 100 prompt tokens: every GEMM is narrower or shorter than cuBLAS's 128-wide tiles, so the
# GPU tile rule (perf.gemm) would waste a large share of each; the trainer's CPU sweep runs this width.
SMALL = ModelConfig(n_layer=2, n_head=2, n_embd=64, block_size=128, vocab_size=2048)
SETUP = InferenceSetup(batch=3, context=100, gen=4)
# The training model prices bf16 GEMMs at the same peak, with no sustained-fraction slack (the fitted rates are
# already what a loop sustains, perf/calibrate.py).
BF16, NO_SLACK = MemoryPrecision.bf16_mixed, StepOptions(sustained_fraction=1.0)


def _calibrated_cpu():
    _, dev = device_from_factors(CPU)
    return cpu_spec(CPU, memory_bytes=HOST_MEMORY_BYTES), dev


def test_tile_quantization_would_matter_for_these_shapes():
    """The shapes below lose most of a 128-wide tile under the GPU rule, so the tests can tell the rules apart."""
    ops = forward_ops(SMALL, SETUP, n_seq=3, new_tokens=100, attended=100, phase=Phase.forward)
    worst = min(gemm_efficiency(*op.gemm_shape[:3], None, batch=op.gemm_shape[3]) for op in ops if op.gemm_shape)
    assert worst < 0.5


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_calibrated_cpu_inference_prices_ops_as_training_does(phase):
    """Prefill and the first decode step equal the training model's pricing of the same ops, op by op, exactly."""
    spec, dev = _calibrated_cpu()
    est = estimate_inference(SMALL, SETUP, spec, device=dev)
    new, attended, got = ((SETUP.context, SETUP.context, est.prefill_ops) if phase == "prefill"
                          else (1, SETUP.context + 1, est.decode_first_ops))
    ops = forward_ops(SMALL, SETUP, n_seq=SETUP.batch, new_tokens=new, attended=attended, phase=Phase.forward)
    want = price_ops(ops, spec, BF16, NO_SLACK, device=dev)
    assert [(p.op.name, p.efficiency, p.seconds) for p in got] == [(p.op.name, p.efficiency, p.seconds) for p in want]
    if phase == "prefill":
        assert est.prefill_s == sum(p.total_s for p in want)


def test_calibrated_cpu_gemms_run_at_the_fitted_rate():
    """With tile quantization off, every GEMM's arithmetic takes its FLOPs over the fitted GEMM rate."""
    spec, dev = _calibrated_cpu()
    est = estimate_inference(SMALL, SETUP, spec, device=dev)
    gemms = [p for p in est.prefill_ops + est.decode_first_ops if p.op.gemm_shape is not None]
    assert gemms and {p.efficiency for p in gemms} == {1.0}
    assert est.peak_flop_per_s == CPU.gemm_flop_per_s
    compute_bound = [p for p in gemms if p.bound == "compute"]
    assert compute_bound  # the prefill's GEMMs of 300 tokens outrun the fitted bandwidth's bytes
    for p in compute_bound:
        assert p.seconds == pytest.approx(p.op.flops / CPU.gemm_flop_per_s, rel=1e-12)


def test_gpu_keeps_the_tile_rules():
    """On a GPU, the prefill's 400-row GEMMs price as training does, and a decode GEMM of 4 rows pays for 16 (mma.m16n8k16)."""
    h100 = get_gpu("h100-sxm")
    setup = InferenceSetup(batch=4, context=100, gen=2)
    est = estimate_inference(SMALL, setup, h100)
    ops = forward_ops(SMALL, setup, n_seq=4, new_tokens=100, attended=100, phase=Phase.forward)
    want = price_ops(ops, h100, BF16, NO_SLACK)
    tall = [i for i, op in enumerate(ops) if op.gemm_shape and op.gemm_shape[0] >= 128]  # all but the LM head
    assert len(tall) == 4 and [est.prefill_ops[i].efficiency for i in tall] == [want[i].efficiency for i in tall]
    decode = {p.op.name: p for p in est.decode_first_ops}
    assert decode["qkv"].efficiency == est.device.gemm_peak_fraction * 4 / 16
