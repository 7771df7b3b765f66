"""Time of one training step: the sum of its operations, each priced by a roofline, plus what is not hidden.

step_s = sum over ops of count x max(FLOPs / (peak x efficiency), bytes / (bandwidth x efficiency), kernel floor)
         + exposed data-parallel communication + the slowdown of the compute beside the hidden rest
         (`flopscalc.perf.parallel`, `CommEstimate.cost_s`) + optimizer offload (`flopscalc.perf.offload`).

GEMM efficiency = the device's best GEMM fraction of peak x tile and wave quantization (`gemm.py`) x the fitted
sustained fraction (`op_kinds.SUSTAINED_FRACTION`), a 16-bit GEMM with a misaligned operand at no more than the
device's measured rate for it unless the framework pads the shapes (`op_efficiency`, `StepOptions.gemm_shape_padding`); fused attention runs at the device's flash fraction for the kernel
that runs (FlashAttention-2 or its Triton version: `op_kinds.AttentionKernel`); memory-bound kernels at the achievable
DRAM bandwidth.

MFU counts model FLOPs only, with the attention core over causal pairs (llm.c's ``gpt2_estimate_mfu``:
6N + 6LCT per token, the work a causal model needs); HFU counts what the kernels execute: recomputation,
FlashAttention's backward recomputation of Q K^T ([1] Alg. 2), and the full T x T on the spelled-out path.
Both divide by peak x step time, so MFU <= HFU <= 1.

References
----------
[1] Dao 2023, "FlashAttention-2", arXiv:2307.08691, Algorithm 2.
[2] Chowdhery et al. 2022, "PaLM", arXiv:2204.02311, App. B (MFU and HFU).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from ..errors import DomainError
from ..flops import Recompute, training_flops_per_token
from ..hardware import GpuSpec, Precision
from ..memory.precision import MATMUL_PRECISION, MemoryPrecision
from ..memory.settings import LossKernel, TrainingSetup, grad_wire_bytes_per_param
from ..model import ModelConfig, count_params, default_train_seq, params_outside_blocks
from .block_ops import kernel_head_dim
from .device import TRITON_BWD_SLOWDOWN, TRITON_FWD_SLOWDOWN, DevicePerf, device_perf
from .fabric import gpu_fabric
from .gemm import gemm_efficiency
from .offload import OffloadTime, host_link_bytes_per_s, offload_time
from .op_kinds import AttentionKernel, Op, OpClass, Phase, StepOptions
from .ops import backward_ops, forward_ops, recompute_ops, update_ops
from .parallel import CommEstimate, data_parallel_comm, fsdp_unit_count, hiding_window_s
from .roofline import roofline_s
from .utilization import causal_model_flops_per_token, model_flops_utilization

CLASS_ORDER = ("gemm", "attention", "memory-bound", "optimizer", "communication exposed", "overlap slowdown",
               "offload")


@dataclass(frozen=True)
class PricedOp:
    op: Op
    efficiency: float  # fraction of the dense peak its arithmetic runs at (before the sustained fraction)
    seconds: float  # per occurrence; a GEMM's divided by the sustained fraction
    bound: str  # "compute", "memory" or "launch"

    @property
    def total_s(self) -> float:
        return self.seconds * self.op.count


@dataclass(frozen=True)
class StepEstimate:
    """Predicted time of one optimizer step on one GPU (all GPUs run in lockstep), and what follows from it."""

    model: ModelConfig
    setup: TrainingSetup
    gpu: GpuSpec
    device: DevicePerf
    precision: Precision  # the peak used
    peak_flop_per_s: float
    ops: tuple[PricedOp, ...]
    comm: CommEstimate
    offload: OffloadTime
    options: StepOptions
    model_flops_per_token: float  # causal attention, no recomputation (MFU numerator)
    hardware_flops_per_token: float  # executed: recomputation, flash backward recompute (HFU numerator)
    # `class_seconds` as `estimate_step` summed it (the same additions, the passes' kept: `_priced_passes`); None:
    # summed from ``ops`` when asked
    op_class_seconds: tuple[float, ...] | None = field(default=None, compare=False, repr=False)

    @property
    def seq_len(self) -> int:
        return self.setup.seq_len or default_train_seq(self.model)

    @property
    def peak_memory_bytes(self) -> float:
        """Peak memory per GPU of this setup (`memory.estimate_memory`): a time is no use if the step cannot run."""
        from ..memory import estimate_memory

        return estimate_memory(self.model, self.setup).peak_bytes

    @property
    def fits(self) -> bool:
        """Whether the peak fits the GPU's memory (no headroom: the planner keeps its own)."""
        return self.peak_memory_bytes <= self.gpu.memory_bytes

    @property
    def class_seconds(self) -> dict[str, float]:
        """Seconds per step by operation class, in `CLASS_ORDER`."""
        if self.op_class_seconds is not None:
            out = dict(zip(CLASS_ORDER, self.op_class_seconds))
        else:
            out = {c: 0.0 for c in CLASS_ORDER}
            for p in self.ops:
                out[p.op.op_class.value] += p.total_s
        out["communication exposed"] = self.comm.exposed_s
        out["overlap slowdown"] = self.comm.slowdown_s  # compute slowed by the hidden collectives (`perf.parallel` [11])
        out["offload"] = self.offload.total_s
        return out

    @property
    def step_s(self) -> float:
        return sum(self.class_seconds.values())

    @property
    def tokens_per_step_per_gpu(self) -> int:
        return self.setup.micro_batch * self.seq_len * self.setup.grad_accum

    @property
    def tokens_per_step(self) -> int:
        """Tokens of one optimizer step over all data-parallel GPUs."""
        return self.tokens_per_step_per_gpu * self.setup.n_gpus

    @property
    def tokens_per_s(self) -> float:
        """Training throughput of the whole run, all GPUs (tokens/s)."""
        return self.tokens_per_step / self.step_s

    @property
    def tokens_per_s_per_gpu(self) -> float:
        return self.tokens_per_step_per_gpu / self.step_s

    @property
    def mfu(self) -> float:
        """Model FLOPs per second over the dense peak ([2] App. B)."""
        return model_flops_utilization(self.model_flops_per_token, self.tokens_per_s_per_gpu, 1, self.peak_flop_per_s)

    @property
    def hfu(self) -> float:
        """Executed FLOPs per second over the dense peak ([2] App. B), recomputation included."""
        return model_flops_utilization(self.hardware_flops_per_token, self.tokens_per_s_per_gpu, 1,
                                       self.peak_flop_per_s)

    @property
    def unaligned_gemms(self) -> tuple[PricedOp, ...]:
        """The GEMMs this step prices with cuBLAS's unaligned kernels (`runs_unaligned`: 16-bit, a misaligned operand,
        shapes not padded, a device with a measured rate for them), in step order; () when there are none."""
        eager = not self.options.gemm_shape_padding
        return tuple(p for p in self.ops if runs_unaligned(p.op, self.device, misaligned_kernels=eager))


@lru_cache(maxsize=65536)  # a pure function; a planner's setups of one model share most of their operations
def _price(op: Op, dev: DevicePerf, peak: float, bandwidth: float, sustained: float,
           kernel: AttentionKernel = AttentionKernel.flash2, misaligned_kernels: bool = False) -> PricedOp:
    """``op``'s time on ``dev``; ``sustained`` scales the GEMMs only: the fraction is fitted on rows whose time is
    80-95% GEMMs (docs/performance_model.md), so it is identified for them; the fused attention and the
    memory-bound kernels run at their own sourced rates (`perf.device`). ``misaligned_kernels``: see
    `op_efficiency`."""
    eff = op_efficiency(op, dev, kernel, misaligned_kernels=misaligned_kernels)
    gemm = op.gemm_shape is not None and not op.flash
    return priced_at(op, dev, eff, peak, bandwidth, sustained=sustained if gemm else 1.0)


def op_efficiency(op: Op, dev: DevicePerf, kernel: AttentionKernel = AttentionKernel.flash2, *,
                  misaligned_kernels: bool = False) -> float:
    """Fraction of the dense peak ``op``'s arithmetic runs at on ``dev``: the fused attention at the device's flash
    fraction for ``kernel``, a GEMM at the GEMM fraction times tile and wave quantization where the device has them,
    1 for memory-bound kernels. The one place the rule lives (training here, inference in `perf.inference`).

    With ``misaligned_kernels`` (eager PyTorch: `StepOptions.gemm_shape_padding` off), a GEMM with a misaligned
    operand (``op.misaligned``) runs no faster than the device's measured rate for such GEMMs
    (``dev.misaligned_gemm_fraction``, `gemm` [3], [4]), where the device has one."""
    if op.flash:
        backward = op.phase is Phase.backward
        eff = dev.flash_bwd_fraction if backward else dev.flash_fwd_fraction
        if kernel is AttentionKernel.triton:  # FlashAttention-2 paper sec. 4.1 (`perf.device` [2a])
            eff /= TRITON_BWD_SLOWDOWN if backward else TRITON_FWD_SLOWDOWN
        if op.head_dim is not None:  # ops [16]: the tiles span the kernel's head dimension, the model's is less
            eff *= op.head_dim / kernel_head_dim(op.head_dim, kernel)
        return eff
    if op.gemm_shape is not None:
        m, n, k, batch = op.gemm_shape
        eff = dev.gemm_peak_fraction * (gemm_efficiency(m, n, k, dev.n_sm, batch=batch) if dev.tile_quantization
                                        else 1.0)
        if runs_unaligned(op, dev, misaligned_kernels=misaligned_kernels):
            return min(eff, dev.misaligned_gemm_fraction)  # gemm [4]: the align1 kernel's measured rate
        return eff
    return 1.0  # no arithmetic worth pricing: memory-bound


def runs_unaligned(op: Op, dev: DevicePerf, *, misaligned_kernels: bool) -> bool:
    """Whether `op_efficiency` prices ``op`` at ``dev``'s unaligned-kernel rate: a GEMM with a misaligned 16-bit
    operand (``op.misaligned``), shapes handed to cuBLAS as they are (``misaligned_kernels``: eager PyTorch), on a
    device with a measured rate for such GEMMs (``dev.misaligned_gemm_fraction``, `gemm` [4])."""
    return (misaligned_kernels and op.gemm_shape is not None and not op.flash and op.misaligned
            and dev.misaligned_gemm_fraction is not None)


def priced_at(op: Op, dev: DevicePerf, eff: float, peak: float, bandwidth: float, *, sustained: float = 1.0,
              bandwidth_share: float = 1.0) -> PricedOp:
    """``op`` run at ``eff`` of ``peak`` and ``dev``'s share (times ``bandwidth_share``) of ``bandwidth``: the
    roofline with ``op.kernels`` launch floors (`roofline_s`), over ``sustained``, and which limit binds.

    The one pricing step training (`_price`) and inference (`perf.inference.price_op`) share; they differ only
    in the efficiency they pass and in ``sustained`` (training) or ``bandwidth_share`` (dequantizing GEMMs).
    """
    rate, bw = peak * eff, bandwidth * dev.mem_bandwidth_fraction * bandwidth_share
    floor_s = op.kernels * dev.kernel_min_s
    compute_s, memory_s = op.flops / rate, op.bytes_moved / bw
    seconds = float(roofline_s(op.flops, op.bytes_moved, rate, bw, min_s=floor_s)) / sustained
    bound = "launch" if floor_s > max(compute_s, memory_s) else ("compute" if compute_s >= memory_s else "memory")
    return PricedOp(op, eff, seconds, bound)


def price_ops(ops, gpu: GpuSpec, precision: MemoryPrecision, options: StepOptions | None = None, *,
              device: DevicePerf | None = None) -> tuple[PricedOp, ...]:
    """Price ``ops`` on ``gpu`` as `estimate_step` prices its own (for op lists built elsewhere: fine-tuning)."""
    options = options or StepOptions()
    if gpu.memory_bandwidth_bytes_per_s is None:
        raise DomainError(f"{gpu.name} has no memory bandwidth in the GPU database; the step-time model "
                          "needs it for memory-bound kernels (add memory_bandwidth_gb_per_s with --gpu-csv)")
    dev = device or device_perf(gpu)
    peak = gpu.peak_flop_per_s(MATMUL_PRECISION[precision])
    return tuple(_price(op, dev, peak, gpu.memory_bandwidth_bytes_per_s, options.sustained, options.attention_kernel,
                        not options.gemm_shape_padding) for op in ops)


_BACKWARD = (Phase.backward, Phase.recompute)


@lru_cache(maxsize=4096)  # a pure function of these; a planner prices the passes' parts under several recomputations
def _priced_part(part, cfg: ModelConfig, seq: int, micro_batch: int, grad_accum: int, precision: MemoryPrecision,
                 recompute: Recompute, flash: bool, dropout: bool, fused_loss: bool, loss_kernel: LossKernel,
                 metric_ce_passes: int, attention_kernel: AttentionKernel, sustained: float, dev: DevicePerf,
                 peak: float, bandwidth: float, misaligned_kernels: bool = False,
                 sixteen_bit_weights: bool = False) -> tuple[PricedOp, ...]:
    """The ops of ``part`` (`ops.forward_ops`, `recompute_ops` or `backward_ops`) of a setup with these fields
    (`ops.PASS_FIELDS`, `ops.PASS_OPTION_FIELDS`), each priced by `_price` with the kernel and fraction given.
    ZeRO, offload and a 16-bit base reach the passes only through the residual stream's dtype (block_ops [20]:
    ``sixteen_bit_weights``, `StepOptions.half_weights`)."""
    setup = TrainingSetup(micro_batch=micro_batch, seq_len=seq, precision=precision, recompute=recompute, flash=flash,
                          grad_accum=grad_accum, dropout=dropout, fused_loss=fused_loss, loss_kernel=loss_kernel)
    options = StepOptions(metric_ce_passes=metric_ce_passes, gemm_shape_padding=not misaligned_kernels,
                          half_weights=sixteen_bit_weights)
    price = _price.__wrapped__  # the part is kept: its ops are rarely asked for again, so not each one
    return tuple(price(op, dev, peak, bandwidth, sustained, attention_kernel, misaligned_kernels)
                 for op in part(cfg, setup, options))


@lru_cache(maxsize=4096)  # a pure function of these; a planner prices many setups that share them
def _priced_passes(cfg: ModelConfig, seq: int, micro_batch: int, grad_accum: int, precision: MemoryPrecision,
                   recompute: Recompute, flash: bool, dropout: bool, fused_loss: bool, loss_kernel: LossKernel,
                   metric_ce_passes: int, attention_kernel: AttentionKernel, sustained: float, dev: DevicePerf,
                   peak: float, bandwidth: float, misaligned_kernels: bool = False, sixteen_bit_weights: bool = False
                   ) -> tuple[tuple[PricedOp, ...], tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """`ops.pass_ops` of a setup with these fields (`ops.PASS_FIELDS`, `ops.PASS_OPTION_FIELDS`), each priced by
    `_price` (the fused attention at ``attention_kernel``'s rate, the GEMMs over ``sustained``, the misaligned ones at
    the device's misaligned rate with ``misaligned_kernels``: the options the pricing reads), in order (the forward
    and backward once for every recomputation: `_priced_part`), and the sums `estimate_step` starts from: the times
    of the ops outside the optimizer step, of the backward ones, and `StepEstimate.class_seconds`'s running sums per
    class of CLASS_ORDER. (A tuple, not a dataclass: this module
    is on the start-up path.)"""
    key = (cfg, seq, micro_batch, grad_accum, precision)
    rest = (flash, dropout, fused_loss, loss_kernel, metric_ce_passes, attention_kernel, sustained, dev, peak,
            bandwidth, misaligned_kernels, sixteen_bit_weights)
    priced = (_priced_part(forward_ops, *key, Recompute.none, *rest)
              + (_priced_part(recompute_ops, *key, recompute, *rest) if recompute is not Recompute.none else ())
              + _priced_part(backward_ops, *key, Recompute.none, *rest))
    by_class = {c: 0.0 for c in CLASS_ORDER}
    busy, backward = [], []
    for p in priced:  # one pass: `_value_` is the enum's value without its property's cost
        op, total_s = p.op, p.total_s
        by_class[op.op_class._value_] += total_s
        if op.phase is not Phase.step:
            busy.append(total_s)
        if op.phase in _BACKWARD:
            backward.append(total_s)
    return priced, tuple(busy), tuple(backward), tuple(by_class.values())


def _flops_per_token(cfg: ModelConfig, setup: TrainingSetup) -> tuple[float, float]:
    """(model, hardware) FLOPs per token: causal model FLOPs; executed FLOPs with every recomputation."""
    return _flops_per_token_of(cfg, setup.seq_len or default_train_seq(cfg), setup.recompute, setup.flash)


@lru_cache(maxsize=4096)  # a pure function of these four; a planner prices many setups that share them
def _flops_per_token_of(cfg: ModelConfig, seq: int, recompute: Recompute, flash: bool) -> tuple[float, float]:
    model = causal_model_flops_per_token(cfg, seq)
    executed = training_flops_per_token(cfg, seq, recompute=recompute, causal=flash)
    return model, executed.executed_flops_per_token(flash)  # [1] Alg. 2: flash's backward recomputes S = Q K^T


def estimate_step(cfg: ModelConfig, setup: TrainingSetup, gpu: GpuSpec,
                  options: StepOptions | None = None, *, device: DevicePerf | None = None) -> StepEstimate:
    """Predict the time of one optimizer step of ``cfg`` trained with ``setup`` on ``gpu`` GPUs.

    Whether the loss is fused and dropout runs come from ``setup`` (where the memory engine reads them too);
    ``options`` names the kernels and the sustained fraction."""
    options = options or StepOptions()
    seq = setup.seq_len or default_train_seq(cfg)
    if cfg.seq_limited_by_context and seq > cfg.block_size:  # only a learned position table stops it
        from ..errors import UsageError

        raise UsageError(f"sequence length {seq} is longer than the model's learned position table "
                         f"({cfg.block_size}); pass a shorter --seq")
    dev = device or device_perf(gpu)
    precision = MATMUL_PRECISION[setup.precision]
    peak = gpu.peak_flop_per_s(precision)
    if gpu.memory_bandwidth_bytes_per_s is None:
        raise DomainError(f"{gpu.name} has no memory bandwidth in the GPU database; the step-time model "
                          "needs it for memory-bound kernels (add memory_bandwidth_gb_per_s with --gpu-csv)")
    if not 0 < options.sustained <= 1:
        from ..errors import UsageError

        raise UsageError(f"sustained fraction must be in (0, 1], got {options.sustained!r}; 1 gives the unfitted model")
    bandwidth = gpu.memory_bandwidth_bytes_per_s
    # the passes (`ops.pass_ops`) depend on these fields only, so the setups a planner compares (optimizers, ZeRO
    # stages, offload, GPU counts) share them; the update ops after them are priced per setup
    passes, busy, backward, class_s = _priced_passes(cfg, seq, setup.micro_batch, setup.grad_accum, setup.precision,
                                                     setup.recompute, setup.flash, setup.dropout, setup.fused_loss,
                                                     setup.loss_kernel, options.metric_ce_passes,
                                                     options.attention_kernel, options.sustained, dev, peak,
                                                     bandwidth, not options.gemm_shape_padding,
                                                     setup.deepspeed_style or options.half_weights)
    update = tuple(_price(op, dev, peak, bandwidth, options.sustained, options.attention_kernel,
                          not options.gemm_shape_padding) for op in update_ops(cfg, setup, options))
    priced = passes + update
    # gradients reduce after the last micro-batch's backward (DDP no_sync, ZeRO-1), after every micro-batch's where
    # they are sharded (ZeRO-2); ZeRO-3 gathers overlap every pass (`parallel.hiding_window_s`)
    # (each sum over the same op times in the same order as over ``priced``: the passes' are kept)
    per_micro = sum(busy + tuple(p.total_s for p in update if p.op.phase is not Phase.step)) / setup.grad_accum
    backward_s = sum(backward + tuple(p.total_s for p in update if p.op.phase in _BACKWARD)) / setup.grad_accum
    hide_s = hiding_window_s(setup.zero_stage, setup.grad_accum, backward_s, per_micro)
    half = setup.precision is not MemoryPrecision.fp32
    grad_bytes = grad_wire_bytes_per_param(setup)  # ZeRO's 2 bytes under mixed precision, as the planner
    # the device's network share where it states one (a published run's network), the cluster's network where the
    # options name one, else the GPU's default fabric
    own = {} if dev.network_bus_efficiency is None else {"network_efficiency": dev.network_bus_efficiency}
    links = ({"gpu": gpu} if setup.n_gpus == 1 or (not own and options.network_bytes_per_s is None) else
             {"fabric": gpu_fabric(gpu, setup.n_gpus, **own, cluster_network_bytes_per_s=options.network_bytes_per_s)})
    # ZeRO-3 runs as FSDP with one unit per block (`flopscalc train`, and every published ZeRO-3 run validated):
    # one collective per unit, not DeepSpeed's buckets (`parallel` [12])
    comm = data_parallel_comm(count_params(cfg).total, setup.n_gpus, setup.zero_stage, **links,
                              backward_s=hide_s, grad_bytes_per_param=grad_bytes,
                              param_bytes_per_param=2.0 if half else 4.0, grad_accum=setup.grad_accum,
                              root_params=params_outside_blocks(cfg),
                              fsdp_units=fsdp_unit_count(cfg.n_layer, setup.zero_stage))
    off = offload_time(cfg, setup, link_bytes_per_s=host_link_bytes_per_s(gpu))
    model, hardware = _flops_per_token(cfg, setup)
    by_class = dict(zip(CLASS_ORDER, class_s))  # `StepEstimate.class_seconds`'s loop, continued
    for p in update:
        by_class[p.op.op_class.value] += p.total_s
    return StepEstimate(cfg, setup, gpu, dev, precision, peak, priced, comm, off, options, model, hardware,
                        tuple(by_class.values()))


def recompute_floor_s(cfg: ModelConfig, setup: TrainingSetup, gpu: GpuSpec) -> float:
    """A lower bound on what ``setup``'s recomputation adds to its `estimate_step` time (s, default options, the
    device's own figures): the recomputed FLOPs (`ops.recompute_ops` executes exactly `_flops_per_token_of`'s
    difference) at the fastest rate any op with FLOPs runs, the device's GEMM or flash fraction of the peak
    (`op_efficiency`; `priced_at` only slows them: tile and wave quantization, the sustained fraction, the memory
    roof, launch floors). Every other op of the step is the same or, for autocast's casts, more."""
    seq = setup.seq_len or default_train_seq(cfg)
    dev = device_perf(gpu)
    fastest = max(dev.gemm_peak_fraction, dev.flash_fwd_fraction, dev.flash_bwd_fraction)
    extra = (_flops_per_token_of(cfg, seq, setup.recompute, setup.flash)[1]
             - _flops_per_token_of(cfg, seq, Recompute.none, setup.flash)[1])  # per token
    peak = gpu.peak_flop_per_s(MATMUL_PRECISION[setup.precision])
    return extra * setup.micro_batch * seq * setup.grad_accum / (peak * fastest)


def constant_mfu_tokens_per_s_per_gpu(cfg: ModelConfig, seq_len: int, gpu: GpuSpec, precision: Precision,
                                      mfu: float = 0.4) -> float:
    """Tokens/s per GPU if the GPU delivered ``mfu`` of its peak as model FLOPs (the planner's old constant)."""
    return mfu * gpu.peak_flop_per_s(precision) / causal_model_flops_per_token(cfg, seq_len)


__all__ = [
    "CLASS_ORDER",
    "OpClass",
    "PricedOp",
    "Recompute",
    "StepEstimate",
    "causal_model_flops_per_token",
    "constant_mfu_tokens_per_s_per_gpu",
    "estimate_step",
    "price_ops",
    "recompute_floor_s",
]
