"""`flopscalc models`: every preset with its block, exact total and active parameter counts, and its source."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..model import PRESET_SOURCES, ModelConfig, count_params

TITLE = "Model presets (exact counts; 'active' = per token, less than total for a mixture of experts)"
# Columns of whole numbers: never wrapped (no_wrap), so a narrow terminal folds the names, blocks and sources, and a
# layout too narrow for them all in one table splits in two (`models_table`) rather than fold a number mid-digit.
SHAPE_NUMBERS = ("layers", "heads (kv)", "width", "ffn", "context", "vocab")
COUNT_NUMBERS = ("params", "active", "non-embedding")


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


def _cells(row: dict) -> dict[str, str]:
    return {
        "name": row["name"], "block": row["family"], "layers": str(row["n_layer"]),
        "heads (kv)": f"{row['n_head']} ({row['n_kv_head']})", "width": str(row["n_embd"]),
        "ffn": str(row["n_inner"]), "context": f"{row['block_size']:,}", "vocab": f"{row['vocab_size']:,}",
        "params": f"{row['n_params']:,}", "active": f"{row['n_params_active']:,}",
        "non-embedding": f"{row['n_params_non_embedding']:,}",
        "source": row["source"].replace("config.json of huggingface.co/", "hf:"),
    }


def _table(title: str, columns: tuple[str, ...], rows: list[dict[str, str]]) -> Table:
    t = Table(title=title, title_justify="left")
    for col in columns:
        numbers = col in SHAPE_NUMBERS or col in COUNT_NUMBERS
        t.add_column(col, justify="right" if numbers else "left", no_wrap=numbers)
    for cells in rows:
        t.add_row(*(cells[c] for c in columns))
    return t


def _least_width(table: Table, rows: list[dict[str, str]]) -> int:
    """Columns ``table`` needs with every number whole: each number column as wide as its widest cell or header,
    each text column as its header (rich folds text columns first when the table is too wide), padding and borders."""
    need = len(table.columns) + 1  # the vertical borders
    for column in table.columns:
        text = column.header
        widest = max([len(text), *(len(cells[text]) for cells in rows)]) if column.no_wrap else len(text)
        need += widest + 2  # one space of padding either side
    return need


def models_table(models: dict[str, ModelConfig], width: int | None = None) -> Table | Group:
    """The presets as one table; or, where ``width`` (columns; None: as wide as the table needs) cannot hold the
    table with every number whole, as three: the shapes, the exact counts, and the sources."""
    rows = [_cells(r) for r in models_dict(models)["models"]]
    wide = _table(TITLE, ("name", "block", *SHAPE_NUMBERS, *COUNT_NUMBERS, "source"), rows)
    if width is None or _least_width(wide, rows) <= width:
        return wide
    sources = Table(title="Sources", title_justify="left", box=None, show_header=False, pad_edge=False)
    sources.add_column(style="bold", no_wrap=True)
    sources.add_column()
    for cells in rows:
        sources.add_row(cells["name"], cells["source"])
    counts = _table("Model presets: exact parameter counts ('active' = per token, less than total for a mixture of "
                    "experts)", ("name", *COUNT_NUMBERS), rows)
    return Group(_table("Model presets: shapes", ("name", "block", *SHAPE_NUMBERS), rows), Text(""), counts, Text(""),
                 sources)
