"""Memory of serving a model on one GPU: weights, KV cache, live activations; the largest batch and context.

Part of `flopscalc.perf.inference` (the package docstring describes the whole model; the numbers [n] are its
references). Every term is linear in the batch and in the tokens per sequence, so the largest batch and context
that fit follow in closed form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...memory.settings import DEFAULT_CUDA_CONTEXT_BYTES, FP32_BYTES, HALF_BYTES
from ...model import Mlp, ModelConfig, count_params
from ...model.counts import attention_params, mlp_unit_params
from .formats import InferenceSetup, linear_weight_bytes_per_param

# K and V: two cached tensors per layer ([1] sec. 2).
KV_TENSORS = 2
# The sampler reads the last token's logits in fp32 (softmax / argmax over the vocabulary), one kernel.
LOGITS_BYTES = FP32_BYTES


def kv_cache_bytes(cfg: ModelConfig, n_tokens, bytes_per_element: int = HALF_BYTES):
    """KV-cache bytes of ``n_tokens`` cached tokens: 2 x n_layer x n_kv_head x head_dim x bytes x tokens ([1] sec. 2; [2])."""
    return KV_TENSORS * cfg.n_layer * cfg.kv_heads * cfg.head_dim * bytes_per_element * n_tokens  # [1] sec. 2; [2] 2.2


def cached_tokens(cfg: ModelConfig, n_tokens: int) -> int:
    """Tokens one sequence keeps in its KV cache per layer: all of them, or the last W with a sliding window
    (Mistral 7B's rolling buffer cache of W entries, Jiang et al. 2023, arXiv:2310.06825, sec. 2)."""
    return n_tokens if cfg.attn_window is None else min(n_tokens, cfg.attn_window)


def _activation_width(cfg: ModelConfig) -> int:
    """Elements per token the MLP activation kernel reads and writes: f in, f out (GELU); 2f in, f out (gated)."""
    width = cfg.n_inner if not cfg.is_moe else cfg.top_k * cfg.expert_inner + cfg.n_shared_expert * cfg.shared_expert_inner
    return (2 if cfg.mlp is Mlp.gelu else 3) * width


@dataclass(frozen=True)
class InferenceMemory:
    """Bytes on the GPU while serving (base units)."""

    weights_bytes: float
    kv_cache_bytes: float  # the batch at prompt + generated tokens
    activation_bytes: float  # prefill's live tensors of one layer + the last tokens' logits
    cuda_context_bytes: float

    @property
    def total_bytes(self) -> float:
        return self.weights_bytes + self.kv_cache_bytes + self.activation_bytes + self.cuda_context_bytes


def weights_bytes(cfg: ModelConfig, setup: InferenceSetup) -> float:
    """Stored weights: linear layers in ``setup.weights`` ([3], [4]); embeddings, norms, biases 16-bit."""
    pc = count_params(cfg)
    linear = _linear_weights(cfg)
    other = pc.total - linear
    return linear * linear_weight_bytes_per_param(setup.weights, cfg, setup.int4_group) + other * HALF_BYTES


def _linear_weights(cfg: ModelConfig) -> int:
    """Weights of every linear layer (all experts, routers), LM head included unless tied to the embedding table."""
    return cfg.n_layer * _block_linear_weights(cfg) + count_params(cfg).lm_head


def _block_linear_weights(cfg: ModelConfig) -> int:
    """One block's linear weights, biases left out (`flopscalc.model.counts`' per-unit counts)."""
    aw, _ = attention_params(cfg)
    if not cfg.is_moe:
        return aw + mlp_unit_params(cfg, cfg.n_inner)[0]
    ew = mlp_unit_params(cfg, cfg.expert_inner)[0]
    sw = mlp_unit_params(cfg, cfg.shared_expert_inner)[0]
    gate = cfg.n_embd if cfg.shared_expert_gate else 0
    return aw + cfg.n_expert * ew + cfg.n_shared_expert * sw + gate + cfg.n_embd * cfg.n_expert


def activation_bytes_per_token(cfg: ModelConfig) -> float:
    """Live 16-bit activations per prompt token inside one layer at prefill (the larger of attention and MLP).

    Attention: residual x, normed input, q, k, v, output (d + d + d_attn + 2 d_kv + d_attn). MLP: residual x,
    normed input, the up (and gate) outputs and the activation (2d + 2f, or 2d + 3f gated; top-k experts' widths
    for a mixture of experts). Layers run one after another, so one layer's tensors are live at a time.
    """
    attn = 2 * cfg.n_embd + 2 * cfg.d_attn + 2 * cfg.d_kv
    mlp = 2 * cfg.n_embd + _activation_width(cfg)
    return HALF_BYTES * max(attn, mlp)


def inference_memory(cfg: ModelConfig, setup: InferenceSetup, *, batch: int | None = None,
                     seq_tokens: int | None = None, context: int | None = None) -> InferenceMemory:
    """Memory of serving ``cfg`` with ``setup`` (``batch``, ``seq_tokens``, ``context`` override the setup's)."""
    b = setup.batch if batch is None else batch
    n = setup.seq_tokens if seq_tokens is None else seq_tokens
    c = setup.context if context is None else context
    return InferenceMemory(
        weights_bytes=weights_bytes(cfg, setup),
        kv_cache_bytes=float(kv_cache_bytes(cfg, b * cached_tokens(cfg, n), setup.kv_bytes_per_element)),
        activation_bytes=b * c * activation_bytes_per_token(cfg) + b * cfg.vocab_size * LOGITS_BYTES,
        # no CUDA runtime, no CUDA context (the training engine's rule, `memory.workspace.cuda_only_bytes`)
        cuda_context_bytes=float(DEFAULT_CUDA_CONTEXT_BYTES) if setup.cuda_runtime else 0.0,
    )


def max_batch(cfg: ModelConfig, setup: InferenceSetup, memory_bytes: float) -> int:
    """Largest batch whose memory (`inference_memory`) fits ``memory_bytes`` at the setup's tokens; 0 if none.

    Memory is fixed (weights, CUDA context) plus a per-sequence part (KV cache, prefill activations, logits).
    """
    one = inference_memory(cfg, setup, batch=1)
    fixed = one.weights_bytes + one.cuda_context_bytes
    per_seq = one.kv_cache_bytes + one.activation_bytes
    return max(0, math.floor((memory_bytes - fixed) / per_seq))


def max_seq_tokens(cfg: ModelConfig, setup: InferenceSetup, memory_bytes: float) -> int:
    """Largest prompt + generated tokens per sequence that fit at the setup's batch (the prompt grows, ``gen`` fixed).

    Capped at ``block_size`` for a model with a learned position table. 0 when not even ``gen + 1`` tokens fit.
    With a sliding window W the cache stops growing at W tokens (`cached_tokens`): beyond W only the prompt's
    prefill activations grow.
    """
    b, act = setup.batch, activation_bytes_per_token(cfg)
    zero = inference_memory(cfg, setup, seq_tokens=0, context=0)  # weights, context, logits
    kv_token = float(kv_cache_bytes(cfg, b, setup.kv_bytes_per_element))
    per_token = kv_token + b * act
    # n cached tokens per sequence, of which n - gen are the prompt (prefill activations)
    n = math.floor((memory_bytes - zero.total_bytes + b * setup.gen * act) / per_token)
    w = cfg.attn_window
    if w is not None and n > w:  # memory = zero + kv_token W + b act (n - gen), solved for n
        n = math.floor((memory_bytes - zero.total_bytes - kv_token * w + b * setup.gen * act) / (b * act))
    if cfg.seq_limited_by_context:
        n = min(n, cfg.block_size)
    return n if n > setup.gen else 0
