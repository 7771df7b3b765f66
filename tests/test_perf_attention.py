"""The fused attention kernel's rate and the scope of the fitted fraction, checked through `estimate_step`'s pricing.

References: Dao 2023, "FlashAttention-2", arXiv:2307.08691, sec. 4.1: the benchmark's FLOPs are
4 seqlen^2 head_dim n_heads for the forward (halved with a causal mask) and 2.5x that for the backward; Fig. 7
(H100, forward + backward): "up to 335 TFLOPs/s"; FlashAttention-2 is 1.3-1.5x faster than FlashAttention in Triton
in the forward pass and about 2x faster in the backward pass.
"""

from __future__ import annotations

import pytest

from flopscalc.hardware import get_gpu
from flopscalc.memory.settings import TrainingSetup
from flopscalc.model import ModelConfig
from flopscalc.perf import StepOptions, estimate_step
from flopscalc.perf.op_kinds import AttentionKernel, OpClass

# The FlashAttention-2 paper's benchmark shape (sec. 4.1): hidden 2048, head dimension 128 (16 heads), 16k tokens.
SEQ = 16384
BENCH = ModelConfig(n_layer=1, n_head=16, n_embd=2048, block_size=SEQ, vocab_size=512, name="fa2-bench")
SETUP = TrainingSetup(micro_batch=1, seq_len=SEQ, precision="bf16-mixed", recompute="none", flash=True,
                      grad_accum=1, n_gpus=1, zero_stage=0)


def _attention_seconds(gpu: str, kernel: AttentionKernel = AttentionKernel.flash2) -> dict[str, float]:
    est = estimate_step(BENCH, SETUP, get_gpu(gpu), StepOptions(attention_kernel=kernel))
    return {p.op.name: p.seconds for p in est.ops if p.op.flash}


def test_h100_flash_attention_2_runs_the_papers_335_tflops_forward_plus_backward():
    # the paper's own FLOP convention, causal: forward 4 s^2 d h / 2, backward 2.5x; over the priced time
    seconds = _attention_seconds("h100-sxm")
    fwd_flops = 4 * SEQ**2 * BENCH.head_dim * BENCH.n_head / 2
    rate = (fwd_flops * (1 + 2.5)) / (seconds["flash attention fwd"] + seconds["flash attention bwd"])
    # our causal count is s(s+1)/2 pairs against the paper's s^2/2: 6e-5 apart at 16k
    assert rate == pytest.approx(335e12, rel=1e-3)


def test_the_triton_kernel_is_1_4x_slower_forward_and_2x_backward_and_nothing_else_moves():
    for gpu in ("a100-sxm-80gb", "h100-sxm"):
        flash2 = estimate_step(BENCH, SETUP, get_gpu(gpu), StepOptions())
        triton = estimate_step(BENCH, SETUP, get_gpu(gpu), StepOptions(attention_kernel=AttentionKernel.triton))
        for a, b in zip(flash2.ops, triton.ops, strict=True):
            assert a.op == b.op
            if a.op.name == "flash attention fwd":
                assert b.seconds / a.seconds == pytest.approx(1.4, rel=1e-12)
            elif a.op.name == "flash attention bwd":
                assert b.seconds / a.seconds == pytest.approx(2.0, rel=1e-12)
            else:
                assert b.seconds == a.seconds, a.op.name


def test_the_fitted_fraction_scales_the_gemms_and_nothing_else():
    # the fraction is identified on GEMM-dominated rows (docs/performance_model.md), so only GEMMs carry it;
    # the math path's batched GEMMs (attention class) are cuBLAS GEMMs and carry it too
    for flash in (True, False):
        setup = TrainingSetup(micro_batch=2, seq_len=1024, precision="bf16-mixed", recompute="none", flash=flash,
                              grad_accum=1, n_gpus=1, zero_stage=0)
        cfg = BENCH.with_(block_size=1024)
        full = estimate_step(cfg, setup, get_gpu("a100-sxm-80gb"), StepOptions(sustained_fraction=1.0))
        half = estimate_step(cfg, setup, get_gpu("a100-sxm-80gb"), StepOptions(sustained_fraction=0.5))
        n_gemm = 0
        for a, b in zip(full.ops, half.ops, strict=True):
            if a.op.gemm_shape is not None:
                n_gemm += 1
                assert b.seconds == pytest.approx(2 * a.seconds, rel=1e-12), a.op.name
            else:
                assert b.seconds == a.seconds, a.op.name
        assert n_gemm > 0 and any(p.op.op_class is OpClass.memory for p in full.ops)


@pytest.mark.parametrize(("kernel", "head_dim", "tile"), [
    (AttentionKernel.flash2, 80, 96),  # flash_api.cpp: round_multiple(head_size, 32) (Pythia 2.8B, Phi-2: 80)
    (AttentionKernel.flash2, 112, 128),
    (AttentionKernel.triton, 80, 128),  # flash_attn_triton.py: next_power_of_2(d)
    (AttentionKernel.triton, 96, 128),
])
def test_a_head_dimension_between_kernel_sizes_costs_the_padded_kernels_time(kernel, head_dim, tile):
    # FlashAttention kernels are built for a few head dimensions and run a smaller one in the next size's tiles
    # (its extra columns zeros): the same heads and tokens at head_dim take the time they take at the tile's width,
    # while the model FLOPs the step reports stay those of head_dim
    def flash_s(hd):
        cfg = ModelConfig(n_layer=1, n_head=16, n_embd=16 * hd, block_size=SEQ, vocab_size=512, name=f"hd{hd}")
        est = estimate_step(cfg, SETUP, get_gpu("h100"), StepOptions(attention_kernel=kernel))
        return {p.op.name: (p.seconds, p.op.flops) for p in est.ops if p.op.flash}

    small, padded = flash_s(head_dim), flash_s(tile)
    for name, (seconds, flops) in small.items():
        assert seconds == pytest.approx(padded[name][0], rel=1e-12)
        assert flops == pytest.approx(padded[name][1] * head_dim / tile, rel=1e-12)
    assert flash_s(128)["flash attention fwd"][0] < flash_s(160)["flash attention fwd"][0]  # no padding at 128
