"""Renderers: typed results -> rich renderables and JSON-ready dicts. No arithmetic beyond unit scaling."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..model import ModelConfig, count_params
from ..units import (
    format_count,
    format_flops,
    format_sci,
)

if TYPE_CHECKING:  # flops.py is imported by the renderers that show FLOPs only: `flopscalc gpus` needs none
    from ..flops import FlopsSummary

COMPONENT_LABELS = {
    "embedding": "embedding lookup",
    "qkv": "QKV projection",
    "attn_scores": "attention scores (Q K^T)",
    "attn_values": "attention over values",
    "attn_proj": "attention output projection",
    "mlp": "MLP",
    "router": "MoE router",
    "lm_head": "LM head (logits)",
}


def assumptions_table(assumptions) -> Table:
    """Name, value and source of each assumption, as every report ends."""
    notes = Table(title="Assumptions", title_justify="left", show_header=False, box=None, pad_edge=False)
    notes.add_column(style="bold")
    notes.add_column()
    notes.add_column(style="dim")
    for x in assumptions:
        notes.add_row(x.name, x.value, x.source)
    return notes


def model_dict(cfg: ModelConfig) -> dict:
    pc = count_params(cfg)
    return {
        "name": cfg.name, "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_embd": cfg.n_embd,
        "block_size": cfg.block_size, "vocab_size": cfg.vocab_size, "bias": cfg.bias,
        "tie_embeddings": cfg.tie_embeddings, "pos_embedding": cfg.pos_embedding, "n_inner": cfg.n_inner,
        "n_params": pc.total, "n_params_non_embedding": pc.non_embedding, "n_params_active": pc.active,
        "n_kv_head": cfg.kv_heads, "family": cfg.family,
        # the block, so a plan's model can be rebuilt from its JSON (train --from-plan)
        "head_size": cfg.head_dim, "ffn_dim": cfg.n_inner, "mlp": cfg.mlp.value, "norm": cfg.norm.value,
        "position": cfg.pos.value, "qkv_bias": cfg.qkv_bias, "out_bias": cfg.out_bias, "mlp_bias": cfg.mlp_bias,
    }


def model_line(cfg: ModelConfig) -> str:
    pc = count_params(cfg)
    block = "" if cfg.is_gpt2_block else f" ({cfg.family})"
    active = f", {pc.active:,} active" if pc.active != pc.total else ""
    return (f"{cfg.name}: {cfg.n_layer} layers, {cfg.n_head} heads, width {cfg.n_embd}{block}, "
            f"context {cfg.block_size}, vocab {cfg.vocab_size}; {pc.total:,} parameters ({pc.non_embedding:,} "
            f"non-embedding{active})")


# ------------------------------------------------------------------ flops


def flops_dict(s: FlopsSummary) -> dict:
    t = s.training
    exact = t.model_flops_per_token
    return {
        "model": model_dict(s.model), "seq_len": s.seq_len, "n_tokens": s.n_tokens,
        "tokens_per_step": s.tokens_per_step, "n_steps": math.ceil(s.n_steps - 1e-9), "causal": s.causal,  # whole steps
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
            {"key": r.convention.key, "title": r.convention.title, "formula": r.convention.formula,
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
    sub = Text(
        f"sequence {s.seq_len}, {format_count(s.n_tokens)} tokens, {format_count(s.tokens_per_step)} tokens/step "
        f"({format_count(s.n_steps)} steps), attention {'causal (unmasked pairs only)' if s.causal else 'dense T x T'}, "
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
    for col in ("", "per token", "per step", "per run"):
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
                     format_sci(r.flops_per_token * s.n_tokens), f"{r.ratio_to(exact):.3f}", c.formula)
    notes = Table(title="What each convention leaves out, and its source", title_justify="left", box=None,
                  show_header=False, pad_edge=False)
    notes.add_column(style="bold", no_wrap=True)
    notes.add_column()
    for r in s.conventions:
        c = r.convention
        notes.add_row(c.key, f"leaves out {c.omits}. [dim]{c.source}[/]")
    foot = Text("* includes one recomputed forward pass (hardware FLOPs); the others count model FLOPs.", style="dim")
    return Group(head, sub, Text(), comp, Text(), totals, Text(), conv, foot, Text(), notes)


def models_table(models: dict[str, ModelConfig]) -> Table:
    t = Table(title="Model presets", title_justify="left")
    for col in ("name", "n_layer", "n_head", "n_embd", "context", "params", "non-embedding"):
        t.add_column(col, justify="left" if col == "name" else "right")
    for name, cfg in models.items():
        pc = count_params(cfg)
        t.add_row(name, str(cfg.n_layer), str(cfg.n_head), str(cfg.n_embd), str(cfg.block_size),
                  f"{pc.total:,}", f"{pc.non_embedding:,}")
    return t


def __getattr__(name: str):
    """The GPU renderers, re-exported from `report.gpus` on first use (PEP 562): `flopscalc plan` needs none."""
    if name in ("gpu_detail", "gpu_dict", "gpu_table"):
        from . import gpus

        return getattr(gpus, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
