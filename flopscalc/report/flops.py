"""Renderers of `flopscalc flops`: `FlopsSummary` -> a rich report and a JSON-ready dict.

A run is a whole number of optimizer steps: tokens that do not fill the last step make a last, partial step (the
run's FLOPs count the tokens it trains on, so they include that partial step and nothing more). The report says
so instead of printing a fractional step count ("366.2 steps").
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..flops import formula_as_applied
from ..flops.summary import StepCount
from ..units import format_count, format_flops, format_sci
from .common import COMPONENT_LABELS, model_dict, model_line, seq_label, seq_words

if TYPE_CHECKING:
    from ..flops import FlopsSummary


def steps_text(c: StepCount) -> str:
    """'366 steps', '367 steps (366 full and a last one of 864 tokens)', or '1 step (a partial one of 1,000 tokens)'."""
    plural = "step" if c.n_steps == 1 else "steps"
    last = f"{c.last_step_tokens:,} token" + ("" if c.last_step_tokens == 1 else "s")
    if not c.last_step_tokens:
        return f"{c.n_steps:,} {plural}"
    if not c.n_full_steps:
        return f"{c.n_steps:,} {plural} (a partial one of {last})"
    return f"{c.n_steps:,} {plural} ({c.n_full_steps:,} full and a last one of {last})"


def flops_dict(s: FlopsSummary) -> dict:
    t = s.training
    exact = t.model_flops_per_token
    steps = s.steps
    return {
        "model": model_dict(s.model), "seq_len": s.seq_len, "seq_len_source": seq_label(s.model, s.seq_len_given),
        "n_tokens": s.n_tokens,
        "tokens_per_step": s.tokens_per_step, "n_steps": steps.n_steps, "n_full_steps": steps.n_full_steps,
        "last_step_tokens": steps.last_step_tokens, "causal": s.causal,
        "recompute": t.recompute.value,
        "forward_flops_per_token": t.forward.as_dict(),
        "per_token": {
            "forward_flops": t.forward_flops_per_token, "backward_flops": t.backward_flops_per_token,
            "recompute_flops": t.recompute_flops_per_token, "model_flops": t.model_flops_per_token,
            "hardware_flops": t.hardware_flops_per_token,
        },
        "per_step": {"model_flops": s.model_flops_per_step, "hardware_flops": s.hardware_flops_per_step},
        "per_run": {"model_flops": s.model_flops, "hardware_flops": s.hardware_flops},
        "conventions": [
            {"key": r.convention.key, "title": r.convention.title,
             "formula": formula_as_applied(r.convention.key, s.model),
             "source": r.convention.source, "flops_per_token": r.flops_per_token,
             "flops_per_run": r.flops_per_token * s.n_tokens, "ratio_to_exact": r.ratio_to(exact),
             "hardware_flops": r.convention.hardware, "omits": r.convention.omits}
            for r in s.conventions
        ],
    }


def flops_report(s: FlopsSummary) -> Group:
    from ..flops import BACKWARD_TO_FORWARD

    t = s.training
    head = Text(model_line(s.model))
    steps = s.steps
    sub = Text(
        f"{seq_words(s.model, s.seq_len_given, s.seq_len)}, {format_count(s.n_tokens)} "
        f"token{'' if s.n_tokens == 1 else 's'}, "
        f"{steps.tokens_per_step:,} tokens/step: "
        f"{steps_text(steps)}, attention {'causal (unmasked pairs only)' if s.causal else 'dense T x T'}, "
        f"recompute {t.recompute.value}", style="dim")
    comp = Table(title="Exact matmul FLOPs by component", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("component", "forward FLOP/token", "fwd+bwd FLOP/token", "share", "per run"):
        comp.add_column(col, justify="left" if col == "component" else "right")
    fwd = t.forward.as_dict()
    for key, label in COMPONENT_LABELS.items():
        v = fwd[key]
        both = (1 + BACKWARD_TO_FORWARD) * v  # forward + backward of this component  [flops.py [1] sec. 2.1]
        comp.add_row(label, format_sci(v) if v else "0", format_sci(both) if v else "0",
                     f"{v / t.forward.total:.1%}", format_sci(both * s.n_tokens) if v else "0")
    comp.add_row("[bold]total (model FLOPs)[/]", format_sci(t.forward_flops_per_token),
                 format_sci(t.model_flops_per_token), "100%", format_sci(s.model_flops))
    if t.recompute_flops_per_token:
        comp.add_row(f"+ recompute ({t.recompute.value})", "", format_sci(t.recompute_flops_per_token), "",
                     format_sci(t.recompute_flops_per_token * s.n_tokens))
        comp.add_row("[bold]hardware FLOPs[/]", "", format_sci(t.hardware_flops_per_token), "",
                     format_sci(s.hardware_flops))
    totals = Table(show_header=True, box=None, title="Totals", title_justify="left")
    for col in ("", "per token", "per full step", "per run"):
        totals.add_column(col, justify="right" if col else "left")
    totals.add_row("model FLOPs", format_sci(t.model_flops_per_token), format_sci(s.model_flops_per_step),
                   format_flops(s.model_flops))
    totals.add_row("hardware FLOPs", format_sci(t.hardware_flops_per_token), format_sci(s.hardware_flops_per_step),
                   format_flops(s.hardware_flops))
    conv = Table(title="The same run in the conventions people cite", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("convention", "FLOP/token", "per run", "vs exact", "formula"):
        conv.add_column(col, justify="right" if col in ("FLOP/token", "per run", "vs exact") else "left")
    exact = t.model_flops_per_token
    for r in s.conventions:
        c = r.convention
        conv.add_row(c.title + (" *" if c.hardware else ""), format_sci(r.flops_per_token),
                     format_sci(r.flops_per_token * s.n_tokens), f"{r.ratio_to(exact):.3f}",
                     formula_as_applied(c.key, s.model))
    notes = Table(title="What each convention leaves out, and its source", title_justify="left", box=None,
                  show_header=False, pad_edge=False)
    notes.add_column(style="bold", no_wrap=True)
    notes.add_column()
    for r in s.conventions:
        c = r.convention
        notes.add_row(c.key, f"leaves out {c.omits}. [dim]{c.source}[/]")
    foot = Text("* includes one recomputed forward pass (hardware FLOPs); the others count model FLOPs.", style="dim")
    return Group(head, sub, Text(), comp, Text(), totals, Text(), conv, foot, Text(), notes)


def whole_tokens(n_tokens: float) -> bool:
    """``n_tokens`` is a whole number of tokens, up to the float rounding of a parsed decimal (e.g. 0.3B)."""
    return math.isfinite(n_tokens) and abs(n_tokens - round(n_tokens)) <= 1e-9 * max(1.0, abs(n_tokens))
