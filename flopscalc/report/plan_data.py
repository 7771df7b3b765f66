"""`flopscalc plan`'s answer as data: the Plan as a JSON-ready dict (--json) and as CSV rows (--csv), base units,
no rich. No arithmetic."""

from __future__ import annotations

import csv
import io
import math

from ..planner.core import Plan
from ..planner.options import PlanOption
from .common import model_dict


def option_dict(o: PlanOption) -> dict:
    d = {
        "model": {**model_dict(o.model), "mlp": o.model.mlp.value, "norm": o.model.norm.value,
                  "position": o.model.pos.value, "head_dim": o.model.head_dim, "n_expert": o.model.n_expert,
                  "top_k": o.model.top_k},
        "n_params": o.n_params, "nearest_preset": o.nearest_preset, "fits": o.fits,
        "min_gpus": o.min_gpus, "n_tokens": o.n_tokens, "tokens_per_param": o.tokens_per_param,
        "epochs": o.epochs, "effective_tokens": o.effective_tokens, "loss": o.loss, "train_time_s": o.train_time_s,
        "model_flops": o.model_flops, "n_steps": o.n_steps, "useful_tokens": o.useful_tokens,
        "batch_growth": None if o.batch is None else {
            "default_tokens_per_step": o.batch.default_tokens_per_step, "tokens_per_step": o.batch.tokens_per_step,
            "critical_batch_tokens": o.batch.critical_tokens, "loss_nats": o.batch.loss_nats,
            "token_value": o.batch.token_value, "default_scaling_efficiency": o.batch.default_scaling_efficiency,
            "reason": o.batch.reason},
    }
    if o.chosen is not None:
        s = o.chosen.setup
        d["setup"] = {
            "precision": s.precision.value, "optimizer": s.optimizer.value, "recompute": s.recompute.value,
            "flash": s.flash, "micro_batch": s.micro_batch, "grad_accum": s.grad_accum, "seq_len": s.seq_len,
            "tokens_per_step": o.chosen.tokens_per_step, "n_gpus": s.n_gpus, "zero_stage": s.zero_stage,
            "offload_optimizer": s.offload_optimizer, "max_micro_batch": o.chosen.max_micro_batch,
        }
        if o.chosen.layout is not None:
            d["layout"] = layout_dict(o.chosen.layout, o.speed, o.model.n_layer)
        d["memory"] = {"peak_bytes": o.chosen.peak_memory_bytes, "capacity_bytes": o.chosen.capacity_bytes,
                       "cpu_offload_bytes": o.chosen.cpu_offload_bytes}
        sp = o.speed
        d["speed"] = {
            "step_s": sp.step_s, "compute_s": sp.compute_s, "comm_s": sp.comm.comm_s,
            "comm_exposed_s": sp.comm.exposed_s, "comm_overlap_slowdown_s": sp.comm.slowdown_s,
            "offload_s": sp.offload.total_s,
            "offload_link_s": sp.offload.link_s, "offload_cpu_s": sp.offload.cpu_s,
            "scaling_efficiency": sp.scaling_efficiency, "tokens_per_s": sp.tokens_per_s,
            "model_flop_per_s": sp.model_flop_per_s,
            "model_flops_per_token": sp.model_flops_per_token, "hardware_flops_per_token": sp.hardware_flops_per_token,
            "flash_recompute_flops_per_token": sp.flash_recompute_flops_per_token,
            "mfu": sp.mfu, "hfu": sp.hfu, "hardware_efficiency": sp.hardware_efficiency,
            "mfu_convention": o.mfu_convention, "mfu_causal": o.mfu_causal,
        }
    return d


def layout_dict(lay, speed, n_layer: int | None = None) -> dict:
    """The recommended layout: degrees, schedule, the engine that runs it and its settings, the time model."""
    from ..planner.layout import time_model_source

    return {"label": lay.label(), "tp": lay.tp, "pp": lay.pp, "interleave": lay.interleave, "dp": lay.dp,
            "cp": lay.cp, "ep": lay.ep, "sequence_parallel": lay.sequence_parallel, "zero_stage": lay.zero_stage,
            "micro_batch": lay.micro_batch, "n_micro": lay.n_micro, "recompute": lay.recompute.value,
            "global_batch_sequences": lay.sequences_per_step(), "n_gpus": lay.n_gpus,
            "engine": lay.engine().value, "flopscalc_train_runs_it": not lay.engine().value.startswith("Megatron"),
            "engine_settings": lay.engine_settings(n_layer), "time_model": time_model_source(lay),
            "step_components_s": dict(speed.time.components), "bubble_s": speed.bubble_s}


def plan_dict(p: Plan) -> dict:
    b = p.budget
    e = p.energy
    a = p.allocation
    return {
        "gpu": b.gpu.key, "gpu_name": b.gpu.name, "n_gpus": b.n_gpus, "duration_s": b.duration_s,
        "budget_kind": p.budget_kind, "precision": b.precision.value, "utilization": b.utilization, "mfu": b.mfu,
        "mfu_convention": p.recommended.mfu_convention, "mfu_causal": p.mfu_causal,
        "hardware_efficiency": p.stated_efficiency,
        "mfu_source": p.mfu_source, "time_model": p.time_model, "peak_flop_per_s_per_gpu": b.peak_flop_per_s_per_gpu,
        "achieved_flop_per_s": b.achieved_flop_per_s, "peak_flops": b.peak_flops, "busy_flops": b.busy_flops,
        "model_flops": a.c_flops if p.budget_kind == "flops" and p.deadline_model_flops is None else b.model_flops,
        "max_wall_clock_s": p.max_wall_clock_s, "deadline_model_flops": p.deadline_model_flops,
        "seq_len_source": p.seq_source.label if p.seq_source else None,
        "law": {"name": p.law.name, "source": p.law.source, "flop_convention": p.law.flop_convention,
                "n_counts_embeddings": p.law.n_counts_embeddings, "uniform_loss": p.law.uniform_loss},
        "compute_optimal": {"c_flops": a.c_flops, "n_params": a.n_params, "n_tokens": a.n_tokens,
                            "tokens_per_param": a.tokens_per_param, "loss": a.loss, "method": a.method,
                            "law_flops": a.law_flops,
                            "above_uniform_guess": a.above_uniform, "warnings": list(a.warnings)},
        "objective": p.objective, "target_loss": p.target_loss, "family": p.family,
        "recommended": {**option_dict(p.recommended), **_option_reach(p, p.recommended)},
        "fastest_train_time_s": p.fastest_train_time_s,
        "loss_by_law": p.loss_by_law,
        "loss_interval": list(p.loss_interval) if p.loss_interval else None,
        "binding": [{"constraint": b.constraint, "binds": b.binds, "relaxed": b.relaxed,
                     "loss_if_relaxed": b.shown_loss, "options_loss_if_relaxed": b.loss_if_relaxed}
                    for b in p.binding],
        "tags": {str(i): list(t) for i, t in p.tags.items()},
        "energy": {"gpu_hours": e.gpu_hours, "facility_energy_kwh": e.facility_energy_kwh,
                   "electricity_usd": e.electricity_usd, "cloud_usd": e.cloud_usd},
        "options": [{**option_dict(o), **_option_reach(p, o)} for o in p.options],
        "candidates": [
            {
                "model": c.model.name, "n_params": c.n_params, "seq_len": c.seq_len,
                "model_flops_per_token": c.model_flops_per_token, "budget_tokens": c.budget_tokens,
                "tokens_per_param": c.tokens_per_param, "reaches_chinchilla": c.reaches_chinchilla,
                "chinchilla_tokens": c.chinchilla_tokens, "chinchilla_flops": c.chinchilla_flops,
                "chinchilla_time_s": c.chinchilla_time_s if c.fits else None, "fits": c.fits, "min_gpus": c.min_gpus,
                **_reach(p, c.budget_tokens),
            }
            for c in p.candidates
        ],
        "hyperparameters": None if p.hyperparameters is None else {
            **p.hyperparameters.as_dict(), "plan_batch_tokens": p.recommended.chosen.tokens_per_step,
            "plan_warmup_steps": p.warmup_steps},
        "overtraining": None if p.overtraining is None else {
            "tokens_per_param": p.overtraining.tokens_per_param, "times_chinchilla": p.overtraining.times_chinchilla,
            "warning": p.overtraining.warning},
        "inference": _inference_dict(p),
        "data_bound": None if p.data_bound is None else {  # planner.databound.ShorterRun
            "n_tokens": p.data_bound.n_tokens, "train_time_s": p.data_bound.train_time_s,
            "epochs": p.data_bound.epochs, "loss": p.data_bound.loss, "tolerance_nats": p.data_bound.tolerance_nats,
            "budget_loss": p.data_bound.budget_loss, "saved_s": p.data_bound.saved_s},
        "warnings": list(p.warnings),
        "assumptions": [{"name": x.name, "value": x.value, "source": x.source} for x in p.assumptions],
    }


def _reach(p: Plan, n_tokens: float | None) -> dict:
    """{"reaches_target": ...} under a target loss: False where no number of tokens reaches it (the tokens, time and
    FLOPs are infinite, which the JSON writes as null); nothing under a budget."""
    if p.objective != "target":
        return {}
    return {"reaches_target": n_tokens is not None and math.isfinite(n_tokens)}


def _option_reach(p: Plan, o) -> dict:
    """`_reach` of an option (false for one that fits no setup: it trains no tokens), with the loss it stops above
    where it never reaches the target (`PlanOption.floor_loss`; null where it reaches it or does not fit)."""
    if p.objective != "target":
        return {}
    return {"reaches_target": o.reaches_target, "floor_loss": o.floor_loss}


def _inference_dict(p: Plan) -> dict | None:
    ia, life = p.inference_optimum, p.life_cycle
    if ia is None:
        return None
    return {
        "inference_tokens": p.inference_tokens, "law": ia.law, "source": "Sardana et al. 2024 (arXiv:2401.00448)",
        "optimum": {"n_params": ia.n_params, "n_tokens": ia.n_tokens, "loss": ia.target_loss,
                    "tokens_per_param": ia.tokens_per_param, "train_flops": ia.train_flops,
                    "lifetime_flops": ia.lifetime_flops, "method": ia.method},
        "recommended_vs_compute_optimal": {"params_ratio": p.params_vs_optimum,
                                           "tokens_ratio": p.tokens_vs_optimum},
        "life_cycle": None if life is None else {
            "n_params": life.n_params, "n_tokens": life.n_tokens, "loss": life.target_loss,
            "chinchilla_n_params": life.chinchilla_n_params, "chinchilla_n_tokens": life.chinchilla_n_tokens,
            "train_flops": life.train_flops, "inference_flops": life.inference_flops,
            "lifetime_flops": life.lifetime_flops, "chinchilla_lifetime_flops": life.chinchilla_lifetime_flops,
            "saving_flops": life.saving_flops, "saving_fraction": life.saving_fraction},
        "warnings": list(ia.warnings),
    }


CSV_COLUMNS = ("n_params", "n_layer", "n_head", "n_embd", "nearest_preset", "fits", "min_gpus", "micro_batch",
               "grad_accum", "recompute", "optimizer", "zero_stage", "offload_optimizer", "peak_memory_bytes",
               "n_tokens", "tokens_per_param", "loss", "step_s", "tokens_per_s", "mfu", "hfu", "mfu_convention",
               "mfu_causal", "train_time_s",
               "layout", "recommended")


def plan_csv(p: Plan) -> str:
    """Every option as a CSV row (base units), the recommended one marked."""
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for o in p.options:
        s = o.chosen.setup if o.chosen else None
        w.writerow(_finite_cells({
            "n_params": o.n_params, "n_layer": o.model.n_layer, "n_head": o.model.n_head, "n_embd": o.model.n_embd,
            "nearest_preset": o.nearest_preset or "", "fits": o.fits, "min_gpus": o.min_gpus or "",
            "micro_batch": s.micro_batch if s else "", "grad_accum": s.grad_accum if s else "",
            "recompute": s.recompute.value if s else "", "optimizer": s.optimizer.value if s else "",
            "zero_stage": s.zero_stage if s else "", "offload_optimizer": s.offload_optimizer if s else "",
            "peak_memory_bytes": o.chosen.peak_memory_bytes if s else "", "n_tokens": o.n_tokens,
            "tokens_per_param": o.tokens_per_param, "loss": "" if o.loss is None else o.loss,
            "step_s": o.speed.step_s if o.speed else "", "tokens_per_s": o.speed.tokens_per_s if o.speed else "",
            "mfu": o.speed.mfu if o.speed else "", "hfu": o.speed.hfu if o.speed else "",
            "mfu_convention": o.mfu_convention if o.speed else "", "mfu_causal": o.mfu_causal if o.speed else "",
            "train_time_s": o.train_time_s, "recommended": o is p.recommended,
            "layout": o.chosen.layout.label() if s and o.chosen.layout is not None else "",
        }))
    return out.getvalue()


def _finite_cells(row: dict) -> dict:
    """``row`` with infinite and nan cells empty, as --json writes them null (a target never reached: its tokens
    and time); the CSV and the JSON say the same."""
    return {k: "" if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
