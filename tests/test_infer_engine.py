"""The inference engine against independent references and limit cases.

- prefill's operations add up to `flopscalc.flops`'s forward FLOPs of the prompt (the LM head on the last token);
- decode at batch 1 of a large model is the memory-bound limit: weights / achievable bandwidth ([1] sec. 2);
- one more cached token per sequence costs exactly its KV bytes over the achievable bandwidth;
- a mixture of experts reads its active parameters at batch 1 and nearly all of them at a large batch;
- 16-bit weights are 2 bytes x the exact parameter count; the weights a format quantizes are the weight matrices
  of the ``transformers`` module; the largest batch and context fit and one more does not.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopscalc.errors import UsageError
from flopscalc.flops import forward_flops_per_token
from flopscalc.hardware import get_gpu
from flopscalc.hf_config import read_hf_config
from flopscalc.model import count_params, get_preset
from flopscalc.perf.device import KERNEL_MIN_S, MEM_BANDWIDTH_FRACTION
from flopscalc.perf.inference import (
    InferenceSetup,
    OpClass,
    estimate_inference,
    expected_active_experts,
    forward_ops,
    inference_memory,
    kv_cache_bytes,
    max_batch,
    max_seq_tokens,
    small_kernels,
    weights_bytes,
)
from flopscalc.perf.op_kinds import Phase

H100 = get_gpu("h100-sxm")
A100 = get_gpu("a100-80gb")


@pytest.mark.parametrize("name", ["gpt2", "llama-3.1-8b", "qwen2.5-7b", "mixtral-8x7b"])
def test_prefill_flops_are_the_forward_flops_of_the_prompt(name):
    cfg = get_preset(name)
    b, t = 3, 512
    ops = forward_ops(cfg, InferenceSetup(batch=b, context=t), n_seq=b, new_tokens=t, attended=t,
                      phase=Phase.forward)
    fwd = forward_flops_per_token(cfg, t, causal=True)
    expected = fwd.total * b * t - fwd.lm_head * (b * t - b)  # logits of each sequence's last token only
    assert sum(op.flops * op.count for op in ops) == pytest.approx(expected, rel=1e-12)


def test_decode_at_batch_one_is_weights_over_bandwidth():
    """Llama-3.1-70B in FP8 on one H100 (fits: 70 GB), batch 1: every step streams the weights ([1] sec. 2),
    plus at most the launch floor of each small kernel (the per-layer ones, attention, and four per step)."""
    cfg = get_preset("llama-3.1-70b")
    est = estimate_inference(cfg, InferenceSetup(batch=1, context=128, gen=2, weights="fp8"), H100)
    stream_s = (count_params(cfg).matmul * 1.0) / (H100.memory_bandwidth_bytes_per_s * MEM_BANDWIDTH_FRACTION)
    launches_s = (cfg.n_layer * (len(small_kernels(cfg)) + 1) + 4) * KERNEL_MIN_S
    assert stream_s < est.decode_s_per_token < (stream_s + launches_s) * 1.01


@pytest.mark.parametrize("kv", ["bf16", "fp8"])
def test_one_more_cached_token_costs_its_kv_bytes(kv):
    """Decode step at cache n+1 minus at n = batch x KV bytes of one token / achievable bandwidth (memory-bound)."""
    cfg = get_preset("llama-3.1-8b")
    b = 64
    a = estimate_inference(cfg, InferenceSetup(batch=b, context=4000, gen=1, kv=kv), H100)
    c = estimate_inference(cfg, InferenceSetup(batch=b, context=4001, gen=1, kv=kv), H100)
    element = 2 if kv == "bf16" else 1
    extra = kv_cache_bytes(cfg, b, element) / (H100.memory_bandwidth_bytes_per_s * MEM_BANDWIDTH_FRACTION)
    assert c.decode_s_per_token - a.decode_s_per_token == pytest.approx(extra, rel=1e-9)


def test_moe_decode_reads_the_experts_the_batch_uses():
    cfg = get_preset("mixtral-8x7b")
    pc = count_params(cfg)
    assert expected_active_experts(8, 2, 1) == pytest.approx(2)  # one token: its top-2
    assert expected_active_experts(8, 2, 64) == pytest.approx(8, rel=1e-7)  # 64 tokens: all eight
    assert expected_active_experts(8, 8, 5) == 8

    def gemm_weight_bytes(batch):
        ops = forward_ops(cfg, InferenceSetup(batch=batch, context=100), n_seq=batch, new_tokens=1,
                          attended=101, phase=Phase.forward)
        acts = sum(2 * op.count * (op.gemm_shape[0] * (op.gemm_shape[1] + op.gemm_shape[2]))
                   for op in ops if op.op_class is OpClass.gemm)
        return sum(op.bytes_moved * op.count for op in ops if op.op_class is OpClass.gemm) - acts

    # batch 1: the active matmul weights (Mixtral's 12.9B of 46.7B), 2 bytes each
    assert gemm_weight_bytes(1) == 2 * pc.matmul
    # batch 64: every expert (all linear weights but the embedding table)
    assert gemm_weight_bytes(64) == pytest.approx(2 * (pc.total - pc.token_embedding - pc.layernorm), rel=1e-6)


@pytest.mark.parametrize("name", ["gpt2", "llama-3.1-8b", "mixtral-8x7b", "olmo-2-7b"])
def test_sixteen_bit_weights_are_two_bytes_per_parameter(name):
    cfg = get_preset(name)
    assert weights_bytes(cfg, InferenceSetup(batch=1, context=1)) == 2 * count_params(cfg).total
    w = {f: weights_bytes(cfg, InferenceSetup(batch=1, context=1, weights=f)) for f in ("bf16", "int8", "int4")}
    assert w["int4"] < w["int8"] < w["bf16"]


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(["gpt2-xl", "llama-3.1-8b", "mistral-7b", "mixtral-8x7b"]),
       context=st.integers(1, 8192), gen=st.integers(1, 4096), kv=st.sampled_from(["bf16", "fp8"]),
       batch=st.integers(1, 64))
def test_largest_batch_and_context_fit_and_one_more_does_not(name, context, gen, kv, batch):
    cfg = get_preset(name)
    if cfg.seq_limited_by_context and context + gen > cfg.block_size:
        return
    setup = InferenceSetup(batch=batch, context=context, gen=gen, kv=kv)
    mem = H100.memory_bytes
    nb = max_batch(cfg, setup, mem)
    if nb:
        assert inference_memory(cfg, setup, batch=nb).total_bytes <= mem
    assert inference_memory(cfg, setup, batch=nb + 1).total_bytes > mem
    n = max_seq_tokens(cfg, setup, mem)
    if n:
        assert inference_memory(cfg, setup, seq_tokens=n, context=n - gen).total_bytes <= mem
        if not (cfg.seq_limited_by_context and n == cfg.block_size):
            assert inference_memory(cfg, setup, seq_tokens=n + 1, context=n + 1 - gen).total_bytes > mem


def test_throughput_moves_the_right_way():
    """More sequences: each decodes slower, all together faster; a longer context: slower decode."""
    cfg = get_preset("llama-3.1-8b")
    one, many = (estimate_inference(cfg, InferenceSetup(batch=b, context=2048, gen=64), H100) for b in (1, 32))
    assert many.tokens_per_s_per_sequence < one.tokens_per_s_per_sequence
    assert many.decode_tokens_per_s > 10 * one.decode_tokens_per_s
    longer = estimate_inference(cfg, InferenceSetup(batch=32, context=16384, gen=64), H100)
    assert longer.decode_s_per_token > many.decode_s_per_token
    assert longer.prefill_s > 8 * many.prefill_s  # 8x the tokens, and attention grows with the context


def test_prefill_is_compute_bound_at_the_gemm_rate():
    """A long prompt's prefill runs between half and all of the GPU's measured GEMM rate (model FLOPs / s)."""
    cfg = get_preset("llama-3.1-8b")
    est = estimate_inference(cfg, InferenceSetup(batch=8, context=4096), A100)
    flops = forward_flops_per_token(cfg, 4096, causal=True).total * 8 * 4096
    rate = flops / est.prefill_s / est.peak_flop_per_s
    assert 0.5 * est.device.gemm_peak_fraction < rate < est.device.gemm_peak_fraction


def test_cost_scales_with_price_and_is_absent_without_one():
    cfg = get_preset("gpt2")
    base = {"batch": 16, "context": 512, "gen": 128}
    free = estimate_inference(cfg, InferenceSetup(**base), A100)
    assert free.usd_per_million_tokens is None
    paid = estimate_inference(cfg, InferenceSetup(**base, usd_per_gpu_hour=2.0), A100)
    hours_per_million = 1e6 / paid.tokens_per_s / 3600
    assert paid.usd_per_million_tokens == pytest.approx(2.0 * hours_per_million)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"batch": 0, "context": 10}, "batch must be a positive"),
    ({"batch": 1, "context": 10, "usd_per_gpu_hour": -1.0}, "price must be positive"),
    ({"batch": 1, "context": 10, "int4_group": 64}, "int4 weights only"),
    ({"batch": 1, "context": 10, "quant_bandwidth_fraction": 0.5}, "needs int8 or int4"),
])
def test_bad_setups_are_one_line(kwargs, fragment):
    with pytest.raises(UsageError, match=fragment):
        InferenceSetup(**kwargs)


def test_learned_positions_bound_the_sequence():
    with pytest.raises(UsageError, match="learned position table"):
        estimate_inference(get_preset("gpt2"), InferenceSetup(batch=1, context=1000, gen=100), A100)


CONFIGS = sorted((Path(__file__).resolve().parents[1] / "data" / "configs").glob("*.json"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_quantized_weights_are_the_modules_weight_matrices(path):
    """FP8 stores 1 byte per linear weight and 2 per other parameter, so 2 x total - FP8 bytes is the count the
    engine quantizes; it must equal the weight matrices (2-D parameters, fused experts included) of the
    ``transformers`` module built from the same config.json, without the token and position embedding tables."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(
            transformers.AutoConfig.for_model(**json.loads(path.read_text())))
    tables = {id(model.get_input_embeddings().weight)}
    tables |= {id(p) for n, p in model.named_parameters() if n.endswith(("wpe.weight", "embed_positions.weight"))}
    matrices = sum(p.numel() for p in model.parameters() if p.dim() >= 2 and id(p) not in tables)
    cfg = read_hf_config(path)
    quantized = 2 * count_params(cfg).total - weights_bytes(cfg, InferenceSetup(batch=1, context=1, weights="fp8"))
    assert quantized == matrices
