"""The setup search: the fastest training setup of one model that fits the GPUs (`choose_setup`), the flag
combinations it tries (`searched_setups`), and the fewest GPUs on which a plan finds a run for a model that fits
none (`min_gpus_to_plan`). The types it returns, the step speed and the option live in `planner.options`, which
re-exports these names. Everything here is a pure function of frozen inputs.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import replace
from functools import lru_cache

from ..flops import Recompute
from ..hardware import GpuSpec, Precision
from ..memory import MemoryPrecision, Optimizer, TrainingSetup, estimate_memory, max_micro_batch
from ..memory.fit import fits
from ..memory.precision import MEMORY_PRECISION
from ..memory.settings import FP32_BYTES, HALF_BYTES, with_micro_batch
from ..memory.workspace import BITSANDBYTES_OPTIMIZERS, gpu_setup_fields, runs_bitsandbytes_optimizers
from ..model import ModelConfig, count_params
from ..perf.fabric import GPUS_PER_NODE
from .options import MAX_GPUS_SEARCHED, PLAN_MEMORY_HEADROOM, ChosenSetup, _per_gpu_batch, usable_bytes

# The setups searched (issue 14): every combination of recomputation, optimizer and optimizer offload, and of
# ZeRO stage when there are several GPUs; each at the largest micro-batch that fits and divides the batch. The
# one with the least predicted time per step wins (`throughput`). Selective recompute costs ~2.7% and full
# ~36% more compute (Korthikanti et al. 2022, Table 4); ZeRO 1-2 move the same bytes as DDP (Rajbhandari et al.
# 2020 sec. 7.2.1), ZeRO-3 1.5x; offload moves the optimizer step to the CPU (Ren et al. 2021). Offload keeps
# AdamW: the states then sit in CPU memory, so 8-bit ones would free no GPU memory, and the CPU optimizer that
# offload runs (DeepSpeed's CPU Adam, Ren et al. 2021 sec. 5) keeps fp32 states. ZeRO on one GPU shards nothing,
# so one GPU searches stage 0 only. 8-bit AdamW is searched only where bitsandbytes' optimizers run
# (`memory.workspace.runs_bitsandbytes_optimizers`: not on TPUs, Trainium or Gaudi).
RECOMPUTE_SEARCHED = (Recompute.none, Recompute.selective, Recompute.full)
OPTIMIZERS_SEARCHED = ((Optimizer.adamw, False), (Optimizer.adamw8bit, False), (Optimizer.adamw, True))
ZERO_STAGES_SEARCHED = (0, 1, 2, 3)
# Step times within this fraction of the fastest are a tie, broken toward the simpler setup (`_simplicity`): far
# below the error of any step-time model here (docs/performance_model.md, "Held-out result": 138 published runs,
# median 3.5% per-operation (`speed.HELD_OUT_MEDIAN_ERROR`), 17.8% at a constant MFU of 0.4), so no setup that needs
# DeepSpeed or bitsandbytes is chosen to gain less than the model can resolve.
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
    # the flags alone (no setup: a ZeRO stage is searched on several GPUs, and a one-GPU ZeRO setup shards nothing);
    # the precision is the same for every searched flag set, so it moves no key
    needs = _tools_needed(flags["optimizer"], MemoryPrecision.bf16_mixed, flags["zero_stage"],
                          flags["offload_optimizer"])
    return (len(needs), flags["offload_optimizer"], flags["optimizer"] is not Optimizer.adamw,
            RECOMPUTE_SEARCHED.index(flags["recompute"]), flags["zero_stage"])


def tools_needed(setup: TrainingSetup) -> tuple[str, ...]:
    """What ``setup`` needs beyond `flopscalc train` (AdamW, fp32 or bf16 autocast, recomputation, DDP, FSDP)."""
    return _tools_needed(setup.optimizer, setup.precision, setup.zero_stage, setup.offload_optimizer)


def _tools_needed(optimizer: Optimizer, precision: MemoryPrecision, zero_stage: int, offload: bool) -> tuple[str, ...]:
    """`tools_needed` of the setup with these fields."""
    out = []
    if optimizer is Optimizer.adamw8bit:
        out.append("8-bit AdamW (bitsandbytes AdamW8bit)")
    elif optimizer not in (Optimizer.adamw, Optimizer.none):
        out.append(f"the {optimizer.value} optimizer")
    if precision in (MemoryPrecision.fp16_mixed, MemoryPrecision.bf16_pure):
        out.append(f"{precision.value} training")
    if zero_stage in (1, 2):
        out.append(f"ZeRO-{zero_stage} (DeepSpeed)")
    if offload:
        out.append("optimizer offload (DeepSpeed ZeRO-Offload)")
    return tuple(out)


# Relative slack on a floor before it rules a setup out: the floor and the time it bounds add the same terms in
# other orders, so they may differ by rounding (~1e-15 relative), never by this much.
FLOOR_SLACK = 1e-9


def _recompute_floor(cfg: ModelConfig, setup: TrainingSetup, gpu: GpuSpec) -> float:
    from ..perf.step import recompute_floor_s  # here: `perf` is slow to import

    return recompute_floor_s(cfg, setup, gpu)


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
                         grad_accum=LIGHTEST_GRAD_ACCUM,  # accumulation keeps gradients alive through forward
                         **gpu_setup_fields(gpu))  # its cuBLAS workspace and runtime (memory.workspace [1], [3])
    want_micro = _per_gpu_batch(cfg, seq_len, n_gpus, tokens_per_step)
    tokens = want_micro * seq_len * n_gpus
    flag_sets = _searched(n_gpus > 1)  # each setup searched is `_flagged(base, i)` at some micro-batch
    searched = _allowed(n_gpus > 1, runs_bitsandbytes_optimizers(gpu))  # indices of the flag sets this GPU runs
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
        full = _lightest_flags(n_gpus, runs_bitsandbytes_optimizers(gpu))
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
    plain = {i: bound_of(i) for i in searched if flag_sets[i]["recompute"] is Recompute.none}
    heap = []
    simplicity = _simplicities(n_gpus > 1)
    for i in searched:
        flags = flag_sets[i]
        j = next(j for j in plain if flag_sets[j] == {**flags, "recompute": Recompute.none})
        heapq.heappush(heap, (plain[j], simplicity[i], i, j == i))
    # On one GPU under the per-operation model a recomputing setup's bound is at least the plain one plus the
    # floor of what recomputation adds (`perf.step.recompute_floor_s`; no communication for it to hide): one
    # whose floor is already past the fastest found would never be timed, so it is dropped unpriced
    floored = tm.kind == PER_OPERATION and n_gpus == 1
    # each offloading flag set's counterpart with the optimizer on the GPU (offload only where it buys memory, below)
    on_gpu = {i: flag_sets.index({**f, "offload_optimizer": False}) for i, f in enumerate(flag_sets)
              if f["offload_optimizer"]}
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
        # Optimizer offload only where it buys memory: it is searched as what it is for, fitting a model or a
        # micro-batch the GPU cannot hold otherwise (Ren et al. 2021, ZeRO-Offload, sec. 1), so a setup with it is
        # dropped when the same flags with the optimizer on the GPU fit the same micro-batch. Its speed there comes
        # from DeepSpeed running a 16-bit module (no fp32 residual stream, `perf.block_ops` [20]), which DeepSpeed's
        # bf16 engine gives without offload too; the search has no such one-GPU option, so offload would otherwise
        # be recommended for a gain that is not offload's.
        if flag_sets[i]["offload_optimizer"] and mb_max_of(on_gpu[i]) >= micro:
            continue
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


@lru_cache(maxsize=4)
def _allowed(several_gpus: bool, bitsandbytes_optimizers: bool) -> tuple[int, ...]:
    """Indices into `searched_setups` of the flag sets a GPU can run: all, or (where bitsandbytes' optimizers do
    not run, ``bitsandbytes_optimizers`` False: `memory.workspace.runs_bitsandbytes_optimizers`) those without
    one of `memory.workspace.BITSANDBYTES_OPTIMIZERS`."""
    return tuple(i for i, f in enumerate(_searched(several_gpus))
                 if bitsandbytes_optimizers or f["optimizer"] not in BITSANDBYTES_OPTIMIZERS)


def _lightest_flags(n_gpus: int, bitsandbytes_optimizers: bool = True) -> tuple[int, ...]:
    """The searched setups that can need the least memory (indices into `searched_setups`): full recomputation,
    which keeps the fewest activations, with every optimizer choice the GPU runs (`_allowed`) and ZeRO stage
    (ZeRO-3's gather buffers can outweigh what it shards for small models, so the top stage is not always the
    lightest)."""
    flag_sets = _searched(n_gpus > 1)
    return tuple(i for i in _allowed(n_gpus > 1, bitsandbytes_optimizers)
                 if flag_sets[i]["recompute"] is Recompute.full)


# The accumulation the lightest setups are judged at: a plan's step is many micro-batches (GPT-3's 0.5M-3.1M tokens
# per step, `options.GPT3_TOKENS_PER_STEP`), and with accumulation the gradients are held while the next
# micro-batch's activations build up (memory.estimate's peak with grad-accum > 1), so 2 is the least any of them
# needs; 'flopscalc memory' at accumulation 1 needs less (llama-3.1-8b on 4 x 4070 Ti, ZeRO-3, offload, full
# recomputation, sequence 1024: 10.3 GiB at 1, 14.0 GiB at 2).
LIGHTEST_GRAD_ACCUM = 2


def lightest_setup_words(seq_len: int) -> str:
    """What the lightest setup was judged at, for a refusal to name: micro-batch, accumulation, sequence (the
    settings 'flopscalc memory' needs to give the same peak)."""
    return (f"micro-batch 1, gradient accumulation {LIGHTEST_GRAD_ACCUM} or more (gradients held between "
            f"micro-batches), sequence {seq_len}")


def _lightest_peaks(cfg: ModelConfig, n_gpus: int, seq_len: int, precision: Precision,
                    highest_stage_first: bool = False, gpu_architecture: str | None = None,
                    cuda_runtime: bool = True, bitsandbytes_optimizers: bool = True):
    """Peak memory per GPU (bytes) at micro-batch 1 of each of `_lightest_flags`, lazily (in reverse order, ZeRO-3
    first, with ``highest_stage_first``), on a GPU of ``gpu_architecture`` (`TrainingSetup.gpu_architecture`) that runs
    PyTorch's CUDA runtime or not (``cuda_runtime``, `memory.workspace.runs_cuda`) and bitsandbytes' optimizers or
    not (``bitsandbytes_optimizers``, `memory.workspace.runs_bitsandbytes_optimizers`)."""
    base = TrainingSetup(micro_batch=1, seq_len=seq_len, precision=MEMORY_PRECISION[precision], n_gpus=n_gpus,
                         grad_accum=LIGHTEST_GRAD_ACCUM, gpu_architecture=gpu_architecture,
                         cuda_runtime=cuda_runtime)
    light = _lightest_flags(n_gpus, bitsandbytes_optimizers)
    return (estimate_memory(cfg, _flagged(base, i)).peak_bytes for i in (light[::-1] if highest_stage_first
                                                                         else light))


def lightest_peak_bytes(cfg: ModelConfig, n_gpus: int, seq_len: int, precision: Precision,
                        gpu_architecture: str | None = None, cuda_runtime: bool = True,
                        bitsandbytes_optimizers: bool = True) -> float:
    """Peak memory per GPU of the lightest searched setup at micro-batch 1: the least any setup needs (bytes), on a
    GPU of ``gpu_architecture`` (None: not known, the larger cuBLAS workspace)."""
    return min(_lightest_peaks(cfg, n_gpus, seq_len, precision, gpu_architecture=gpu_architecture,
                               cuda_runtime=cuda_runtime, bitsandbytes_optimizers=bitsandbytes_optimizers))


# GPU counts the no-fit hint tries: powers of two inside a node (as the one-node search always has: 2, 4, 8), then
# whole nodes of 2^a x 3^b of them, the counts clusters are built in (`planner.search.SMOOTH_PRIMES`: racks and pods
# of powers of two; Narayanan et al. 2021 Table 1 runs such counts), up to MAX_GPUS_SEARCHED; between the last that
# does not fit and the first that does, every count in turn inside a node and every whole node beyond it
# (`min_gpus_to_plan`).
def hint_counts(gpus_per_node: int = GPUS_PER_NODE) -> tuple[int, ...]:
    """The GPU counts the no-fit hint tries first, ascending (see above)."""
    inside = {2 ** k for k in range(1, gpus_per_node.bit_length())}
    nodes, a = set(), 1
    while a * gpus_per_node <= MAX_GPUS_SEARCHED:
        b = a
        while b * gpus_per_node <= MAX_GPUS_SEARCHED:
            nodes.add(b * gpus_per_node)
            b *= 3
        a *= 2
    return tuple(sorted(inside | {n for n in nodes if n > gpus_per_node}))


@lru_cache(maxsize=1024)
def min_gpus_to_plan(cfg: ModelConfig, gpu: GpuSpec, seq_len: int, precision: Precision,
                     capacity_bytes: float | None, gpus_per_node: int = GPUS_PER_NODE,
                     layouts: bool = True, node_layouts: bool = False) -> int | None:
    """Fewest GPUs on which the plan finds a run: the first of `hint_counts` where one fits, or the first count
    between it and the one before it that does (any count inside a node, whole nodes beyond it: the layout search's
    split rules are not monotone in the count); None when none up to MAX_GPUS_SEARCHED does. A run fits at n (`_runs_on`) when a data-parallel setup
    does (the least any needs, `lightest_peak_bytes`, within the usable memory) or a layout does (`choose_layout`):
    beyond a node with ``layouts`` (the plan there searches layouts: `speed.uses_layout_search`), on 2 GPUs up to a
    node with ``node_layouts`` (the plan there weighs them where no setup fits: `speed.layouts_inside_node`)."""
    prev = 1
    for n in hint_counts(gpus_per_node):
        if _runs_on(cfg, gpu, n, seq_len, precision, capacity_bytes, gpus_per_node, layouts, node_layouts):
            between = (range((prev // gpus_per_node + 1) * gpus_per_node, n, gpus_per_node) if n > gpus_per_node
                       else range(prev + 1, n))  # inside a node every count: a node's GPUs need not be all used
            return next((m for m in between if _runs_on(cfg, gpu, m, seq_len, precision, capacity_bytes,
                                                        gpus_per_node, layouts, node_layouts)), n)
        prev = n
    return None


# No parallel layout keeps less training state per GPU than mixed-precision AdamW's 16 bytes per parameter spread over
# all the GPUs: a 16-bit weight and gradient and 12 bytes of fp32 copy and moments (Rajbhandari et al. 2020, ZeRO,
# sec. 3.1: 2 + 2 + K = 12), which ZeRO-3 divides by the GPUs (sec. 5, P_os+g+p) and TP x PP only split among the same
# GPUs; the layout engine keeps the optimizer on the GPU and counts at least these (Megatron-LM's 18 with fp32
# gradients, `layout.memory`; PyTorch FSDP's fp32 parameters and gradients, 16). Where they alone exceed the usable
# memory no layout fits, and the no-fit hint searches none inside a node (the main job's hint searched 9, all such).
LAYOUT_MIN_STATE_BYTES_PER_PARAM = 2 * HALF_BYTES + 3 * FP32_BYTES


def _runs_on(cfg: ModelConfig, gpu: GpuSpec, n_gpus: int, seq_len: int, precision: Precision,
             capacity_bytes: float | None, gpus_per_node: int, layouts: bool, node_layouts: bool = False) -> bool:
    """Whether the plan on ``n_gpus`` finds a run that fits (`min_gpus_to_plan`): the cheap memory look first, so a
    layout is searched only where no data-parallel setup fits."""
    cap = usable_bytes(capacity_bytes or gpu.memory_bytes)
    beyond = layouts and n_gpus > gpus_per_node  # the plan there weighs layouts and these setups (`choose_fastest`)
    inside = node_layouts and 1 < n_gpus <= gpus_per_node  # the plan there weighs layouts where no setup fits
    # the highest ZeRO stages shard the most, so they are looked at first: the first that fits ends the look; on
    # this GPU's cuBLAS workspace, as the setup search judges it (`choose_setup`)
    if any(peak <= cap for peak in _lightest_peaks(cfg, n_gpus, seq_len, precision, highest_stage_first=True,
                                                   bitsandbytes_optimizers=runs_bitsandbytes_optimizers(gpu),
                                                   **gpu_setup_fields(gpu))) and (
            not beyond or _dp_beside_layouts(cfg, gpu, n_gpus, seq_len, precision)):
        return True
    if not (beyond or inside):
        return False
    if inside and LAYOUT_MIN_STATE_BYTES_PER_PARAM * count_params(cfg).total / n_gpus > cap:
        return False  # the model states alone overflow every layout (above)
    from ..layout import cluster_for  # here, not above: a plan inside one node never loads the layout search
    from .layout import choose_layout

    return choose_layout(cfg, cluster_for(gpu, n_gpus, gpus_per_node=gpus_per_node), seq_len, precision,
                         capacity_bytes) is not None


def _dp_beside_layouts(cfg: ModelConfig, gpu: GpuSpec, n_gpus: int, seq_len: int, precision: Precision) -> bool:
    """Whether a plan on ``n_gpus`` that searches layouts weighs the data-parallel setups too
    (`layout.weighs_data_parallel`, the rule `choose_data_parallel` applies)."""
    from .layout import weighs_data_parallel  # here: a plan inside one node never loads the layout search

    return weighs_data_parallel(cfg, gpu, n_gpus, seq_len, precision)
