"""Compose the engines into a plan: the best training run for a budget, under memory, data and time limits.

budget = GPUs x dense peak x duty cycle x MFU x time (`budget.ComputeBudget`), or FLOPs, or money; its MFU is the
recommended run's own. A scaling law turns the budget into a compute-optimal N; model shapes around it (and the
GPT-2 presets) are each given the fastest training setup that fits the GPU's memory (`plan_options.choose_setup`),
a step time from the FLOPs engine and the communication model, the tokens the budget then trains, and the law's
predicted loss.

Objectives: the lowest predicted loss (default); a fixed model (and optionally fixed tokens): its setup, time
and cost; a target loss: the fastest run that reaches it. See docs/planner.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from .assumption import Assumption
from .budget import (
    CHINCHILLA_TOKENS_PER_PARAM,
    DEFAULT_MFU,
    DEFAULT_PRECISION,
    DEFAULT_UTILIZATION,
    Candidate,
    ComputeBudget,
    candidate,
)
from .costs import JOULES_PER_KWH, EnergyCost, energy_cost, hours_for_budget_usd
from .errors import DomainError, UsageError
from .hardware import GpuSpec, Precision
from .model import PRESETS, ModelConfig, config_for_params, count_params
from .offload import HOST_MEMORY_BYTES_PER_S, host_link_bytes_per_s, pcie_generation
from .parallel import low_efficiency_warning
from .plan_options import (
    GROW_BATCH_KINDS,
    MAX_GPUS_SEARCHED,
    PLAN_MEMORY_HEADROOM,
    PlanOption,
    check_positive,
    choose_setup,
    grow_batch,
    lightest_peak_bytes,
    min_gpus_to_fit,
    nearest_preset,
    throughput,
    tools_needed,
)
from .units import format_count, format_duration

__all__ = [
    "CHINCHILLA_TOKENS_PER_PARAM", "DEFAULT_MFU", "DEFAULT_PRECISION", "DEFAULT_UTILIZATION", "Assumption",
    "Binding", "Candidate", "ComputeBudget", "Plan", "candidate", "plan", "plans_frame",
]

# Model sizes tried around the law's optimum: N_opt x 2^(k/2), k = -4..4 (a factor 4 either way).
OPTION_STEPS = tuple(range(-4, 5))
# Laws whose loss the plan also shows for the recommended run, to show how much the laws disagree.
COMPARISON_LAWS = ("besiroglu2024", "chinchilla")
# How much a constraint is relaxed to say what relaxing it would buy: twice the compute or time.
RELAX_FACTOR = 2.0
# A constraint "binds" when relaxing it improves the predicted loss by more than this (nats/token).
BINDING_LOSS = 1e-3
OBJECTIVES = ("loss", "fixed", "target")
# Passes of the plan while the recommended run's delivered model FLOPs move the law's optimum: re-evaluate when
# they differ by more than BUDGET_PASS_REL from the FLOPs the shapes were placed around. N_opt grows as about
# C^0.5 (Hoffmann et al. 2022, Table 2: a = 0.46-0.50), so 1% in C moves it ~0.5%, about 1% of the 2^(1/2) = 41%
# spacing of the shapes (OPTION_STEPS).
MAX_BUDGET_PASSES = 4
BUDGET_PASS_REL = 0.01


@dataclass(frozen=True)
class Binding:
    """One constraint: whether it binds, and the loss (or time) relaxing it would give."""

    constraint: str  # compute, memory, data or time
    binds: bool
    relaxed: str  # what was relaxed, in words
    loss_if_relaxed: float | None


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

    @property
    def params_vs_optimum(self) -> float | None:
        """The recommended N (as the law counts it) over the law's compute-optimal N of the header; with
        inference tokens only (below 1: a smaller model than Chinchilla's)."""
        return None if self.life_cycle is None else self.life_cycle.n_params / self.allocation.n_params

    @property
    def tokens_vs_optimum(self) -> float | None:
        """The recommended run's tokens over the law's compute-optimal D; with inference tokens only."""
        return None if self.life_cycle is None else self.recommended.n_tokens / self.allocation.n_tokens


def _law_n(law, cfg: ModelConfig) -> int:
    """The parameter count the law means: with embeddings unless the law says otherwise (Kaplan)."""
    pc = count_params(cfg)
    return pc.non_embedding if law.n_counts_embeddings is False else pc.total


def _loss(law, n_params: float, n_tokens: float, unique_tokens: float | None) -> tuple[float | None, float | None]:
    """Predicted loss and effective tokens from `scaling.predict_loss`, the engine of `flopscalc scaling loss`:
    with a data limit, repeated tokens and excess parameters both decay (Muennighoff et al. 2023, eq. 5-7).

    The loss is None where the law has none, the run trains no tokens, or the law's formula exceeds a uniform
    guess over its vocabulary (`ScalingLaw.uniform_loss`): that is no prediction.
    """
    from .scaling.allocate import predict_loss

    if not law.has_loss or not n_tokens > 0 or math.isinf(n_tokens):
        return None, None
    p = predict_loss(law, n_params, n_tokens, unique_tokens)
    return p.loss, p.effective_tokens


def _tokens_for_loss(law, n_params: float, target: float, unique_tokens: float | None = None) -> float:
    """Tokens at which N parameters reach ``target`` under a parametric law (inf if they never do).

    `scaling.allocate.tokens_for_loss`: inverts Hoffmann et al. 2022 eq. 2 for D, or with ``unique_tokens`` the
    data-constrained loss that `_loss` predicts (Muennighoff et al. 2023, eq. 7), so the run reaches the target.
    """
    from .scaling.allocate import tokens_for_loss

    return tokens_for_loss(law, n_params, target, unique_tokens)


def _shapes(law, n_opt: float, seq_len: int, models: list[ModelConfig] | None) -> list[ModelConfig]:
    if models is not None:
        return [m if m.block_size >= seq_len else m.with_(block_size=seq_len) for m in models]
    base = PRESETS["gpt2"].with_(block_size=max(1024, seq_len))
    count = "non_embedding" if law.n_counts_embeddings is False else "total"
    shapes: dict[tuple, ModelConfig] = {}
    for k in OPTION_STEPS:
        try:
            cfg = config_for_params(n_opt * 2 ** (k / 2), count=count, base=base)
        except DomainError:  # too small to shape with a GPT-2 vocabulary
            continue
        shapes.setdefault((cfg.n_layer, cfg.n_head, cfg.n_embd), cfg.with_(name=""))
    for cfg in PRESETS.values():
        cfg = cfg if cfg.block_size >= seq_len else cfg.with_(block_size=seq_len)
        shapes[(cfg.n_layer, cfg.n_head, cfg.n_embd)] = cfg
    return sorted(shapes.values(), key=lambda c: count_params(c).total)


@dataclass(frozen=True)
class _Context:
    """Everything `_evaluate` needs besides the model: one place instead of a dozen arguments."""

    law: object
    gpu: GpuSpec
    budget: ComputeBudget
    kind: str
    c_model: float | None
    seq_len: int
    mfu: float | None
    calibration: object
    dataset_tokens: float | None
    max_wall_clock_s: float | None
    memory_bytes: float | None
    n_tokens: float | None
    target_loss: float | None
    optimum_loss: float | None = None  # the law's loss at its optimum: the critical batch's when an option has none


def _tokens(cfg: ModelConfig, speed, ctx: _Context, token_value: float = 1.0) -> float:
    """Tokens the option trains: the budget's, or those that reach the target (more at a grown batch, whose
    tokens are each worth ``token_value``), capped by the wall clock."""
    rate = speed.tokens_per_s * ctx.budget.utilization  # tokens per wall-clock second
    if ctx.kind == "tokens":
        tokens = ctx.n_tokens
    elif ctx.kind == "target":
        tokens = _tokens_for_loss(ctx.law, _law_n(ctx.law, cfg), ctx.target_loss, ctx.dataset_tokens) / token_value
    elif ctx.kind == "flops":
        tokens = ctx.c_model / speed.model_flops_per_token
    else:
        tokens = rate * ctx.budget.duration_s
    if ctx.max_wall_clock_s is not None and ctx.kind in ("time", "flops", "money"):
        tokens = min(tokens, rate * ctx.max_wall_clock_s)
    return tokens


def _evaluate(cfg: ModelConfig, ctx: _Context) -> PlanOption:
    n = count_params(cfg).total
    b = ctx.budget
    # the search ranks setups at one efficiency: the stated one, or the profile's at its best micro-batch
    eff = (ctx.calibration.mfu_for(n, None, ctx.seq_len) if ctx.calibration is not None
           else ctx.mfu if ctx.mfu is not None else DEFAULT_MFU)
    chosen = choose_setup(cfg, ctx.gpu, b.n_gpus, ctx.seq_len, b.precision, ctx.memory_bytes, eff)
    if chosen is None:
        return PlanOption(cfg, n, nearest_preset(n), None,
                          min_gpus_to_fit(cfg, ctx.gpu, ctx.seq_len, b.precision, ctx.memory_bytes),
                          None, 0.0, 0.0, None, None, ctx.dataset_tokens)

    def speed_of(c):  # a profile's runs at what it measured at the chosen micro-batch
        run_eff = ctx.calibration.mfu_for(n, c.setup.micro_batch, ctx.seq_len) if ctx.calibration is not None else eff
        return throughput(cfg, c.setup, c.tokens_per_step, ctx.gpu, b.precision, run_eff)

    speed = speed_of(chosen)
    growth = None
    if ctx.kind in GROW_BATCH_KINDS and b.n_gpus > 1 and speed.comm.exposed_s > 0:
        # the critical batch at the option's own loss at the default batch (the target's; else the optimum's)
        loss0 = (ctx.target_loss if ctx.kind == "target" else
                 _loss(ctx.law, _law_n(ctx.law, cfg), _tokens(cfg, speed, ctx), ctx.dataset_tokens)[0])
        grown = grow_batch(cfg, ctx.gpu, b.n_gpus, ctx.seq_len, b.precision, ctx.memory_bytes, eff, chosen, speed,
                           loss0 if loss0 is not None else ctx.optimum_loss, speed_of)
        if grown is not None:
            chosen, speed, growth = grown
    value = 1.0 if growth is None else growth.token_value
    tokens = _tokens(cfg, speed, ctx, value)
    rate = speed.tokens_per_s * b.utilization
    # a grown batch's tokens are worth `token_value` of the law's (Kaplan et al. 2020 eq. 5.5)
    loss, d_eff = _loss(ctx.law, _law_n(ctx.law, cfg), tokens * value, ctx.dataset_tokens)
    if ctx.kind == "target" and math.isinf(tokens):
        loss = None
    return PlanOption(cfg, n, nearest_preset(n), chosen, None, speed, tokens, tokens / rate, loss, d_eff,
                      ctx.dataset_tokens, growth)


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
    """
    from .scaling import (
        BUILTIN_LAWS,
        DEFAULT_LAW,
        ParametricLoss,
        flops_for_loss,
        optimal,
        optimal_data_constrained,
    )
    from .scaling.inference import inference_optimal_for_loss, inference_optimal_for_training_budget
    from .scaling.io import get_law

    precision = Precision(precision)
    kind = _budget_kind(duration_s, flops, budget_usd, model, n_tokens, target_loss)
    seq_len = _check_inputs({"the FLOP budget": flops, "the dataset size (unique tokens)": dataset_tokens,
                             "the maximum wall-clock time": max_wall_clock_s, "memory per GPU": memory_bytes,
                             "the electricity price": usd_per_kwh, "the GPU-hour price": usd_per_gpu_hour,
                             "the training tokens": n_tokens, "the target loss": target_loss,
                             "the money budget": budget_usd, "the inference tokens": inference_tokens},
                            n_gpus, mfu, calibration, gpu, seq_len, calibration_any_device)
    law = get_law(law or DEFAULT_LAW) if law is None or isinstance(law, str) else law
    objective = "target" if kind == "target" else ("fixed" if model is not None else "loss")
    if inference_tokens is not None:
        _check_inference(law, dataset_tokens, model, models)
    if objective == "target" and not isinstance(law.loss_form, ParametricLoss):
        raise DomainError(f"law {law.name!r} has no parametric loss E + A/N^alpha + B/D^beta to aim at a target "
                          "loss with; use --law besiroglu2024 or --law chinchilla")
    stated_mfu = mfu if mfu is not None else DEFAULT_MFU
    if kind == "money":
        if usd_per_gpu_hour is not None:
            duration_s = hours_for_budget_usd(budget_usd, n_gpus, usd_per_gpu_hour) * 3600.0
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
        duration_s = max_wall_clock_s or 86400.0
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
        shapes = [model] if model is not None else _shapes(law, centre, seq_len, models)
        ctx = _Context(law, gpu, budget, kind, c_model, seq_len, mfu, calibration, dataset_tokens, max_wall_clock_s,
                       memory_bytes, n_tokens, target_loss, alloc.loss)
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
        budget = replace(budget, duration_s=flops / (budget.peak_flop_per_s * utilization * run_mfu), mfu=run_mfu)
    else:  # the run's own time is the budget the tables show
        budget = ComputeBudget(gpu, n_gpus, rec.train_time_s, precision, utilization, run_mfu)
    if kind == "tokens":  # the compute-optimal split of the FLOPs this fixed run spends
        alloc = optimal(law, rec.model_flops)

    loss_by_law = {name: _loss(BUILTIN_LAWS[name], _law_n(BUILTIN_LAWS[name], rec.model), rec.useful_tokens,
                               dataset_tokens)[0] for name in COMPARISON_LAWS}
    energy = energy_cost(gpu, n_gpus, rec.train_time_s, utilization, electricity_usd_per_kwh=usd_per_kwh,
                         cloud_usd_per_gpu_hour=usd_per_gpu_hour)
    mfu_source = (f"measured: calibration profile ({calibration.device_name}, {calibration.created[:10]}, torch "
                  f"{calibration.torch_version}), interpolated per model size" if calibration is not None
                  else "given" if mfu is not None else
                  "default: Llama 3 405B 38-43% (Dubey et al. 2024, Table 4), PaLM 46.2% (Chowdhery et al. "
                  "2022, Table 3)")
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
    return Plan(budget, cands, _assumptions(budget, law, mfu_source, seq_len, cap, stated_mfu), law, alloc, options,
                rec, loss_by_law, interval, energy, mfu_source, kind, max_wall_clock_s,
                tuple(_warnings(rec, budget, memory_bytes, calibration, mfu, law)) + extra
                + _calibration_warnings(calibration, gpu, options, rec), objective, target_loss, binding,
                _tags(options, rec, alloc, law, ia), stated_efficiency=stated_mfu, hyperparameters=hp,
                overtraining=over, inference_tokens=inference_tokens, inference_optimum=ia, life_cycle=life,
                warmup_steps=warmup)


def _check_inference(law, dataset_tokens, model, models) -> None:
    """Refuse what the inference-aware optimum cannot honour, one line each."""
    from .scaling import ParametricLoss

    if dataset_tokens is not None:
        raise UsageError("--inference-tokens cannot be combined with --dataset-tokens: the inference-aware optimum "
                         "(Sardana et al. 2024) has no form for repeated data; drop one of them")
    if not isinstance(law.loss_form, ParametricLoss):
        raise UsageError(f"--inference-tokens needs a law with a parametric loss E + A/N^alpha + B/D^beta, and "
                         f"{law.name!r} has none; use --law besiroglu2024 or --law chinchilla")
    if model is not None or models is not None:
        raise UsageError("--inference-tokens chooses the model size, and --model/--params fixes it: drop one (the "
                         "life-cycle optimum alone: 'flopscalc scaling optimal --inference-tokens')")


def _run_notes(rec: PlanOption, law, seq_len: int, n_gpus: int, inference_tokens: float | None):
    """The recommended run's hyperparameters (DeepSeek LLM sec. 3.1), over-training note and, with inference
    tokens, its life-cycle FLOPs against the Chinchilla model of its own loss (Sardana et al. 2024)."""
    from .scaling.hyperparams import recommend_hyperparameters, warmup_steps_for
    from .scaling.inference import life_cycle_comparison, overtraining_note

    if not (0 < rec.n_tokens < math.inf):
        return None, None, None, None
    n_law = _law_n(law, rec.model)
    hp = recommend_hyperparameters(
        rec.model.n_layer, rec.model.n_embd, seq_len, rec.n_tokens, loss_nats=rec.loss,
        planned_batch_tokens=rec.chosen.tokens_per_step if rec.loss is not None else None, schedule="cosine",
        sequences_multiple=n_gpus * rec.chosen.setup.micro_batch)
    over = overtraining_note(law, n_law, rec.n_tokens)
    life = (life_cycle_comparison(law, n_law, rec.n_tokens, inference_tokens) if inference_tokens is not None
            else None)
    return hp, over, life, warmup_steps_for(rec.n_steps)


def _preset_candidates(options: tuple[PlanOption, ...], ctx: _Context) -> tuple[Candidate, ...]:
    """The GPT-2 presets with the setup, speed and tokens the options table gives them (evaluated here when the
    plan did not weigh them, e.g. for a fixed model)."""
    out = []
    for name, cfg in PRESETS.items():
        if ctx.seq_len > cfg.block_size:
            continue
        o = next((o for o in options if o.model.name == name), None) or _evaluate(cfg, ctx)
        rate = o.speed.tokens_per_s * ctx.budget.utilization if o.fits else 0.0  # tokens per wall-clock second
        out.append(candidate(o.model, ctx.seq_len, o.n_tokens, rate, o.min_gpus))
    return tuple(out)


def _recommend(options: tuple[PlanOption, ...], ctx: _Context, alloc, ia=None) -> PlanOption:
    """The lowest predicted loss (or, for a target, the fastest to reach it); with an inference-aware optimum
    ``ia``, the option nearest its N in |ln N|: the lowest loss would pull back to the Chinchilla model."""
    cap = ctx.memory_bytes or ctx.gpu.memory_bytes
    n_gpus = ctx.budget.n_gpus
    if not any(o.fits for o in options):
        smallest = options[0]
        more = (f"; it would fit on {smallest.min_gpus} GPUs" if smallest.min_gpus else
                f"; not even {MAX_GPUS_SEARCHED} GPUs hold it")
        what = "the model" if len(options) == 1 else "no candidate, not even the smallest"
        need = lightest_peak_bytes(smallest.model, n_gpus, ctx.seq_len, ctx.budget.precision)
        raise DomainError(
            f"{what} ({smallest.n_params / 1e6:.0f}M parameters) fits {cap / 2**30:.1f} GiB per GPU "
            f"({cap * (1 - PLAN_MEMORY_HEADROOM) / 2**30:.1f} GiB usable, {PLAN_MEMORY_HEADROOM:.0%} kept free) on "
            f"{n_gpus} GPU(s): even its lightest setup (full recomputation with 8-bit AdamW or AdamW offloaded to "
            "the CPU, ZeRO "
            f"where GPUs share it, micro-batch 1) needs {need / 2**30:.1f} GiB{more}")
    fitting = [o for o in options if o.fits]
    if ctx.kind == "target":
        reach = [o for o in fitting if math.isfinite(o.n_tokens)]
        if ctx.max_wall_clock_s is not None:
            reach = [o for o in reach if o.train_time_s <= ctx.max_wall_clock_s * (1 + 1e-9)]
        if not reach and ctx.dataset_tokens is not None:
            from .scaling.allocate import TOKENS_SEARCH_MAX, predict_loss

            best = min(predict_loss(ctx.law, _law_n(ctx.law, o.model), TOKENS_SEARCH_MAX, ctx.dataset_tokens).law_value
                       for o in fitting)  # endless repeats: Muennighoff et al. 2023 eq. 5-7
            raise DomainError(
                f"no model that fits {n_gpus} x {ctx.gpu.name} reaches loss {ctx.target_loss:g}"
                + (f" within {ctx.max_wall_clock_s / 86400:.3g} days" if ctx.max_wall_clock_s else "")
                + f" on {format_count(ctx.dataset_tokens)} unique tokens: repeated without end, they bring no model "
                f"that fits below {best:.3f} (Muennighoff et al. 2023 eq. 5-7); add data or aim higher")
        if not reach:
            e = ctx.law.loss_form.E
            raise DomainError(
                f"no model that fits {n_gpus} x {ctx.gpu.name} reaches loss {ctx.target_loss:g}"
                + (f" within {ctx.max_wall_clock_s / 86400:.3g} days" if ctx.max_wall_clock_s else "")
                + f"; the law's floor is {e:.3f} and the largest model that fits "
                f"({fitting[-1].n_params / 1e6:.0f}M) is limited to {ctx.law.loss(_law_n(ctx.law, fitting[-1].model), 1e30):.3f}"
                " even with unlimited data; add GPUs or aim higher")
        if ia is not None:
            return min(reach, key=lambda o: abs(math.log(_law_n(ctx.law, o.model) / ia.n_params)))
        return min(reach, key=lambda o: o.train_time_s)
    if ctx.kind == "tokens":
        return fitting[0]
    trained = [o for o in fitting if o.n_tokens >= o.speed.tokens_per_step]
    if not trained:
        o = fitting[0]
        need_s = o.speed.tokens_per_step / o.speed.tokens_per_s / ctx.budget.utilization
        raise DomainError(
            f"the budget trains even the smallest model that fits ({o.n_params / 1e6:.0f}M parameters) on "
            f"{o.n_tokens:.3g} tokens, less than one optimizer step of {o.speed.tokens_per_step:,} tokens; "
            f"it needs at least {need_s / 3600:.2g} hours of these GPUs")
    predicted = [o for o in trained if o.loss is not None]  # None: no loss, or above a uniform guess (_loss)
    if ia is not None:
        return min(predicted or trained, key=lambda o: abs(math.log(_law_n(ctx.law, o.model) / ia.n_params)))
    if predicted:
        return min(predicted, key=lambda o: o.loss)
    return min(trained, key=lambda o: abs(math.log(_law_n(ctx.law, o.model) / alloc.n_params)))


def _best_loss(options) -> float | None:
    losses = [o.loss for o in options if o.fits and o.loss is not None and o.speed is not None
              and o.n_tokens >= o.speed.tokens_per_step]
    return min(losses) if losses else None


def _binding(options: tuple[PlanOption, ...], rec: PlanOption, ctx: _Context) -> tuple[Binding, ...]:
    """Which constraint binds: relax each in turn (twice the compute or time, unlimited memory, no data limit)."""
    from dataclasses import replace

    if rec.loss is None:
        return ()
    out = []

    def relaxed(**changes) -> float | None:
        c = replace(ctx, **changes)
        return _best_loss(tuple(_evaluate(o.model, c) for o in options))

    def row(name: str, words: str, loss: float | None) -> Binding:
        return Binding(name, loss is not None and loss < rec.loss - BINDING_LOSS, words, loss)

    if ctx.kind == "flops":
        out.append(row("compute", f"{RELAX_FACTOR:g}x the FLOPs", relaxed(c_model=ctx.c_model * RELAX_FACTOR)))
    else:
        b = ctx.budget
        more = replace(b, duration_s=b.duration_s * RELAX_FACTOR)
        out.append(row("compute", f"{RELAX_FACTOR:g}x the GPU time", relaxed(budget=more)))
    out.append(row("memory", "unlimited memory per GPU", relaxed(memory_bytes=1e18)))
    if ctx.dataset_tokens is not None:
        out.append(row("data", "no limit on unique tokens", relaxed(dataset_tokens=None)))
    if ctx.max_wall_clock_s is not None:
        out.append(row("time", "no wall-clock limit", relaxed(max_wall_clock_s=None)))
    return tuple(out)


def _tags(options, rec, alloc, law, ia=None) -> dict:
    tags: dict[int, list[str]] = {}
    fitting = [i for i, o in enumerate(options) if o.fits]
    if len(options) > 1:
        def dist(i: int, n: float) -> float:
            return abs(math.log(_law_n(law, options[i].model) / n))

        i_opt = min(range(len(options)), key=lambda i: dist(i, alloc.n_params))
        # with inference tokens the shapes centre on the life-cycle optimum: tag Chinchilla's only within the grid
        if ia is None or dist(i_opt, alloc.n_params) <= math.log(2) / 4 * (1 + 1e-9):
            tags.setdefault(i_opt, []).append("optimum")
        if ia is not None:
            tags.setdefault(min(range(len(options)), key=lambda i: dist(i, ia.n_params)), []).append("life-cycle opt")
        if fitting:
            tags.setdefault(fitting[-1], []).append("largest fit")
    tags.setdefault(options.index(rec), []).append("recommended")
    return {i: tuple(v) for i, v in tags.items()}


def _assumptions(budget: ComputeBudget, law, mfu_source: str, seq_len: int, cap: float,
                 stated: float) -> tuple[Assumption, ...]:
    gpu = budget.gpu
    return (
        Assumption("peak rate", f"{budget.precision.value}, dense",
                   f"data/gpu_specs.csv row {gpu.key}: {gpu.source.split(';')[0]} "
                   f"(all sources: flopscalc gpus show {gpu.key})"),
        Assumption("utilization (duty cycle)", f"{budget.utilization:g}",
                   "default: Llama 3 paper sec. 3.3.4 (>90% effective training time)"
                   if budget.utilization == DEFAULT_UTILIZATION else "given"),
        Assumption("hardware efficiency", ("per option" if mfu_source.startswith("measured") else f"{stated:g}")
                   + " = MFU of a step without recompute", mfu_source),
        Assumption("MFU, HFU", "per option: model (MFU) or hardware (HFU) FLOPs / (peak x step time)",
                   "recomputation runs at the hardware efficiency, so MFU = HFU x model/hardware FLOPs; "
                   "Korthikanti et al. 2022 sec. 5; PaLM App. B"),
        Assumption("FLOPs per token", f"exact matmul count at sequence {seq_len}, forward + 2x backward",
                   "flopscalc.flops (matches PyTorch FlopCounterMode); PaLM App. B convention"),
        Assumption("scaling law", law.name, f"{law.source}; {law.flop_convention}"),
        Assumption("tokens per step", "0.5M (<1B params), 1M (<4B), 2M (<50B), 3.1M"
                   + ("; doubled within the critical batch to hide communication" if budget.n_gpus > 1 else ""),
                   "GPT-3 (Brown et al. 2020), Table 2.1" + ("; Kaplan et al. 2020 eq. 5.3 (critical batch, WebText2 "
                                                             "nats) and 5.5 (token cost)" if budget.n_gpus > 1 else "")),
        Assumption("memory", f"{cap / 2**30:.1f} GiB per GPU, {PLAN_MEMORY_HEADROOM:.0%} kept free; "
                   "the fastest setup that fits",
                   "flopscalc.memory (validated against measured bytes; docs/memory.md)"),
        Assumption("communication", "ring all-reduce at 0.7 of link bandwidth, overlapped with backward",
                   "flopscalc.parallel: Patarasuk & Yuan 2009; ZeRO sec. 7.2; nccl-tests #149"),
        Assumption("optimizer offload", f"PCIe {pcie_generation(gpu)}.0 x16 at {host_link_bytes_per_s(gpu) / 1e9:g} "
                   f"GB/s, host memory {HOST_MEMORY_BYTES_PER_S / 1e9:g} GB/s, not overlapped",
                   "flopscalc.offload: Ren et al. 2021 Fig. 5; measured PCIe 4.0 (bam #54); DDR5-4800 x2 (JESD79-5)"),
        Assumption("compute-optimal data (presets table)", f"{CHINCHILLA_TOKENS_PER_PARAM:g} tokens per parameter",
                   "Hoffmann et al. 2022, Table 3"),
    )


def _warnings(rec: PlanOption, budget: ComputeBudget, memory_bytes, calibration, mfu, law=None) -> list[str]:
    out = []
    if law is not None and 0 < rec.n_tokens < math.inf:  # the law far outside its runs, or above a uniform guess
        from .scaling.allocate import predict_loss
        from .scaling.validity import range_warnings

        n_law = _law_n(law, rec.model)
        out.extend(predict_loss(law, n_law, rec.n_tokens, rec.unique_tokens).warnings if law.has_loss
                   else range_warnings(law, n_law, rec.n_tokens, unique_tokens=rec.unique_tokens))
    low = low_efficiency_warning(rec.speed.compute_s, rec.speed.comm)  # below 70%: flopscalc.parallel
    if low and rec.batch is not None:  # the batch has already grown as far as it pays
        g = rec.batch
        low += (f" (the batch already grew from {format_count(g.default_tokens_per_step)} to "
                f"{format_count(g.tokens_per_step)} tokens per step: "
                + ("the critical batch allows no more)" if g.reason == "critical batch size" else
                   "more would cost more in token value than it hides)"))
    if low:
        out.append(low)
    s = rec.chosen.setup
    if s.offload_optimizer:
        off = rec.speed.offload
        out.append(f"optimizer offload adds {off.total_s:.2g} s to each {format_duration(rec.speed.step_s)} step "
                   f"({off.total_s / rec.speed.step_s:.1%}; gradients and weights over PCIe, the optimizer step on "
                   "the CPU): a host slower than assumed makes it longer")
    needs = tools_needed(s)
    if needs:
        out.append(f"'flopscalc train' cannot run this setup as it stands: it needs {' and '.join(needs)}; the "
                   "reference trainer runs AdamW with fp32 or bf16 autocast, recomputation, DDP and FSDP")
    if budget.precision is Precision.fp8:
        out.append("fp8: memory is modelled as bf16 mixed precision (fp8 weights/activations not modelled)")
    if rec.epochs is not None and rec.epochs > 1:
        out.append(f"the recommended run repeats the dataset {rec.epochs:.1f} times; the loss counts repeated "
                   "tokens as worth less (Muennighoff et al. 2023)")
    if calibration is None and mfu is None:
        out.append("the hardware efficiency (MFU of a step without recomputation) is a stated default, not measured "
                   "on this GPU: run 'flopscalc calibrate' and pass --calibration to use your own")
    if memory_bytes is not None:
        out.append(f"memory per GPU set to {memory_bytes / 2**30:.1f} GiB instead of the database's "
                   f"{budget.gpu.memory_bytes / 2**30:.1f} GiB")
    return out


def _calibration_warnings(calibration, gpu: GpuSpec, options, rec: PlanOption) -> tuple[str, ...]:
    """A profile from another device (allowed only by --calibration-any-device), or far from the planned sizes."""
    from .calibration import PROFILE_SIZE_FACTOR

    if calibration is None:
        return ()
    out = []
    if not calibration.measured_on(gpu.key):
        out.append(f"CALIBRATION FROM ANOTHER DEVICE: the profile was measured on {calibration.device}, the plan is "
                   f"for {gpu.name}; its MFU says little about this GPU, so every time and token count here is a "
                   "guess (--calibration-any-device)")
    lo, hi = calibration.n_params_range()
    far = [o for o in options if o.fits and calibration.size_outside(o.n_params) > PROFILE_SIZE_FACTOR]
    if far:
        worst = max(far, key=lambda o: calibration.size_outside(o.n_params))
        out.append(f"{len(far)} of the planned models lie more than {PROFILE_SIZE_FACTOR:g}x outside the profiled "
                   f"sizes ({format_count(lo)}-{format_count(hi)} parameters)"
                   + (", the recommended one among them" if rec in far else "")
                   + f", up to {calibration.size_outside(worst.n_params):.0f}x ({format_count(worst.n_params)}): "
                   "their MFU is the nearest measurement held constant; calibrate nearer these sizes")
    return tuple(out)


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
