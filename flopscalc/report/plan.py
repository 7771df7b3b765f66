"""Renderers for `flopscalc plan`: the Plan as rich tables (its JSON and CSV: `plan_data.py`). No arithmetic."""

from __future__ import annotations

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..hardware import PRECISION_HELP
from ..model import count_params
from ..planner.budget import CHINCHILLA_TOKENS_PER_PARAM, Candidate
from ..planner.core import Plan
from ..planner.family import FAMILY_LABELS
from ..planner.options import NEAREST_PRESET_FACTOR, PLAN_MEMORY_HEADROOM, PlanOption, same_model
from ..units import (
    format_bytes,
    format_count,
    format_duration,
    format_flops,
    format_rate,
    format_sci,
    format_usd,
)
from .common import assumptions_table


def _shape(o: PlanOption) -> str:
    return f"{o.model.n_layer}x{o.model.n_embd}"


def _setup_short(o: PlanOption) -> str:
    if o.chosen is None:
        return f"needs {o.min_gpus} GPUs" if o.min_gpus else "fits no GPU count"
    if o.chosen.layout is not None:  # TP8 PP4x2 DP32 SP mb1x64 ZeRO1 rc:none, without the defaults
        return " ".join(w.replace("ZeRO", "z") for w in o.chosen.layout.label().split()
                        if w not in ("TP1", "PP1", "ZeRO0", "rc:none"))
    s = o.chosen.setup
    parts = [f"{s.micro_batch}x{s.grad_accum}"]
    if s.recompute.value != "none":
        parts.append(f"rc:{s.recompute.value[:3]}")
    if s.optimizer.value != "adamw":
        parts.append({"adamw8bit": "8bit"}.get(s.optimizer.value, s.optimizer.value))
    if s.zero_stage:
        parts.append(f"z{s.zero_stage}")
    if s.offload_optimizer:
        parts.append("off")
    return " ".join(parts)


def _kv_table(title: str) -> Table:
    t = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold", no_wrap=True)
    t.add_column(justify="right", no_wrap=True)
    t.add_column(style="dim")
    return t


def _layout_memory_note(chosen) -> str:
    """Whose peak a layout plan's memory is: the memory engine's for a run `flopscalc train` runs (DDP, FSDP), else
    the layout engine's busiest pipeline stage (`layout.memory.memory_from_parts`)."""
    from ..layout.spec import Engine  # here: a one-GPU plan never loads the layout engine

    if chosen.layout.engine() is not Engine.megatron:
        return "the memory engine's peak, as 'flopscalc memory' prices the same setup"
    return f"the layout engine's peak, on the {chosen.layouts.best.memory.stage} pipeline stage"


def _never_reaches(p: Plan, o: PlanOption) -> str:
    """The loss cell of an option that no number of tokens brings to the target: the target and the option's floor
    (`PlanOption.floor_loss`, the planner's)."""
    return f"never reaches {p.target_loss:g}" + ("" if o.floor_loss is None else f" (floor {o.floor_loss:.3f})")


def _target_pick(p: Plan) -> str:
    """What the recommended run is under a target loss: the fastest to it, or with --inference-tokens the one of
    least training + serving FLOPs (`planner.lifecycle.life_cycle_pick`), said beside the fastest's time."""
    if p.inference_tokens is None:
        return f"the fastest of the shapes searched to loss {p.target_loss}"
    return (f"the run to loss {p.target_loss} with the least training + serving FLOPs (the fastest of the shapes "
            f"searched, in the time column below, takes {format_duration(p.fastest_train_time_s)})")


def _ratio_text(c: Candidate) -> str:
    """A preset's tokens per parameter with as few decimals as keep it on the side of 20 its ">=20" cell says
    (19.98 prints "19.98", not "20" beside "no")."""
    for decimals in range(4):
        text = f"{c.tokens_per_param:,.{decimals}f}"
        if (float(text.replace(",", "")) >= CHINCHILLA_TOKENS_PER_PARAM) == c.reaches_chinchilla:
            break
    return text


def plan_report(p: Plan) -> Group:
    b = p.budget
    r = p.recommended
    s = r.chosen.setup
    sp = r.speed
    head = Text.from_markup(
        f"[bold]{b.n_gpus} x {b.gpu.name}[/] for {format_duration(b.duration_s)}, "
        f"{b.precision.value} ({PRECISION_HELP[b.precision]}, dense)"
        + {"time": "", "flops": "; budget given as FLOPs", "money": "; budget given as money",
           "tokens": "; a fixed model on fixed tokens (the time is the answer)",
           }.get(p.budget_kind, "") + (f"; {_target_pick(p)}" if p.budget_kind == "target" else ""),
        emoji=False,  # as stdout's console (cli.output.CONSOLE_SETTINGS): no ":name:" codes, no emoji table to load
    )
    budget = _kv_table("FLOP budget")
    budget.add_row("peak rate", format_rate(b.peak_flop_per_s), f"{b.n_gpus} x {format_rate(b.peak_flop_per_s_per_gpu)}")
    budget.add_row("peak x time", format_flops(b.peak_flops), "every GPU busy and at peak the whole time")
    budget.add_row(f"x utilization {b.utilization:g}", format_flops(b.busy_flops),
                   "busy share of wall-clock time (duty cycle)")
    by_deadline = p.deadline_model_flops
    # with inference tokens a time or money budget is settled at the lowest-loss run's MFU (`passes._life_cycle`)
    life_budget = p.inference_tokens is not None and p.budget_kind in ("time", "money")
    run = "the lowest-loss run (the plan without --inference-tokens)" if life_budget else "the recommended run"
    budget.add_row(f"x MFU {b.mfu:.3g}", format_flops(b.model_flops),
                   (f"model FLOPs {run} delivers" if by_deadline is None else
                    "model FLOPs the budget holds at " + ("the MFU of " + run if life_budget else
                                                          "the recommended run's MFU"))
                   + f" ({format_rate(b.achieved_flop_per_s)} averaged over wall-clock)"
                   + ("" if p.stated_efficiency is None or p.stated_efficiency == b.mfu else
                      f"; its MFU, at hardware efficiency {p.stated_efficiency:g}")
                   + ("; the life-cycle pick is weighed in this budget" if life_budget else "")
                   + f"; MFU {_mfu_convention(p.budget_run or r, p.mfu_causal, '.3g')}")
    if by_deadline is not None:
        budget.add_row(f"by --max-days {format_duration(p.max_wall_clock_s)}", format_flops(by_deadline),
                       f"model FLOPs {run} delivers: the deadline stops it first")
    a = p.allocation
    budget.add_row(f"{p.law.name} optimum" if p.objective != "target" else "cheapest at target",
                   f"N {format_count(a.n_params)}",
                   f"D {format_count(a.n_tokens)} tokens ({a.tokens_per_param:.0f}/param)"
                   + ("" if a.loss is None else f", loss {a.loss:.3f}")
                   + (f", loss above a uniform guess ({p.law.uniform_loss:.2f})"
                      if a.loss is None and a.above_uniform else ""))
    if a.law_flops is not None:  # the budget counts attention; the law counts C = 6ND (scaling.per_token)
        budget.add_row("  as the law counts", format_flops(a.law_flops),
                       f"the budget converted to the law's {p.law.flop_convention}: "
                       f"{format_flops(a.c_flops)} of model FLOPs at {a.c_flops / a.n_tokens / a.n_params:.2f}N per "
                       f"token (an N-parameter model at sequence {r.chosen.setup.seq_len:,}, attention included) "
                       "buy the optimum's D")

    rec = _kv_table("Recommended run")
    m = r.model
    block = "" if m.is_gpt2_block else f" ({m.family})"  # GQA, SwiGLU, ..., MoE: the block the count is of
    active = count_params(m).active if m.is_moe else None
    rec.add_row("model", format_count(r.n_params) + " params",
                f"{m.n_layer} layers x {m.n_embd} wide, {m.n_head} heads of {m.head_dim}{block}; "
                + (f"{format_count(active)} active; " if active is not None else "")
                + (f"the preset {r.nearest_preset}" if _is_preset(m, r.nearest_preset) else
                   f"nearest preset {r.nearest_preset}" if r.nearest_preset else
                   f"no {_searched(p.family)} within {NEAREST_PRESET_FACTOR:g}x its size"))
    rec.add_row("tokens", format_count(r.n_tokens),
                f"{r.tokens_per_param:.1f} per parameter"
                + ("" if active is None else f", {r.n_tokens / active:.1f} per active parameter")
                + ("" if r.epochs is None else f", {r.epochs:.2f} epochs"))
    if r.loss is not None:
        others = ", ".join(f"{k} {v:.3f}" for k, v in p.loss_by_law.items() if k != p.law.name and v is not None)
        band = (f"; {p.loss_interval[0]:.3f}-{p.loss_interval[1]:.3f} over the law's interval on E"
                if p.loss_interval else "")
        rec.add_row("predicted loss", f"{r.loss:.3f}",
                    f"nats/token on the law's data ({p.law.name}{band})" + (f"; {others}" if others else ""))
    elif p.law.has_loss:
        rec.add_row("predicted loss", "-", f"above a uniform guess ({p.law.uniform_loss:.2f} = ln vocabulary): "
                    "no prediction; see Warnings")
    replicas = r.chosen.layout.dp if r.chosen.layout is not None else b.n_gpus  # data-parallel copies of the model
    rec.add_row("setup", f"{s.micro_batch} x {s.grad_accum}",
                "micro-batch x accumulation" + (f" x {replicas:,} data-parallel replicas" if replicas > 1 else "")
                + f" = {format_count(r.chosen.tokens_per_step)} tokens/step at seq "
                f"{s.seq_len}{p.seq_source.note if p.seq_source else ''}; {s.precision.value}, {s.optimizer.value}, "
                f"recompute {s.recompute.value}"
                + (f", ZeRO-{s.zero_stage}" if s.zero_stage else "") + (", optimizer offload" if s.offload_optimizer
                                                                        else ""))
    if r.batch is not None:
        g = r.batch
        rec.add_row("batch grown", f"{format_count(g.default_tokens_per_step)} -> {format_count(g.tokens_per_step)}",
                    f"tokens/step, to hide communication (scaling efficiency {g.default_scaling_efficiency:.0%} at "
                    f"GPT-3's batch); stops {_growth_stop(g)}: {format_count(g.critical_tokens)} tokens at loss "
                    f"{g.loss_nats:.3f}, the run's at GPT-3's batch (Kaplan et al. 2020 eq. 5.3, WebText2 nats: an order-of-magnitude guide); "
                    f"each token counts {g.token_value:.2f} of one at GPT-3's batch in the loss (eq. 5.5)")
    if r.chosen.layout is not None:
        _layout_rows(rec, r)
    rec.add_row("memory per GPU", format_bytes(r.chosen.peak_memory_bytes),
                f"of {format_bytes(r.chosen.capacity_bytes)} ({PLAN_MEMORY_HEADROOM:.0%} kept free); "
                + (f"the offloaded optimizer holds {format_bytes(r.chosen.cpu_offload_bytes)} of CPU memory"
                   + (" per GPU" if b.n_gpus > 1 else "") + "; " if s.offload_optimizer else "")
                + (_layout_memory_note(r.chosen) if r.chosen.layout is not None
                   else "the whole per-GPU batch fits in one micro-batch" if s.grad_accum == 1
                   else f"micro-batch {s.micro_batch} is the largest that fits" if s.micro_batch == r.chosen.max_micro_batch
                   else f"up to {r.chosen.max_micro_batch} sequences fit; {s.micro_batch} divides the batch"))
    rec.add_row("step", format_duration(sp.step_s),
                f"{format_count(sp.tokens_per_s)} tokens/s busy, MFU {sp.mfu:.2f} "
                f"{_mfu_convention(r, r.mfu_causal, '.2f')}, HFU {sp.hfu:.2f}"
                + (f", communication {format_duration(sp.comm.exposed_s)} exposed"
                   + (f" + {format_duration(sp.comm.slowdown_s)} of compute slowed beside it" if sp.comm.slowdown_s > 0
                      else "") + f", scaling efficiency {sp.scaling_efficiency:.0%}" if b.n_gpus > 1 else ""))
    rec.add_row("wall clock", format_duration(r.train_time_s), f"{format_count(r.n_steps)} steps at duty cycle "
                f"{b.utilization:g}; {format_flops(r.model_flops)} model FLOPs")
    e = p.energy
    cost = []
    if e.electricity_usd is not None:
        cost.append(f"electricity {format_usd(e.electricity_usd)}")
    if e.cloud_usd is not None:
        cost.append(f"cloud {format_usd(e.cloud_usd)}")
    rec.add_row("energy", f"{e.facility_energy_kwh:,.0f} kWh" if e.energy_known
                else "unknown (no board power in data/gpu_specs.csv)",
                f"{b.gpu.device_noun} board power x busy time; {e.gpu_hours:,.0f} {b.gpu.device_noun}-hours"
                + ("; " + ", ".join(cost) if cost else ""))

    hp = _hyperparameters_table(p)
    life = _inference_table(p)
    binds = None
    if p.binding:
        binds = _kv_table("What limits this run, and what relaxing it would buy")
        binds.caption = ("each loss: the best of the options shown, re-evaluated with the limit relaxed (not a fresh "
                         "plan's search, which may find another setup)")
        binds.caption_justify = "left"
        for bd in p.binding:
            # the options shown, relaxed (`Binding.shown_loss`); under half a printed digit is no change
            gain = ("" if bd.shown_loss is None or r.loss is None else
                    f"loss {bd.shown_loss:.3f} ({bd.shown_loss - r.loss:+.3f})" if bd.options_do_better else
                    f"the options shown, re-evaluated, do no better than the plan's own loss {r.loss:.3f}")
            binds.add_row(bd.constraint, "[bold]binds[/]" if bd.binds else "slack", f"{bd.relaxed}: {gain}")

    presets_label = FAMILY_LABELS.get(p.family, p.family)
    with_presets = f", and the {presets_label} presets" if p.candidates else ""
    legend = ("setup: micro-batch x accumulation, rc = recompute, 8bit = 8-bit Adam, z = ZeRO stage, off = optimizer "
              "offload" if r.chosen.layout is None else "setup: the fastest layout that fits, TP/PP(x interleave)/DP/"
              "CP/EP degrees, SP = sequence parallel, mb = micro-batch x micro-batches, z = ZeRO stage, rc = recompute")
    opts = Table(title=f"Options around the optimum{with_presets} ({legend}; MFU, HFU: {r.mfu_convention})",
                 title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False)
    show_time = p.budget_kind in ("flops", "target") or p.max_wall_clock_s is not None
    cols = [("params", "right"), ("preset / role", "left"), ("shape", "right"), ("setup", "left"), ("MFU", "right"),
            ("HFU", "right"), ("tokens", "right"), ("tok/p", "right"), ("loss", "right")] + (
        [("time", "right")] if show_time else [])
    for col, just in cols:  # the words of the role and setup wrap in a narrow terminal; numbers never do
        opts.add_column(col, justify=just, no_wrap=col not in ("preset / role", "setup"))
    for i, o in enumerate(p.options):
        mark = "[bold green]" if o is r else ("[dim]" if not o.fits else "")
        end = "[/]" if mark else ""
        label = ", ".join(([o.model.name] if o.model.name else []) + [t for t in p.tags.get(i, ()) if t != "recommended"])
        never = p.budget_kind == "target" and o.fits and not o.reaches_target
        cells = [format_count(o.n_params), label, _shape(o), _setup_short(o),
                 f"{o.speed.mfu:.2f}" if o.fits else "-", f"{o.speed.hfu:.2f}" if o.fits else "-",
                 format_count(o.n_tokens) if o.fits and not never else "-",
                 f"{o.tokens_per_param:.0f}" if o.fits and not never else "-",
                 _never_reaches(p, o) if never else f"{o.loss:.3f}" if o.loss is not None
                 else "above uniform" if o.fits and p.law.has_loss else "-"]
        if show_time:
            cells.append(format_duration(o.train_time_s) if o.fits and not never else "-")
        opts.add_row(*(f"{mark}{x}{end}" for x in cells))

    cands = Table(title=f"What the budget buys each {presets_label} preset, with the setup and speed of the options "
                        "table (20 tokens/param = Chinchilla-optimal)",
                  title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False)
    for col, just in [("model", "left"), ("params", "right"), ("tokens", "right"),
                      ("tok/param", "right"), (">=20", "center"), ("time at 20/p", "right"),
                      ("FLOPs 20/p", "right")]:
        cands.add_column(col, justify=just, no_wrap=True)
    for c in p.candidates:
        if not c.fits:
            cands.add_row(c.model.name, format_count(c.n_params), "-", "-", "-",
                          f"needs {c.min_gpus} GPUs" if c.min_gpus else "fits no GPU count",
                          format_sci(c.chinchilla_flops))
            continue
        cands.add_row(
            c.model.name, format_count(c.n_params), format_count(c.budget_tokens), _ratio_text(c),
            "[green]yes[/]" if c.reaches_chinchilla else "[red]no[/]",
            format_duration(c.chinchilla_time_s), format_sci(c.chinchilla_flops),
        )
    notes = assumptions_table(p.assumptions)
    parts = [head, Text(), budget, Text(), rec, Text()] + [x for t in (hp, life, binds) if t is not None
                                                           for x in (t, Text())] + [opts]
    if p.budget_kind not in ("tokens", "target") and p.candidates:
        parts.append(cands)
    if p.warnings:
        parts += [Text("Warnings", style="bold yellow")] + [Text(f"- {w}", style="yellow") for w in p.warnings]
        parts.append(Text())
    parts.append(notes)
    return Group(*parts)


def _mfu_convention(r: PlanOption, causal: float, fmt: str) -> str:
    """'(dense attention, PaLM App. B; causal 0.46)': how an MFU of ``r`` counts attention, and the causal count
    ``causal`` `flopscalc step` prints where the two differ materially (`PlanOption.mfu_conventions_differ`)."""
    return f"({r.mfu_convention}" + (f"; causal {causal:{fmt}})" if r.mfu_conventions_differ else ")")


def _growth_stop(g) -> str:
    """Where batch growth stopped: 'below the critical batch size (doubling again would pass it)' when the batch
    stopped short of it (growth doubles, `planner.growth`), 'at the ...' when it reached it, or the trade-off."""
    if g.reason != "critical batch size":
        return f"at the {g.reason}, within the critical batch size"
    if g.tokens_per_step < g.critical_tokens:
        return "below the critical batch size (doubling again would pass it)"
    return "at the critical batch size"


def _layout_rows(rec: Table, r: PlanOption) -> None:
    """The layout the search chose, the engine that runs it and the time model that priced it."""
    from ..planner.layout import layout_engine_note, time_model_source

    lay = r.chosen.layout
    rec.add_row("layout", lay.label(), f"TP x PP x DP{' x CP' if lay.cp > 1 else ''} = {lay.n_gpus} GPUs, fastest "
                f"of {r.chosen.layouts.n_timed + r.chosen.layouts.n_pruned} fitting layouts "
                f"({r.chosen.layouts.n_pruned} set aside by a lower bound on their time); {layout_engine_note(lay)}")
    for engine, flags in lay.engine_settings(r.model.n_layer).items():
        rec.add_row(f"  {engine}", "", flags)
    rec.add_row("time model", "", time_model_source(lay) + f"; pipeline bubble {format_duration(r.speed.bubble_s)}")


def _hyperparameters_table(p: Plan) -> Table | None:
    h, r = p.hyperparameters, p.recommended
    if h is None:
        return None
    t = _kv_table("Hyperparameters for the recommended run (AdamW)")
    planned = r.chosen.tokens_per_step
    mine = "grown to hide communication" if r.batch is not None else "GPT-3 Table 2.1"
    capped = h.critical_batch_tokens is not None and h.law_batch_tokens > h.critical_batch_tokens
    if h.batch_tokens == planned:
        t.add_row("batch size", f"{format_count(planned)} tokens", f"{mine}; DeepSeek LLM sec. 3.1 eq. 1 agrees")
    else:
        t.add_row("batch size", f"{format_count(planned)} tokens",
                  f"the setup above uses this ({mine}); DeepSeek LLM sec. 3.1 eq. 1 gives "
                  + (f"{format_count(h.law_batch_tokens)}, capped at the critical batch "
                     f"{format_count(h.critical_batch_tokens)} at loss {r.loss:.3f}: {format_count(h.batch_tokens)}"
                     if capped else format_count(h.batch_tokens)))
    t.add_row("peak learning rate", f"{h.learning_rate:.3g}",
              f"DeepSeek LLM sec. 3.1 eq. 1 at C = M D = {format_flops(h.c_flops)} (their FLOP convention)")
    t.add_row("warmup", f"{p.warmup_steps:,} steps",
              f"DeepSeek LLM sec. 2.3: 2000 steps, capped at 2% of the run's {r.n_steps:,}"
              + ("" if h.batch_tokens == planned else f" ({h.warmup_steps:,} of {h.n_steps:,} at DeepSeek's batch)"))
    t.add_row("schedule", f"{h.schedule.value} to {h.min_lr_ratio:g}x",
              f"{h.sources['schedule']}; AdamW betas {h.adam_betas[0]:g}/{h.adam_betas[1]:g}, weight decay "
              f"{h.weight_decay:g}, clip {h.grad_clip:g} (DeepSeek LLM sec. 2.3)")
    return t


def _inference_table(p: Plan) -> Table | None:
    ia, life, a = p.inference_optimum, p.life_cycle, p.allocation
    if ia is None or life is None:
        return None
    t = _kv_table(f"Serving {format_count(p.inference_tokens)} tokens over the model's life (Sardana et al. 2024: "
                  "training 6ND + inference 2NT FLOPs)")
    what = ("reaches the target loss" if p.objective == "target" else  # the loss fixed, as 'scaling optimal' fixes it
            "trains in this budget (the training budget fixed; 'flopscalc scaling optimal --flops C --inference-tokens"
            " T' fixes the loss C buys instead and trains past C)")
    t.add_row("life-cycle optimum", f"N {format_count(ia.n_params)}",
              f"D {format_count(ia.n_tokens)} tokens ({ia.tokens_per_param:,.0f}/param), loss {ia.target_loss:.3f}: "
              f"the least training + inference FLOPs that {what}")
    t.add_row("vs compute-optimal", f"N {p.params_vs_optimum:.2f}x",
              f"the recommended run has {p.params_vs_optimum:.2f}x the parameters and {p.tokens_vs_optimum:.2f}x "
              f"the tokens of the law's compute-optimal N {format_count(a.n_params)}, D {format_count(a.n_tokens)}")
    t.add_row("life-cycle FLOPs", format_flops(life.lifetime_flops),
              f"training {format_flops(life.train_flops)} + serving {format_flops(life.inference_flops)}")
    chinchilla = (f"{format_flops(life.chinchilla_lifetime_flops)} for the Chinchilla model of the same loss "
                  f"{life.target_loss:.3f} (N {format_count(life.chinchilla_n_params)}, D "
                  f"{format_count(life.chinchilla_n_tokens)})")
    if life.saving_flops >= 0:
        t.add_row("saving", f"{format_flops(life.saving_flops)} ({life.saving_fraction:.1%})", f"vs {chinchilla}")
    else:  # said as a cost, never as a negative saving (FR-A #1: at 1B served tokens, "saving -1.56e17 FLOP")
        t.add_row("no saving", f"{format_flops(-life.saving_flops)} ({-life.saving_fraction:.1%}) more",
                  f"than {chinchilla}: the recommended run's shape and speed keep it further from the law's optimum "
                  "than serving saves")
    return t


def _searched(family: str | None) -> str:
    """The presets `planner.options.nearest_preset` compared the model with: its family's, else every one."""
    return "preset" if family is None else f"{FAMILY_LABELS.get(family, family)} preset"


def _is_preset(model, name: str | None) -> bool:
    """Whether ``model`` is the preset ``name`` itself (same name and shape), not only the nearest in size."""
    from ..model import ALL_PRESETS

    return name is not None and name in ALL_PRESETS and same_model(ALL_PRESETS[name], model)
