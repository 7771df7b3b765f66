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

from ..assumption import Assumption
from ..costs import JOULES_PER_KWH, EnergyCost, energy_cost, hours_for_budget_usd
from ..errors import DomainError, UsageError
from ..hardware import GpuSpec, Precision
from ..model import ModelConfig, get_family
from ..units import SECONDS_PER_DAY, SECONDS_PER_HOUR
from .budget import (
    CHINCHILLA_TOKENS_PER_PARAM,
    DEFAULT_MFU,
    DEFAULT_PRECISION,
    DEFAULT_UTILIZATION,
    Candidate,
    ComputeBudget,
    candidate,
)
from .family import model_family, shape_family
from .layout import time_model_source, uses_layout_search
from .notes import _assumptions, _calibration_warnings, _family_warnings, _run_notes, _tags, _warnings
from .options import PlanOption, check_positive
from .search import (
    Binding,
    _binding,
    _Context,
    _evaluate,
    _law_n,
    _loss,
    _preset_candidates,
    _recommend,
    _shapes,
)
from .speed import DEFAULT_CONSTANT, LAYOUT, STATED, time_model_for, time_model_words

__all__ = [
    "CHINCHILLA_TOKENS_PER_PARAM", "DEFAULT_MFU", "DEFAULT_PRECISION", "DEFAULT_UTILIZATION", "Assumption",
    "Binding", "Candidate", "ComputeBudget", "Plan", "candidate", "plan", "plans_frame",
]

# Laws whose loss the plan also shows for the recommended run, to show how much the laws disagree.
COMPARISON_LAWS = ("besiroglu2024", "chinchilla")
# Passes of the plan while the recommended run's delivered model FLOPs move the law's optimum: re-evaluate when
# they differ by more than BUDGET_PASS_REL from the FLOPs the shapes were placed around. N_opt grows as about
# C^0.5 (Hoffmann et al. 2022, Table 2: a = 0.46-0.50), so 1% in C moves it ~0.5%, about 1% of the 2^(1/2) = 41%
# spacing of the shapes (OPTION_STEPS).
MAX_BUDGET_PASSES = 4
BUDGET_PASS_REL = 0.01


@dataclass(frozen=True)
class Plan:
    """The answer: budget, the law's optimum, every option evaluated, the recommendation, energy and cost."""

    budget: ComputeBudget
    candidates: tuple[Candidate, ...]  # the GPT-2 presets: what the budget buys each, with its setup and speed
    assumptions: tuple[Assumption, ...] = field(default=())
    law: object = None  # ScalingLaw
    allocation: object = None  # scaling.Allocation for the budget's model FLOPs
    options: tuple[PlanOption, ...] = ()
    recommended: PlanOption | None = None
    loss_by_law: dict = field(default_factory=dict)  # other laws' predictions for the recommended run
    loss_interval: tuple[float, float] | None = None  # from the law's stated interval on E, when it has one
    energy: EnergyCost | None = None
    mfu_source: str = ""
    budget_kind: str = "time"  # time, flops, money, tokens (fixed model and tokens) or target
    max_wall_clock_s: float | None = None
    warnings: tuple[str, ...] = ()
    objective: str = "loss"
    target_loss: float | None = None
    binding: tuple[Binding, ...] = ()
    tags: dict = field(default_factory=dict)  # option index -> labels (compute-optimal, largest that fits, ...)
    stated_efficiency: float | None = None  # hardware efficiency stated (--mfu or default): MFU without recompute
    hyperparameters: object = None  # scaling.hyperparams.Hyperparameters for the recommended run
    warmup_steps: int | None = None  # warm-up of the recommended run at its own batch (DeepSeek LLM sec. 2.3)
    overtraining: object = None  # scaling.inference.OvertrainingNote for the recommended run
    inference_tokens: float | None = None  # tokens the model will serve over its life, when given
    inference_optimum: object = None  # scaling.inference.InferenceAllocation: the life-cycle optimum
    life_cycle: object = None  # scaling.inference.InferenceAllocation: the recommended run vs Chinchilla of its loss
    family: str | None = "gpt2"  # the family shaped (or of the fixed model) whose presets the plan shows; None: none
    time_model: str = ""  # which model priced every option (`planner.speed`: per-operation, calibrated, stated, ...)

    @property
    def params_vs_optimum(self) -> float | None:
        """The recommended N (as the law counts it) over the law's compute-optimal N of the header; with
        inference tokens only (below 1: a smaller model than Chinchilla's)."""
        return None if self.life_cycle is None else self.life_cycle.n_params / self.allocation.n_params

    @property
    def tokens_vs_optimum(self) -> float | None:
        """The recommended run's tokens over the law's compute-optimal D; with inference tokens only."""
        return None if self.life_cycle is None else self.recommended.n_tokens / self.allocation.n_tokens


def _check_inputs(kind_values: dict, n_gpus: int, mfu, calibration, gpu: GpuSpec, seq_len,
                  calibration_any_device: bool = False) -> int:
    for what, value in kind_values.items():
        check_positive(value, what)
    if isinstance(n_gpus, bool) or not isinstance(n_gpus, int) or n_gpus < 1:
        raise UsageError(f"number of GPUs must be a whole number >= 1, got {n_gpus!r}")
    if mfu is not None and calibration is not None:
        raise UsageError("give --mfu or --calibration, not both: the profile's measured MFU replaces the stated one")
    if calibration_any_device and calibration is None:
        raise UsageError("--calibration-any-device applies a --calibration profile measured on another device: "
                         "give the profile too, or drop it")
    if calibration is not None and not calibration_any_device and not calibration.measured_on(gpu.key):
        where = ("" if calibration.gpu_key else " (not a GPU of the database)")
        raise UsageError(f"the calibration profile was measured on {calibration.device}{where}, the plan is for "
                         f"{gpu.key} ({gpu.name}); calibrate on that GPU, drop --calibration, or pass "
                         "--calibration-any-device to apply it anyway")
    seq_len = seq_len or 1024
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise UsageError(f"sequence length must be a positive whole number of tokens, got {seq_len!r}")
    return seq_len


def _budget_kind(duration_s, flops, budget_usd, model, n_tokens, target_loss) -> str:
    given = [k for k, v in (("a time", duration_s), ("a FLOP budget", flops), ("a money budget", budget_usd))
             if v is not None]
    if n_tokens is not None and model is None:
        raise UsageError("--tokens fixes the training tokens of a fixed model: add --model (or --params)")
    if n_tokens is not None and target_loss is not None:
        raise UsageError("give --tokens (train a fixed model on fixed tokens) or --target-loss, not both")
    if n_tokens is not None or target_loss is not None:
        if given and n_tokens is not None:
            raise UsageError(f"--tokens already fixes the run; drop {' and '.join(given)} (use --max-days to cap time)")
        return "tokens" if n_tokens is not None else "target"
    if len(given) != 1:
        raise UsageError("give exactly one budget: a time (--days/--hours/--duration), a FLOP budget (--flops) or "
                         "a money budget (--budget-usd with --usd-per-gpu-hour or --usd-per-kwh); got "
                         + (f"{len(given)} ({' and '.join(given)})" if given else "none")
                         + "; or fix the run with --model and --tokens, or aim for --target-loss")
    return {"a time": "time", "a FLOP budget": "flops", "a money budget": "money"}[given[0]]


def plan(
    gpu: GpuSpec,
    duration_s: float | None = None,
    *,
    flops: float | None = None,
    budget_usd: float | None = None,
    usd_per_gpu_hour: float | None = None,
    usd_per_kwh: float | None = None,
    n_gpus: int = 1,
    precision: Precision | str = DEFAULT_PRECISION,
    utilization: float = DEFAULT_UTILIZATION,
    mfu: float | None = None,
    calibration=None,
    law=None,
    dataset_tokens: float | None = None,
    max_wall_clock_s: float | None = None,
    memory_bytes: float | None = None,
    seq_len: int | None = None,
    models: list[ModelConfig] | None = None,
    model: ModelConfig | None = None,
    n_tokens: float | None = None,
    target_loss: float | None = None,
    explain: bool = True,
    calibration_any_device: bool = False,
    inference_tokens: float | None = None,
    family: str | None = None,
    arch: dict | None = None,
    layout_search: bool | None = None,
) -> Plan:
    """The best training run for a budget on ``n_gpus`` x ``gpu``, under memory, data and time limits.

    Parameters
    ----------
    gpu : GpuSpec
    duration_s : float, optional
        Wall-clock time the GPUs are yours (s). At most one of ``duration_s``, ``flops``, ``budget_usd``.
    flops : float, optional
        Model-FLOP budget (FLOP), instead of a time.
    budget_usd : float, optional
        Money (USD), instead of a time: rents GPUs at ``usd_per_gpu_hour``, or else buys electricity at
        ``usd_per_kwh`` for the GPUs' board power while busy.
    usd_per_gpu_hour, usd_per_kwh : float, optional
        Cloud price (USD per GPU-hour) and electricity price (USD/kWh) for the cost lines.
    n_gpus : int
    precision : Precision
        Selects the dense peak rate and the mixed-precision memory policy.
    utilization : float
        Duty cycle in (0, 1]: share of wall-clock time spent training.
    mfu : float, optional
        Model FLOPs utilization while busy, without recomputation (default `DEFAULT_MFU` or ``calibration``).
    calibration : CalibrationProfile, optional
        Measured MFU interpolated to each model size (``flopscalc calibrate``).
    law : str or ScalingLaw, optional
        Scaling law (default: Besiroglu et al. 2024).
    dataset_tokens : float, optional
        Unique tokens available; more training tokens repeat data (Muennighoff et al. 2023).
    max_wall_clock_s : float, optional
        Training must finish within this (s).
    memory_bytes : float, optional
        Memory per GPU to plan for, instead of the database's capacity (bytes).
    seq_len : int, optional
        Training sequence length (default 1024).
    models : list of ModelConfig, optional
        Evaluate these instead of the shapes around the optimum.
    model : ModelConfig, optional
        Objective "fixed": plan this model only (tokens from the budget, or ``n_tokens``).
    n_tokens : float, optional
        With ``model``: train it on exactly this many tokens; the plan gives time, energy and cost.
    target_loss : float, optional
        Objective "target": the fastest run whose predicted loss reaches this (nats/token).
    explain : bool
        Work out which constraint binds and what relaxing it would buy (a few extra evaluations).
    calibration_any_device : bool
        Apply ``calibration`` even when it was measured on another device than ``gpu`` (refused otherwise);
        the plan then warns that its MFU is borrowed.
    inference_tokens : float, optional
        Tokens the model will serve over its life (count): the shapes centre on the model that minimises training
        plus inference FLOPs (Sardana et al. 2024) and the plan recommends the one nearest it that fits.
    family : str, optional
        The family whose shaping rule and presets give the candidates (`model.FAMILIES`; default GPT-2's).
    arch : dict, optional
        Architecture options for the shaped candidates, named as `model.with_architecture` names them.
    layout_search : bool, optional
        Give each candidate the fastest parallel layout (TP, PP, CP, EP, ZeRO, micro-batch, recomputation) found and
        priced by the layout engine (`planner.layout`). Default: on more GPUs than one node holds when no efficiency
        is stated (``mfu``, ``calibration``); False keeps the data-parallel setup search at a constant efficiency.
    """
    from ..scaling import (
        BUILTIN_LAWS,
        ParametricLoss,
        flops_for_loss,
        optimal,
        optimal_data_constrained,
    )
    from ..scaling.inference import inference_optimal_for_loss, inference_optimal_for_training_budget
    from ..scaling.io import resolve_law

    precision = Precision(precision)
    kind = _budget_kind(duration_s, flops, budget_usd, model, n_tokens, target_loss)
    seq_len = _check_inputs({"the FLOP budget": flops, "the dataset size (unique tokens)": dataset_tokens,
                             "the maximum wall-clock time": max_wall_clock_s, "memory per GPU": memory_bytes,
                             "the electricity price": usd_per_kwh, "the GPU-hour price": usd_per_gpu_hour,
                             "the training tokens": n_tokens, "the target loss": target_loss,
                             "the money budget": budget_usd, "the inference tokens": inference_tokens},
                            n_gpus, mfu, calibration, gpu, seq_len, calibration_any_device)
    law = resolve_law(law)
    objective = "target" if kind == "target" else ("fixed" if model is not None else "loss")
    if inference_tokens is not None:
        _check_inference(law, dataset_tokens, model, models)
    fixed = model is not None or models is not None
    if fixed and (family is not None or any(v is not None for v in (arch or {}).values())):
        raise UsageError("--family and architecture options shape the models the plan tries, and --model, --config "
                         "or --params fixes the model: drop --family, or give the options with the fixed model")
    sf = None if fixed else shape_family(family, seq_len, arch)
    fam_key = sf.key if sf is not None else (model_family(model) if model is not None else "gpt2")
    presets = (sf.presets if sf is not None else get_family(fam_key).preset_configs() if fam_key is not None
               else {})
    if objective == "target" and not isinstance(law.loss_form, ParametricLoss):
        raise DomainError(f"law {law.name!r} has no parametric loss E + A/N^alpha + B/D^beta to aim at a target "
                          "loss with; use --law besiroglu2024 or --law chinchilla")
    stated_mfu = mfu if mfu is not None else DEFAULT_MFU
    cluster = None
    if uses_layout_search(n_gpus, precision, mfu, calibration, layout_search):
        from ..layout import cluster_for

        cluster = cluster_for(gpu, n_gpus)
    # one time model per plan: the layout engine's beyond a node, else the per-operation model (`planner.speed`) or
    # the constant efficiency stated with --mfu (or measured by a profile without fitted factors)
    tm = None if cluster is not None else time_model_for(gpu, precision, mfu, calibration)
    if kind == "money":
        if usd_per_gpu_hour is not None:
            duration_s = hours_for_budget_usd(budget_usd, n_gpus, usd_per_gpu_hour) * SECONDS_PER_HOUR
        elif usd_per_kwh is not None:
            if gpu.board_power_w is None:
                raise DomainError(f"{gpu.name} has no board power in the GPU database, so a money budget cannot buy "
                                  "electricity; give --usd-per-gpu-hour or add board_power_w with --gpu-csv")
            # kWh = GPUs x board power x busy time; busy time = duty cycle x wall clock (costs.energy_cost)
            duration_s = budget_usd / usd_per_kwh * JOULES_PER_KWH / (n_gpus * gpu.board_power_w * utilization)
        else:
            raise UsageError("a money budget needs a price: --usd-per-gpu-hour (cloud) or --usd-per-kwh "
                             "(electricity at the GPU's board power)")
    nominal = ComputeBudget(gpu, n_gpus, 1.0, precision, utilization, stated_mfu)
    nominal.peak_flop_per_s_per_gpu  # noqa: B018 - raise now if the GPU lacks this precision
    if kind == "flops":
        duration_s = flops / nominal.achieved_flop_per_s
    if kind in ("tokens", "target"):  # no budget: the time is an output; a nominal day sizes the search
        duration_s = max_wall_clock_s or SECONDS_PER_DAY
    budget = ComputeBudget(gpu, n_gpus, float(duration_s), precision, utilization, stated_mfu)
    c_model = flops if flops is not None else budget.model_flops

    # The header's optimum must be the law's optimum for the model FLOPs the recommended run delivers, and those
    # depend on the run it picks (its recomputation, communication and offload): start from the stated
    # efficiency and evaluate again while the delivered FLOPs move the optimum.
    for _ in range(MAX_BUDGET_PASSES):
        if kind == "target":
            alloc = flops_for_loss(law, target_loss)
        elif dataset_tokens is not None and law.has_loss and law.repetition is not None:
            alloc = optimal_data_constrained(law, c_model, dataset_tokens)
        else:
            alloc = optimal(law, c_model)
        ia = None  # the life-cycle optimum (Sardana et al. 2024): of the target's loss, or trained in the budget
        if inference_tokens is not None:
            ia = (inference_optimal_for_loss(law, target_loss, inference_tokens) if kind == "target" else
                  inference_optimal_for_training_budget(law, c_model, inference_tokens))
        centre = alloc.n_params if ia is None else ia.n_params
        shapes, skipped = ([model], ()) if model is not None else _shapes(law, centre, seq_len, models, sf)
        ctx = _Context(law, gpu, budget, kind, c_model, seq_len, mfu, calibration, dataset_tokens, max_wall_clock_s,
                       memory_bytes, n_tokens, target_loss, alloc.loss, presets, cluster, tm)
        options = tuple(_evaluate(cfg, ctx) for cfg in shapes)
        rec = _recommend(options, ctx, alloc, ia)
        if kind not in ("time", "money"):
            break
        delivered = budget.busy_flops * rec.speed.mfu
        if abs(delivered / c_model - 1) <= BUDGET_PASS_REL:
            break
        c_model = delivered
    run_mfu = rec.speed.mfu
    if kind in ("time", "money"):  # the budget's model FLOPs are what the recommended run delivers in it
        budget = replace(budget, mfu=run_mfu)
        c_model = budget.model_flops
        if dataset_tokens is not None and law.has_loss and law.repetition is not None:
            alloc = optimal_data_constrained(law, c_model, dataset_tokens)
        else:
            alloc = optimal(law, c_model)
        if inference_tokens is not None:
            ia = inference_optimal_for_training_budget(law, c_model, inference_tokens)
    elif kind == "flops":  # the time the recommended run takes to spend the FLOPs, at its own MFU
        run = replace(budget, mfu=run_mfu)
        budget = replace(run, duration_s=flops / run.achieved_flop_per_s)
    else:  # the run's own time is the budget the tables show
        budget = ComputeBudget(gpu, n_gpus, rec.train_time_s, precision, utilization, run_mfu)
    if kind == "tokens":  # the compute-optimal split of the FLOPs this fixed run spends
        alloc = optimal(law, rec.model_flops)

    loss_by_law = {name: _loss(BUILTIN_LAWS[name], _law_n(BUILTIN_LAWS[name], rec.model), rec.useful_tokens,
                               dataset_tokens)[0] for name in COMPARISON_LAWS}
    energy = energy_cost(gpu, n_gpus, rec.train_time_s, utilization, electricity_usd_per_kwh=usd_per_kwh,
                         cloud_usd_per_gpu_hour=usd_per_gpu_hour)
    mfu_source = (time_model_source(rec.chosen.layout) + "; the efficiency is an output of the model, per option"
                  if cluster is not None else time_model_words(tm))
    cands = _preset_candidates(options, ctx)
    # with inference tokens the recommendation is not the lowest loss, so "what relaxing buys" would mislead
    binding = _binding(options, rec, ctx) if explain and objective == "loss" and ia is None else ()
    interval = None
    if rec.loss is not None and "E" in getattr(law, "uncertainty", {}):
        lo, hi = law.uncertainty["E"]
        e = law.loss_form.E
        interval = (rec.loss - (e - lo), rec.loss + (hi - e))  # the law's stated interval on its floor E
    cap = memory_bytes or gpu.memory_bytes
    hp, over, life, warmup = _run_notes(rec, law, seq_len, n_gpus, inference_tokens)
    extra = tuple(w for w in ((over.warning if over else None), *(hp.warnings if hp else ())) if w)
    extra += _family_warnings(sf, skipped, rec, law)
    # the per-operation model (and a profile's MFU per size) states no one efficiency
    stated = tm.efficiency if tm is not None and tm.kind in (STATED, DEFAULT_CONSTANT) else None
    return Plan(budget, cands, _assumptions(budget, law, mfu_source, seq_len, cap, stated, rec, sf), law, alloc,
                options, rec, loss_by_law, interval, energy, mfu_source, kind, max_wall_clock_s,
                tuple(_warnings(rec, budget, memory_bytes, calibration, mfu, law, tm)) + extra
                + _calibration_warnings(calibration, gpu, options, rec), objective, target_loss, binding,
                _tags(options, rec, alloc, law, ia), stated_efficiency=stated, hyperparameters=hp,
                overtraining=over, inference_tokens=inference_tokens, inference_optimum=ia, life_cycle=life,
                warmup_steps=warmup, family=fam_key, time_model=LAYOUT if tm is None else tm.kind)


def _check_inference(law, dataset_tokens, model, models) -> None:
    """Refuse what the inference-aware optimum cannot honour, one line each."""
    from ..scaling import ParametricLoss

    if dataset_tokens is not None:
        raise UsageError("--inference-tokens cannot be combined with --dataset-tokens: the inference-aware optimum "
                         "(Sardana et al. 2024) has no form for repeated data; drop one of them")
    if not isinstance(law.loss_form, ParametricLoss):
        raise UsageError(f"--inference-tokens needs a law with a parametric loss E + A/N^alpha + B/D^beta, and "
                         f"{law.name!r} has none; use --law besiroglu2024 or --law chinchilla")
    if model is not None or models is not None:
        raise UsageError("--inference-tokens chooses the model size, and --model/--params fixes it: drop one (the "
                         "life-cycle optimum alone: 'flopscalc scaling optimal --inference-tokens')")


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
