"""Step-time model: roofline limits, NVIDIA's quantization examples, exact FLOP sums against flopscalc.flops, invariants."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopscalc.flops import Recompute, training_flops_per_token
from flopscalc.hardware import get_gpu
from flopscalc.memory import TrainingSetup
from flopscalc.model import ALL_PRESETS, PRESETS, ModelConfig
from flopscalc.perf import (
    OpClass,
    StepOptions,
    estimate_step,
    gemm_efficiency,
    ridge_intensity,
    roofline_s,
    step_ops,
    tile_quantization_efficiency,
    wave_quantization_efficiency,
)
from flopscalc.perf.gemm import n_waves

A100 = get_gpu("a100-sxm-80gb")
H100 = get_gpu("h100-sxm")
UNFITTED = StepOptions(sustained_fraction=1.0)


# ---------------------------------------------------------------- roofline


def test_roofline_switches_from_memory_to_compute_bound_at_the_ridge_point():
    peak, bw = 312e12, 2.0e12
    ridge = ridge_intensity(peak, bw)  # 156 FLOP/byte
    n_bytes = 1e9
    below, at, above = (roofline_s(i * n_bytes, n_bytes, peak, bw) for i in (ridge / 2, ridge, ridge * 2))
    assert below == pytest.approx(n_bytes / bw)  # memory-bound: time set by the bytes alone
    assert at == pytest.approx(n_bytes / bw) and at == pytest.approx(ridge * n_bytes / peak)  # both roofs meet
    assert above == pytest.approx(2 * ridge * n_bytes / peak)  # compute-bound: time set by the FLOPs alone
    assert roofline_s(0.0, 0.0, peak, bw, min_s=5e-6) == 5e-6  # an empty kernel still takes its floor


# ---------------------------------------------------------------- NVIDIA "Matrix Multiplication Background"


def test_tile_quantization_one_column_past_a_tile_costs_a_whole_tile():
    # Guide sec. 3.1: with 128-wide tiles, N = 256 fills two tiles exactly; N = 257 needs a third, mostly empty
    assert tile_quantization_efficiency(1024, 256, 128, 128) == 1.0
    assert tile_quantization_efficiency(1024, 257, 128, 128) == pytest.approx(257 / 384)


def test_wave_quantization_matches_the_guides_a100_example():
    # Guide sec. 3.2: A100 has 108 SMs and runs one 256x128 tile per SM, so a wave is 108 tiles. M = 2304
    # (9 tile rows) with N = 1536 (12 tile columns) is 108 tiles: one full wave; N = 1664 is 13 columns,
    # 117 tiles: a second, nearly empty wave, about twice the time for 8% more work.
    assert (2304 // 256) * (1536 // 128) == 108 and n_waves(108, 108) == 1
    assert wave_quantization_efficiency(108, 108) == 1.0
    assert n_waves(9 * 13, 108) == 2
    assert wave_quantization_efficiency(117, 108) == pytest.approx(117 / 216)


def test_gemm_efficiency_prefers_the_tile_that_wastes_least_and_falls_for_misaligned_sizes():
    aligned = gemm_efficiency(8192, 8192, 8192, 108)
    assert gemm_efficiency(8192, 8193, 8192, 108) < aligned  # one column more: a partial tile column
    assert gemm_efficiency(8192, 50257, 768, 108) < gemm_efficiency(8192, 50304, 768, 108)  # nanoGPT's padding
    # without an SM count only tile quantization applies
    assert gemm_efficiency(100, 100, 100, None) == pytest.approx(100 * 100 / (128 * 128))


# ---------------------------------------------------------------- FLOPs: exactly flopscalc.flops's


CONFIG_DIR = Path(__file__).resolve().parents[1] / "data" / "configs"
CONFIG_FILES = sorted(p.name for p in CONFIG_DIR.glob("*.json"))


def family_models():
    """Every preset and every published config.json of data/configs/ (GPT-2 to mixtures of experts)."""
    from flopscalc.hf_config import read_hf_config

    return {**{f"preset:{k}": v for k, v in ALL_PRESETS.items()},
            **{f"config:{f}": read_hf_config(CONFIG_DIR / f) for f in CONFIG_FILES}}


MODELS = family_models()


@pytest.mark.parametrize("recompute", list(Recompute))
@pytest.mark.parametrize("flash", [True, False])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_op_flops_sum_to_flops_py_exactly(name, flash, recompute):
    cfg = MODELS[name]
    seq = min(509, cfg.block_size)  # odd: causal pairs (T + 1) / 2 are not a whole number of tokens
    setup = TrainingSetup(micro_batch=3, seq_len=seq, grad_accum=2, flash=flash, recompute=recompute)
    ops = step_ops(cfg, setup)
    tokens = 3 * seq * 2
    # exact rational sums: no rounding can hide a missing or doubled op
    def total(select):
        return sum(Fraction(o.flops) * o.count for o in ops if select(o))

    # the linears (QKV, projection, MLP or router + experts + shared experts, LM head): forward + input grad +
    # weight grad = 3x their forward, plus one more forward of the block's linears under full recomputation
    fwd = training_flops_per_token(cfg, seq).forward
    gemm_fwd = Fraction(fwd.qkv) + Fraction(fwd.attn_proj) + Fraction(fwd.mlp) + Fraction(fwd.router)
    recomputed = gemm_fwd if recompute is Recompute.full else 0
    assert total(lambda o: o.op_class is OpClass.gemm) == (3 * (gemm_fwd + Fraction(fwd.lm_head)) + recomputed) * tokens
    # everything the kernels execute: flopscalc.flops's hardware FLOPs (causal pairs when flash skips masked blocks)
    # plus FlashAttention-2's recomputation of Q K^T in its backward (Dao 2023, Alg. 2)
    executed = training_flops_per_token(cfg, seq, recompute=recompute, causal=flash)
    extra = Fraction(executed.forward.attn_scores) if flash else 0
    assert total(lambda o: True) == (Fraction(executed.hardware_flops_per_token) + extra) * tokens
    assert all(o.flops == 0 for o in ops if o.op_class in (OpClass.memory, OpClass.optimizer))


def test_hfu_numerator_is_what_the_ops_execute():
    cfg, setup = PRESETS["gpt2-medium"], TrainingSetup(micro_batch=4, recompute="full")
    est = estimate_step(cfg, setup, A100)
    total = sum(p.op.flops * p.op.count for p in est.ops)
    assert est.hardware_flops_per_token * est.tokens_per_step_per_gpu == pytest.approx(total, rel=1e-15)


# ---------------------------------------------------------------- invariants

shapes = st.sampled_from([(2, 2, 128), (4, 4, 256), (12, 12, 768), (24, 16, 1024)])


@settings(max_examples=40, deadline=None)
@given(shape=shapes, mb=st.integers(1, 32), seq=st.sampled_from([64, 256, 1024]),
       recompute=st.sampled_from(list(Recompute)), flash=st.booleans(), gpu=st.sampled_from([A100, H100]))
def test_mfu_at_most_hfu_at_most_one(shape, mb, seq, recompute, flash, gpu):
    cfg = ModelConfig(*shape)
    est = estimate_step(cfg, TrainingSetup(micro_batch=mb, seq_len=seq, recompute=recompute, flash=flash), gpu,
                        UNFITTED)
    assert 0 < est.mfu <= est.hfu <= 1


@settings(max_examples=40, deadline=None)
@given(shape=shapes, mb=st.integers(1, 32), seq=st.sampled_from([64, 256, 1024]), flash=st.booleans())
def test_more_work_never_takes_less_time(shape, mb, seq, flash):
    cfg = ModelConfig(*shape)

    def step_s(**kw):
        base = {"micro_batch": mb, "seq_len": seq, "flash": flash}
        return estimate_step(cfg, TrainingSetup(**{**base, **kw}), A100).step_s

    base = step_s()
    assert step_s(micro_batch=mb + 1) >= base
    assert step_s(grad_accum=2) >= base
    assert step_s(recompute="selective") >= base
    assert step_s(recompute="full") >= step_s(recompute="selective")
    assert estimate_step(cfg.with_(n_layer=cfg.n_layer + 1), TrainingSetup(micro_batch=mb, seq_len=seq, flash=flash),
                         A100).step_s > base


def test_gradient_accumulation_is_linear_in_compute():
    cfg = PRESETS["gpt2"]
    one = estimate_step(cfg, TrainingSetup(micro_batch=8), A100)
    four = estimate_step(cfg, TrainingSetup(micro_batch=8, grad_accum=4), A100)
    opt = one.class_seconds["optimizer"]
    assert four.step_s - opt == pytest.approx(4 * (one.step_s - opt), rel=1e-12)


def test_the_sustained_fraction_scales_gemm_time_only():
    # fitted on GEMM-dominated rows, it carries no information about the other kernels (docs/performance_model.md)
    cfg, setup = PRESETS["gpt2"], TrainingSetup(micro_batch=8, n_gpus=8)
    half = estimate_step(cfg, setup, A100, StepOptions(sustained_fraction=0.5))
    full = estimate_step(cfg, setup, A100, UNFITTED)
    assert half.class_seconds["gemm"] == pytest.approx(2 * full.class_seconds["gemm"])
    for c in ("memory-bound", "optimizer", "communication exposed", "offload"):
        assert half.class_seconds[c] == full.class_seconds[c]


def test_small_gemms_lose_to_wave_quantization_on_a_big_gpu():
    # the same tiny model runs at a lower MFU on the GPU with more SMs per FLOP/s of work it can spread
    cfg = ModelConfig(2, 2, 128, vocab_size=512)
    est = estimate_step(cfg, TrainingSetup(micro_batch=1, seq_len=64), H100, UNFITTED)
    assert est.mfu < 0.05
    assert any(p.bound == "launch" for p in est.ops)


def test_offload_and_communication_are_added_from_their_engines():
    from flopscalc.perf.offload import host_link_bytes_per_s, offload_time

    cfg = PRESETS["gpt2-medium"]
    setup = TrainingSetup(micro_batch=4, n_gpus=8, zero_stage=2, offload_optimizer=True)
    est = estimate_step(cfg, setup, A100)
    assert est.class_seconds["offload"] == offload_time(cfg, setup, link_bytes_per_s=host_link_bytes_per_s(A100)).total_s
    assert est.class_seconds["optimizer"] == 0.0  # the CPU runs it
    assert est.class_seconds["communication exposed"] == est.comm.exposed_s
    assert math.isclose(est.step_s, sum(est.class_seconds.values()))
