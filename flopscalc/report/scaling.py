"""Renderers for `flopscalc scaling ...`: typed results -> rich renderables and JSON-ready dicts."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..scaling.allocate import Allocation, LossPrediction
from ..scaling.hyperparams import Hyperparameters
from ..scaling.inference import InferenceAllocation
from ..scaling.laws import ScalingLaw
from ..scaling.validity import RANGE_FACTOR
from ..units import format_count, format_flops, format_sci


def _num(x: float) -> str:
    return format_sci(x, 4) if abs(x) >= 1e4 or abs(x) < 1e-2 else f"{x:.4g}"


def _emb(v: bool | None) -> str:
    return {True: "with embeddings", False: "non-embedding", None: "as in the fitted runs"}[v]


def law_dict(law: ScalingLaw) -> dict:
    return {
        "name": law.name, "title": law.title, "source": law.source, "flop_convention": law.flop_convention,
        "n_counts_embeddings": law.n_counts_embeddings, "has_loss": law.has_loss, "constants": law.constants(),
        "uncertainty": {k: list(v) for k, v in law.uncertainty.items()}, "uncertainty_kind": law.uncertainty_kind,
        "aliases": list(law.aliases), "notes": law.notes,
        "fitted_range": law.fitted_range.as_dict() if law.fitted_range else None,
        "unique_tokens_range": list(law.repetition.unique_tokens) if law.repetition and law.repetition.unique_tokens
        else None,
        "vocab_size": law.vocab_size, "uniform_loss": law.uniform_loss,
    }


def _span(span, fmt) -> str:
    return f"{fmt(span[0])} to {fmt(span[1])}"


def _range_lines(law: ScalingLaw) -> list[Text]:
    r, lines = law.fitted_range, []
    if r is not None:
        parts = [f"{what} {_span(span, fmt)}" for what, span, fmt in
                 (("N", r.n_params, format_count), ("D", r.n_tokens, format_count), ("C", r.c_flops, format_flops))
                 if span is not None]
        lines.append(Text(f"fitted on: {', '.join(parts)} ({r.source}); warnings beyond {RANGE_FACTOR:g}x either way"))
    if law.repetition is not None and law.repetition.unique_tokens is not None:
        lines.append(Text(f"repetition decay fitted on unique tokens U {_span(law.repetition.unique_tokens, format_count)}"
                          f" ({law.repetition.source})"))
    vocab = f"{law.vocab_size:,} tokens" if law.vocab_size else "unknown (GPT-2's 50,257 assumed)"
    lines.append(Text(f"vocabulary: {vocab}; losses above ln(vocab) = {law.uniform_loss:.2f} are not predictions"))
    return lines


def laws_table(laws: list[ScalingLaw]) -> Table:
    t = Table(title="Scaling laws", title_justify="left")
    for col in ("name", "what", "constants", "N counts", "source"):
        t.add_column(col)
    for law in laws:
        consts = ", ".join(f"{k}={_num(v)}" for k, v in law.constants().items())
        t.add_row(law.name, law.title, consts, _emb(law.n_counts_embeddings), law.source)
    return t


def law_detail(law: ScalingLaw) -> Group:
    t = Table(show_header=True, box=None)
    t.add_column("constant", style="bold")
    t.add_column("value", justify="right")
    t.add_column("interval", justify="right")
    for k, v in law.constants().items():
        lo_hi = law.uncertainty.get(k)
        t.add_row(k, _num(v), f"{_num(lo_hi[0])} .. {_num(lo_hi[1])}" if lo_hi else "")
    lines = [Text.from_markup(f"[bold]{law.name}[/]: {law.title}", emoji=False), Text(f"source: {law.source}"),
             Text(f"FLOPs: {law.flop_convention}; N {_emb(law.n_counts_embeddings)}"), *_range_lines(law), t]
    if law.uncertainty_kind:
        lines.append(Text(f"intervals: {law.uncertainty_kind}", style="dim"))
    if law.notes:
        lines.append(Text(law.notes, style="dim"))
    return Group(*lines)


def allocation_dict(a: Allocation, law: ScalingLaw) -> dict:
    return {
        "law": a.law, "law_source": law.source, "method": a.method, "c_flops": a.c_flops, "n_params": a.n_params,
        "n_tokens": a.n_tokens, "tokens_per_param": a.tokens_per_param, "loss": a.loss,
        "unique_tokens": a.unique_tokens, "epochs": a.epochs, "n_counts_embeddings": law.n_counts_embeddings,
        "flop_convention": law.flop_convention, "above_uniform_guess": a.above_uniform,
        "uniform_loss": law.uniform_loss, "warnings": list(a.warnings),
    }


def _warning_lines(warnings) -> list[Text]:
    return [Text(f"warning: {w}", style="yellow") for w in warnings]


def allocation_report(a: Allocation, law: ScalingLaw, title: str = "Compute-optimal allocation") -> Group:
    t = Table(title=f"{title} ({law.name})", title_justify="left", show_header=False, box=None)
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_column(style="dim")
    t.add_row("budget", format_flops(a.c_flops), law.flop_convention)
    t.add_row("parameters N", format_count(a.n_params, 2), _emb(law.n_counts_embeddings))
    t.add_row("tokens D", format_count(a.n_tokens, 2), "total, repeats included" if a.unique_tokens else "")
    t.add_row("tokens per parameter", f"{a.tokens_per_param:.1f}", "")
    if a.unique_tokens is not None:
        t.add_row("unique tokens", format_count(a.unique_tokens, 2), f"{a.epochs:.2f} epochs")
    if a.above_uniform:
        t.add_row("predicted loss", "-", f"above a uniform guess ({law.uniform_loss:.2f})")
    else:
        t.add_row("predicted loss", "-" if a.loss is None else f"{a.loss:.4f}", "nats/token" if a.loss else
                  "this law has no loss formula")
    t.add_row("method", a.method, law.source)
    return Group(t, *_warning_lines(a.warnings))


def loss_dict(law: ScalingLaw, p: LossPrediction) -> dict:
    return {"law": law.name, "law_source": law.source, "n_params": p.n_params, "n_tokens": p.n_tokens,
            "unique_tokens": p.unique_tokens, "loss": p.loss, "above_uniform_guess": p.above_uniform,
            "uniform_loss": p.uniform_loss, "effective_tokens": p.effective_tokens,
            "n_counts_embeddings": law.n_counts_embeddings, "c_flops": p.c_flops,
            "warnings": list(p.warnings)}


def loss_report(law: ScalingLaw, p: LossPrediction) -> Group:
    rep = f" from {format_count(p.unique_tokens, 2)} unique tokens" if p.unique_tokens else ""
    value = (f"[bold]above a uniform guess ({p.uniform_loss:.2f})[/], no prediction" if p.above_uniform
             else f"predicted loss [bold]{p.loss:.4f}[/] nats/token")
    head = Text.from_markup(
        f"[bold]{law.name}[/]: N={format_count(p.n_params, 2)} ({_emb(law.n_counts_embeddings)}), "
        f"D={format_count(p.n_tokens, 2)}{rep} -> {value} "
        f"(6ND = {format_flops(p.c_flops)}; {law.source})", emoji=False)
    return Group(head, *_warning_lines(p.warnings))


# ------------------------------------------------------------------------------------------ fits


def fit3_dict(fit, boot=None) -> dict:
    import numpy as np  # here: `scaling laws`, `optimal` and the rest load no numpy (start-up, issue 18)

    law = fit.law
    out = {
        "approach": 3, "n_runs": fit.n_runs, "excluded_highest_loss": fit.excluded, "constants": law.constants(),
        "a": law.a, "b": law.b, "G": law.G, "objective": fit.objective, "huber_delta": fit.huber_delta,
        "grid": fit.grid, "n_starts": fit.n_starts, "n_converged": fit.n_converged,
        "n_reached_best": fit.n_reached_best, "bound_hits": list(fit.bound_hits), "polish": fit.polish,
        "residuals": {"rms": float(np.sqrt(np.mean(fit.residuals**2))), "max_abs": float(np.abs(fit.residuals).max()),
                      "values": fit.residuals.tolist()},
    }
    if boot is not None:
        out["bootstrap"] = {
            "n_samples": boot.n_samples, "seed": boot.seed, "n_converged": boot.n_converged,
            "starts_per_sample": boot.starts_per_sample,
            # the fitted law's own value of each bootstrapped quantity: the table's "fit" column beside its interval
            "fit": {**law.constants(), "a": law.a, "b": law.b,
                    **{k: float(v) for c in boot.ref_flops
                       for k, v in ((f"n_opt@{c:.0e}", law.n_opt(c)), (f"d_opt@{c:.0e}", law.d_opt(c)))}},
            "intervals_95": {k: list(boot.interval(k)) for k in boot.samples},
            "std": {k: boot.std(k) for k in boot.samples},
            "warnings": list(boot.warnings),
        }
    return out


def _interval_cell(samples_owner, key: str) -> str:
    if samples_owner is None:
        return ""
    lo, hi = samples_owner.interval(key)
    return f"{_num(lo)} .. {_num(hi)}"


def fit3_report(fit, boot=None) -> Group:
    import numpy as np  # here: see fit3_dict

    law = fit.law
    t = Table(title=f"Approach 3 fit on {fit.n_runs} runs", title_justify="left")
    t.add_column("constant", style="bold")
    t.add_column("fit", justify="right")
    if boot is not None:
        t.add_column("95% bootstrap interval", justify="right")
    for k, v in {**law.constants(), "a": law.a, "b": law.b}.items():
        t.add_row(k, _num(v), *([_interval_cell(boot, k)] if boot is not None else []))
    if boot is not None:
        for c in boot.ref_flops:  # parameters and tokens: counts, as everywhere (units.format_count)
            for what, key, value in (("N_opt", "n_opt", law.n_opt(c)), ("D_opt", "d_opt", law.d_opt(c))):
                lo, hi = boot.interval(f"{key}@{c:.0e}")
                t.add_row(f"{what} at {c:.0e} FLOP", format_count(float(value), 2),
                          f"{format_count(float(lo), 2)} .. {format_count(float(hi), 2)}")
    r = fit.residuals
    diag = Text(
        f"Huber delta {fit.huber_delta:g}, objective {fit.objective:.6g}; {fit.n_starts} starts ({fit.grid} grid), "
        f"{fit.n_converged} converged, {fit.n_reached_best} reached the best; bound hits: "
        f"{', '.join(fit.bound_hits) or 'none'}; polish: {fit.polish}. Residuals of log loss: "
        f"rms {np.sqrt(np.mean(r**2)):.4f}, max {np.abs(r).max():.4f}.", style="dim")
    parts = [t, diag]
    if boot is not None:
        parts.append(Text(f"Bootstrap: {boot.n_samples} resamples (seed {boot.seed}), "
                          f"{boot.starts_per_sample} warm starts each, {boot.n_converged} converged.", style="dim"))
        parts += _warning_lines(boot.warnings)
    return Group(*parts)


def power_fit_dict(fit) -> dict:
    out = {"approach": fit.approach, "n_runs": fit.n_runs, "a": fit.a, "k_N": fit.k_n, "b": fit.b, "k_D": fit.k_d,
           "points": [{"c_flops": float(c), "n_opt": float(n), "d_opt": float(d)}
                      for c, n, d in zip(fit.c_flops, fit.n_opt, fit.d_opt)],
           "warnings": list(fit.warnings)}
    if fit.samples:
        out["bootstrap"] = {"n_samples": len(fit.samples["a"]), "seed": fit.seed,
                            "intervals_95": {k: list(fit.interval(k)) for k in fit.samples}}
    return out


def power_fit_report(fit) -> Group:
    t = Table(title=f"Approach {fit.approach} fit on {fit.n_runs} runs: N_opt = k_N C^a", title_justify="left")
    t.add_column("constant", style="bold")
    t.add_column("fit", justify="right")
    if fit.samples:
        t.add_column("95% bootstrap interval", justify="right")
    for k, v in (("a", fit.a), ("b", fit.b), ("k_N", fit.k_n), ("k_D", fit.k_d)):
        cell = [_interval_cell(fit if k in fit.samples else None, k)] if fit.samples else []
        t.add_row(k, _num(v), *cell)
    parts = [t, Text(f"{len(fit.c_flops)} optimal points from {format_flops(fit.c_flops.min())} to "
                     f"{format_flops(fit.c_flops.max())}.", style="dim")]
    parts += [Text(f"warning: {w}", style="yellow") for w in fit.warnings]
    return Group(*parts)


# ------------------------------------------------------------------------------------------ inference-aware


def inference_dict(a: InferenceAllocation) -> dict:
    """The life-cycle optimum and the Chinchilla model of the same loss, every FLOP count with its unit."""
    return {
        "law": a.law, "method": a.method, "target_loss": a.target_loss, "inference_tokens": a.inference_tokens,
        "budget_flops": a.budget_flops,
        "chinchilla": {"n_params": a.chinchilla_n_params, "n_tokens": a.chinchilla_n_tokens,
                       "tokens_per_param": a.chinchilla_tokens_per_param, "train_flops": a.chinchilla_train_flops,
                       "inference_flops": a.chinchilla_inference_flops, "lifetime_flops": a.chinchilla_lifetime_flops},
        "inference_aware": {"n_params": a.n_params, "n_tokens": a.n_tokens, "tokens_per_param": a.tokens_per_param,
                            "train_flops": a.train_flops, "inference_flops": a.inference_flops,
                            "lifetime_flops": a.lifetime_flops},
        "params_ratio": a.params_ratio, "tokens_ratio": a.tokens_ratio, "saving_flops": a.saving_flops,
        "saving_fraction": a.saving_fraction, "warnings": list(a.warnings),
        "source": "Sardana et al. 2024, arXiv:2401.00448: min 6ND + 2NT at L(N, D) = loss",
    }


def inference_report(a: InferenceAllocation) -> Group:
    t = Table(title=f"Inference-aware optimum for {format_count(a.inference_tokens, 2)} tokens served "
                    f"(at this loss {a.target_loss:.4f}, training + serving least; {a.law})", title_justify="left")
    for col, just in (("", "left"), ("Chinchilla-optimal", "right"), ("inference-aware", "right"),
                      ("change", "right")):
        t.add_column(col, justify=just)
    t.add_row("parameters N", format_count(a.chinchilla_n_params, 2), format_count(a.n_params, 2),
              f"{a.params_ratio - 1:+.1%}")
    t.add_row("tokens D", format_count(a.chinchilla_n_tokens, 2), format_count(a.n_tokens, 2),
              f"{a.tokens_ratio - 1:+.1%}")
    t.add_row("tokens per parameter", f"{a.chinchilla_tokens_per_param:.1f}", f"{a.tokens_per_param:.1f}", "")
    t.add_row("training (6ND)", format_flops(a.chinchilla_train_flops), format_flops(a.train_flops),
              f"{a.train_flops / a.chinchilla_train_flops - 1:+.1%}")
    t.add_row("inference (2NT)", format_flops(a.chinchilla_inference_flops), format_flops(a.inference_flops),
              f"{a.params_ratio - 1:+.1%}")
    t.add_row("life cycle", format_flops(a.chinchilla_lifetime_flops), format_flops(a.lifetime_flops),
              f"{-a.saving_fraction:+.1%}")
    lines = [t, Text.from_markup(
        f"life-cycle saving: [bold]{format_flops(a.saving_flops)}[/] ({a.saving_fraction:.1%}) over the Chinchilla "
        f"model of the same loss; {a.method}", emoji=False)]
    if a.budget_flops is not None and a.train_flops > a.budget_flops * (1 + 1e-9):
        lines.append(Text(f"the inference-aware model trains {a.train_flops / a.budget_flops - 1:.1%} past the "
                          f"{format_flops(a.budget_flops)} budget and pays it back in serving; 'flopscalc plan "
                          "--inference-tokens' instead keeps the training budget, at a higher loss", style="dim"))
    return Group(*lines, *_warning_lines(a.warnings))


# ------------------------------------------------------------------------------------------ hyperparameters


def hparams_dict(h: Hyperparameters) -> dict:
    return h.as_dict()


def hparams_report(h: Hyperparameters, model_name: str = "", seq_note: str = "") -> Group:
    """``seq_note``: where a default sequence came from (`model.SeqSource.note`), printed once in the title."""
    title = (f"Hyperparameters{f' for {model_name}' if model_name else ''} on {format_count(h.n_tokens, 2)} tokens"
             + (f", sequence {h.seq_len}{seq_note}" if seq_note else ""))
    t = Table(title=title, title_justify="left", show_header=False, box=None)
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_column(style="dim")
    t.add_row("compute C = M D", format_flops(h.c_flops), f"DeepSeek's convention: M = {format_flops(h.m_flops_per_token)}"
              "/token (eq. 2)")
    t.add_row("batch", f"{format_count(h.batch_tokens, 2)} tokens",
              f"{h.batch_sequences:,} x {h.seq_len:,}-token sequences; law {format_count(h.law_batch_tokens, 2)}; "
              f"{h.sources['batch_tokens']}")
    if h.critical_batch_tokens is not None:
        t.add_row("critical batch", f"{format_count(h.critical_batch_tokens, 2)} tokens", h.sources["critical_batch_tokens"])
    t.add_row("peak learning rate", f"{h.learning_rate:.3g}", h.sources["learning_rate"])
    t.add_row("steps", f"{h.n_steps:,}", "")
    t.add_row("warm-up", f"{h.warmup_steps:,} steps", h.sources["warmup_steps"])
    decay = (", ".join(f"x{m:g} after {f:.0%} of tokens" for f, m in h.milestones) if h.milestones
             else f"cosine to {h.min_lr_ratio:.0%} of the peak")
    t.add_row("schedule", h.schedule.value, f"{decay}; {h.sources['schedule']}")
    t.add_row("optimizer", f"AdamW {h.adam_betas[0]:g}/{h.adam_betas[1]:g}",
              f"weight decay {h.weight_decay:g}, clip {h.grad_clip:g}; {h.sources['optimizer']}")
    return Group(t, *_warning_lines(h.warnings))
