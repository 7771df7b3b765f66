"""Prefill and decode times of serving a model on one GPU, priced by the step-time model's roofline.

Part of `flopscalc.perf.inference` (the package docstring describes the whole model; the numbers [n] are its
references).

References
----------
[5] Williams, Waterman & Patterson 2009, "Roofline", CACM 52(4).
[7] NVIDIA, "Parallel Thread Execution ISA", sec. 9.7.13 "Warp-level matrix multiply-accumulate instructions":
    matrix shapes m16n8k16 (f16/bf16) and m16n8k32 (e4m3/e5m2); CUTLASS "Efficient GEMM in CUDA", Split K.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...errors import DomainError, UsageError
from ...hardware import GpuSpec, Precision
from ...model import ModelConfig, count_params
from ...units import SECONDS_PER_HOUR
from ..device import DevicePerf, device_perf
from ..gemm import TILE_SHAPES
from ..op_kinds import Op, OpClass, Phase
from ..step import PricedOp, priced_at
from ..step import op_efficiency as training_op_efficiency
from .fit import InferenceFix, one_sequence_fixes
from .formats import COMPUTE_PRECISION, InferenceSetup
from .forward import attention_op, forward_ops
from .memory import InferenceMemory, inference_memory, max_batch, max_seq_tokens

# Rows of the smallest tensor-core tile a skinny GEMM is padded to: the MMA instruction's M of 16 for 16-bit
# and FP8 inputs ([7]: mma.m16n8k16, mma.m16n8k32); a decode step's batch of m < 16 rows does 16 rows' work.
SKINNY_TILE_M = 16


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
    fixes: tuple[InferenceFix, ...] = ()  # when not one sequence fits: changes the memory engine confirms fit

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
    """Fraction of the dense peak an op's arithmetic runs at: the step-time model's figures ([5]; `perf.step`).

    A GEMM takes the training model's rule (`perf.step`): the device's GEMM fraction, times tile and wave
    quantization (`perf.gemm`) where the device has them (``DevicePerf.tile_quantization``; a calibrated CPU has
    not). On such a device a GEMM of fewer rows than the smallest of the step model's tiles (a decode step's
    batch) runs on tiles of `SKINNY_TILE_M` rows, the tensor cores' smallest MMA height, with split-K filling
    the SMs [7]. Fused attention runs at the device's forward flash fraction.
    """
    if op.flash:
        return dev.flash_fwd_fraction
    if op.gemm_shape is None:
        return 1.0  # memory-bound: no arithmetic worth pricing
    m = op.gemm_shape[0]
    if dev.tile_quantization and m < min(tm for tm, _ in TILE_SHAPES):
        return dev.gemm_peak_fraction * m / (SKINNY_TILE_M * math.ceil(m / SKINNY_TILE_M))  # [7] row padding
    return training_op_efficiency(op, dev)  # the training step model's rule (`perf.step.op_efficiency`)


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
                             max_batch(cfg, setup, gpu.memory_bytes), max_seq_tokens(cfg, setup, gpu.memory_bytes),
                             one_sequence_fixes(cfg, setup, gpu))
