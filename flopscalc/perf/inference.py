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
sec. 2.2). The tests check it against the bytes of ``transformers``' ``DynamicCache`` after a forward pass.

Memory on the GPU = weights (16-bit, or FP8 / int8 / int4 linear weights with their scales [3][4]) + KV cache of
the batch at ``context + gen`` tokens + the prefill's live activations of one layer + the logits of the last
token + the CUDA context. The largest batch and context that fit follow in closed form (each term is linear
in the batch and in the tokens per sequence).

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

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from ..errors import DomainError, UsageError
from ..flops import forward_flops_per_token
from ..hardware import GpuSpec, Precision
from ..memory.settings import DEFAULT_CUDA_CONTEXT_BYTES, FP32_BYTES, HALF_BYTES
from ..model import Mlp, ModelConfig, Position, count_params
from ..model.counts import attention_params, mlp_unit_params
from ..units import SECONDS_PER_HOUR
from .device import DevicePerf, device_perf
from .gemm import TILE_SHAPES, gemm_efficiency
from .ops import Op, OpClass, Phase
from .step import PricedOp, priced_at

# K and V: two cached tensors per layer ([1] sec. 2).
KV_TENSORS = 2
# FITTED: share of the achievable DRAM bandwidth a weight-only dequantizing GEMM reaches when it streams int8 /
# int4 weights (unpacking and scaling on the CUDA cores slow it below a plain 16-bit GEMV). Each value is the
# one that makes the model equal gpt-fast's Llama-2-7B row of its format on A100 (data/published_inference.csv,
# rows gptfast-a100-llama2-7b-int8 / -int4g32); the Llama-2-70B rows are held out.
# tests/test_infer_validation.py re-derives both from the CSV.
QUANT_BANDWIDTH_FRACTION = {"int8": 0.698, "int4": 0.585}
# Rows of the smallest tensor-core tile a skinny GEMM is padded to: the MMA instruction's M of 16 for 16-bit
# and FP8 inputs ([7]: mma.m16n8k16, mma.m16n8k32); a decode step's batch of m < 16 rows does 16 rows' work.
SKINNY_TILE_M = 16
# Bytes of one quantization scale or zero point: bf16 in gpt-fast's int8 and int4 layouts ([3]).
QUANT_SCALE_BYTES = 2
# int4 groups: gpt-fast's quantize.py default ``groupsize=128`` ([3]); its README benchmarks use G=32.
DEFAULT_INT4_GROUP = 128
# Memory-bound kernels of one block at inference, unfused (what an eager forward launches): input norm, rotary
# embedding of q and k (RoPE models only), residual add, post-attention norm, the MLP activation, residual add.
# Each costs at least the device's kernel floor (`DevicePerf.kernel_min_s`); TensorRT-LLM and torch.compile
# fuse some of them, so for those stacks this is an upper bound of the launch overhead.
KERNELS_PER_LAYER = ("norm 1", "rope", "residual add 1", "norm 2", "mlp activation", "residual add 2")
# The sampler reads the last token's logits in fp32 (softmax / argmax over the vocabulary), one kernel.
LOGITS_BYTES = FP32_BYTES


class WeightFormat(str, Enum):
    """Storage of the linear layers' weights; the rest (embeddings, norms) stays 16-bit."""

    bf16 = "bf16"
    fp16 = "fp16"
    fp8 = "fp8"  # FP8 weights and FP8 GEMMs ([4]); needs a GPU with an FP8 rate
    int8 = "int8"  # weight-only: dequantized to bf16 inside the GEMM ([3])
    int4 = "int4"  # weight-only, grouped scales and zeros ([3])


class KvFormat(str, Enum):
    """Storage of the KV cache."""

    bf16 = "bf16"
    fp16 = "fp16"
    fp8 = "fp8"
    int8 = "int8"

    @property
    def bytes_per_element(self) -> int:
        return HALF_BYTES if self in (KvFormat.bf16, KvFormat.fp16) else 1


# The peak a weight format computes at: weight-only formats run their GEMMs in bf16 after dequantizing ([3]).
COMPUTE_PRECISION = {WeightFormat.bf16: Precision.bf16, WeightFormat.fp16: Precision.fp16,
                     WeightFormat.fp8: Precision.fp8, WeightFormat.int8: Precision.bf16,
                     WeightFormat.int4: Precision.bf16}


def small_kernels(cfg: ModelConfig) -> tuple[str, ...]:
    """The memory-bound kernels of one of ``cfg``'s blocks (`KERNELS_PER_LAYER`; rotary only with RoPE)."""
    return tuple(k for k in KERNELS_PER_LAYER if k != "rope" or cfg.pos is Position.rope)


def kv_cache_bytes(cfg: ModelConfig, n_tokens, bytes_per_element: int = HALF_BYTES):
    """KV-cache bytes of ``n_tokens`` cached tokens: 2 x n_layer x n_kv_head x head_dim x bytes x tokens ([1] sec. 2; [2])."""
    return KV_TENSORS * cfg.n_layer * cfg.kv_heads * cfg.head_dim * bytes_per_element * n_tokens  # [1] sec. 2; [2] 2.2


def linear_weight_bytes_per_param(fmt: WeightFormat, cfg: ModelConfig, group: int = DEFAULT_INT4_GROUP) -> float:
    """Stored bytes per linear weight: the element plus its share of the scales ([3], [4])."""
    if fmt in (WeightFormat.bf16, WeightFormat.fp16):
        return float(HALF_BYTES)
    if fmt is WeightFormat.fp8:
        return 1.0  # [4]: one byte; one scale per tensor, negligible
    if fmt is WeightFormat.int8:
        return 1.0 + QUANT_SCALE_BYTES / cfg.n_embd  # [3]: one scale per output channel of n_embd inputs
    return 0.5 + 2 * QUANT_SCALE_BYTES / group  # [3]: 4 bits, a scale and a zero per group


@dataclass(frozen=True)
class InferenceSetup:
    """How the model is served: batch, prompt and generated tokens per sequence, storage formats, price."""

    batch: int
    context: int  # prompt tokens per sequence (prefilled)
    gen: int = 1  # tokens generated per sequence (the first comes from the prefill)
    weights: WeightFormat = WeightFormat.bf16
    kv: KvFormat | None = None  # None: the 16-bit format of the activations
    int4_group: int = DEFAULT_INT4_GROUP
    usd_per_gpu_hour: float | None = None
    # share of the bandwidth a dequantizing GEMM reaches; None: the fitted QUANT_BANDWIDTH_FRACTION of the format
    quant_bandwidth_fraction: float | None = None

    def __post_init__(self) -> None:
        for name in ("batch", "context", "gen", "int4_group"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UsageError(f"{name.replace('_', ' ')} must be a positive whole number, got {v!r}")
        object.__setattr__(self, "weights", WeightFormat(self.weights))
        if self.kv is not None:
            object.__setattr__(self, "kv", KvFormat(self.kv))
        if self.usd_per_gpu_hour is not None and not self.usd_per_gpu_hour > 0:
            raise UsageError(f"the GPU-hour price must be positive, got {self.usd_per_gpu_hour!r}; e.g. 2.5")
        q = self.quant_bandwidth_fraction
        if q is not None and (not 0 < q <= 1 or self.weights not in (WeightFormat.int8, WeightFormat.int4)):
            raise UsageError(f"a dequantizing GEMM's bandwidth share must be in (0, 1] and needs int8 or int4 "
                             f"weights, got {q!r} with {self.weights.value}")
        if self.int4_group != DEFAULT_INT4_GROUP and self.weights is not WeightFormat.int4:
            raise UsageError("a quantization group size applies to int4 weights only; add --weights int4 or drop it")

    @property
    def kv_bytes_per_element(self) -> int:
        return self.kv.bytes_per_element if self.kv is not None else HALF_BYTES

    @property
    def gemm_bandwidth_fraction(self) -> float:
        """Share of the achievable bandwidth the GEMMs stream weights at: 1, or a dequantizing kernel's (fitted)."""
        if self.weights not in (WeightFormat.int8, WeightFormat.int4):
            return 1.0
        if self.quant_bandwidth_fraction is not None:
            return self.quant_bandwidth_fraction
        return QUANT_BANDWIDTH_FRACTION[self.weights.value]

    @property
    def seq_tokens(self) -> int:
        """Tokens a sequence holds in its cache at the end: prompt + generated."""
        return self.context + self.gen


def expected_active_experts(n_expert: int, top_k: int, n_tokens):
    """Experts used by at least one of ``n_tokens`` tokens routed uniformly, top-k each: E (1 - (1 - k/E)^B) ([6])."""
    return n_expert * (1.0 - (1.0 - top_k / n_expert) ** n_tokens)  # [6]


# ---------------------------------------------------------------- operations of one forward pass


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
    """
    a, kvb, L = HALF_BYTES, setup.kv_bytes_per_element, cfg.n_layer
    t = n_seq * new_tokens
    prefill = new_tokens > 1
    core = forward_flops_per_token(cfg, attended, causal=prefill).attention_core / L * t
    moved = a * t * (2 * cfg.d_attn + 2 * cfg.d_kv) + kvb * t * 2 * cfg.d_kv
    if not prefill:
        moved += float(kv_cache_bytes(cfg, n_seq * attended, kvb)) / L
    return Op("attention", OpClass.attention, phase, core, moved, L, 1, flash=True)


def _activation_width(cfg: ModelConfig) -> int:
    """Elements per token the MLP activation kernel reads and writes: f in, f out (GELU); 2f in, f out (gated)."""
    width = cfg.n_inner if not cfg.is_moe else cfg.top_k * cfg.expert_inner + cfg.n_shared_expert * cfg.shared_expert_inner
    return (2 if cfg.mlp is Mlp.gelu else 3) * width


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


# ---------------------------------------------------------------- memory


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
        kv_cache_bytes=float(kv_cache_bytes(cfg, b * n, setup.kv_bytes_per_element)),
        activation_bytes=b * c * activation_bytes_per_token(cfg) + b * cfg.vocab_size * LOGITS_BYTES,
        cuda_context_bytes=float(DEFAULT_CUDA_CONTEXT_BYTES),
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
    """
    b, act = setup.batch, activation_bytes_per_token(cfg)
    zero = inference_memory(cfg, setup, seq_tokens=0, context=0)  # weights, context, logits
    per_token = float(kv_cache_bytes(cfg, b, setup.kv_bytes_per_element)) + b * act
    # n cached tokens per sequence, of which n - gen are the prompt (prefill activations)
    n = math.floor((memory_bytes - zero.total_bytes + b * setup.gen * act) / per_token)
    if cfg.seq_limited_by_context:
        n = min(n, cfg.block_size)
    return n if n > setup.gen else 0


@dataclass(frozen=True)
class InferenceEstimate:
    """Predicted prefill and decode times, throughput, memory and cost of serving ``model`` on one ``gpu``."""

    model: ModelConfig
    setup: InferenceSetup
    gpu: GpuSpec
    device: DevicePerf
    precision: Precision  # the peak the GEMMs run at
    peak_flop_per_s: float
    prefill_ops: tuple[PricedOp, ...]
    decode_first_ops: tuple[PricedOp, ...]  # the first decode step (cache = prompt + 1), for the breakdown
    decode_total_s: float  # all gen - 1 decode steps
    memory: InferenceMemory
    max_batch: int  # at the setup's prompt + generated tokens
    max_seq_tokens: int  # at the setup's batch

    @property
    def model_params(self) -> int:
        """Every parameter of the model (count)."""
        return count_params(self.model).total

    @property
    def prefill_s(self) -> float:
        """Prefill of the whole batch: time to the first output token (s)."""
        return sum(p.total_s for p in self.prefill_ops)

    @property
    def n_decode_steps(self) -> int:
        return self.setup.gen - 1

    @property
    def decode_s_per_token(self) -> float:
        """Time per output token (TPOT): mean decode step over the generation (s); the first step if gen = 1."""
        if self.n_decode_steps == 0:
            return sum(p.total_s for p in self.decode_first_ops)
        return self.decode_total_s / self.n_decode_steps

    @property
    def total_s(self) -> float:
        """Prefill plus every decode step: one batch from prompt to its last token (s)."""
        return self.prefill_s + self.decode_total_s

    @property
    def tokens_per_s(self) -> float:
        """Generated tokens per second over the whole run, prefill included (all sequences)."""
        return self.setup.batch * self.setup.gen / self.total_s

    @property
    def decode_tokens_per_s(self) -> float:
        """Generated tokens per second while decoding (all sequences): batch / TPOT."""
        return self.setup.batch / self.decode_s_per_token

    @property
    def tokens_per_s_per_sequence(self) -> float:
        """What one user sees while decoding: 1 / TPOT."""
        return 1.0 / self.decode_s_per_token

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.setup.batch * self.setup.context / self.prefill_s

    @property
    def fits(self) -> bool:
        return self.memory.total_bytes <= self.gpu.memory_bytes

    @property
    def usd_per_million_tokens(self) -> float | None:
        """GPU-hour price over generated tokens per hour, x 1e6 (prefill time included); None without a price."""
        if self.setup.usd_per_gpu_hour is None:
            return None
        return self.setup.usd_per_gpu_hour / (SECONDS_PER_HOUR * self.tokens_per_s) * 1e6

    def decode_class_seconds(self) -> dict[str, float]:
        """The first decode step by operation class (s)."""
        out: dict[str, float] = {}
        for p in self.decode_first_ops:
            out[p.op.op_class.value] = out.get(p.op.op_class.value, 0.0) + p.total_s
        return out


def op_efficiency(op: Op, dev: DevicePerf) -> float:
    """Fraction of the dense peak an op's arithmetic runs at: the step-time model's figures ([5]; `perf.gemm`).

    A GEMM of fewer rows than the smallest of the step model's tiles (a decode step's batch) runs on tiles of
    `SKINNY_TILE_M` rows, the tensor cores' smallest MMA height, with split-K filling the SMs [7]; larger GEMMs
    take `gemm_efficiency` as training does. Fused attention runs at the device's forward flash fraction.
    """
    if op.flash:
        return dev.flash_fwd_fraction
    if op.gemm_shape is None:
        return 1.0  # memory-bound: no arithmetic worth pricing
    m, n, k, batch = op.gemm_shape
    if m < min(tm for tm, _ in TILE_SHAPES):
        return dev.gemm_peak_fraction * m / (SKINNY_TILE_M * math.ceil(m / SKINNY_TILE_M))  # [7] row padding
    return dev.gemm_peak_fraction * gemm_efficiency(m, n, k, dev.n_sm, batch=batch)


def price_op(op: Op, dev: DevicePerf, peak_flop_per_s: float, bandwidth_bytes_per_s: float,
             gemm_bandwidth_fraction: float = 1.0) -> PricedOp:
    """One op's time: roofline of its FLOPs and bytes with the kernel floor (`roofline_s`).

    ``gemm_bandwidth_fraction`` slows the GEMMs' memory traffic (a dequantizing kernel's, fitted); 1 otherwise.
    """
    share = gemm_bandwidth_fraction if op.gemm_shape is not None else 1.0
    return priced_at(op, dev, op_efficiency(op, dev), peak_flop_per_s, bandwidth_bytes_per_s, bandwidth_share=share)


def _priced(ops, dev, peak, bandwidth, share) -> tuple[PricedOp, ...]:
    return tuple(price_op(op, dev, peak, bandwidth, share) for op in ops)


def estimate_inference(cfg: ModelConfig, setup: InferenceSetup, gpu: GpuSpec,
                       *, device: DevicePerf | None = None) -> InferenceEstimate:
    """Predict prefill, decode, throughput, memory and cost of serving ``cfg`` with ``setup`` on one ``gpu``."""
    if cfg.seq_limited_by_context and setup.seq_tokens > cfg.block_size:
        raise UsageError(f"prompt + generated tokens ({setup.context} + {setup.gen}) exceed {cfg.name}'s learned "
                         f"position table of {cfg.block_size}; pass a shorter --context or --gen")
    if gpu.memory_bandwidth_bytes_per_s is None:
        raise DomainError(f"{gpu.name} has no memory bandwidth in the GPU database; decode time needs it "
                          "(add memory_bandwidth_gb_per_s with --gpu-csv)")
    dev = device or device_perf(gpu)
    precision = COMPUTE_PRECISION[setup.weights]
    peak = gpu.peak_flop_per_s(precision)
    bw = gpu.memory_bandwidth_bytes_per_s
    b, T = setup.batch, setup.context
    q = setup.gemm_bandwidth_fraction
    prefill = _priced(forward_ops(cfg, setup, n_seq=b, new_tokens=T, attended=T, phase=Phase.forward), dev, peak, bw, q)
    first = _priced(forward_ops(cfg, setup, n_seq=b, new_tokens=1, attended=T + 1, phase=Phase.forward),
                    dev, peak, bw, q)
    # only the attention op depends on the cache length: price the rest once, the attention at every step
    fixed_s = sum(p.total_s for p in first if p.op.op_class is not OpClass.attention)
    total = 0.0
    for i in range(1, setup.gen):  # step i: the cache holds the prompt and i generated tokens
        attn = attention_op(cfg, setup, n_seq=b, new_tokens=1, attended=T + i, phase=Phase.forward)
        total += fixed_s + _priced([attn], dev, peak, bw, q)[0].total_s
    mem = inference_memory(cfg, setup)
    return InferenceEstimate(cfg, setup, gpu, dev, precision, peak, prefill, first, total, mem,
                             max_batch(cfg, setup, gpu.memory_bytes), max_seq_tokens(cfg, setup, gpu.memory_bytes))
