"""The operations of one forward pass at inference (prefill or a decode step), for the roofline to price.

Part of `flopscalc.perf.inference` (the package docstring describes the whole model; the numbers [n] are its
references).

References
----------
[1] Pope et al. 2022, "Efficiently Scaling Transformer Inference", arXiv:2211.05102, sec. 2 (the KV cache,
    2 x n_layers x n_heads x d_head per token; decode latency bound by loading weights and the KV cache).
[5] Williams, Waterman & Patterson 2009, "Roofline", CACM 52(4).
[6] Shazeer et al. 2017, arXiv:1701.06538 / Jiang et al. 2024 (Mixtral), sec. 2.1: each token uses its top-k
    experts; with B tokens routed independently and uniformly an expert is used by none of them with
    probability (1 - k/E)^B.
"""

from __future__ import annotations

import math

from ...flops import forward_flops_per_token
from ...memory.settings import HALF_BYTES
from ...model import ModelConfig, Position
from ..op_kinds import Op, OpClass, Phase
from .formats import InferenceSetup, linear_weight_bytes_per_param
from .memory import LOGITS_BYTES, _activation_width, cached_tokens, kv_cache_bytes

# Memory-bound kernels of one block at inference, unfused (what an eager forward launches): input norm, rotary
# embedding of q and k (RoPE models only), residual add, post-attention norm, the MLP activation, residual add.
# Each costs at least the device's kernel floor (`DevicePerf.kernel_min_s`); TensorRT-LLM and torch.compile
# fuse some of them, so for those stacks this is an upper bound of the launch overhead.
KERNELS_PER_LAYER = ("norm 1", "rope", "residual add 1", "norm 2", "mlp activation", "residual add 2")


def small_kernels(cfg: ModelConfig) -> tuple[str, ...]:
    """The memory-bound kernels of one of ``cfg``'s blocks (`KERNELS_PER_LAYER`; rotary only with RoPE)."""
    return tuple(k for k in KERNELS_PER_LAYER if k != "rope" or cfg.pos is Position.rope)


def expected_active_experts(n_expert: int, top_k: int, n_tokens):
    """Experts used by at least one of ``n_tokens`` tokens routed uniformly, top-k each: E (1 - (1 - k/E)^B) ([6])."""
    return n_expert * (1.0 - (1.0 - top_k / n_expert) ** n_tokens)  # [6]


def _gemm(name, phase, m, n, k, flops, wbytes_per_param, a, count=1):
    """A linear applied to m tokens: n outputs from k inputs; reads its weight once ([5]; GEMM guide ch. 2)."""
    moved = wbytes_per_param * k * n + a * (m * k + m * n)
    return Op(name, OpClass.gemm, phase, flops, moved, count, 1, (m, n, k, 1))


def forward_ops(cfg: ModelConfig, setup: InferenceSetup, *, n_seq: int, new_tokens: int, attended: int,
                phase: Phase) -> list[Op]:
    """Operations of one forward pass of ``n_seq`` sequences, ``new_tokens`` each, attending to ``attended`` keys.

    Prefill: ``new_tokens`` = the prompt, causal attention over it. Decode: one new token per sequence that
    attends to ``attended`` cached keys. GEMM FLOPs are `flopscalc.flops`'s per-token terms times the tokens.
    """
    a = HALF_BYTES  # activations are 16-bit in every format here (FP8 GEMMs write 16-bit outputs)
    wq = linear_weight_bytes_per_param(setup.weights, cfg, setup.int4_group)
    L, d, V = cfg.n_layer, cfg.n_embd, cfg.vocab_size
    t = n_seq * new_tokens
    fwd = forward_flops_per_token(cfg, attended, causal=new_tokens > 1)  # per token, all layers
    ops = [Op("embedding gather", OpClass.memory, phase, 0.0, (HALF_BYTES + a) * t * d, 1)]
    qkv_out = cfg.d_attn + 2 * cfg.d_kv
    ops.append(_gemm("qkv", phase, t, qkv_out, d, fwd.qkv / L * t, wq, a, L))
    ops.append(attention_op(cfg, setup, n_seq=n_seq, new_tokens=new_tokens, attended=attended, phase=phase))
    ops.append(_gemm("attn out", phase, t, d, cfg.d_attn, fwd.attn_proj / L * t, wq, a, L))
    ops += _mlp_ops(cfg, t, fwd, wq, a, phase)
    # memory-bound kernels of each block (KERNELS_PER_LAYER), elements read and written per token
    width = {"norm 1": 2 * d, "rope": 2 * (cfg.d_attn + cfg.d_kv), "residual add 1": 3 * d, "norm 2": 2 * d,
             "mlp activation": _activation_width(cfg), "residual add 2": 3 * d}
    ops += [Op(name, OpClass.memory, phase, 0.0, a * t * width[name], L) for name in small_kernels(cfg)]
    ops.append(Op("final norm", OpClass.memory, phase, 0.0, 2 * a * t * d, 1))
    # logits of each sequence's last token only (TensorRT-LLM gathers the last token before the LM head)
    head_wq = HALF_BYTES if cfg.tie_embeddings else wq
    ops.append(_gemm("lm head", phase, n_seq, V, d, fwd.lm_head * n_seq, head_wq, a))
    ops.append(Op("sampling", OpClass.memory, phase, 0.0, LOGITS_BYTES * n_seq * V, 1))
    return ops


def attention_op(cfg: ModelConfig, setup: InferenceSetup, *, n_seq: int, new_tokens: int, attended: int,
                 phase: Phase) -> Op:
    """The fused attention kernel of one layer (``n_layer`` occurrences): FLOPs from `flopscalc.flops`.

    It reads q (and k, v of the new tokens), writes o and the new K/V into the cache; a decode step also reads
    every sequence's cached K and V ([1] sec. 2). Prefill counts causal pairs (a fused kernel skips masked blocks).
    With a sliding window W the cache is a rolling buffer of min(T, W) tokens, so a prefill of T > W prompt tokens
    writes only the last W of each sequence (Jiang et al. 2023, sec. 2; mistral-inference's ``RotatingBufferCache``
    caches the tokens x >= seqlen - W). vLLM's paged cache writes every prompt token and frees the blocks that
    leave the window afterwards; we follow the rolling buffer, the cache `cached_tokens` sizes.
    """
    a, kvb, L = HALF_BYTES, setup.kv_bytes_per_element, cfg.n_layer
    t = n_seq * new_tokens
    prefill = new_tokens > 1
    # a decode query attends to the last min(T, W) tokens only, all of them in the rolling buffer (`cached_tokens`)
    keys = attended if prefill else cached_tokens(cfg, attended)
    core = forward_flops_per_token(cfg, keys, causal=prefill).attention_core / L * t
    written = n_seq * cached_tokens(cfg, new_tokens)  # tokens whose K, V enter the cache: min(T, W) per sequence
    moved = a * t * (2 * cfg.d_attn + 2 * cfg.d_kv) + kvb * written * 2 * cfg.d_kv  # Jiang et al. 2023, sec. 2
    if not prefill:
        moved += float(kv_cache_bytes(cfg, n_seq * keys, kvb)) / L
    return Op("attention", OpClass.attention, phase, core, moved, L, 1, flash=True)


def _mlp_ops(cfg, t, fwd, wq, a, phase) -> list[Op]:
    """Dense MLP, or router + the experts the batch's tokens reach + shared experts."""
    d, L = cfg.n_embd, cfg.n_layer
    up = cfg.mlp.n_matrices - 1  # gate and up fused into one GEMM of 2f outputs for gated MLPs
    if not cfg.is_moe:
        f = cfg.n_inner
        per_matrix = fwd.mlp / L * t / cfg.mlp.n_matrices  # flopscalc.flops: k matrices of d x f
        return [_gemm("mlp up", phase, t, up * f, d, up * per_matrix, wq, a, L),
                _gemm("mlp down", phase, t, d, f, per_matrix, wq, a, L)]
    ops = [_gemm("router", phase, t, cfg.n_expert, d, fwd.router / L * t, wq, a, L)]
    f = cfg.expert_inner
    active = expected_active_experts(cfg.n_expert, cfg.top_k, t)
    per_expert = max(1, math.ceil(t * cfg.top_k / active))  # tokens each used expert sees (uniform routing)
    n_active = max(1, round(active))
    # FLOPs: every token's top-k experts (flopscalc.flops's routed term) spread over the used experts
    routed = 2.0 * t * cfg.top_k * d * f / n_active  # FLOPS_PER_MAC x tokens x k x (d x f) per matrix and expert
    ops += [_gemm("expert up", phase, per_expert, up * f, d, up * routed, wq, a, L * n_active),
            _gemm("expert down", phase, per_expert, d, f, routed, wq, a, L * n_active)]
    if cfg.n_shared_expert:
        fs = cfg.n_shared_expert * cfg.shared_expert_inner
        ops += [_gemm("shared up", phase, t, up * fs, d, 2.0 * t * d * up * fs, wq, a, L),
                _gemm("shared down", phase, t, d, fs, 2.0 * t * fs * d, wq, a, L)]
    return ops
