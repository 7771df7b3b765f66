"""Renderers: typed results -> rich renderables and JSON-ready dicts. No arithmetic beyond unit scaling."""

from __future__ import annotations

from rich.table import Table

from .._lazy import lazy_exports
from ..model import ModelConfig, count_params, seq_source

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


def unpriced_sentence(gpu_name: str, batch_words: str, batch: int, largest: int, option: str,
                      priced: tuple[str, ...], otherwise: str, advise_largest: bool = True) -> str:
    """Why ``priced`` (e.g. ("time", "cost")) is left out of a report, text and --json alike, for a setup that does
    not fit: ``batch_words`` ``batch`` (e.g. "micro-batch 64") does not fit one GPU, and ``option`` at ``largest``
    would (said unless ``advise_largest`` is False: the report lists its own fixes, ``otherwise``); or, when
    ``largest`` is 0, not even one sequence fits and ``otherwise`` says where to look. A time for a setup that cannot
    run is a number about no GPU: the GPU's speed with memory it does not have."""
    where = f"on one {gpu_name}"
    what = priced[0] if len(priced) == 1 else f"{', '.join(priced[:-1])} and {priced[-1]}"
    verb = "is" if len(priced) == 1 else "are"
    if largest:
        advice = f"give {option} {largest} or less" if advise_largest else otherwise
        return (f"{batch_words} {batch:,} does not fit {where} (the largest is {largest:,}), so {what} {verb} not "
                f"priced; {advice}")
    return f"not even one sequence fits {where}, so {what} {verb} not priced; {otherwise}"


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


def seq_words(cfg: ModelConfig, given: int | None, seq_len: int) -> str:
    """``sequence N`` as a header prints it, with where a default came from (`model.sequence`): once per report."""
    return f"sequence {seq_len}" + seq_source(cfg, given).note


def seq_label(cfg: ModelConfig, given: int | None) -> str:
    """``--json``'s ``seq_len_source``: ``--seq``, ``pretraining (<source>)`` or ``context``."""
    return seq_source(cfg, given).label


# The GPU renderers, re-exported from `report.gpus` on first use (PEP 562): `flopscalc plan` needs none.
__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(("gpu_detail", "gpu_dict", "gpu_table"), "gpus"))
