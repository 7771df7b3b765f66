"""`flopscalc gpus`: the GPU database as a table, one GPU in detail, and as JSON (re-exported by `report.common`).

A module of its own so that `flopscalc gpus` loads the rows and these renderers, not the model and FLOPs code the
other renderers in `report.common` need (start-up, issue 18).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.table import Table

if TYPE_CHECKING:
    from rich.console import Group

from ..hardware import PRECISION_HELP, GpuDatabase, GpuSpec, Precision
from ..units import GIB, GIGA, TERA, format_bytes, format_rate, format_usd
from .split import split_columns, stacked


def _maybe(x, fmt):
    return "-" if x is None else fmt(x)


_RATE_COLUMNS = [Precision.fp32, Precision.tf32, Precision.bf16, Precision.fp16_acc16, Precision.fp8]


def gpu_dict(g: GpuSpec) -> dict:
    d = g.as_dict()
    d["aliases"] = list(g.aliases)
    return d


TITLE = ("{n} GPUs: dense peak TFLOP/s, memory GiB, bandwidth GB/s, board power W, launch price (full names and "
         "sources: flopscalc gpus show KEY)")


def gpu_table(db: GpuDatabase, width: int | None = None) -> Table | Group:
    """Every GPU, a row each; where ``width`` (columns; None: as wide as it needs) cannot hold every figure whole,
    the figures split over several tables, each led by the GPU's key (a cell too narrow is cut without a mark when
    piped: 350 W printed as '35')."""
    short = {"fp16-acc16": "f16a16"}  # FP16 with FP16 accumulate
    headers = ("GiB", "GB/s", *(short.get(p.value, p.value) for p in _RATE_COLUMNS), "W", "$")
    rows = []
    for g in db:
        rates = [getattr(g, p.name + "_flop_per_s") for p in _RATE_COLUMNS]
        rows.append((
            g.key, f"{g.memory_bytes / GIB:g}",
            _maybe(g.memory_bandwidth_bytes_per_s, lambda x: f"{x / GIGA:.0f}"),
            *[_maybe(r, lambda x: f"{x / TERA:.0f}" if x >= 100 * TERA else f"{x / TERA:.1f}") for r in rates],
            _maybe(g.board_power_w, lambda x: f"{x:.0f}"),
            _maybe(g.launch_price_usd, lambda x: f"{x:.0f}"),
        ))
    title = TITLE.format(n=len(db))
    widest = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(("key", *headers))]
    groups = split_columns(range(1, len(widest)), lambda group: _least_width(widest, [0, *group]), width or None)
    tables = [_table(title if n == 0 else "GPUs, continued", [("key", *headers)[i] for i in (0, *group)],
                     [[r[i] for i in (0, *group)] for r in rows]) for n, group in enumerate(groups)]
    return tables[0] if len(tables) == 1 else stacked(tables)


def _least_width(widest: list[int], columns: list[int]) -> int:
    """Characters a row of `gpu_table`'s box (SIMPLE_HEAD: a space at either edge and between columns) and padding
    (one space right of each cell, none after the last) takes with ``columns`` whole."""
    return 2 + (len(columns) - 1) + sum(widest[i] for i in columns) + (len(columns) - 1)


def _table(title: str, headers: list[str], rows: list[list[str]]) -> Table:
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False)
    t.add_column(headers[0], no_wrap=True)
    for col in headers[1:]:
        t.add_column(col, justify="right", no_wrap=True)
    for row in rows:
        t.add_row(*row)
    return t


def family_line(name: str, g: GpuSpec, variants: tuple[str, ...] | None) -> str | None:
    """'a100 -> NVIDIA A100 SXM4 80GB (also: ...)' when ``name`` is a family name (`GpuDatabase.family_variants`)."""
    if variants is None:
        return None
    others = f"also in the database: {', '.join(variants)}" if variants else "no other variant in the database"
    return f"{name} -> {g.name}, the variant this family name is an alias of ({others})"


def gpu_detail(g: GpuSpec) -> Table:
    t = Table(title=g.name, title_justify="left", show_header=False)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    rows = [
        ("key", g.key), ("aliases", ", ".join(g.aliases) or "-"), ("vendor / segment", f"{g.vendor} / {g.segment}"),
        ("architecture", f"{g.architecture} ({g.release_year or '-'})"),
        ("memory", f"{format_bytes(g.memory_bytes)} {g.memory_type}"),
        ("memory bandwidth", _maybe(g.memory_bandwidth_bytes_per_s, lambda x: f"{x / GIGA:,.0f} GB/s")),
    ]
    for p in Precision:  # no closure over p: each row's text is made here, with its own precision
        rate = getattr(g, p.name + "_flop_per_s")
        rows.append((f"peak {p.value}", "-" if rate is None else f"{format_rate(rate)}  ({PRECISION_HELP[p]}, dense)"))
    rows += [
        ("board power", _maybe(g.board_power_w, lambda x: f"{x:,.0f} W")),
        ("launch price", _maybe(g.launch_price_usd, format_usd)),
        ("interconnect", f"{g.interconnect or '-'}" + _maybe(g.interconnect_bytes_per_s,
                                                            lambda x: f", {x / GIGA:,.2f} GB/s per direction")),
        ("source", g.source), ("notes", g.notes or "-"), ("from", g.origin),
    ]
    for k, v in rows:
        t.add_row(k, v)
    return t
