"""`flopscalc models`: every preset with its block, exact total and active parameter counts, and its source."""

from __future__ import annotations

from rich.table import Table

from ..model import PRESET_SOURCES, ModelConfig, count_params


def models_dict(models: dict[str, ModelConfig]) -> dict:
    out = []
    for name, cfg in models.items():
        pc = count_params(cfg)
        out.append({
            "name": name, "family": cfg.family, "n_layer": cfg.n_layer, "n_head": cfg.n_head,
            "n_kv_head": cfg.kv_heads, "head_dim": cfg.head_dim, "n_embd": cfg.n_embd, "n_inner": cfg.n_inner,
            "block_size": cfg.block_size, "vocab_size": cfg.vocab_size, "n_expert": cfg.n_expert,
            "top_k": cfg.top_k, "n_params": pc.total, "n_params_active": pc.active,
            "n_params_non_embedding": pc.non_embedding, "source": PRESET_SOURCES.get(name, ""),
        })
    return {"models": out}


def models_table(models: dict[str, ModelConfig]) -> Table:
    t = Table(title="Model presets (exact counts; 'active' = per token, less than total for a mixture of experts)",
              title_justify="left")
    for col in ("name", "block", "layers", "heads (kv)", "width", "ffn", "context", "vocab", "params", "active",
                "non-embedding", "source"):
        t.add_column(col, justify="left" if col in ("name", "block", "source") else "right")
    for row in models_dict(models)["models"]:
        t.add_row(row["name"], row["family"], str(row["n_layer"]), f"{row['n_head']} ({row['n_kv_head']})",
                  str(row["n_embd"]), str(row["n_inner"]), f"{row['block_size']:,}", f"{row['vocab_size']:,}",
                  f"{row['n_params']:,}", f"{row['n_params_active']:,}", f"{row['n_params_non_embedding']:,}",
                  row["source"].replace("config.json of huggingface.co/", "hf:"))
    return t
