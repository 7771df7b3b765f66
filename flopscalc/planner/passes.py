"""The budget passes of a plan: the recommended run, and the budget settled at that run's own MFU.

A time or money budget buys model FLOPs at the recommended run's MFU, and the law's optimum (around which the shapes
are placed) depends on those FLOPs: `_recommendation` evaluates again while the delivered FLOPs move it. `core.plan`
calls it between the budget and the explanation. See docs/planner.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..errors import DomainError
from ..model import ModelConfig, count_params
from ..scaling.laws import n_for_law as _law_n
from .budget import ComputeBudget
from .family import ShapeFamily, shape_family
from .options import PlanOption
from .relax import _pass_recommendation
from .request import PlanRequest
from .search import SMALLEST_SHAPE_STEP, SMALLEST_SHAPE_STEPS, _Context, _evaluate, _recommend, _shapes
from .speed import TimeModel

if TYPE_CHECKING:
    from ..layout.cluster import Cluster
    from ..scaling.allocate import Allocation
    from ..scaling.inference import InferenceAllocation

# Passes of the plan while the recommended run's delivered model FLOPs move the law's optimum: re-evaluate when
# they differ by more than BUDGET_PASS_REL from the FLOPs the shapes were placed around. N_opt grows as about
# C^0.5 (Hoffmann et al. 2022, Table 2: a = 0.46-0.50), so 1% in C moves it ~0.5%, about 1% of the 2^(1/2) = 41%
# spacing of the shapes (OPTION_STEPS).
MAX_BUDGET_PASSES = 4
BUDGET_PASS_REL = 0.01
# Budgets that --max-days can cut short (a fixed-token run or a target has no budget to cut; `search._tokens`).
DEADLINE_KINDS = ("time", "flops", "money")


@dataclass(frozen=True)
class _Space:
    """Where the plan searches: the shaping family and its presets, and the one time model that prices options."""

    family: ShapeFamily | None  # None: the models are fixed
    family_key: str | None
    presets: dict[str, ModelConfig]
    cluster: Cluster | None  # the layout search's cluster beyond one node, else None
    time_model: TimeModel | None  # None: the layout engine prices every option
    node_layouts: bool = False  # inside one node, weigh layouts where they may pay (`speed.layouts_inside_node`)
    layouts_off_by: str | None = None  # inside one node, the option that kept layouts off (the no-fit message)


@dataclass(frozen=True)
class _Search:
    """The recommendation and what it was chosen from, with the budget settled at the recommended run's MFU."""

    budget: ComputeBudget
    allocation: Allocation
    inference_optimum: InferenceAllocation | None
    options: tuple[PlanOption, ...]
    skipped: tuple[float, ...]  # sizes around the optimum the family's rule could not shape
    context: _Context  # of the last pass, which the presets and the binding constraints are weighed in
    recommended: PlanOption
    budget_run: PlanOption | None = None  # the run whose MFU settles the budget, where not the recommended one


def _per_token(req: PlanRequest, space: _Space) -> Callable[[float], float]:
    """N (as the law counts it) -> model FLOPs per training token of the model of about N parameters the plan would
    train at its sequence: the family's shape of that size (`ShapeFamily.shape`), or of the fixed models the one
    nearest in |ln N|; counted as the options' tokens are bought (`options._training_flops`: dense attention, PaLM
    App. B's 6N + 12 L H Q T, no recomputation), per parameter of that model times N (F(N) / N is one number
    within a shape). The budget is converted to the law's C = 6ND with it (`scaling.per_token`)."""
    from ..flops.exact import Recompute
    from .options import _training_flops

    law, seq = req.law, req.seq_len
    count = "non_embedding" if law.n_counts_embeddings is False else "total"
    fixed = ([req.model] if req.model is not None else list(req.models) if req.models is not None else None)
    family = space.family or (shape_family(None, seq) if fixed is None else None)
    ratios: dict[tuple, float] = {}  # FLOPs per token per law-counted parameter, by shape

    def ratio(cfg: ModelConfig) -> float:
        key = (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.n_inner, cfg.n_kv_head)
        if key not in ratios:
            cfg = cfg if cfg.block_size >= seq else cfg.with_(block_size=seq)
            ratios[key] = _training_flops(cfg, seq, Recompute.none).model_flops_per_token / _law_n(law, cfg)
        return ratios[key]

    def model_of(n: float) -> ModelConfig:
        if fixed is not None:
            return min(fixed, key=lambda cfg: abs(math.log(_law_n(law, cfg) / n)))
        for k in range(SMALLEST_SHAPE_STEPS + 1):  # too small to shape: the family's smallest shape above it
            try:
                return family.shape(n * SMALLEST_SHAPE_STEP ** k, count)
            except DomainError:
                if n * SMALLEST_SHAPE_STEP ** k > getattr(count_params(family.base), count):
                    break  # too large to shape: the family's base stands in
        return family.base

    return lambda n: ratio(model_of(n)) * n


def _allocation(req: PlanRequest, c_model: float, per_token: Callable[[float], float]
                ) -> tuple[Allocation, InferenceAllocation | None]:
    """The law's optimum for ``c_model`` model FLOPs (data-constrained with a dataset size; for a target, the
    least compute reaching it) and the life-cycle optimum with inference tokens (Sardana et al. 2024).

    The law counts C = 6ND (Hoffmann et al. 2022 sec. 3; `ScalingLaw.flop_convention`) and the budget counts model
    FLOPs with attention (`_per_token`): the optimum is the law's for the budget converted to its convention,
    C x 6N / F(N) at the optimum's own N (`scaling.optimal_per_token`), so D x F(N) = ``c_model``: what the budget
    buys. The life-cycle optimum takes the budget in that convention too (``law_flops``)."""
    from ..scaling import flops_for_loss, optimal_per_token

    law, target = req.law, req.budget_kind == "target"
    if target:
        alloc = flops_for_loss(law, req.target_loss)
    elif req.dataset_tokens is not None and law.has_loss and law.repetition is not None:
        alloc = optimal_per_token(law, c_model, per_token, req.dataset_tokens)
    else:
        alloc = optimal_per_token(law, c_model, per_token)
    ia = None
    if req.inference_tokens is not None:  # the inference-aware solvers load only then (start-up, issue 18)
        from ..scaling.inference import inference_optimal_for_loss, inference_optimal_for_training_budget

        ia = (inference_optimal_for_loss(law, req.target_loss, req.inference_tokens) if target else
              inference_optimal_for_training_budget(law, alloc.law_flops, req.inference_tokens))
    return alloc, ia


def _options(req: PlanRequest, space: _Space, budget: ComputeBudget, c_model: float, alloc: Allocation,
             ia: InferenceAllocation | None) -> tuple[list[ModelConfig], tuple[float, ...], _Context]:
    """Every model weighed (shapes around the optimum, or the fixed ones) and the context `_evaluate` gives each the
    fastest setup that fits in (the caller evaluates: a budget pass only what its pick needs)."""
    centre = alloc.n_params if ia is None else ia.n_params
    shapes, skipped = (([req.model], ()) if req.model is not None
                       else _shapes(req.law, centre, req.seq_len, req.models, space.family))
    ctx = _Context(req.law, req.gpu, budget, req.budget_kind, c_model, req.seq_len, req.mfu, req.calibration,
                   req.dataset_tokens, req.max_wall_clock_s, req.memory_bytes, req.n_tokens, req.target_loss,
                   alloc.loss, space.presets, space.cluster, space.time_model, seq_source=req.seq_len_source,
                   node_layouts=space.node_layouts, layouts_off_by=space.layouts_off_by,
                   layout_search=req.layout_search)
    return shapes, skipped, ctx


def _pick(shapes: list[ModelConfig], ctx: _Context, alloc: Allocation, ia=None) -> PlanOption:
    """A budget pass's pick: `relax._pass_recommendation` for a time or money budget, which evaluates only the models
    that can hold it; a FLOP budget's pass evaluates every model."""
    found = _pass_recommendation(shapes, ctx, alloc, ia)
    return found if found is not None else _recommend(tuple(_evaluate(cfg, ctx) for cfg in shapes), ctx, alloc, ia)


def _within_deadline(req: PlanRequest, budget: ComputeBudget, c_model: float, mfu: float) -> float:
    """``c_model``, or less where --max-days stops a run at ``mfu`` first: GPUs x peak x duty cycle x MFU x the
    deadline (a time, money or FLOP budget; `search._tokens` caps every option's tokens the same way)."""
    if req.max_wall_clock_s is None or req.budget_kind not in DEADLINE_KINDS:
        return c_model
    return min(c_model, replace(budget, mfu=mfu).achieved_flop_per_s * req.max_wall_clock_s)


def _recommendation(req: PlanRequest, space: _Space, budget: ComputeBudget, c_model: float) -> _Search:
    """The recommended run, and the budget settled at its MFU: the lowest-loss run's (`_lowest_loss`), or with
    inference tokens the life-cycle pick among the options around the life-cycle optimum of the budget the
    lowest-loss run settles (`_life_cycle`)."""
    if req.inference_tokens is None or req.budget_kind in ("target", "tokens"):
        return _lowest_loss(req, space, budget, c_model)
    return _life_cycle(req, space, budget, c_model, _lowest_loss(replace(req, inference_tokens=None), space, budget,
                                                                  c_model))


def _life_cycle(req: PlanRequest, space: _Space, budget: ComputeBudget, c_model: float, plain: _Search) -> _Search:
    """With inference tokens and a budget: the option with the least life-cycle FLOPs (`search._recommend`, Sardana
    et al. 2024), weighed in the budget the plain plan ``plain`` (the same request without inference tokens)
    settles at its lowest-loss run's MFU, with that run among the options.

    The budget and the optimum (and the price of a nat, `scaling.inference.flops_per_nat`) are those of the
    lowest-loss run, not of the life-cycle pick: priced at the pick's own MFU, a small model's low MFU shrank the
    budget, and with it the optimum and the price of a nat, so the next pick was smaller still (a 4070 Ti for 3
    days serving 1T tokens: x MFU 0.147 -> 2.75e18 FLOP and 8.0M recommended, where the same FLOPs as --flops give
    20.1M). With the plain plan's pick among the options, the pick is never a model both larger and worse than it
    (more serving and a higher loss both cost life-cycle FLOPs; `lifecycle.life_cycle_pick`).
    """
    kind, mfu = req.budget_kind, plain.recommended.speed.mfu
    c_place = _within_deadline(req, budget, c_model if kind == "flops" else budget.busy_flops * mfu, mfu)
    alloc, ia = _allocation(req, c_place, _per_token(req, space))
    shapes, skipped, ctx = _options(req, space, budget, c_model if kind == "flops" else c_place, alloc, ia)
    if not any(_same_shape(cfg, plain.recommended.model) for cfg in shapes):
        shapes = sorted([*shapes, plain.recommended.model], key=lambda c: count_params(c).total)
    options = tuple(_evaluate(cfg, ctx) for cfg in shapes)
    rec = _recommend(options, ctx, alloc, ia)
    settled = plain.budget
    if kind == "flops":  # the time the recommended run takes to spend the FLOPs, at its own MFU
        run = replace(budget, mfu=rec.speed.mfu)
        settled = replace(run, duration_s=req.flops / run.achieved_flop_per_s)
    return _Search(settled, alloc, ia, options, skipped, ctx, rec, None if kind == "flops" else plain.recommended)


def _lowest_loss(req: PlanRequest, space: _Space, budget: ComputeBudget, c_model: float) -> _Search:
    """The recommended run, and the budget settled at its own MFU.

    The header's optimum must be the law's optimum for the model FLOPs the recommended run delivers, and those
    depend on the run it picks (its recomputation, communication and offload): start from the stated efficiency
    and evaluate again while the delivered FLOPs move the optimum. A --max-days deadline shorter than the budget
    stops every option early, so the optimum is the one for what the run delivers by then (`_within_deadline`):
    shapes placed around the budget's optimum would all be cut short (a year of a 4070 Ti cut to 7 days placed
    them around 2.9B and recommended GPT-2 medium at loss 2.811, where the 7-day plan finds 2.798).

    The passes need not settle: the shapes move with the FLOPs and a pick of another MFU moves them back (on 1024
    H100s at --mfu 0.4 they alternate between two sets of shapes), and the pass they stop at need not hold the best
    model any pass weighed. Under a time or money budget an option's tokens and loss do not depend on the FLOPs the
    shapes were placed around (`search._tokens`), so for the lowest loss the plan shows the shapes placed around the
    FLOPs the best pick of any pass delivers, with that pick among them: the recommendation is never worse than a
    model the passes weighed (with inference tokens: the least life-cycle FLOPs of them).
    """
    kind = req.budget_kind
    per_token = _per_token(req, space)
    # a FLOP budget's passes move the shapes only when --max-days stops the run before it spends the FLOPs
    passes = kind in ("time", "money") or (kind == "flops" and req.max_wall_clock_s is not None)

    def spendable(mfu: float) -> float:
        """The model FLOPs a run at ``mfu`` spends: the budget's, up to the --max-days deadline."""
        return _within_deadline(req, budget, c_model if kind == "flops" else budget.busy_flops * mfu, mfu)

    c_place = spendable(budget.mfu)  # the FLOPs the optimum, and the shapes around it, are placed for
    best = plain = None  # the lowest-loss pick of any pass, and of the last
    for _ in range(MAX_BUDGET_PASSES):
        alloc, ia = _allocation(req, c_place, per_token)
        shapes, skipped, ctx = _options(req, space, budget, c_model if kind == "flops" else c_place, alloc, ia)
        if not passes:
            break
        # the passes run without inference tokens (`_recommendation` weighs the life-cycle pick after them), so the
        # pick is the lowest loss
        plain = rec = _pick(shapes, ctx, alloc)
        if plain.loss is not None and (best is None or plain.loss < best.loss):
            best = plain
        delivered = spendable(rec.speed.mfu)
        if abs(delivered / c_place - 1) <= BUDGET_PASS_REL:
            break
        c_place = delivered
    if best is not None and (plain.loss is None or best.loss < plain.loss):  # an earlier pass weighed a better one
        c_place = spendable(best.speed.mfu)
        alloc, ia = _allocation(req, c_place, per_token)
        shapes, skipped, ctx = _options(req, space, budget, c_model if kind == "flops" else c_place, alloc, ia)
        if not any(_same_shape(cfg, best.model) for cfg in shapes):
            shapes = sorted([*shapes, best.model], key=lambda c: count_params(c).total)
    options = tuple(_evaluate(cfg, ctx) for cfg in shapes)  # the last (or the best) pass's models: the plan shows all
    rec = _recommend(options, ctx, alloc, ia)
    run_mfu = rec.speed.mfu
    if kind in ("time", "money"):  # the budget's model FLOPs are what the recommended run delivers in it
        budget = replace(budget, mfu=run_mfu)
        alloc, ia = _allocation(req, _within_deadline(req, budget, budget.model_flops, run_mfu), per_token)
    elif kind == "flops":  # the time the recommended run takes to spend the FLOPs, at its own MFU
        run = replace(budget, mfu=run_mfu)
        budget = replace(run, duration_s=req.flops / run.achieved_flop_per_s)
        if req.max_wall_clock_s is not None:  # the optimum of what it spends by the deadline
            alloc, ia = _allocation(req, _within_deadline(req, budget, req.flops, run_mfu), per_token)
    else:  # the run's own time is the budget the tables show
        budget = ComputeBudget(req.gpu, req.n_gpus, rec.train_time_s, req.precision, req.utilization, run_mfu)
    if kind == "tokens":  # the compute-optimal split of the FLOPs this fixed run spends
        from ..scaling import optimal_per_token

        alloc = optimal_per_token(req.law, rec.model_flops, per_token)
    return _Search(budget, alloc, ia, options, skipped, ctx, rec)


def _same_shape(a: ModelConfig, b: ModelConfig) -> bool:
    """The same model up to its name (how `search._shapes` tells shapes apart)."""
    return a.with_(name="") == b.with_(name="")
