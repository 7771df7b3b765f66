"""Compose the engines into a plan: the FLOP budget of GPUs x time (or FLOPs, or money), and the best run it buys.

budget = GPUs x dense peak x duty cycle x MFU x time. A scaling law turns the budget into a compute-optimal
N; model shapes around it (and the GPT-2 presets) are each given the cheapest training setup that fits the
GPU's memory (`plan_options.choose_setup`), a step time from the FLOPs engine and the communication model,
the tokens the budget then trains, and the law's predicted loss. The recommendation is the lowest loss
among those that fit.

Two efficiency knobs are kept apart on purpose (the seed note folds them into one "90% utilization"):
- ``utilization``: duty cycle, the share of wall-clock time the GPUs are busy training;
- ``mfu``: model FLOPs utilization while busy, achieved model FLOP/s over peak (Chowdhery et al. 2022, App. B).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import math

from .costs import EnergyCost, energy_cost, hours_for_budget_usd
from .errors import DomainError, UsageError
from .flops import training_flops_per_token
from .hardware import GpuSpec, Precision
from .model import PRESETS, ModelConfig, config_for_params, count_params
from .plan_options import (MAX_GPUS_SEARCHED, PlanOption, check_positive, choose_setup, min_gpus_to_fit,
                           nearest_preset, throughput)

# Chinchilla's compute-optimal data: ~20 tokens per parameter (Hoffmann et al. 2022, Table 3: e.g.
# 1B -> 20.2B tokens, 10B -> 205.1B tokens; parameters counted with embeddings).
CHINCHILLA_TOKENS_PER_PARAM = 20.0
# Default duty cycle: Llama 3 405B pre-training had "higher than 90% effective training time"
# (Dubey et al. 2024, "The Llama 3 Herd of Models", sec. 3.3.4); also the seed note's 90%.
DEFAULT_UTILIZATION = 0.90
# Default MFU: well-tuned dense-transformer training reaches ~0.4 (Llama 3 405B BF16: 38-43%,
# Dubey et al. 2024, Table 4; PaLM 540B: 46.2%, Chowdhery et al. 2022, Table 3). State yours with --mfu.
DEFAULT_MFU = 0.40
# Default precision: mixed-precision BF16 on tensor cores, FP32 accumulate (the usual training setup).
DEFAULT_PRECISION = Precision.bf16


@dataclass(frozen=True)
class Assumption:
    name: str
    value: str
    source: str


@dataclass(frozen=True)
class ComputeBudget:
    """FLOPs a set of GPUs delivers over a wall-clock duration."""

    gpu: GpuSpec
    n_gpus: int
    duration_s: float
    precision: Precision
    utilization: float
    mfu: float

    def __post_init__(self) -> None:
        if self.n_gpus < 1:
            raise UsageError(f"number of GPUs must be at least 1, got {self.n_gpus}")
        if not self.duration_s > 0:
            raise UsageError(f"duration must be positive, got {self.duration_s} s")
        for knob in ("utilization", "mfu"):
            v = getattr(self, knob)
            if not 0 < v <= 1:
                raise UsageError(f"{knob} must be a fraction in (0, 1], got {v}")

    @property
    def peak_flop_per_s_per_gpu(self) -> float:
        return self.gpu.peak_flop_per_s(self.precision)

    @property
    def peak_flop_per_s(self) -> float:
        """All GPUs at their dense peak (FLOP/s)."""
        return self.n_gpus * self.peak_flop_per_s_per_gpu

    @property
    def achieved_flop_per_s(self) -> float:
        """Model FLOP/s averaged over wall-clock time: peak x duty cycle x MFU."""
        return self.peak_flop_per_s * self.utilization * self.mfu

    @property
    def peak_flops(self) -> float:
        """Peak rate for the whole duration: the ceiling nothing reaches (FLOP)."""
        return self.peak_flop_per_s * self.duration_s

    @property
    def busy_flops(self) -> float:
        """Peak x duty cycle x time: the seed note's '1.14e21' kind of number (MFU = 1) (FLOP)."""
        return self.peak_flops * self.utilization

    @property
    def model_flops(self) -> float:
        """Useful model FLOPs the run delivers: busy FLOPs x MFU (FLOP)."""
        return self.busy_flops * self.mfu


@dataclass(frozen=True)
class Candidate:
    """What one model gets out of a budget."""

    model: ModelConfig
    n_params: int  # all parameters, Chinchilla's N
    seq_len: int
    model_flops_per_token: float  # exact matmul count, forward + backward, dense attention
    budget_tokens: float  # tokens the whole budget trains it on
    chinchilla_tokens: float  # 20 x N
    chinchilla_flops: float  # model FLOPs for 20 x N tokens
    chinchilla_time_s: float  # wall-clock time for 20 x N tokens at the budget's rate

    @property
    def tokens_per_param(self) -> float:
        return self.budget_tokens / self.n_params

    @property
    def reaches_chinchilla(self) -> bool:
        return self.tokens_per_param >= CHINCHILLA_TOKENS_PER_PARAM


# Model sizes tried around the law's optimum: N_opt x 2^(k/2), k = -4..4 (a factor 4 either way).
OPTION_STEPS = tuple(range(-4, 5))
# Laws whose loss the plan also shows for the recommended run, to show how much the laws disagree.
COMPARISON_LAWS = ("besiroglu2024", "chinchilla")


@dataclass(frozen=True)
class Plan:
    """The answer: budget, the law's optimum, every option evaluated, the recommendation, energy and cost."""

    budget: ComputeBudget
    candidates: tuple[Candidate, ...]  # the GPT-2 presets: what the budget buys at the stated MFU
    assumptions: tuple[Assumption, ...] = field(default=())
    law: object = None  # ScalingLaw
    allocation: object = None  # scaling.Allocation for the budget's model FLOPs
    options: tuple[PlanOption, ...] = ()
    recommended: PlanOption | None = None
    loss_by_law: dict = field(default_factory=dict)  # other laws' predictions for the recommended run
    energy: EnergyCost | None = None
    mfu_source: str = ""
    budget_kind: str = "time"  # time, flops or money
    max_wall_clock_s: float | None = None
    warnings: tuple[str, ...] = ()


def candidate(budget: ComputeBudget, model: ModelConfig, seq_len: int | None = None) -> Candidate:
    """Tokens, tokens per parameter and time to 20 tokens/parameter for ``model`` under ``budget``."""
    seq_len = seq_len or model.block_size
    per_token = training_flops_per_token(model, seq_len).model_flops_per_token
    n = count_params(model).total
    chin_tokens = CHINCHILLA_TOKENS_PER_PARAM * n
    return Candidate(
        model=model,
        n_params=n,
        seq_len=seq_len,
        model_flops_per_token=per_token,
        budget_tokens=budget.model_flops / per_token,
        chinchilla_tokens=chin_tokens,
        chinchilla_flops=chin_tokens * per_token,
        chinchilla_time_s=chin_tokens * per_token / budget.achieved_flop_per_s,
    )


def _law_n(law, cfg: ModelConfig) -> int:
    """The parameter count the law means: with embeddings unless the law says otherwise (Kaplan)."""
    pc = count_params(cfg)
    return pc.non_embedding if law.n_counts_embeddings is False else pc.total


def _loss(law, n_params: float, n_tokens: float, unique_tokens: float | None) -> tuple[float | None, float | None]:
    """Predicted loss and effective tokens; repeated data discounted as Muennighoff et al. 2023 eq. 5."""
    from .scaling import BUILTIN_LAWS, data_constrained_loss, effective_data

    if not law.has_loss or n_tokens <= 0:
        return None, None
    if unique_tokens is None:
        return float(law.loss(n_params, n_tokens)), None
    if law.repetition is not None:
        d_eff = float(effective_data(unique_tokens, n_tokens, law.repetition.r_d_star))
        return float(data_constrained_loss(law, n_params, n_tokens, unique_tokens)), d_eff
    r_d_star = BUILTIN_LAWS["muennighoff2023"].repetition.r_d_star  # Muennighoff et al. 2023, fitted R_D*
    d_eff = float(effective_data(unique_tokens, n_tokens, r_d_star))
    return float(law.loss(n_params, d_eff)), d_eff


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
    for name, cfg in PRESETS.items():
        cfg = cfg if cfg.block_size >= seq_len else cfg.with_(block_size=seq_len)
        shapes[(cfg.n_layer, cfg.n_head, cfg.n_embd)] = cfg
    return sorted(shapes.values(), key=lambda c: count_params(c).total)


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
) -> Plan:
    """The best training run for a budget on ``n_gpus`` x ``gpu``, under memory, data and time limits.

    Parameters
    ----------
    gpu : GpuSpec
    duration_s : float, optional
        Wall-clock time the GPUs are yours (s). Exactly one of ``duration_s``, ``flops``, ``budget_usd``.
    flops : float, optional
        Model-FLOP budget (FLOP), instead of a time.
    budget_usd : float, optional
        Money to rent GPUs with at ``usd_per_gpu_hour`` (USD), instead of a time.
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
    """
    from .scaling import DEFAULT_LAW, optimal, optimal_data_constrained
    from .scaling.io import get_law

    precision = Precision(precision)
    given = [k for k, v in (("a time", duration_s), ("a FLOP budget", flops), ("a money budget", budget_usd))
             if v is not None]
    if len(given) != 1:
        raise UsageError("give exactly one budget: a time (--days/--hours/--duration), a FLOP budget (--flops) or "
                         f"a money budget (--budget-usd with --usd-per-gpu-hour); got {len(given) or 'none'}"
                         + (f" ({' and '.join(given)})" if given else ""))
    for value, what in ((flops, "the FLOP budget"), (dataset_tokens, "the dataset size (unique tokens)"),
                        (max_wall_clock_s, "the maximum wall-clock time"), (memory_bytes, "memory per GPU"),
                        (usd_per_kwh, "the electricity price"), (usd_per_gpu_hour, "the GPU-hour price")):
        check_positive(value, what)
    if mfu is not None and calibration is not None:
        raise UsageError("give --mfu or --calibration, not both: the profile's measured MFU replaces the stated one")
    if calibration is not None and calibration.gpu_key is not None and calibration.gpu_key != gpu.key:
        raise UsageError(f"the calibration profile was measured on {calibration.gpu_key}, the plan is for {gpu.key}; "
                         "calibrate on that GPU or drop --calibration")
    seq_len = seq_len or 1024
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise UsageError(f"sequence length must be a positive whole number of tokens, got {seq_len!r}")
    law = get_law(law or DEFAULT_LAW) if law is None or isinstance(law, str) else law
    budget_kind = "time" if duration_s is not None else ("flops" if flops is not None else "money")
    if budget_kind == "money":
        if usd_per_gpu_hour is None:
            raise UsageError("a money budget needs a price: add --usd-per-gpu-hour (e.g. 2.5)")
        duration_s = hours_for_budget_usd(budget_usd, n_gpus, usd_per_gpu_hour) * 3600.0
    stated_mfu = mfu if mfu is not None else DEFAULT_MFU
    if budget_kind == "flops":  # nominal time at the stated efficiency; each option gets its own below
        duration_s = flops / ComputeBudget(gpu, n_gpus, 1.0, precision, utilization, stated_mfu).achieved_flop_per_s
    budget = ComputeBudget(gpu, n_gpus, float(duration_s), precision, utilization, stated_mfu)
    budget.peak_flop_per_s_per_gpu  # noqa: B018 - raise now if the GPU lacks this precision
    c_model = flops if flops is not None else budget.model_flops
    if dataset_tokens is not None and law.has_loss:
        alloc = optimal_data_constrained(law, c_model, dataset_tokens) if law.repetition is not None \
            else optimal(law, c_model)
    else:
        alloc = optimal(law, c_model)

    cap = memory_bytes or gpu.memory_bytes
    options = []
    for cfg in _shapes(law, alloc.n_params, seq_len, models):
        options.append(_evaluate(cfg, law, gpu, budget, budget_kind, c_model, seq_len, mfu, calibration,
                                 dataset_tokens, max_wall_clock_s, memory_bytes))
    options = tuple(options)
    fitting = [o for o in options if o.fits and o.speed is not None and o.n_tokens >= o.speed.tokens_per_step]
    if not any(o.fits for o in options):
        smallest = options[0]
        more = (f"; it would fit on {smallest.min_gpus} GPUs" if smallest.min_gpus else
                f"; not even {MAX_GPUS_SEARCHED} GPUs hold it")
        raise DomainError(
            f"no candidate fits {cap / 2**30:.1f} GiB per GPU on {n_gpus} GPU(s), not even the smallest "
            f"({count_params(smallest.model).total / 1e6:.0f}M parameters) with full recomputation, 8-bit Adam and "
            f"optimizer offload{more}")
    if not fitting:
        o = next(o for o in options if o.fits)
        need_s = o.speed.tokens_per_step / o.speed.tokens_per_s / utilization
        raise DomainError(
            f"the budget trains even the smallest model that fits ({o.n_params / 1e6:.0f}M parameters) on "
            f"{o.n_tokens:.3g} tokens, less than one optimizer step of {o.speed.tokens_per_step:,} tokens; "
            f"it needs at least {need_s / 3600:.2g} hours of these GPUs")
    if law.has_loss:
        rec = min(fitting, key=lambda o: o.loss)
    else:  # an allocation-only law: the fitting option closest to its N_opt
        rec = min(fitting, key=lambda o: abs(math.log(_law_n(law, o.model) / alloc.n_params)))
    from .scaling import BUILTIN_LAWS

    loss_by_law = {}
    for name in COMPARISON_LAWS:
        other = BUILTIN_LAWS[name]
        loss_by_law[name] = _loss(other, _law_n(other, rec.model), rec.n_tokens, dataset_tokens)[0]
    energy = energy_cost(gpu, n_gpus, rec.train_time_s, utilization, electricity_usd_per_kwh=usd_per_kwh,
                         cloud_usd_per_gpu_hour=usd_per_gpu_hour)
    mfu_source = (f"measured: calibration profile ({calibration.device_name}, {calibration.created[:10]}, torch "
                  f"{calibration.torch_version}), interpolated per model size" if calibration is not None
                  else "given" if mfu is not None else
                  "default: Llama 3 405B 38-43% (Dubey et al. 2024, Table 4), PaLM 46.2% (Chowdhery et al. "
                  "2022, Table 3)")
    cands = tuple(candidate(budget, m, seq_len if seq_len <= m.block_size else None) for m in PRESETS.values()
                  if seq_len <= m.block_size)
    return Plan(budget, cands, _assumptions(budget, law, mfu_source, seq_len, cap), law, alloc, options, rec,
                loss_by_law, energy, mfu_source, budget_kind, max_wall_clock_s,
                tuple(_warnings(rec, budget, dataset_tokens, memory_bytes, calibration)))


def _evaluate(cfg, law, gpu, budget, budget_kind, c_model, seq_len, mfu, calibration, dataset_tokens,
              max_wall_clock_s, memory_bytes) -> PlanOption:
    n = count_params(cfg).total
    chosen = choose_setup(cfg, gpu, budget.n_gpus, seq_len, budget.precision, memory_bytes)
    if chosen is None:
        return PlanOption(cfg, n, nearest_preset(n), None,
                          min_gpus_to_fit(cfg, gpu, seq_len, budget.precision, memory_bytes),
                          None, 0.0, 0.0, None, None, dataset_tokens)
    if calibration is not None:
        eff = calibration.mfu_for(n, chosen.setup.micro_batch, seq_len)
    else:
        eff = mfu if mfu is not None else DEFAULT_MFU
    speed = throughput(cfg, chosen, gpu, budget.precision, eff)
    rate = speed.tokens_per_s * budget.utilization  # tokens per wall-clock second
    if budget_kind == "flops":
        tokens = c_model / speed.model_flops_per_token
    else:
        tokens = rate * budget.duration_s
    if max_wall_clock_s is not None:
        tokens = min(tokens, rate * max_wall_clock_s)
    loss, d_eff = _loss(law, _law_n(law, cfg), tokens, dataset_tokens)
    return PlanOption(cfg, n, nearest_preset(n), chosen, None, speed, tokens, tokens / rate, loss, d_eff,
                      dataset_tokens)


def _assumptions(budget: ComputeBudget, law, mfu_source: str, seq_len: int, cap: float) -> tuple[Assumption, ...]:
    gpu = budget.gpu
    return (
        Assumption("peak rate", f"{budget.precision.value}, dense",
                   f"data/gpu_specs.csv row {gpu.key}: {gpu.source.split(';')[0]} "
                   f"(all sources: flopscalc gpus show {gpu.key})"),
        Assumption("utilization (duty cycle)", f"{budget.utilization:g}",
                   "default: Llama 3 paper sec. 3.3.4 (>90% effective training time)"
                   if budget.utilization == DEFAULT_UTILIZATION else "given"),
        Assumption("MFU (no recompute)", "per option" if mfu_source.startswith("measured") else f"{budget.mfu:g}",
                   mfu_source),
        Assumption("recompute cost", "GPU runs hardware FLOPs at the MFU's rate",
                   "model/hardware FLOPs; Korthikanti et al. 2022 sec. 5"),
        Assumption("FLOPs per token", f"exact matmul count at sequence {seq_len}, forward + 2x backward",
                   "flopscalc.flops (matches PyTorch FlopCounterMode); PaLM App. B convention"),
        Assumption("scaling law", law.name, f"{law.source}; {law.flop_convention}"),
        Assumption("tokens per step", "0.5M (<500M params), 1M (<2B), 2M (<10B), 4M",
                   "GPT-3 (Brown et al. 2020), Table 2.1"),
        Assumption("memory", f"{cap / 2**30:.1f} GiB per GPU, 5% kept free; cheapest setup that fits",
                   "flopscalc.memory (validated against measured bytes; docs/memory.md)"),
        Assumption("communication", "ring all-reduce at 0.7 of link bandwidth, overlapped with backward",
                   "flopscalc.parallel: Patarasuk & Yuan 2009; ZeRO sec. 7.2; nccl-tests #149"),
        Assumption("compute-optimal data (presets table)", f"{CHINCHILLA_TOKENS_PER_PARAM:g} tokens per parameter",
                   "Hoffmann et al. 2022, Table 3"),
    )


def _warnings(rec: PlanOption, budget: ComputeBudget, dataset_tokens, memory_bytes, calibration) -> list[str]:
    out = []
    s = rec.chosen.setup
    if s.offload_optimizer:
        out.append("optimizer offload: the CPU optimizer step is not in the step time (expect slower steps)")
    if budget.precision is Precision.fp8:
        out.append("fp8: memory is modelled as bf16 mixed precision (fp8 weights/activations not modelled)")
    if rec.epochs is not None and rec.epochs > 1:
        out.append(f"the recommended run repeats the dataset {rec.epochs:.1f} times; the loss counts repeated "
                   "tokens as worth less (Muennighoff et al. 2023)")
    if calibration is None and budget.mfu == DEFAULT_MFU:
        out.append("MFU is a stated default, not measured on this GPU: run 'flopscalc calibrate' and pass "
                   "--calibration to use your own")
    if memory_bytes is not None:
        out.append(f"memory per GPU set to {memory_bytes / 2**30:.1f} GiB instead of the database's "
                   f"{budget.gpu.memory_bytes / 2**30:.1f} GiB")
    return out


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
            "energy_kwh": p.energy.facility_energy_kwh, "law": p.law.name,
        })
    return pd.DataFrame(rows)
