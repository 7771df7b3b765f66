"""One candidate model under a budget: the training setup that fits, its speed, its tokens and its loss.

The planner (``planner.py``) calls `evaluate_option` for a handful of model sizes around the scaling law's
compute-optimal N and for the GPT-2 presets, then recommends the one with the lowest predicted loss among
those that fit. Everything here is a pure function of frozen inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .errors import UsageError
from .flops import Recompute, training_flops_per_token
from .hardware import GpuSpec, Precision
from .memory import MemoryPrecision, Optimizer, TrainingSetup, estimate_memory, max_micro_batch
from .model import PRESETS, ModelConfig, count_params
from .offload import OffloadTime, host_link_bytes_per_s, offload_time
from .parallel import CommEstimate, data_parallel_comm, scaling_efficiency

# Tokens per optimizer step by model size, from GPT-3's Table 2.1 (Brown et al. 2020): 0.5M tokens for
# 125M-760M, 1M for 1.3B-2.7B, 2M for 6.7B-13B, 3.2M at 175B; bounds between rows at round numbers
# (upper N bound, tokens per step).
GPT3_TOKENS_PER_STEP = ((1.0e9, 2**19), (4.0e9, 2**20), (5.0e10, 2**21), (math.inf, 3 * 2**20))
# Mixed-precision memory policy used for each compute precision the peak rate is read at.
MEMORY_PRECISION = {
    Precision.fp32: MemoryPrecision.fp32, Precision.tf32: MemoryPrecision.fp32,
    Precision.bf16: MemoryPrecision.bf16_mixed, Precision.fp16: MemoryPrecision.fp16_mixed,
    Precision.fp16_acc16: MemoryPrecision.fp16_mixed, Precision.fp8: MemoryPrecision.bf16_mixed,
}
# The ladder of setups tried in order until one fits: cheapest in speed first. Selective recompute costs
# ~2.7% and full ~36% more compute (Korthikanti et al. 2022, Table 4); ZeRO 1-2 move the same bytes as DDP
# (Rajbhandari et al. 2020 sec. 7.2.1); ZeRO-3 moves 1.5x; 8-bit Adam changes the optimizer; offload moves the
# optimizer step to the CPU (Ren et al. 2021). The offload rung goes back to AdamW: the states then sit in CPU
# memory, so 8-bit ones would free no GPU memory, and the CPU optimizer that offload runs (DeepSpeed's CPU Adam,
# Ren et al. 2021 sec. 5) keeps fp32 states.
LADDER_ONE_GPU = (
    dict(), dict(recompute=Recompute.selective), dict(recompute=Recompute.full),
    dict(recompute=Recompute.full, optimizer=Optimizer.adamw8bit),
    dict(recompute=Recompute.full, offload_optimizer=True),
)
LADDER_MANY_GPUS = (
    dict(), dict(zero_stage=1), dict(zero_stage=2), dict(zero_stage=2, recompute=Recompute.selective),
    dict(zero_stage=2, recompute=Recompute.full), dict(zero_stage=3, recompute=Recompute.full),
    dict(zero_stage=3, recompute=Recompute.full, optimizer=Optimizer.adamw8bit),
    dict(zero_stage=3, recompute=Recompute.full, offload_optimizer=True),
)


def tools_needed(setup: TrainingSetup) -> tuple[str, ...]:
    """What ``setup`` needs beyond `flopscalc train` (AdamW, fp32 or bf16 autocast, recomputation, DDP, FSDP)."""
    out = []
    if setup.optimizer is Optimizer.adamw8bit:
        out.append("8-bit AdamW (bitsandbytes AdamW8bit)")
    elif setup.optimizer not in (Optimizer.adamw, Optimizer.none):
        out.append(f"the {setup.optimizer.value} optimizer")
    if setup.precision in (MemoryPrecision.fp16_mixed, MemoryPrecision.bf16_pure):
        out.append(f"{setup.precision.value} training")
    if setup.zero_stage in (1, 2):
        out.append(f"ZeRO-{setup.zero_stage} (DeepSpeed)")
    if setup.offload_optimizer:
        out.append("optimizer offload (DeepSpeed ZeRO-Offload)")
    return tuple(out)


# Memory kept free when planning: the estimator's stated accuracy target is 10% of the measured peak
# (issue 3); half of that as margin keeps plans from sitting on the edge of the card.
PLAN_MEMORY_HEADROOM = 0.05
# Most GPUs searched when a model fits none of the given count.
MAX_GPUS_SEARCHED = 4096


def target_tokens_per_step(n_params: float) -> int:
    """Tokens per optimizer step for a model of ``n_params`` parameters (GPT-3 Table 2.1)."""
    return next(tokens for bound, tokens in GPT3_TOKENS_PER_STEP if n_params < bound)


def nearest_preset(n_params: float) -> str:
    """The GPT-2 preset closest in log(parameters)."""
    return min(PRESETS, key=lambda k: abs(math.log(count_params(PRESETS[k]).total / n_params)))


@dataclass(frozen=True)
class ChosenSetup:
    """The training configuration that fits, and its shape of a step."""

    setup: TrainingSetup  # micro-batch, grad accumulation, precision, optimizer, recompute, ZeRO, offload
    peak_memory_bytes: float
    capacity_bytes: float
    max_micro_batch: int
    tokens_per_step: int
    cpu_offload_bytes: float = 0.0  # host memory per GPU for the offloaded optimizer (0 without offload)


def choose_setup(cfg: ModelConfig, gpu: GpuSpec, n_gpus: int, seq_len: int, precision: Precision,
                 capacity_bytes: float | None = None) -> ChosenSetup | None:
    """The first setup of the ladder that fits ``gpu`` (or ``capacity_bytes``), sized to GPT-3's batch; or None."""
    target = replace(gpu, memory_bytes=capacity_bytes) if capacity_bytes else gpu
    base = TrainingSetup(micro_batch=1, seq_len=seq_len, precision=MEMORY_PRECISION[precision], n_gpus=n_gpus,
                         grad_accum=2)  # accumulation keeps gradients alive through forward: the safe side
    want_tokens = target_tokens_per_step(count_params(cfg).total)
    want_micro = max(1, want_tokens // (seq_len * n_gpus))
    ladder = LADDER_ONE_GPU if n_gpus == 1 else LADDER_MANY_GPUS
    if max_micro_batch(cfg, replace(base, **ladder[-1]), target, PLAN_MEMORY_HEADROOM, upper=1) < 1:
        return None  # not even the lightest rung fits one sequence
    for rung in ladder:
        trial = replace(base, **rung)
        mb_max = max_micro_batch(cfg, trial, target, PLAN_MEMORY_HEADROOM, upper=max(want_micro, 1))
        if mb_max < 1:
            continue
        # the largest micro-batch that fits and divides the per-GPU batch, so accumulation makes it up exactly
        micro = max(d for d in range(1, min(mb_max, want_micro) + 1) if want_micro % d == 0)
        accum = max(1, math.ceil(want_tokens / (micro * seq_len * n_gpus)))
        setup = replace(trial, micro_batch=micro, grad_accum=accum)
        est = estimate_memory(cfg, setup)
        return ChosenSetup(setup, est.peak_bytes, target.memory_bytes, mb_max, micro * accum * seq_len * n_gpus,
                           est.cpu_offload_bytes)
    return None


def lightest_peak_bytes(cfg: ModelConfig, n_gpus: int, seq_len: int, precision: Precision) -> float:
    """Peak memory per GPU of the last rung of the ladder at micro-batch 1: the least any setup needs (bytes)."""
    rung = (LADDER_ONE_GPU if n_gpus == 1 else LADDER_MANY_GPUS)[-1]
    return estimate_memory(cfg, TrainingSetup(micro_batch=1, seq_len=seq_len, precision=MEMORY_PRECISION[precision],
                                              n_gpus=n_gpus, **rung)).peak_bytes


def min_gpus_to_fit(cfg: ModelConfig, gpu: GpuSpec, seq_len: int, precision: Precision,
                    capacity_bytes: float | None = None) -> int | None:
    """Fewest GPUs (powers of two) on which some setup of the ladder fits; None beyond MAX_GPUS_SEARCHED."""
    target = replace(gpu, memory_bytes=capacity_bytes) if capacity_bytes else gpu
    n = 2
    while n <= MAX_GPUS_SEARCHED:
        lightest = TrainingSetup(micro_batch=1, seq_len=seq_len, precision=MEMORY_PRECISION[precision], n_gpus=n,
                                 grad_accum=2, **LADDER_MANY_GPUS[-1])
        if estimate_memory(cfg, lightest).peak_bytes <= target.memory_bytes * (1 - PLAN_MEMORY_HEADROOM):
            return n
        n *= 2
    return None


@dataclass(frozen=True)
class Throughput:
    """Speed of one optimizer step on ``n_gpus`` GPUs."""

    compute_s: float  # per step, all micro-batches, hardware FLOPs at the stated efficiency
    comm: CommEstimate
    tokens_per_step: int
    model_flops_per_token: float
    hardware_flops_per_token: float
    mfu_no_recompute: float  # the efficiency assumed for a step without recomputation
    offload: OffloadTime  # host link + CPU optimizer step under optimizer offload (zero without)

    @property
    def step_s(self) -> float:
        return self.compute_s + self.comm.exposed_s + self.offload.total_s

    @property
    def tokens_per_s(self) -> float:
        """Tokens per second while busy, all GPUs together."""
        return self.tokens_per_step / self.step_s

    @property
    def model_flop_per_s(self) -> float:
        """Model FLOPs per second while busy, all GPUs together."""
        return self.tokens_per_s * self.model_flops_per_token

    @property
    def scaling_efficiency(self) -> float:
        return scaling_efficiency(self.compute_s, self.comm)


def throughput(cfg: ModelConfig, chosen: ChosenSetup, gpu: GpuSpec, precision: Precision, mfu: float
               ) -> Throughput:
    """Step time from FLOPs and efficiency, plus the communication backward does not hide and the host link
    and CPU optimizer step of offload (`flopscalc.offload`).

    ``mfu`` is taken as the hardware efficiency of the GPU's matmuls: with recomputation the GPU does
    hardware FLOPs at that rate, so the model FLOPs rate drops by model/hardware (Korthikanti et al. 2022,
    sec. 5: MFU vs HFU).
    """
    s = chosen.setup
    seq_len = s.seq_len
    flops = training_flops_per_token(cfg, seq_len, recompute=s.recompute)
    peak = gpu.peak_flop_per_s(precision)
    tokens_per_gpu = chosen.tokens_per_step / s.n_gpus
    compute_s = tokens_per_gpu * flops.hardware_flops_per_token / (peak * mfu)
    backward_s = s.micro_batch * seq_len * flops.backward_flops_per_token / (peak * mfu)  # last micro-batch
    n = count_params(cfg).total
    mixed_zero = s.precision is not MemoryPrecision.fp32 and (s.zero_stage > 0)
    comm = data_parallel_comm(
        n, s.n_gpus, s.zero_stage, gpu.interconnect_bytes_per_s, backward_s=backward_s,
        grad_bytes_per_param=2.0 if mixed_zero or s.precision is MemoryPrecision.bf16_pure else 4.0,
        param_bytes_per_param=4.0 if s.precision is MemoryPrecision.fp32 else 2.0, grad_accum=s.grad_accum,
    )
    return Throughput(compute_s, comm, chosen.tokens_per_step, flops.model_flops_per_token,
                      flops.hardware_flops_per_token, mfu,
                      offload_time(cfg, s, link_bytes_per_s=host_link_bytes_per_s(gpu)))


@dataclass(frozen=True)
class PlanOption:
    """A model size evaluated under the budget: setup, speed, tokens, predicted loss."""

    model: ModelConfig
    n_params: int
    nearest_preset: str
    chosen: ChosenSetup | None  # None: fits no setup on the given GPUs
    min_gpus: int | None  # fewest GPUs that would hold it, when ``chosen`` is None
    speed: Throughput | None
    n_tokens: float  # tokens trained within the budget (0 when it does not fit)
    train_time_s: float  # wall-clock time of training those tokens
    loss: float | None  # predicted loss (nats/token) under the plan's law
    effective_tokens: float | None  # data-constrained effective tokens when the dataset is limited
    unique_tokens: float | None

    @property
    def fits(self) -> bool:
        return self.chosen is not None

    @property
    def tokens_per_param(self) -> float:
        return self.n_tokens / self.n_params

    @property
    def epochs(self) -> float | None:
        return None if self.unique_tokens is None else self.n_tokens / self.unique_tokens

    @property
    def model_flops(self) -> float:
        return 0.0 if self.speed is None else self.n_tokens * self.speed.model_flops_per_token

    @property
    def n_steps(self) -> float:
        return 0.0 if self.speed is None else self.n_tokens / self.speed.tokens_per_step


def check_positive(value: float | None, what: str) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise UsageError(f"{what} must be a positive number, got {value}")
