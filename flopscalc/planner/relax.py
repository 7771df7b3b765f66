"""What relaxing a constraint would buy, and what the planner need not evaluate to know it (issue 18).

`_binding` says which constraint binds (twice the compute or time, unlimited memory, no data limit, no wall
clock) by the lowest loss the plan's models reach with it relaxed. Relaxing the compute, the data or the wall clock
moves only tokens and losses, so each model keeps its setup and speed (`_reevaluate`); unlimited memory searches
the setups again, most promising model first, and skips a model whose loss cannot beat the best found: its loss at
MFU = 1 (`_loss_floor`), or on one GPU at its fastest setup without recomputation (`_whole_batch_loss`). A budget
pass that another may follow needs only its pick, and evaluates as little (`_pass_recommendation`).

Every skip rests on a bound that holds by construction; tests/test_planner_binding.py checks the answers against
evaluating every model from scratch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..flops import Recompute
from ..memory.workspace import BITSANDBYTES_OPTIMIZERS, gpu_setup_fields, runs_bitsandbytes_optimizers
from ..model import ModelConfig
from .budget import DEFAULT_MFU
from .options import (
    GROW_BATCH_KINDS,
    MEMORY_PRECISION,
    PlanOption,
    TrainingSetup,
    _per_gpu_batch,
)
from .search import _Context, _evaluate, _law_n, _loss, _option, _recommend, _tokens
from .setups import LIGHTEST_GRAD_ACCUM, searched_setups
from .speed import DEFAULT_CONSTANT, PER_OPERATION, STATED, price_setup

# How much a constraint is relaxed to say what relaxing it would buy: twice the compute or time.
RELAX_FACTOR = 2.0
# A constraint "binds" when relaxing it improves the predicted loss by more than this (nats/token).
BINDING_LOSS = 1e-3
# A relaxed loss within this of the plan's own (nats/token) is no change: half the last digit the plan prints (.3f),
# so a row never reads "(-0.000)".
NO_CHANGE_LOSS = 5e-4


@dataclass(frozen=True)
class Binding:
    """One constraint: whether it binds, and the loss (or time) relaxing it would give."""

    constraint: str  # compute, memory, data or time
    binds: bool
    relaxed: str  # what was relaxed, in words
    loss_if_relaxed: float | None  # the best of the plan's options re-evaluated relaxed (not a fresh plan's search)
    plan_loss: float | None = None  # the plan's own loss, which the relaxed request can always keep

    @property
    def options_do_better(self) -> bool:
        """Whether the options shown, relaxed, beat the plan's own loss by a printed digit (`NO_CHANGE_LOSS`)."""
        if self.loss_if_relaxed is None or self.plan_loss is None:
            return self.loss_if_relaxed is not None
        return self.loss_if_relaxed < self.plan_loss - NO_CHANGE_LOSS

    @property
    def shown_loss(self) -> float | None:
        """The row's loss: ``loss_if_relaxed`` where the options shown do better (`options_do_better`), else the
        plan's own loss. Only the options shown are re-evaluated: a fresh plan of the relaxed request searches its
        setups again and may not reach it (FR-D #1: at --memory 24GiB the options re-evaluated with unlimited memory
        reach 2.558, a plan at --memory 1TiB 2.5625), so it bounds nothing. The row and JSON `loss_if_relaxed` print it."""
        return self.loss_if_relaxed if self.options_do_better else self.plan_loss


def _best_loss(options) -> float | None:
    losses = [o.loss for o in options if o.fits and o.loss is not None and o.speed is not None
              and o.n_tokens >= o.speed.tokens_per_step]
    return min(losses) if losses else None


def _reevaluate(o: PlanOption, ctx: _Context) -> PlanOption:
    """`_evaluate` of ``o.model`` under ``ctx``, whose budget, data limit or wall clock (not memory) is relaxed,
    reusing the main search's work: those move only the tokens and the loss, not the setup or its speed
    (`choose_setup` and the time model read none of them), unless the batch may grow, which reads the loss; a model
    that fit no setup still fits none."""
    if not o.fits:
        return o
    may_grow = ctx.kind in GROW_BATCH_KINDS and (ctx.cluster is not None or (
        ctx.budget.n_gpus > 1 and o.speed.comm.exposed_s > 0))
    if o.batch is not None or may_grow:
        return _evaluate(o.model, ctx)
    return _option(o.model, o.n_params, ctx, o.chosen, o.speed, None)


class _Optimistic:
    """A speed no setup can beat: every GPU at its dense peak on the model's causal FLOPs (MFU = 1), for `_tokens`."""

    def __init__(self, tokens_per_s: float, model_flops_per_token: float) -> None:
        self.tokens_per_s, self.model_flops_per_token = tokens_per_s, model_flops_per_token


# Per-operation and constant-efficiency models never run faster than the dense peak (perf/step.py: MFU <= HFU <= 1;
# a stated efficiency is at most 1); a calibrated or measured profile, or the layout engine, states no such bound here.
_PEAK_BOUNDED = (PER_OPERATION, STATED, DEFAULT_CONSTANT)
# Slack on the optimistic token count, so that rounding can never make a bound exceed what it bounds.
_BOUND_SLACK = 1e-9


def _loss_floor(cfg: ModelConfig, ctx: _Context) -> float:
    """A loss no setup of ``cfg`` can beat under ``ctx``: the loss at the tokens of MFU = 1 (inf when even they
    give no loss; -inf where no bound is known). Loss falls as tokens grow (Hoffmann et al. 2022 eq. 2; with
    repeated data, Muennighoff et al. 2023 eq. 5-7), and a grown batch's tokens are worth less, never more."""
    tm = ctx.time_model
    if ctx.cluster is not None or tm is None or tm.kind not in _PEAK_BOUNDED or (tm.efficiency or 0.0) > 1:
        return -math.inf
    from ..perf.utilization import causal_model_flops_per_token  # MFU's numerator; light (perf.step is not)

    b = ctx.budget
    causal = causal_model_flops_per_token(cfg, ctx.seq_len)  # the fewest FLOPs any setup executes per token
    peak = ctx.gpu.peak_flop_per_s(b.precision) * b.n_gpus
    tokens = _tokens(cfg, _Optimistic(peak / causal, causal), ctx) * (1 + _BOUND_SLACK)
    loss = _loss(ctx.law, _law_n(ctx.law, cfg), tokens, ctx.dataset_tokens)[0]
    return math.inf if loss is None else loss


def _whole_batch_loss(cfg: ModelConfig, ctx: _Context) -> float:
    """With unlimited memory on one GPU, a loss no setup of ``cfg`` can beat under ``ctx`` (-inf where none is known).

    Every searched setup then runs the whole per-GPU batch as one micro-batch (it fits, so `choose_setup` takes it),
    and recomputation only adds work to a step (a second forward, or the attention core again; one GPU has no
    communication for it to hide), so no setup is faster than the fastest without recomputation, priced here as the
    search prices it (the same setups, kept for it; offload is not among them: with the optimizer on the GPU every
    setup fits, so the search drops offload: `setups.choose_setup` offloads only where it buys memory). Several GPUs are left out: a grown
    batch changes the setups.
    """
    tm = ctx.time_model
    if ctx.cluster is not None or tm is None or tm.kind not in _PEAK_BOUNDED or ctx.budget.n_gpus != 1:
        return -math.inf
    precision = ctx.budget.precision
    eff = ctx.mfu if ctx.mfu is not None else DEFAULT_MFU  # as `_evaluate` gives the search
    base = TrainingSetup(micro_batch=1, seq_len=ctx.seq_len, precision=MEMORY_PRECISION[precision], n_gpus=1,
                         grad_accum=LIGHTEST_GRAD_ACCUM, **gpu_setup_fields(ctx.gpu))
    micro = _per_gpu_batch(cfg, ctx.seq_len, 1)
    bnb = runs_bitsandbytes_optimizers(ctx.gpu)
    speed = min((price_setup(cfg, replace(base, micro_batch=micro, grad_accum=1, **flags), micro * ctx.seq_len,
                             ctx.gpu, precision, tm, eff)
                 for flags in searched_setups(1) if flags["recompute"] is Recompute.none
                 and not flags["offload_optimizer"]  # dropped where memory allows
                 and (bnb or flags["optimizer"] not in BITSANDBYTES_OPTIMIZERS)),  # as the search (memory.workspace [4])
                key=lambda s: s.step_s)
    loss = _loss(ctx.law, _law_n(ctx.law, cfg), _tokens(cfg, speed, ctx), ctx.dataset_tokens)[0]
    return math.inf if loss is None else loss


def _lowest_loss_first(models: list[ModelConfig], ctx: _Context, nearer=None) -> dict[int, PlanOption]:
    """The options of ``models`` (by index) that can hold the lowest loss under ``ctx`` (`_best_loss`), evaluated
    most promising first (by `_loss_floor`): a model whose floor is above the best loss found cannot hold it, so it
    is not evaluated, nor one whose ``nearer(cfg, ctx)`` floor (a tighter one that costs more) is. Every model is
    evaluated when none has a loss."""
    best, found = None, {}
    for floor, i, cfg in sorted((_loss_floor(cfg, ctx), i, cfg) for i, cfg in enumerate(models)):
        if best is not None and (floor == math.inf or floor > best):
            break
        if best is not None and nearer is not None and nearer(cfg, ctx) > best:
            continue
        found[i] = _evaluate(cfg, ctx)
        loss = _best_loss((found[i],))
        if loss is not None and (best is None or loss < best):
            best = loss
    return found


def _unlimited_memory_best_loss(options: tuple[PlanOption, ...], ctx: _Context) -> float | None:
    """`_best_loss` of ``options`` evaluated under ``ctx`` (unlimited memory: every model's setups searched again),
    the most promising first: a model that cannot lower the minimum is not searched (`_lowest_loss_first`), nor,
    on one GPU, one whose fastest setup without recomputation cannot (`_whole_batch_loss`)."""
    return _best_loss(tuple(_lowest_loss_first([o.model for o in options], ctx, _whole_batch_loss).values()))


def _pass_recommendation(models: list[ModelConfig], ctx: _Context, alloc, ia=None) -> PlanOption | None:
    """`_recommend` of ``models`` evaluated under ``ctx``, for a budget pass that only needs the pick: a time or money
    budget picks the lowest loss, so only the models that can hold it are evaluated (`_lowest_loss_first`); the
    pass the plan shows evaluates them all. Whatever else picks (a life-cycle optimum, no loss) sees every model.
    None for the other budgets, which take one pass: the caller evaluates every model and picks from them."""
    if ctx.kind not in ("time", "money"):
        return None
    if ia is None:  # only the lowest loss is wanted of these: a model that fits no setup is not asked how many
        found = _lowest_loss_first(models, replace(ctx, fewest_gpus=False))  # GPUs would hold it
        if _best_loss(tuple(found.values())) is not None:  # the pick, and none of the errors, is among these
            return _recommend(tuple(found[i] for i in sorted(found)), ctx, alloc, ia)
    return _recommend(tuple(_evaluate(cfg, ctx) for cfg in models), ctx, alloc, ia)


def _binding(options: tuple[PlanOption, ...], rec: PlanOption, ctx: _Context) -> tuple[Binding, ...]:
    """Which constraint binds: relax each in turn (twice the compute or time, unlimited memory, no data limit).

    Relaxing the compute, the data or the wall clock re-prices no setup (`_reevaluate`); unlimited memory searches
    each model's setups again, the most promising models first, and stops once no model left can do better
    (`_unlimited_memory_best_loss`)."""
    if rec.loss is None:
        return ()
    out = []

    def relaxed(**changes) -> float | None:
        return _best_loss(tuple(_reevaluate(o, replace(ctx, **changes)) for o in options))

    def row(name: str, words: str, loss: float | None) -> Binding:
        return Binding(name, loss is not None and loss < rec.loss - BINDING_LOSS, words, loss, rec.loss)

    if ctx.kind == "flops":
        out.append(row("compute", f"{RELAX_FACTOR:g}x the FLOPs", relaxed(c_model=ctx.c_model * RELAX_FACTOR)))
    else:
        b = ctx.budget
        more = replace(b, duration_s=b.duration_s * RELAX_FACTOR)
        out.append(row("compute", f"{RELAX_FACTOR:g}x the GPU time", relaxed(budget=more)))
    out.append(row("memory", "unlimited memory per GPU",
                   _unlimited_memory_best_loss(options, replace(ctx, memory_bytes=1e18))))
    if ctx.dataset_tokens is not None:
        out.append(row("data", "no limit on unique tokens", relaxed(dataset_tokens=None)))
    if ctx.max_wall_clock_s is not None:
        out.append(row("time", "no wall-clock limit", relaxed(max_wall_clock_s=None)))
    return tuple(out)
