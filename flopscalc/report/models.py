"""`flopscalc models`: every preset with its block, exact total and active parameter counts, and its source."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table

from ..model import PRESET_SOURCES, ModelConfig, count_params, default_train_seq, seq_source
from .split import split_columns, stacked

TITLE = "Model presets (exact counts; 'active' = per token, less than total for a mixture of experts)"
# Columns of whole numbers: never wrapped (no_wrap), so a narrow terminal folds the blocks and sources, and a layout
# too narrow for them all in one table splits into parts (`models_table`) rather than fold a number mid-digit. The
# name column leads every part and never folds either: it is what a user copies into --model.
SHAPE_NUMBERS = ("layers", "heads (kv)", "width", "ffn", "train seq", "context", "vocab")
COUNT_NUMBERS = ("params", "active", "non-embedding")


def models_dict(models: dict[str, ModelConfig]) -> dict:
    out = []
    for name, cfg in models.items():
        pc = count_params(cfg)
        out.append({
            "name": name, "family": cfg.family, "n_layer": cfg.n_layer, "n_head": cfg.n_head,
            "n_kv_head": cfg.kv_heads, "head_dim": cfg.head_dim, "n_embd": cfg.n_embd, "n_inner": cfg.n_inner,
            "block_size": cfg.block_size, "train_seq": default_train_seq(cfg),
            "train_seq_source": seq_source(cfg, None).label, "vocab_size": cfg.vocab_size,
            "n_expert": cfg.n_expert,
            "top_k": cfg.top_k, "n_params": pc.total, "n_params_active": pc.active,
            "n_params_non_embedding": pc.non_embedding, "source": PRESET_SOURCES.get(name, ""),
        })
    return {"models": out}


def _cells(row: dict) -> dict[str, str]:
    return {
        "name": row["name"], "block": row["family"], "layers": str(row["n_layer"]),
        "heads (kv)": f"{row['n_head']} ({row['n_kv_head']})", "width": str(row["n_embd"]),
        "ffn": str(row["n_inner"]), "train seq": f"{row['train_seq']:,}", "context": f"{row['block_size']:,}",
        "vocab": f"{row['vocab_size']:,}",
        "params": f"{row['n_params']:,}", "active": f"{row['n_params_active']:,}",
        "non-embedding": f"{row['n_params_non_embedding']:,}",
        "source": row["source"].replace("config.json of huggingface.co/", "hf:"),
    }


def _table(title: str, columns: tuple[str, ...], rows: list[dict[str, str]]) -> Table:
    t = Table(title=title, title_justify="left")
    for col in columns:
        numbers = col in SHAPE_NUMBERS or col in COUNT_NUMBERS
        t.add_column(col, justify="right" if numbers else "left", no_wrap=numbers or col == "name")
    for cells in rows:
        t.add_row(*(cells[c] for c in columns))
    return t


def _least_width(columns: tuple[str, ...], rows: list[dict[str, str]]) -> int:
    """Columns a table of ``columns`` needs with every name and number whole: each such column as wide as its widest
    cell or header, each text column (block, source) as its header or longest word, so rich, which folds text columns
    first when a table is too wide, never has to cut a word; padding and borders."""
    need = len(columns) + 1  # the vertical borders
    for col in columns:
        if col == "name" or col in SHAPE_NUMBERS or col in COUNT_NUMBERS:
            widest = max([len(col), *(len(cells[col]) for cells in rows)])
        else:
            widest = max([len(col), *(len(word) for cells in rows for word in cells[col].split())])
        need += widest + 2  # one space of padding either side
    return need


def _parts(title: str, columns: tuple[str, ...], rows: list[dict[str, str]], width: int) -> list[Table]:
    """Tables of the name and as many of ``columns`` as ``width`` holds whole, in order: one where it can, more
    (titled 'continued') where even that is too wide, e.g. the shapes at 60 columns."""
    groups = split_columns(columns, lambda group: _least_width(("name", *group), rows), width)
    return [_table(title if i == 0 else f"{title.split(' (')[0]}, continued", ("name", *group), rows)
            for i, group in enumerate(groups)]


def models_table(models: dict[str, ModelConfig], width: int | None = None) -> Table | Group:
    """The presets as one table; or, where ``width`` (columns; None: as wide as the table needs) cannot hold the
    table with every name and number whole, in parts: the shapes, the exact counts (each split again where the width
    asks), and the sources (with the blocks, where the shapes cannot hold them)."""
    rows = [_cells(r) for r in models_dict(models)["models"]]
    columns = ("name", "block", *SHAPE_NUMBERS, *COUNT_NUMBERS, "source")
    if width is None or _least_width(columns, rows) <= width:
        return _table(TITLE, columns, rows)
    shapes = ("block", *SHAPE_NUMBERS)
    block_in_shapes = _least_width(("name", *shapes), rows) <= width
    sources = Table(title="Sources" if block_in_shapes else "Blocks and sources", title_justify="left", box=None,
                    show_header=False, pad_edge=False)
    sources.add_column(style="bold", no_wrap=True)
    if not block_in_shapes:
        sources.add_column()
    sources.add_column()
    for cells in rows:
        sources.add_row(cells["name"], *(() if block_in_shapes else (cells["block"] + ";",)), cells["source"])
    parts: list = [*_parts("Model presets: shapes", shapes if block_in_shapes else SHAPE_NUMBERS, rows, width),
                   *_parts("Model presets: exact parameter counts ('active' = per token, less than total for a "
                           "mixture of experts)", COUNT_NUMBERS, rows, width), sources]
    return stacked(parts)
