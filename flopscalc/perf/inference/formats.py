"""How a model is served: the storage formats of weights and KV cache, their bytes, and `InferenceSetup`.

Part of `flopscalc.perf.inference` (the package docstring describes the whole model; the numbers [n] are its
references).

References
----------
[3] pytorch-labs/gpt-fast, quantize.py: ``WeightOnlyInt8Linear`` (int8 weight, one bf16 scale per output channel)
    and ``WeightOnlyInt4Linear`` (packed 4-bit weight, ``scales_and_zeros``: a bf16 scale and a bf16 zero per
    group of ``groupsize`` inputs per output channel).
[4] Micikevicius et al. 2022, "FP8 Formats for Deep Learning", arXiv:2209.05433, sec. 3 (one byte per element,
    a per-tensor scale).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from ...errors import UsageError
from ...hardware import Precision
from ...memory.settings import HALF_BYTES
from ...model import ModelConfig

# FITTED: share of the achievable DRAM bandwidth a weight-only dequantizing GEMM reaches when it streams int8 /
# int4 weights (unpacking and scaling on the CUDA cores slow it below a plain 16-bit GEMV). Each value is the
# one that makes the model equal gpt-fast's Llama-2-7B row of its format on A100 (data/published_inference.csv,
# rows gptfast-a100-llama2-7b-int8 / -int4g32); the Llama-2-70B rows are held out.
# tests/test_infer_validation.py re-derives both from the CSV.
QUANT_BANDWIDTH_FRACTION = {"int8": 0.698, "int4": 0.585}
# Bytes of one quantization scale or zero point: bf16 in gpt-fast's int8 and int4 layouts ([3]).
QUANT_SCALE_BYTES = 2
# Most tokens generated per sequence: a sanity bound, not physics, the 10M-token context of Llama 4 Scout (Meta AI,
# "The Llama 4 herd", 2025-04-05), the longest of a released model. The decode is priced step by step (~6 us a
# step here), so --gen 1e23 ran for ever; a million steps take ~6 s.
MAX_GEN_TOKENS = 10_000_000
# int4 groups: gpt-fast's quantize.py default ``groupsize=128`` ([3]); its README benchmarks use G=32.
DEFAULT_INT4_GROUP = 128


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


def linear_weight_bytes_per_param(fmt: WeightFormat, cfg: ModelConfig, group: int = DEFAULT_INT4_GROUP) -> float:
    """Stored bytes per linear weight: the element plus its share of the scales ([3], [4])."""
    if fmt in (WeightFormat.bf16, WeightFormat.fp16):
        return float(HALF_BYTES)
    if fmt is WeightFormat.fp8:
        return 1.0  # [4]: one byte; one scale per tensor, negligible
    if fmt is WeightFormat.int8:
        return 1.0 + QUANT_SCALE_BYTES / cfg.n_embd  # [3]: one scale per output channel of n_embd inputs
    check_int4_group(cfg, group)
    return 0.5 + 2 * QUANT_SCALE_BYTES / group  # [3]: 4 bits, a scale and a zero per group


def gemm_input_widths(cfg: ModelConfig) -> dict[str, int]:
    """Input width of each kind of linear layer: a quantization group runs along these ([3])."""
    widths = {"n_embd": cfg.n_embd, "attention output (n_head x head_dim)": cfg.d_attn}
    if cfg.is_moe:
        widths["expert MLP"] = cfg.expert_inner
        if cfg.n_shared_expert:
            widths["shared expert MLP"] = cfg.shared_expert_inner
    else:
        widths["MLP"] = cfg.n_inner
    return widths


def check_int4_group(cfg: ModelConfig, group: int) -> None:
    """UsageError unless ``group`` divides every GEMM input width of ``cfg``: gpt-fast's ``WeightOnlyInt4Linear``
    groups ``groupsize`` consecutive inputs of a row ([3]), so a group wider than a row, or one that leaves a
    partial group, has no layout."""
    widths = gemm_input_widths(cfg)
    if all(w % group == 0 for w in widths.values()):
        return
    common = math.gcd(*widths.values())
    powers = [g for g in (16, 32, 64, 128, 256) if common % g == 0]
    narrowest = min(widths, key=widths.get)
    raise UsageError(
        f"an int4 group of {group} inputs does not divide {cfg.name}'s GEMM input widths "
        f"({', '.join(f'{k} {v}' for k, v in widths.items())}; the narrowest is {narrowest}, {widths[narrowest]}); "
        f"accepted: a divisor of {common}" + (f", e.g. {', '.join(map(str, powers))}" if powers else ""))


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
    # whether the GPU runs PyTorch's CUDA runtime (`memory.workspace.runs_cuda`): only then is a CUDA context counted
    cuda_runtime: bool = True

    def __post_init__(self) -> None:
        for name in ("batch", "context", "gen", "int4_group"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UsageError(f"{name.replace('_', ' ')} must be a positive whole number, got {v!r}")
        if self.gen > MAX_GEN_TOKENS:
            raise UsageError(f"gen must be at most {MAX_GEN_TOKENS:,} tokens per sequence (the longest context of a "
                             f"released model, Llama 4 Scout's 10M), got {self.gen:,}")
        object.__setattr__(self, "weights", WeightFormat(self.weights))
        if self.kv is not None:
            object.__setattr__(self, "kv", KvFormat(self.kv))
        if self.usd_per_gpu_hour is not None and not (0 < self.usd_per_gpu_hour < math.inf):
            raise UsageError(f"the GPU-hour price must be positive and finite (US dollars), got "
                             f"{self.usd_per_gpu_hour!r}; e.g. 2.5")
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
