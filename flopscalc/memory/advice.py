"""What would make a setup fit: the smallest changes, ranked, and the whole answer `flopscalc memory` shows.

Kept apart from `memory.fit` (whether a setup fits, the largest micro-batch), which the planner asks hundreds of
times per plan: a plan needs none of this (start-up, issue 18).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

from ..flops import Recompute
from ..hardware import GpuSpec
from ..model import ModelConfig
from ..model.sequence import CONTEXT, HINT_SEQ_MAX, seq_source
from ..units import GIB
from .estimate import MemoryBreakdown, estimate_memory
from .fit import Fit, fits, largest_that_fits, max_micro_batch
from .settings import MemoryPrecision, Optimizer, TrainingSetup
from .workspace import BITSANDBYTES_OPTIMIZERS, on_gpu, runs_bitsandbytes_optimizers

# How disruptive each change is, for ranking fixes (a judgement, not a measurement): free kernels and
# precision first; full recomputation costs ~33% more compute (Korthikanti et al. 2022, Table 4, ~36%
# overhead), offload and a different optimizer change speed or training dynamics.
CHANGE_COST = {
    "flash": 1,
    "precision:bf16-mixed": 1,
    "precision:fp16-mixed": 1,
    "recompute:selective": 1,
    "micro_batch": 1,  # keep tokens per step with gradient accumulation
    "recompute:full": 2,
    "optimizer:adamw8bit": 2,
    "zero": 1,  # per stage raised, only with several GPUs
    "optimizer:lion": 3,
    "optimizer:adafactor": 3,
    "precision:bf16-pure": 3,
    "offload": 3,
    "optimizer:sgd": 4,
}


@dataclass(frozen=True)
class Fix:
    """A set of changes to a setup and the breakdown it gives."""

    changes: tuple[str, ...]  # human-readable, e.g. "optimizer adamw -> adamw8bit"
    cost: int  # sum of CHANGE_COST: lower is less disruptive
    setup: TrainingSetup
    breakdown: MemoryBreakdown
    capacity_bytes: float

    @property
    def peak_bytes(self) -> float:
        return self.breakdown.peak_bytes


@dataclass(frozen=True)
class FitAdvice:
    """Ranked fixes (fewest, least disruptive changes first), or why none exists."""

    fits_already: bool
    fixes: tuple[Fix, ...]
    smallest: Fix  # the least memory any combination reaches (micro-batch 1)
    reason: str | None  # set when no fix exists


def _options(setup: TrainingSetup, bitsandbytes_optimizers: bool = True) -> dict[str, list]:
    """The values each setting may take in a fix: the current one, then lighter ones; 8-bit AdamW only where
    bitsandbytes' optimizers run (``bitsandbytes_optimizers``, `workspace.runs_bitsandbytes_optimizers`)."""
    prec = {MemoryPrecision.fp32: [MemoryPrecision.bf16_mixed, MemoryPrecision.bf16_pure],
            MemoryPrecision.bf16_mixed: [MemoryPrecision.bf16_pure],
            MemoryPrecision.fp16_mixed: [MemoryPrecision.bf16_pure],
            MemoryPrecision.bf16_pure: []}[setup.precision]
    lighter = {Optimizer.adamw: [Optimizer.adamw8bit, Optimizer.lion, Optimizer.adafactor, Optimizer.sgd],
               Optimizer.adamw8bit: [Optimizer.adafactor], Optimizer.lion: [Optimizer.adafactor],
               Optimizer.sgd: [], Optimizer.adafactor: [], Optimizer.none: []}[setup.optimizer]
    if not bitsandbytes_optimizers:  # no fix proposes what cannot run there (workspace [4])
        lighter = [o for o in lighter if o not in BITSANDBYTES_OPTIMIZERS]
    rec = {Recompute.none: [Recompute.selective, Recompute.full], Recompute.selective: [Recompute.full],
           Recompute.full: []}[setup.recompute]
    return {
        "precision": [setup.precision] + prec,
        "optimizer": [setup.optimizer] + lighter,
        "recompute": [setup.recompute] + rec,
        "flash": [setup.flash] + ([True] if not setup.flash else []),
        "offload_optimizer": [setup.offload_optimizer] + (
            [True] if not setup.offload_optimizer and setup.optimizer is not Optimizer.none else []),
        "zero_stage": [setup.zero_stage] + (list(range(setup.zero_stage + 1, 4)) if setup.n_gpus > 1 else []),
    }


def keeping_step(trial: TrainingSetup, old: TrainingSetup, micro_batch: int) -> TrainingSetup:
    """``trial`` at ``micro_batch``, accumulating enough micro-batches to keep about ``old``'s sequences per step
    (a smaller micro-batch is offered as keeping them, `CHANGE_COST`): priced so, since accumulating holds the earlier
    micro-batches' gradients (`estimate`), the micro-batch that fits at the old accumulation may not fit at the new."""
    if micro_batch >= old.micro_batch:
        return replace(trial, micro_batch=micro_batch)
    return replace(trial, micro_batch=micro_batch, grad_accum=math.ceil(old.grad_accum * old.micro_batch / micro_batch))


def _describe(old: TrainingSetup, new: TrainingSetup) -> tuple[tuple[str, ...], int]:
    changes, cost = [], 0
    for name, label in (("precision", "precision"), ("optimizer", "optimizer"), ("recompute", "recompute")):
        a, b = getattr(old, name), getattr(new, name)
        if a != b:
            changes.append(f"{label} {a.value} -> {b.value}")
            cost += CHANGE_COST[f"{name}:{b.value}"]
    if new.flash and not old.flash:
        changes.append("flash attention on")
        cost += CHANGE_COST["flash"]
    if new.zero_stage != old.zero_stage:
        changes.append(f"ZeRO stage {old.zero_stage} -> {new.zero_stage}")
        cost += CHANGE_COST["zero"] * (new.zero_stage - old.zero_stage)
    if new.offload_optimizer and not old.offload_optimizer:
        changes.append("optimizer offload to CPU")
        cost += CHANGE_COST["offload"]
    if new.micro_batch != old.micro_batch:
        accum = (f" (--grad-accum {new.grad_accum} keeps about the sequences per step)"
                 if new.grad_accum != old.grad_accum else "")
        changes.append(f"micro-batch {old.micro_batch} -> {new.micro_batch}{accum}")
        cost += CHANGE_COST["micro_batch"]
    return tuple(changes), cost


def suggest_fixes(cfg: ModelConfig, setup: TrainingSetup, gpu: GpuSpec, min_headroom_fraction: float = 0.0,
                  limit: int = 5) -> FitAdvice:
    """The smallest changes that make ``setup`` fit ``gpu`` (with its architecture's cuBLAS workspace,
    `workspace.on_gpu`, as `answer` counts it), ranked, or why nothing does.

    Every combination of lighter settings (precision, optimizer, recomputation, flash attention,
    offload, and with several GPUs ZeRO stages) is tried with the largest micro-batch up to the current
    one that fits; fixes whose changes include another fix's are dropped; the rest are ranked by
    `CHANGE_COST`, then by peak memory.
    """
    setup = on_gpu(setup, gpu)
    if fits(estimate_memory(cfg, setup), gpu, min_headroom_fraction).fits:
        current = estimate_memory(cfg, setup)
        same = Fix((), 0, setup, current, gpu.memory_bytes)
        return FitAdvice(True, (), same, None)
    options = _options(setup, runs_bitsandbytes_optimizers(gpu))
    found: list[Fix] = []
    smallest: Fix | None = None
    for values in itertools.product(*options.values()):
        trial = replace(setup, **dict(zip(options, values)))
        b = max_micro_batch(cfg, trial, gpu, min_headroom_fraction, upper=setup.micro_batch)
        if b == 0:
            one = replace(trial, micro_batch=1)
            fix = Fix(*_describe(setup, one), one, estimate_memory(cfg, one), gpu.memory_bytes)
            if smallest is None or fix.peak_bytes < smallest.peak_bytes:
                smallest = fix
            continue
        if b < setup.micro_batch:  # the fix keeps the sequences per step: price it at the accumulation it names
            b = largest_that_fits(lambda n, t=trial: fits(estimate_memory(cfg, keeping_step(t, setup, n)), gpu,
                                                 min_headroom_fraction).fits, b)
            if b == 0:
                continue
        new = keeping_step(trial, setup, b)
        found.append(Fix(*_describe(setup, new), new, estimate_memory(cfg, new), gpu.memory_bytes))
    keys = [{c.split(" -> ")[0] if c.startswith("micro-batch") else c for c in f.changes} for f in found]
    minimal = [f for f, k in zip(found, keys) if not any(o < k for o in keys)]
    minimal.sort(key=lambda f: (f.cost, len(f.changes), f.peak_bytes))
    if minimal:
        best = min(found, key=lambda f: f.peak_bytes)
        return FitAdvice(False, tuple(minimal[:limit]), best, None)
    assert smallest is not None
    st = smallest.breakdown
    floor = st.model_states_bytes + st.states.weight_copies_bytes
    reason = (f"nothing tried fits {gpu.name} ({gpu.memory_bytes / GIB:.1f} GiB): the least is "
              f"{st.peak_bytes / GIB:.1f} GiB with {', '.join(smallest.changes) or 'the current settings'}, "
              f"of which weights, gradients and optimizer state take {floor / GIB:.1f} GiB")
    return FitAdvice(False, (), smallest, reason + _beyond(cfg, smallest, gpu, min_headroom_fraction))


# The most GPUs the no-fit message shards the model states over, doubling from the current count: the largest
# training run's (Llama 3 405B, 16,384 H100s; Dubey et al. 2024, sec. 3.3), as `settings.check_gpu_count_bound` says.
ZERO_HINT_MAX_GPUS = 16_384


def _beyond(cfg: ModelConfig, smallest: Fix, gpu: GpuSpec, min_headroom_fraction: float) -> str:
    """The no-fit message's last clauses, each checked with the memory engine on the lightest setup (micro-batch 1).

    ZeRO-3 / FSDP over the fewest more GPUs (doubling, up to `ZERO_HINT_MAX_GPUS`) with which it fits, named only
    when sharding the model states makes it fit; else what it still needs per GPU over the most GPUs (activations,
    the loss's buffers and the CUDA context are not sharded). Then a shorter sequence that fits, halved until it
    does: from ``min(seq / 2, HINT_SEQ_MAX)`` with the default context of a config.json that states no pretraining
    length, as `plan` names one (`planner.search._shorter_seq_hint`), from ``seq / 2`` otherwise."""
    def peak_if_fits(setup: TrainingSetup) -> tuple[float, bool]:
        b = estimate_memory(cfg, setup)
        return b.peak_bytes, fits(b, gpu, min_headroom_fraction).fits

    lightest, out = smallest.setup, ""
    n = lightest.n_gpus
    while n < ZERO_HINT_MAX_GPUS:
        n = min(2 * n, ZERO_HINT_MAX_GPUS)
        peak, ok = peak_if_fits(replace(lightest, n_gpus=n, zero_stage=3))
        if ok:
            out = (f"; ZeRO-3 / FSDP over {n} GPUs would shard them enough to fit ({peak / GIB:.1f} GiB per GPU with "
                   "those changes)")
            break
    else:
        if lightest.n_gpus < ZERO_HINT_MAX_GPUS:
            out = (f"; ZeRO-3 / FSDP would not fit it on any number of GPUs (over {n:,} it still needs "
                   f"{peak / GIB:.1f} GiB per GPU): it shards weights, gradients and optimizer state, not activations, "
                   "the loss's buffers or its communication buckets")
    out += _context_parallel_hint(cfg, lightest, gpu, min_headroom_fraction)
    src = seq_source(cfg, lightest.seq_len)
    context = src.kind == CONTEXT
    seq = min(src.seq_len // 2, HINT_SEQ_MAX) if context else src.seq_len // 2
    while seq >= 1:
        peak, ok = peak_if_fits(replace(lightest, seq_len=seq))
        if ok:
            if context:
                return out + (f"; {src.seq_len} is the model's context (its config.json states no pretraining "
                              f"length): pass the sequence to train at, e.g. --seq {seq} ({peak / GIB:.1f} GiB with "
                              "those changes)")
            return out + f"; a shorter sequence fits: --seq {seq} ({peak / GIB:.1f} GiB with those changes)"
        seq //= 2
    return out


def _context_parallel_hint(cfg: ModelConfig, lightest: TrainingSetup, gpu: GpuSpec,
                           min_headroom_fraction: float) -> str:
    """'; context parallelism ... CP2 ... fits' where a sequence from `layout.spec.CP_MIN_SEQ_LEN` tokens on several
    GPUs fits none of these data-parallel setups but a context-parallel layout of the same GPUs fits, by the layout
    memory engine (`layout.memory.layout_memory`: TP1 PP1, the fewest CP ranks, ZeRO 1 then 3, full recomputation,
    micro-batch 1): context parallelism splits one sequence's activations, which no data parallelism does (review
    r15 #7: Qwen2.5-7B at 131,072 tokens on 8 H100s fits TP1 PP1 DP4 CP2, which `plan` runs). Empty otherwise."""
    from ..errors import UsageError
    from ..layout.memory import layout_memory  # here: only a no-fit message on several GPUs reads it
    from ..layout.search import CP_DEGREES
    from ..layout.spec import CP_CHUNKS_PER_RANK, CP_MIN_SEQ_LEN, Layout
    from .workspace import gpu_setup_fields

    n, seq = lightest.n_gpus, seq_source(cfg, lightest.seq_len).seq_len  # None: the model's own
    if n < 2 or seq < CP_MIN_SEQ_LEN:
        return ""
    usable = gpu.memory_bytes * (1 - min_headroom_fraction)
    for cp in (c for c in CP_DEGREES if 1 < c <= n and not n % c and not seq % (CP_CHUNKS_PER_RANK * c)):
        for zero in (1, 3):
            lay = Layout(dp=n // cp, cp=cp, zero_stage=zero, recompute=Recompute.full)
            try:
                lay.check_model(cfg, seq)
            except UsageError:
                break
            # dropout off, as the layout search and `step` count it (`search_layouts`' default)
            mem = layout_memory(cfg, lay, seq, flash=lightest.flash, dropout=False,
                                cuda_context_bytes=lightest.cuda_context_bytes,
                                fragmentation_fraction=lightest.allocator_overhead_fraction, **gpu_setup_fields(gpu))
            if mem.total <= usable:
                return (f"; context parallelism splits the sequence's activations, which data parallelism does not: "
                        f"CP{cp} over these {n} GPUs fits (TP1 PP1 DP{n // cp} CP{cp}, ZeRO {zero}, full "
                        f"recomputation, micro-batch 1: {mem.total / GIB:.1f} GiB per GPU by the layout memory "
                        f"engine): 'flopscalc step --n-gpus {n} --cp {cp} --zero {zero} --recompute full' prices it, "
                        "'flopscalc step --search' ranks the layouts")
    return ""


@dataclass(frozen=True)
class MemoryAnswer:
    """Everything ``flopscalc memory`` shows: breakdown, fit, largest micro-batch, and fixes."""

    breakdown: MemoryBreakdown
    fit: Fit
    max_micro_batch: int
    advice: FitAdvice


def answer(cfg: ModelConfig, setup: TrainingSetup, gpu: GpuSpec, min_headroom_fraction: float = 0.0) -> MemoryAnswer:
    """Breakdown of ``setup`` on ``gpu`` (with its architecture's cuBLAS workspace, `workspace.on_gpu`), whether it
    fits, the largest micro-batch, and ranked fixes."""
    setup = on_gpu(setup, gpu)
    breakdown = estimate_memory(cfg, setup)
    return MemoryAnswer(breakdown, fits(breakdown, gpu, min_headroom_fraction),
                        max_micro_batch(cfg, setup, gpu, min_headroom_fraction),
                        suggest_fixes(cfg, setup, gpu, min_headroom_fraction))
