"""Compose the engines into a plan: the best training run for a budget, under memory, data and time limits.

budget = GPUs x dense peak x duty cycle x MFU x time (`budget.ComputeBudget`), or FLOPs, or money; its MFU is the
recommended run's own. A scaling law turns the budget into a compute-optimal N; model shapes around it (and the
GPT-2 presets) are each given the fastest training setup that fits the GPU's memory (`planner.options.choose_setup`),
a step time from the FLOPs engine and the communication model, the tokens the budget then trains, and the law's
predicted loss.

Objectives: the lowest predicted loss (default); a fixed model (and optionally fixed tokens): its setup, time
and cost; a target loss: the fastest run that reaches it. See docs/planner.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ..assumption import Assumption
from ..costs import JOULES_PER_KWH, EnergyCost, energy_cost, hours_for_budget_usd
from ..errors import DomainError, UsageError
from ..hardware import GpuSpec
from ..model import SeqSource, get_family, past_context, past_context_warning
from ..units import MAX_DURATION_S, SECONDS_PER_DAY, SECONDS_PER_HOUR, SECONDS_PER_YEAR
from .budget import (
    CHINCHILLA_TOKENS_PER_PARAM,
    DEFAULT_MFU,
    DEFAULT_PRECISION,
    DEFAULT_UTILIZATION,
    Candidate,
    ComputeBudget,
    candidate,
)
from .databound import ShorterRun, shorter_run, shorter_run_warning
from .family import model_family, shape_family
from .notes import (
    _assumptions,
    _calibration_warnings,
    _family_warnings,
    _layout_search_skipped,
    _network,
    _run_notes,
    _tags,
    _warnings,
)
from .options import PlanOption
from .passes import DEADLINE_KINDS, _allocation, _per_token, _recommendation, _Search, _Space
from .relax import Binding, _binding
from .request import PlanRequest
from .search import (
    _law_n,
    _loss,
    _preset_candidates,
)
from .speed import (
    DEFAULT_CONSTANT,
    LAYOUT,
    STATED,
    layouts_inside_node,
    layouts_kept_off_by,
    time_model_for,
    time_model_words,
    uses_layout_search,
)

if TYPE_CHECKING:
    from ..scaling.allocate import Allocation
    from ..scaling.hyperparams import Hyperparameters
    from ..scaling.inference import InferenceAllocation, OvertrainingNote
    from ..scaling.laws import ScalingLaw

__all__ = [
    "CHINCHILLA_TOKENS_PER_PARAM", "DEFAULT_MFU", "DEFAULT_PRECISION", "DEFAULT_UTILIZATION", "Assumption",
    "Binding", "Candidate", "ComputeBudget", "Plan", "PlanRequest", "candidate", "model_flops_optimum", "plan",
    "plans_frame",
]

# Laws whose loss the plan also shows for the recommended run, to show how much the laws disagree.
COMPARISON_LAWS = ("besiroglu2024", "chinchilla")


@dataclass(frozen=True)
class Plan:
    """The answer: budget, the law's optimum, every option evaluated, the recommendation, energy and cost."""

    budget: ComputeBudget
    candidates: tuple[Candidate, ...]  # the GPT-2 presets: what the budget buys each, with its setup and speed
    assumptions: tuple[Assumption, ...] = field(default=())
    law: ScalingLaw | None = None
    allocation: Allocation | None = None  # the law's optimum for the FLOPs the run spends (by --max-days)
    options: tuple[PlanOption, ...] = ()
    recommended: PlanOption | None = None
    loss_by_law: dict[str, float | None] = field(default_factory=dict)  # other laws' predictions for the recommended run
    loss_interval: tuple[float, float] | None = None  # from the law's stated interval on E, when it has one
    energy: EnergyCost | None = None
    mfu_source: str = ""
    budget_kind: str = "time"  # time, flops, money, tokens (fixed model and tokens) or target
    max_wall_clock_s: float | None = None
    warnings: tuple[str, ...] = ()
    objective: str = "loss"
    target_loss: float | None = None
    binding: tuple[Binding, ...] = ()
    tags: dict[int, tuple[str, ...]] = field(default_factory=dict)  # option index -> labels (compute-optimal, largest that fits, ...)
    stated_efficiency: float | None = None  # hardware efficiency stated (--mfu or default): MFU without recompute
    hyperparameters: Hyperparameters | None = None  # for the recommended run
    warmup_steps: int | None = None  # warm-up of the recommended run at its own batch (DeepSeek LLM sec. 2.3)
    overtraining: OvertrainingNote | None = None  # for the recommended run
    inference_tokens: float | None = None  # tokens the model will serve over its life, when given
    inference_optimum: InferenceAllocation | None = None  # the life-cycle optimum
    life_cycle: InferenceAllocation | None = None  # the recommended run vs Chinchilla of its loss
    family: str | None = "gpt2"  # the family shaped (or of the fixed model) whose presets the plan shows; None: none
    time_model: str = ""  # which model priced every option (`planner.speed`: per-operation, calibrated, stated, ...)
    seq_source: SeqSource | None = None  # where the training sequence came from (--seq, the model's default, ...)
    data_bound: ShorterRun | None = None  # a data-bound loss: the shortest run within a tolerance of it (databound.py)
    budget_run: PlanOption | None = None  # the run whose MFU the budget is, where not the recommended one (passes)
    fastest_train_time_s: float | None = None  # under a target: the fastest option's time to it (`_fastest_to_target`)

    @property
    def deadline_model_flops(self) -> float | None:
        """Model FLOPs the recommended run delivers by the --max-days deadline when that stops it before the budget
        is spent (GPUs x peak x duty cycle x its MFU x the deadline), else None: then the header's optimum is
        taken for these, not for the budget's."""
        b, cap = self.budget, self.max_wall_clock_s
        if cap is None or self.budget_kind not in DEADLINE_KINDS or cap >= b.duration_s:
            return None
        return b.achieved_flop_per_s * cap

    @property
    def mfu_causal(self) -> float:
        """The budget's MFU (`budget.mfu`: the recommended run's, or `budget_run`'s) as `flopscalc step` counts it,
        attention over the causal pairs: MFU is linear in the model FLOPs per token, so that run's causal/plan ratio
        (`PlanOption.mfu_causal`) carries over."""
        r = self.recommended if self.budget_run is None else self.budget_run
        return self.budget.mfu * r.mfu_causal / r.speed.mfu

    @property
    def params_vs_optimum(self) -> float | None:
        """The recommended N (as the law counts it) over the law's compute-optimal N of the header; with
        inference tokens only (below 1: a smaller model than Chinchilla's)."""
        return None if self.life_cycle is None else self.life_cycle.n_params / self.allocation.n_params

    @property
    def tokens_vs_optimum(self) -> float | None:
        """The recommended run's tokens over the law's compute-optimal D; with inference tokens only."""
        return None if self.life_cycle is None else self.recommended.n_tokens / self.allocation.n_tokens


def plan(request: PlanRequest | GpuSpec, duration_s: float | None = None, **fields) -> Plan:
    """The best training run for a request: budget -> allocation -> options -> recommendation -> explanation.

    Parameters
    ----------
    request : PlanRequest or GpuSpec
        The validated question (`planner.request.PlanRequest`). For convenience a `GpuSpec` with ``duration_s``
        (s) and any other `PlanRequest` field as keywords builds the request here: the same fields, checked by the
        same constructor, e.g. ``plan(gpu, 365 * 86400, n_gpus=8, law=BUILTIN_LAWS["chinchilla"])``. The law is
        a resolved `ScalingLaw` (default: Besiroglu et al. 2024); a name is the face's to resolve
        (`scaling.io.resolve_law`), since saved laws are files.

    Returns
    -------
    Plan
        The recommendation, every option weighed, what binds, energy and cost. See docs/planner.md.
    """
    if isinstance(request, PlanRequest):
        if duration_s is not None or fields:
            raise TypeError("plan(request) takes the request alone; give the other fields to PlanRequest")
        req = request
    else:
        req = PlanRequest(request, duration_s, **fields)
    space = _search_space(req)
    budget, c_model = _budget(req)
    search = _recommendation(req, space, budget, c_model)
    return _explanation(req, space, search)


def model_flops_optimum(request: PlanRequest, c_flops: float, law: ScalingLaw | None = None) -> Allocation:
    """The law's optimum `plan` states for ``c_flops`` model FLOPs under ``request`` (its header's "compute-optimal").

    Parameters
    ----------
    request : PlanRequest
        The question whose model FLOPs ``c_flops`` are: its sequence, family (or fixed models) and dataset size set
        the model FLOPs per token of the model the plan would train.
    c_flops : float
        Model FLOPs, as the plan counts them (dense attention, PaLM App. B) (FLOP).
    law : ScalingLaw, optional
        Another law than the request's (the request is asked again with it).

    Returns
    -------
    Allocation
        The law's optimum for the budget converted to the law's C = 6ND at the model FLOPs per token of an
        N-parameter model (`scaling.optimal_per_token`; ``law_flops``), as `plan` places it: for the request's own
        law and the budget's model FLOPs this is `Plan.allocation`. See docs/planner.md.
    """
    req = request if law is None else replace(request, law=law)
    alloc, _ = _allocation(req, c_flops, _per_token(req, _search_space(req)))
    return alloc


def _search_space(req: PlanRequest) -> _Space:
    """The family (or the fixed model's), its presets, and the time model: the layout engine's beyond a node,
    else the per-operation model (`planner.speed`) or the constant efficiency stated with --mfu (or measured by
    a profile without fitted factors)."""
    from ..scaling import ParametricLoss

    layout = uses_layout_search(req.n_gpus, req.precision, req.mfu, req.calibration, req.layout_search)
    sf = None if req.fixed else shape_family(req.family, req.seq_len, req.arch, tensor_parallel=layout)
    fam_key = sf.key if sf is not None else (model_family(req.model) if req.model is not None else "gpt2")
    presets = (sf.presets if sf is not None else get_family(fam_key).preset_configs() if fam_key is not None
               else {})
    if req.objective == "target" and not isinstance(req.law.loss_form, ParametricLoss):
        raise DomainError(f"law {req.law.name!r} has no parametric loss E + A/N^alpha + B/D^beta to aim at a target "
                          "loss with; use --law besiroglu2024 or --law chinchilla")
    cluster = None
    if layout:
        from ..layout import cluster_for

        cluster = cluster_for(req.gpu, req.n_gpus, network_gbps=req.network_gbps)
    tm = None if cluster is not None else time_model_for(req.gpu, req.precision, req.mfu, req.calibration)
    node = layouts_inside_node(req.n_gpus, req.precision, req.mfu, req.calibration, req.layout_search)
    off_by = layouts_kept_off_by(req.n_gpus, req.precision, req.mfu, req.calibration, req.layout_search)
    return _Space(sf, fam_key, presets, cluster, tm, node, off_by)


def _budget(req: PlanRequest) -> tuple[ComputeBudget, float]:
    """The budget at the stated efficiency, and the model FLOPs it buys: a time as given; money as GPU-hours or
    kWh; FLOPs at the nominal rate; no budget (fixed tokens, a target) a nominal day that only sizes the search."""
    kind, gpu = req.budget_kind, req.gpu
    duration_s = req.duration_s
    if kind == "money":
        if req.usd_per_gpu_hour is not None:
            duration_s = hours_for_budget_usd(req.budget_usd, req.n_gpus, req.usd_per_gpu_hour) * SECONDS_PER_HOUR
        else:
            if gpu.board_power_w is None:
                raise DomainError(f"{gpu.name} has no board power in the GPU database, so a money budget cannot buy "
                                  "electricity; give --usd-per-gpu-hour or add board_power_w with --gpu-csv")
            # kWh = GPUs x board power x busy time; busy time = duty cycle x wall clock (costs.energy_cost)
            duration_s = (req.budget_usd / req.usd_per_kwh * JOULES_PER_KWH
                          / (req.n_gpus * gpu.board_power_w * req.utilization))
    if kind == "money" and not duration_s <= MAX_DURATION_S:  # 1e300 USD buys an infinite time, then FLOP budget
        price = (f"--usd-per-gpu-hour {req.usd_per_gpu_hour:g}" if req.usd_per_gpu_hour is not None
                 else f"--usd-per-kwh {req.usd_per_kwh:g}")
        years = MAX_DURATION_S / SECONDS_PER_YEAR
        raise UsageError(f"--budget-usd {req.budget_usd:g} at {price} buys more than {years:,.0f} years on "
                         f"{req.n_gpus} x {gpu.name}, the longest plan accepted; give a smaller --budget-usd")
    nominal = req.nominal_budget
    nominal.peak_flop_per_s_per_gpu  # noqa: B018 - raise now if the GPU lacks this precision
    if kind == "flops":
        duration_s = req.flops / nominal.achieved_flop_per_s
    if kind in ("tokens", "target"):  # no budget: the time is an output; a nominal day sizes the search
        duration_s = req.max_wall_clock_s or SECONDS_PER_DAY
    budget = ComputeBudget(gpu, req.n_gpus, float(duration_s), req.precision, req.utilization, req.stated_mfu)
    return budget, (req.flops if req.flops is not None else budget.model_flops)


def _explanation(req: PlanRequest, space: _Space, search: _Search) -> Plan:
    """The plan around the recommendation: other laws' losses, energy and cost, the presets, which constraint
    binds, the law's interval, hyperparameters, assumptions, warnings and tags."""
    from ..scaling import BUILTIN_LAWS

    law, gpu, tm = req.law, req.gpu, space.time_model
    rec, options, ctx, alloc, ia, budget = (search.recommended, search.options, search.context, search.allocation,
                                            search.inference_optimum, search.budget)
    loss_by_law = {name: _loss(BUILTIN_LAWS[name], _law_n(BUILTIN_LAWS[name], rec.model), rec.useful_tokens,
                               req.dataset_tokens)[0] for name in COMPARISON_LAWS}
    energy = energy_cost(gpu, req.n_gpus, rec.train_time_s, req.utilization, electricity_usd_per_kwh=req.usd_per_kwh,
                         cloud_usd_per_gpu_hour=req.usd_per_gpu_hour)
    rec_tm = tm  # the model that priced the recommended run
    # here, not above: a plan that never weighs layouts never loads them
    if space.cluster is not None and rec.chosen.layout is None:  # a data-parallel setup beat the layouts
        from .layout import data_parallel_time_model

        rec_tm = data_parallel_time_model(gpu, budget.precision, space.cluster.network_bytes_per_s)
    if rec.chosen.layout is not None:  # beyond a node, or a layout of one node's GPUs (`speed.layouts_inside_node`)
        from .layout import time_model_source

        rec_tm = None  # the layout engine priced it, as beyond a node
        mfu_source = time_model_source(rec.chosen.layout) + "; the efficiency is an output of the model, per option"
    else:
        mfu_source = time_model_words(rec_tm, gpu)
    cands = _preset_candidates(options, ctx)
    # with inference tokens the recommendation is not the lowest loss, so "what relaxing buys" would mislead
    binding = _binding(options, rec, ctx) if req.explain and req.objective == "loss" and ia is None else ()
    interval = None
    if rec.loss is not None and "E" in getattr(law, "uncertainty", {}):
        lo, hi = law.uncertainty["E"]
        e = law.loss_form.E
        interval = (rec.loss - (e - lo), rec.loss + (hi - e))  # the law's stated interval on its floor E
    cap = req.memory_bytes or gpu.memory_bytes
    hp, over, life, warmup = _run_notes(rec, law, req.seq_len, req.n_gpus, req.inference_tokens)
    extra = tuple(w for w in ((over.warning if over else None), *(hp.warnings if hp else ())) if w)
    extra += _family_warnings(space.family, search.skipped, rec, law) + _past_context(req, rec)
    if space.cluster is None and req.layout_search is None:  # the layout search was off without being asked to be
        extra += tuple(w for w in (_layout_search_skipped(req.n_gpus, req.mfu, req.calibration, req.precision,
                                                          rec.model, req.seq_len),) if w)
    # the per-operation model (and a profile's MFU per size) states no one efficiency
    stated = tm.efficiency if tm is not None and tm.kind in (STATED, DEFAULT_CONSTANT) else None
    shorter = shorter_run(rec, law, req.dataset_tokens, req.budget_kind)  # a spending budget's (not a target's)
    warnings = (tuple(_warnings(rec, budget, req.memory_bytes, req.calibration, req.mfu, law, rec_tm,
                                shorter_run_warning(shorter) if shorter is not None else None)) + extra
                + _calibration_warnings(req.calibration, gpu, options, rec))
    assumptions = _assumptions(budget, law, mfu_source, req.seq_len, cap, stated, rec, space.family,
                               time_model=None if rec_tm is None else rec_tm.kind,
                               network=_network(req.n_gpus, gpu, space.cluster))
    return Plan(budget, cands, assumptions,
                law, alloc, options, rec, loss_by_law, interval, energy, mfu_source, req.budget_kind,
                req.max_wall_clock_s, warnings, req.objective, req.target_loss, binding,
                _tags(options, rec, alloc, law, ia), stated_efficiency=stated, hyperparameters=hp,
                overtraining=over, inference_tokens=req.inference_tokens, inference_optimum=ia, life_cycle=life,
                warmup_steps=warmup, family=space.family_key, time_model=LAYOUT if rec_tm is None else rec_tm.kind,
                seq_source=req.seq_len_source, data_bound=shorter, budget_run=search.budget_run,
                fastest_train_time_s=_fastest_to_target(options) if req.budget_kind == "target" else None)


def _fastest_to_target(options) -> float | None:
    """The time of the fastest option that reaches the target (None when none does): what the life-cycle pick is
    said beside."""
    return min((o.train_time_s for o in options if o.reaches_target), default=None)


def _past_context(req: PlanRequest, rec: PlanOption) -> tuple[str, ...]:
    """The warning `flopscalc memory`, `step`, `flops`, `infer` and `finetune` give (`model.past_context_warning`)
    when the recommended model is a fixed one (--model, --config) run past the context it was trained at: the plan
    runs it at the sequence (`search._shapes` extends its block_size), but the law's loss is for a model trained
    to read that far."""
    fixed = [req.model] if req.model is not None else list(req.models or ())
    given = next((m for m in fixed if m.with_(block_size=rec.model.block_size) == rec.model), None)
    if given is None or not past_context(given, req.seq_len):
        return ()
    return (past_context_warning(req.seq_len, given.block_size,
                                 priced="time and memory are priced (the law's loss assumes a model trained at that length)"),)


def plans_frame(plans: list[Plan]):
    """One row per plan (recommended run) as a pandas DataFrame, for sweeps over days, GPUs or laws."""
    import pandas as pd

    rows = []
    for p in plans:
        r = p.recommended
        rows.append({
            "gpu": p.budget.gpu.key, "n_gpus": p.budget.n_gpus, "duration_s": p.budget.duration_s,
            "precision": p.budget.precision.value, "model_flops": r.model_flops, "n_params": r.n_params,
            "n_layer": r.model.n_layer, "n_embd": r.model.n_embd, "n_tokens": r.n_tokens,
            "tokens_per_param": r.tokens_per_param, "loss": r.loss, "train_time_s": r.train_time_s,
            "micro_batch": r.chosen.setup.micro_batch, "grad_accum": r.chosen.setup.grad_accum,
            "recompute": r.chosen.setup.recompute.value, "optimizer": r.chosen.setup.optimizer.value,
            "zero_stage": r.chosen.setup.zero_stage, "peak_memory_bytes": r.chosen.peak_memory_bytes,
            "offload_optimizer": r.chosen.setup.offload_optimizer, "mfu": r.speed.mfu, "hfu": r.speed.hfu,
            "energy_kwh": p.energy.facility_energy_kwh, "law": p.law.name,
        })
    return pd.DataFrame(rows)
