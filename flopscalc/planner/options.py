"""One candidate model under a budget: the training setup that fits, its speed, its tokens and its loss.

The planner (``planner/search.py``) calls `_evaluate` for a handful of model sizes around the scaling law's
compute-optimal N and for the GPT-2 presets, then recommends the one with the lowest predicted loss among
those that fit. Everything here is a pure function of frozen inputs.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..flops import Recompute, training_flops_per_token
from ..hardware import GpuSpec, Precision
from ..memory import MemoryPrecision, Optimizer, TrainingSetup, estimate_memory, max_micro_batch
from ..memory.fit import fits
from ..memory.settings import (  # MEMORY_PRECISION re-exported: the planner modules import it from here
    MEMORY_PRECISION,
    grad_wire_bytes_per_param,
    with_micro_batch,
)
from ..model import PRESETS, ModelConfig, count_params
from ..perf.offload import OffloadTime, host_link_bytes_per_s, offload_time
from ..perf.parallel import CommEstimate, data_parallel_comm, scaling_efficiency

if TYPE_CHECKING:
    from .growth import BatchGrowth

# Tokens per optimizer step by model size, from GPT-3's Table 2.1 (Brown et al. 2020): 0.5M tokens for
# 125M-760M, 1M for 1.3B-2.7B, 2M for 6.7B-13B, 3.2M at 175B; bounds between rows at round numbers
# (upper N bound, tokens per step).
GPT3_TOKENS_PER_STEP = ((1.0e9, 2**19), (4.0e9, 2**20), (5.0e10, 2**21), (math.inf, 3 * 2**20))
# The setups searched (issue 14): every combination of recomputation, optimizer and optimizer offload, and of
# ZeRO stage when there are several GPUs; each at the largest micro-batch that fits and divides the batch. The
# one with the least predicted time per step wins (`throughput`). Selective recompute costs ~2.7% and full
# ~36% more compute (Korthikanti et al. 2022, Table 4); ZeRO 1-2 move the same bytes as DDP (Rajbhandari et al.
# 2020 sec. 7.2.1), ZeRO-3 1.5x; offload moves the optimizer step to the CPU (Ren et al. 2021). Offload keeps
# AdamW: the states then sit in CPU memory, so 8-bit ones would free no GPU memory, and the CPU optimizer that
# offload runs (DeepSpeed's CPU Adam, Ren et al. 2021 sec. 5) keeps fp32 states. ZeRO on one GPU shards nothing,
# so one GPU searches stage 0 only.
RECOMPUTE_SEARCHED = (Recompute.none, Recompute.selective, Recompute.full)
OPTIMIZERS_SEARCHED = ((Optimizer.adamw, False), (Optimizer.adamw8bit, False), (Optimizer.adamw, True))
ZERO_STAGES_SEARCHED = (0, 1, 2, 3)
# Step times within this fraction of the fastest are a tie, broken toward the simpler setup (`_simplicity`): far
# below the error of any step-time model here (docs/performance_model.md, 89 held-out published runs: median 11%
# per-operation, 18.5% at a constant MFU), so no setup that needs DeepSpeed or bitsandbytes is chosen to gain
# less than the model can resolve.
TIE_REL = 0.005


def searched_setups(n_gpus: int) -> tuple[dict, ...]:
    """Every flag combination the search tries on ``n_gpus`` GPUs, as `TrainingSetup` keyword arguments."""
    return tuple(dict(f) for f in _searched(n_gpus > 1))


@lru_cache(maxsize=2)
def _searched(several_gpus: bool) -> tuple[dict, ...]:
    stages = ZERO_STAGES_SEARCHED if several_gpus else (0,)
    return tuple({"recompute": rc, "optimizer": opt, "offload_optimizer": off, "zero_stage": z}
                 for z in stages for rc in RECOMPUTE_SEARCHED for opt, off in OPTIMIZERS_SEARCHED)


@lru_cache(maxsize=4096)  # every model of a plan searches the same setups
def _flagged(base: TrainingSetup, index: int) -> TrainingSetup:
    """``base`` with the flags of `searched_setups(base.n_gpus)[index]`, kept."""
    return replace(base, **_searched(base.n_gpus > 1)[index])


@lru_cache(maxsize=2)
def _simplicities(several_gpus: bool) -> tuple[tuple, ...]:
    """`_simplicity` of each of `searched_setups`, in order."""
    return tuple(_simplicity(f) for f in _searched(several_gpus))


def _simplicity(flags: dict) -> tuple:
    """Sort key among equally fast setups: what `flopscalc train` runs first, then fewer moving parts."""
    needs = tools_needed(TrainingSetup(optimizer=flags["optimizer"], zero_stage=flags["zero_stage"],
                                       offload_optimizer=flags["offload_optimizer"]))
    return (len(needs), flags["offload_optimizer"], flags["optimizer"] is not Optimizer.adamw,
            RECOMPUTE_SEARCHED.index(flags["recompute"]), flags["zero_stage"])


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


# Relative slack on a floor before it rules a setup out: the floor and the time it bounds add the same terms in
# other orders, so they may differ by rounding (~1e-15 relative), never by this much.
FLOOR_SLACK = 1e-9


def _recompute_floor(cfg: ModelConfig, setup: TrainingSetup, gpu: GpuSpec) -> float:
    from ..perf.step import recompute_floor_s  # here: `perf` is slow to import

    return recompute_floor_s(cfg, setup, gpu)


# Memory kept free when planning: the estimator's stated accuracy target is 10% of the measured peak
# (issue 3); half of that as margin keeps plans from sitting on the edge of the card.
PLAN_MEMORY_HEADROOM = 0.05
# A preset is "nearest" only within this factor in parameters: the presets themselves are spaced by about 2x
# (124M, 355M, 774M, 1.56B), so beyond it the name would describe a different model (a 32.7B model is not
# "nearly gpt2-xl").
NEAREST_PRESET_FACTOR = 2.0
# Most GPUs searched when a model fits none of the given count.
MAX_GPUS_SEARCHED = 4096


@lru_cache(maxsize=4096)
def _n_params(cfg: ModelConfig) -> int:
    """All parameters of ``cfg`` (`count_params`), kept: the search asks for them dozens of times per model."""
    return count_params(cfg).total


def target_tokens_per_step(n_params: float) -> int:
    """Tokens per optimizer step for a model of ``n_params`` parameters (GPT-3 Table 2.1)."""
    return next(tokens for bound, tokens in GPT3_TOKENS_PER_STEP if n_params < bound)


def nearest_preset(n_params: float, presets: dict[str, ModelConfig] | None = None) -> str | None:
    """The preset of ``presets`` (default: GPT-2's) closest in log(parameters), or None when none is within
    NEAREST_PRESET_FACTOR (or there are none)."""
    presets = PRESETS if presets is None else presets
    if not presets:
        return None
    name = min(presets, key=lambda k: abs(math.log(_n_params(presets[k]) / n_params)))
    ratio = _n_params(presets[name]) / n_params
    return name if 1 / NEAREST_PRESET_FACTOR <= ratio <= NEAREST_PRESET_FACTOR else None


@dataclass(frozen=True)
class ChosenSetup:
    """The training configuration that fits, and its shape of a step."""

    setup: TrainingSetup  # micro-batch, grad accumulation, precision, optimizer, recompute, ZeRO, offload
    peak_memory_bytes: float
    capacity_bytes: float
    max_micro_batch: int
    tokens_per_step: int
    cpu_offload_bytes: float = 0.0  # host memory per GPU for the offloaded optimizer (0 without offload)
    layout: object = None  # layout.Layout when the layout search chose it (`planner.layout`); None: data parallel
    layouts: object = field(default=None, compare=False, repr=False)  # layout.search.LayoutSearch: the ranking


def _per_gpu_batch(cfg: ModelConfig, seq_len: int, n_gpus: int, tokens_per_step: int | None = None) -> int:
    """Sequences per GPU per optimizer step: ``tokens_per_step`` (default GPT-3's), the same for every setup
    searched."""
    tokens = target_tokens_per_step(_n_params(cfg)) if tokens_per_step is None else tokens_per_step
    return max(1, tokens // (seq_len * n_gpus))


@lru_cache(maxsize=1024)  # a pure function; the plan asks again for the same model when it relaxes a constraint
def choose_setup(cfg: ModelConfig, gpu: GpuSpec, n_gpus: int, seq_len: int, precision: Precision,
                 capacity_bytes: float | None = None, efficiency: float | None = None,
                 tokens_per_step: int | None = None, time_model=None) -> ChosenSetup | None:
    """The fastest setup that fits ``gpu`` (or ``capacity_bytes``), sized to GPT-3's batch (or
    ``tokens_per_step``, rounded down to whole sequences per GPU); or None.

    Every combination of `searched_setups` is timed by the plan's ``time_model`` (`planner.speed.TimeModel`: the
    per-operation step-time model, or a constant efficiency), or, without one, by `throughput` at ``efficiency``
    (the GPU's hardware efficiency, default `budget.DEFAULT_MFU`), and the one with the least time per step (the
    tokens per step are the same for all) is chosen; setups within TIE_REL of it tie, and the simplest of them
    wins (`_simplicity`). For one combination the largest micro-batch that fits and divides the per-GPU batch is
    taken: at a constant efficiency it is never slower (compute per step does not depend on it, and a larger last
    micro-batch hides more communication behind its backward, with fewer accumulation steps to communicate for).
    In the per-operation model k times the micro-batch does k times the work per micro-batch at a GEMM efficiency
    that tile and wave quantization do not lower (ceil(k x) <= k ceil(x)), with weight casts, gradient
    accumulation and launches once instead of k times; but split-K can: a GEMM with fewer output tiles than SMs
    is split along k to fill them, and doubling its tiles may end the split (32 of 60 SMs busy instead of 48 of
    60). So for small models a smaller micro-batch can be a few percent faster (brute force over 40 GPT-2 shapes
    of 2-24 layers and random cases, tests/test_planner_perf.py: up to 8.9%); the search keeps the largest.
    Each combination is timed once, at that micro-batch; and as its time at the largest micro-batch any setup
    could fit (or the whole per-GPU batch at a constant efficiency) is a lower bound, combinations are visited by
    that bound and the search stops once the bound passes the best time found (plus TIE_REL).
    """
    from .budget import DEFAULT_MFU
    from .speed import PER_OPERATION, STATED, TimeModel, price_setup

    eff = DEFAULT_MFU if efficiency is None else efficiency
    tm = time_model if time_model is not None else TimeModel(STATED, eff)
    target = replace(gpu, memory_bytes=capacity_bytes) if capacity_bytes else gpu
    base = TrainingSetup(micro_batch=1, seq_len=seq_len, precision=MEMORY_PRECISION[precision], n_gpus=n_gpus,
                         grad_accum=2)  # accumulation keeps gradients alive through forward: the safe side
    want_micro = _per_gpu_batch(cfg, seq_len, n_gpus, tokens_per_step)
    tokens = want_micro * seq_len * n_gpus
    flag_sets = _searched(n_gpus > 1)  # each setup searched is `_flagged(base, i)` at some micro-batch
    fits_at: dict[int, int] = {}  # index of the flags -> largest micro-batch that fits (memory searched once)
    most = [want_micro]  # no setup fits more sequences than this: the lightest flags' largest, once known

    def mb_max_of(i: int) -> int:
        if i not in fits_at:
            if most[0] < want_micro:  # the whole batch cannot fit: search up to the most any setup fits
                fits_at[i] = max_micro_batch(cfg, _flagged(base, i), target, PLAN_MEMORY_HEADROOM, upper=most[0])
                return fits_at[i]
            # the peak grows with the micro-batch: one look when the whole batch fits
            whole = estimate_memory(cfg, with_micro_batch(_flagged(base, i), want_micro))
            fits_at[i] = (want_micro if fits(whole, target, PLAN_MEMORY_HEADROOM).fits
                          else max_micro_batch(cfg, _flagged(base, i), target, PLAN_MEMORY_HEADROOM, upper=want_micro))
        return fits_at[i]

    bound_micro = want_micro
    if not tm.constant:
        # Per-operation model: bound at the largest micro-batch any setup could run, not the whole batch, so the
        # bound is tight. Full recomputation keeps the fewest activations (`_lightest_flags`), so no setup fits a
        # larger micro-batch than the largest of those; every micro-batch the search can pick divides the lcm of
        # the batch's divisors up to it, at which the time is no more (see above; split-K aside).
        full = _lightest_flags(n_gpus)
        light = mb_max_of(full[-1])  # the last, with offload (and ZeRO-3), holds the least; the others cannot
        for i in full[:-1]:  # raise the largest unless one more sequence fits them (the peak grows with it)
            if light >= want_micro:
                break
            one_more = estimate_memory(cfg, with_micro_batch(_flagged(base, i), light + 1))
            if fits(one_more, target, PLAN_MEMORY_HEADROOM).fits:
                light = max(light, mb_max_of(i))
        if light < 1:
            return None
        most[0] = light
        bound_micro = math.lcm(*(d for d in _divisors(want_micro) if d <= light))

    def bound_of(i: int) -> float:
        whole = with_micro_batch(_flagged(base, i), bound_micro, want_micro // bound_micro)
        return price_setup(cfg, whole, tokens, gpu, precision, tm, eff).step_s

    # Bounds are priced lazily: recomputation only adds work (a second forward, or the attention core again)
    # and the communication it hides is at most that work, so a setup's bound without recomputation stands for
    # its bound with it until the search reaches it (which setup wins does not depend on the order of visits)
    plain = {i: bound_of(i) for i, f in enumerate(flag_sets) if f["recompute"] is Recompute.none}
    heap = []
    simplicity = _simplicities(n_gpus > 1)
    for i, flags in enumerate(flag_sets):
        j = next(j for j in plain if flag_sets[j] == {**flags, "recompute": Recompute.none})
        heapq.heappush(heap, (plain[j], simplicity[i], i, j == i))
    # On one GPU under the per-operation model a recomputing setup's bound is at least the plain one plus the
    # floor of what recomputation adds (`perf.step.recompute_floor_s`; no communication for it to hide): one
    # whose floor is already past the fastest found would never be timed, so it is dropped unpriced
    floored = tm.kind == PER_OPERATION and n_gpus == 1
    timed, fastest = [], math.inf
    while heap:
        bound, simple, i, exact = heapq.heappop(heap)
        if bound > fastest * (1 + TIE_REL):
            break  # nothing left can be faster, or tie and be simpler
        if not exact:
            if floored and (bound + _recompute_floor(cfg, with_micro_batch(
                    _flagged(base, i), bound_micro, want_micro // bound_micro), gpu)) * (1 - FLOOR_SLACK) > (
                    fastest * (1 + TIE_REL)):
                continue
            heapq.heappush(heap, (bound_of(i), simple, i, True))
            continue
        mb_max = mb_max_of(i)
        if mb_max < 1:
            continue
        # the largest micro-batch that fits and divides the per-GPU batch, so accumulation makes it up exactly
        micro = max(d for d in _divisors(want_micro) if d <= mb_max)
        setup = with_micro_batch(_flagged(base, i), micro, want_micro // micro)
        step_s = price_setup(cfg, setup, tokens, gpu, precision, tm, eff).step_s
        timed.append((step_s, simple, setup, mb_max))
        fastest = min(fastest, step_s)
    if not timed:
        return None
    # the simplest of the setups within TIE_REL of the fastest
    _, _, setup, mb_max = min((t for t in timed if t[0] <= fastest * (1 + TIE_REL)), key=lambda t: (t[1], t[0]))
    est = estimate_memory(cfg, setup)
    return ChosenSetup(setup, est.peak_bytes, target.memory_bytes, mb_max, tokens, est.cpu_offload_bytes)


@lru_cache(maxsize=256)
def _divisors(n: int) -> tuple[int, ...]:
    """The divisors of ``n``, ascending (the micro-batches that make up a per-GPU batch of ``n`` exactly)."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return tuple(sorted({*small, *(n // d for d in small)}))


def _lightest_flags(n_gpus: int) -> tuple[int, ...]:
    """The searched setups that can need the least memory (indices into `searched_setups`): full recomputation,
    which keeps the fewest activations, with every optimizer choice and ZeRO stage (ZeRO-3's gather buffers can
    outweigh what it shards for small models, so the top stage is not always the lightest)."""
    return tuple(i for i, f in enumerate(_searched(n_gpus > 1)) if f["recompute"] is Recompute.full)


def _lightest_peaks(cfg: ModelConfig, n_gpus: int, seq_len: int, precision: Precision,
                    highest_stage_first: bool = False):
    """Peak memory per GPU (bytes) at micro-batch 1 of each of `_lightest_flags`, lazily (in reverse order, ZeRO-3
    first, with ``highest_stage_first``)."""
    base = TrainingSetup(micro_batch=1, seq_len=seq_len, precision=MEMORY_PRECISION[precision], n_gpus=n_gpus,
                         grad_accum=2)
    light = _lightest_flags(n_gpus)
    return (estimate_memory(cfg, _flagged(base, i)).peak_bytes for i in (light[::-1] if highest_stage_first
                                                                         else light))


def lightest_peak_bytes(cfg: ModelConfig, n_gpus: int, seq_len: int, precision: Precision) -> float:
    """Peak memory per GPU of the lightest searched setup at micro-batch 1: the least any setup needs (bytes)."""
    return min(_lightest_peaks(cfg, n_gpus, seq_len, precision))


@lru_cache(maxsize=1024)  # a pure function, asked again when the plan relaxes a constraint
def min_gpus_to_fit(cfg: ModelConfig, gpu: GpuSpec, seq_len: int, precision: Precision,
                    capacity_bytes: float | None = None) -> int | None:
    """Fewest GPUs (powers of two) on which some searched setup fits; None beyond MAX_GPUS_SEARCHED."""
    cap = (capacity_bytes or gpu.memory_bytes) * (1 - PLAN_MEMORY_HEADROOM)
    n = 2
    while n <= MAX_GPUS_SEARCHED:
        # the highest ZeRO stages shard the most, so they are looked at first: the first that fits ends the look
        if any(peak <= cap for peak in _lightest_peaks(cfg, n, seq_len, precision, highest_stage_first=True)):
            return n
        n *= 2
    return None


class StepRates:
    """What both step speeds (`Throughput` here, `planner.layout.LayoutSpeed`) derive from their step the same way:
    rates, MFU, HFU and scaling efficiency. A subclass has ``step_s``, ``compute_s``, ``comm``,
    ``tokens_per_step``, ``model_flops_per_token``, ``hardware_flops_per_token``, ``n_gpus`` and
    ``peak_flop_per_s_per_gpu``."""

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

    @property
    def mfu(self) -> float:
        """Model FLOPs utilization: model FLOPs (no recomputation) over peak x step time (Chowdhery et al. 2022,
        App. B); the step time includes exposed communication and offload."""
        from ..perf.utilization import model_flops_utilization  # here: `perf` is slow to import

        return model_flops_utilization(self.model_flops_per_token, self.tokens_per_step / self.step_s, self.n_gpus,
                                       self.peak_flop_per_s_per_gpu)  # PaLM App. B

    @property
    def hfu(self) -> float:
        """Hardware FLOPs utilization: as `mfu` with recomputation counted (Korthikanti et al. 2022, sec. 5)."""
        from ..perf.utilization import model_flops_utilization  # here: `perf` is slow to import

        return model_flops_utilization(self.hardware_flops_per_token, self.tokens_per_step / self.step_s, self.n_gpus,
                                       self.peak_flop_per_s_per_gpu)  # Korthikanti et al. 2022, sec. 5


@dataclass(frozen=True)
class Throughput(StepRates):
    """Speed of one optimizer step on ``n_gpus`` GPUs."""

    compute_s: float  # per step, all micro-batches, hardware FLOPs at the hardware efficiency
    comm: CommEstimate
    tokens_per_step: int
    model_flops_per_token: float
    hardware_flops_per_token: float  # with recomputation
    hardware_efficiency: float  # hardware FLOP/s over peak while computing (= MFU of a step without recompute)
    offload: OffloadTime  # host link + CPU optimizer step under optimizer offload (zero without)
    n_gpus: int
    peak_flop_per_s_per_gpu: float  # dense peak at the plan's precision

    @property
    def step_s(self) -> float:
        return self.compute_s + self.comm.exposed_s + self.offload.total_s


@lru_cache(maxsize=1024)
def _training_flops(cfg: ModelConfig, seq_len: int, recompute: Recompute):
    """`training_flops_per_token`, kept: the search times dozens of setups of one model (a pure function)."""
    return training_flops_per_token(cfg, seq_len, recompute=recompute)


@lru_cache(maxsize=4096)
def _offload_time(cfg: ModelConfig, setup: TrainingSetup, link_bytes_per_s: float) -> OffloadTime:
    """`offload_time`, kept: the search prices each offloading setup of a model more than once (a pure function)."""
    return offload_time(cfg, setup, link_bytes_per_s=link_bytes_per_s)


def throughput(cfg: ModelConfig, setup: TrainingSetup, tokens_per_step: int, gpu: GpuSpec, precision: Precision,
               efficiency: float) -> Throughput:
    """Step time from FLOPs and efficiency, plus the communication backward does not hide and the host link
    and CPU optimizer step of offload (`flopscalc.perf.offload`).

    ``efficiency`` is the GPU's hardware efficiency while computing: the MFU of a step without recomputation,
    which is what `--mfu` and the default state. With recomputation the GPU runs the extra forward at the same
    rate, so the step's MFU drops by model/hardware FLOPs while its HFU stays (Korthikanti et al. 2022, sec. 5).
    """
    s = setup
    seq_len = s.seq_len
    mfu = efficiency
    flops = _training_flops(cfg, seq_len, s.recompute)
    peak = gpu.peak_flop_per_s(precision)
    tokens_per_gpu = tokens_per_step / s.n_gpus
    from ..perf.utilization import seconds_at_utilization  # here: `perf` is slow to import

    # per GPU (n_gpus=1): each GPU does its share of the step's FLOPs
    compute_s = seconds_at_utilization(tokens_per_gpu * flops.hardware_flops_per_token, 1, peak, mfu)
    backward_s = seconds_at_utilization(  # last micro-batch
        s.micro_batch * seq_len * flops.backward_flops_per_token, 1, peak, mfu)
    n = _n_params(cfg)
    comm = data_parallel_comm(
        n, s.n_gpus, s.zero_stage, gpu=gpu, backward_s=backward_s,
        grad_bytes_per_param=grad_wire_bytes_per_param(s),
        param_bytes_per_param=4.0 if s.precision is MemoryPrecision.fp32 else 2.0, grad_accum=s.grad_accum,
    )
    return Throughput(compute_s, comm, tokens_per_step, flops.model_flops_per_token,
                      flops.hardware_flops_per_token, efficiency,
                      _offload_time(cfg, s, host_link_bytes_per_s(gpu)), s.n_gpus, peak)


# The budgets for which the batch may grow to hide communication: those where a faster step buys more tokens (a
# time or money budget) or an earlier finish (a target loss). A FLOP budget or fixed tokens buys no more tokens
# from speed, so a larger batch there would only make each token worth less (Kaplan et al. 2020, eq. 5.5).
GROW_BATCH_KINDS = ("time", "money", "target")


@dataclass(frozen=True)
class PlanOption:
    """A model size evaluated under the budget: setup, speed, tokens, predicted loss."""

    model: ModelConfig
    n_params: int
    nearest_preset: str | None  # None when no preset is within NEAREST_PRESET_FACTOR
    chosen: ChosenSetup | None  # None: fits no setup on the given GPUs
    min_gpus: int | None  # fewest GPUs that would hold it, when ``chosen`` is None
    speed: Throughput | None
    n_tokens: float  # tokens trained within the budget (0 when it does not fit)
    train_time_s: float  # wall-clock time of training those tokens
    loss: float | None  # predicted loss (nats/token) under the plan's law
    effective_tokens: float | None  # data-constrained effective tokens when the dataset is limited
    unique_tokens: float | None
    batch: BatchGrowth | None = None  # set when the batch grew past GPT-3's to hide communication

    @property
    def fits(self) -> bool:
        return self.chosen is not None

    @property
    def tokens_per_param(self) -> float:
        return self.n_tokens / self.n_params

    @property
    def useful_tokens(self) -> float:
        """Tokens as worth at GPT-3's batch, what the law's loss is predicted on: ``n_tokens``, times
        `BatchGrowth.token_value` when the batch grew (Kaplan et al. 2020 eq. 5.5)."""
        return self.n_tokens if self.batch is None else self.n_tokens * self.batch.token_value

    @property
    def epochs(self) -> float | None:
        return None if self.unique_tokens is None else self.n_tokens / self.unique_tokens

    @property
    def model_flops(self) -> float:
        return 0.0 if self.speed is None else self.n_tokens * self.speed.model_flops_per_token

    @property
    def n_steps(self) -> int:
        """Optimizer steps: a run takes whole steps, so the last partial one counts."""
        if self.speed is None or not math.isfinite(self.n_tokens):
            return 0
        return math.ceil(self.n_tokens / self.speed.tokens_per_step - 1e-9)


def check_positive(value: float | None, what: str) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise UsageError(f"{what} must be a positive number, got {value}")


def __getattr__(name: str):
    """`BatchGrowth` and `grow_batch`, from `planner.growth` on first use (PEP 562): one GPU never grows its batch."""
    if name in ("BatchGrowth", "grow_batch"):
        from . import growth

        return getattr(growth, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
