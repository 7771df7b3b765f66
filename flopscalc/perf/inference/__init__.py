"""Inference cost of a model on one GPU: prefill, decode, KV cache, what fits, tokens/s and dollars per token.

Serving a batch of ``batch`` sequences of ``context`` prompt tokens that each generate ``gen`` tokens runs one
**prefill** pass over all prompt tokens (it produces the first output token) and ``gen - 1`` **decode** steps,
each of which runs every sequence's newest token through the model against its KV cache. Both are priced with
the step-time model's roofline per operation ([5]; `flopscalc.perf.step`), nothing fitted:

- prefill is compute-bound: the forward GEMMs over ``batch x context`` tokens at the GEMM efficiency of their
  shapes, the fused attention kernel at its forward rate (FLOPs from `flopscalc.flops`, causal pairs);
- decode is memory-bound: every step reads all weights once (for a mixture of experts, the experts the batch's
  tokens are routed to) and every sequence's KV cache, at the achievable DRAM bandwidth ([1] sec. 2; [6]);
- every kernel costs at least the device's kernel floor, so small models and small batches pay a per-kernel
  overhead per layer per step (`KERNELS_PER_LAYER` names them).

KV cache per sequence = 2 (K and V) x n_layer x n_kv_head x head_dim x bytes per element x tokens ([1] sec. 2,
"the key and value tensors"; with grouped-query attention only the n_kv_head shared heads are cached, [2]
sec. 2.2). The tests check it against the bytes of ``transformers``' ``DynamicCache`` after a forward pass. With a
sliding window W (``ModelConfig.attn_window``) "tokens" is min(tokens, W), the rolling buffer (Jiang et al. 2023,
"Mistral 7B", arXiv:2310.06825, sec. 2), and a decode step reads and attends those min(tokens, W) only.

Memory on the GPU = weights (16-bit, or FP8 / int8 / int4 linear weights with their scales [3][4]) + KV cache of
the batch at ``context + gen`` tokens + the prefill's live activations of one layer + the logits of the last
token + the CUDA context. The largest batch and context that fit follow in closed form (each term is linear
in the batch and in the tokens per sequence).

The modules: `formats` (weight and KV formats, `InferenceSetup`), `memory` (KV cache, weights, what
fits), `fit` (changes that make one sequence fit, each confirmed by `memory`), `forward` (the operations of one
forward pass), `estimate` (pricing them: `estimate_inference`).

References
----------
[1] Pope et al. 2022, "Efficiently Scaling Transformer Inference", arXiv:2211.05102, sec. 2 (the KV cache,
    2 x n_layers x n_heads x d_head per token; decode latency bound by loading weights and the KV cache).
[2] Ainslie et al. 2023, "GQA", arXiv:2305.13245, sec. 2.2 (keys and values for n_kv_head groups only).
[3] pytorch-labs/gpt-fast, quantize.py: ``WeightOnlyInt8Linear`` (int8 weight, one bf16 scale per output channel)
    and ``WeightOnlyInt4Linear`` (packed 4-bit weight, ``scales_and_zeros``: a bf16 scale and a bf16 zero per
    group of ``groupsize`` inputs per output channel).
[4] Micikevicius et al. 2022, "FP8 Formats for Deep Learning", arXiv:2209.05433, sec. 3 (one byte per element,
    a per-tensor scale).
[5] Williams, Waterman & Patterson 2009, "Roofline", CACM 52(4).
[6] Shazeer et al. 2017, arXiv:1701.06538 / Jiang et al. 2024 (Mixtral), sec. 2.1: each token uses its top-k
    experts; with B tokens routed independently and uniformly an expert is used by none of them with
    probability (1 - k/E)^B.
[7] NVIDIA, "Parallel Thread Execution ISA", sec. 9.7.13 "Warp-level matrix multiply-accumulate instructions":
    matrix shapes m16n8k16 (f16/bf16) and m16n8k32 (e4m3/e5m2); CUTLASS "Efficient GEMM in CUDA", Split K.
"""

from ..op_kinds import OpClass  # re-exported: callers read the breakdown's classes from here
from .estimate import SKINNY_TILE_M, InferenceEstimate, estimate_inference, op_efficiency, price_op
from .fit import InferenceFix, one_sequence_fixes
from .formats import (
    COMPUTE_PRECISION,
    DEFAULT_INT4_GROUP,
    QUANT_BANDWIDTH_FRACTION,
    QUANT_SCALE_BYTES,
    InferenceSetup,
    KvFormat,
    WeightFormat,
    linear_weight_bytes_per_param,
)
from .forward import KERNELS_PER_LAYER, attention_op, expected_active_experts, forward_ops, small_kernels
from .memory import (
    KV_TENSORS,
    LOGITS_BYTES,
    InferenceMemory,
    activation_bytes_per_token,
    cached_tokens,
    inference_memory,
    kv_cache_bytes,
    max_batch,
    max_seq_tokens,
    weights_bytes,
)

__all__ = [
    "COMPUTE_PRECISION",
    "DEFAULT_INT4_GROUP",
    "KERNELS_PER_LAYER",
    "KV_TENSORS",
    "LOGITS_BYTES",
    "QUANT_BANDWIDTH_FRACTION",
    "QUANT_SCALE_BYTES",
    "SKINNY_TILE_M",
    "InferenceEstimate",
    "InferenceFix",
    "InferenceMemory",
    "InferenceSetup",
    "KvFormat",
    "OpClass",
    "WeightFormat",
    "activation_bytes_per_token",
    "attention_op",
    "cached_tokens",
    "estimate_inference",
    "expected_active_experts",
    "forward_ops",
    "inference_memory",
    "kv_cache_bytes",
    "linear_weight_bytes_per_param",
    "max_batch",
    "max_seq_tokens",
    "one_sequence_fixes",
    "op_efficiency",
    "price_op",
    "small_kernels",
    "weights_bytes",
]
