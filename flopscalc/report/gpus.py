"""`flopscalc gpus`: the GPU database as a table, one GPU in detail, and as JSON (re-exported by `report.common`).

A module of its own so that `flopscalc gpus` loads the rows and these renderers, not the model and FLOPs code the
other renderers in `report.common` need (start-up, issue 18).
"""

from __future__ import annotations

from rich import box
from rich.table import Table

from ..hardware import PRECISION_HELP, GpuDatabase, GpuSpec, Precision
from ..units import GIB, GIGA, TERA, format_bytes, format_rate, format_usd


def _maybe(x, fmt):
    return "-" if x is None else fmt(x)


_RATE_COLUMNS = [Precision.fp32, Precision.tf32, Precision.bf16, Precision.fp16_acc16, Precision.fp8]


def gpu_dict(g: GpuSpec) -> dict:
    d = g.as_dict()
    d["aliases"] = list(g.aliases)
    return d


def gpu_table(db: GpuDatabase) -> Table:
    t = Table(title=f"{len(db)} GPUs: dense peak TFLOP/s, memory GiB, bandwidth GB/s, board power W, launch price "
                    "(full names and sources: flopscalc gpus show KEY)",
              title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False)
    t.add_column("key", no_wrap=True)
    short = {"fp16-acc16": "f16a16"}  # FP16 with FP16 accumulate
    for col in ("GiB", "GB/s", *(short.get(p.value, p.value) for p in _RATE_COLUMNS), "W", "$"):
        t.add_column(col, justify="right", no_wrap=True)
    for g in db:
        rates = [getattr(g, p.name + "_flop_per_s") for p in _RATE_COLUMNS]
        t.add_row(
            g.key, f"{g.memory_bytes / GIB:g}",
            _maybe(g.memory_bandwidth_bytes_per_s, lambda x: f"{x / GIGA:.0f}"),
            *[_maybe(r, lambda x: f"{x / TERA:.0f}" if x >= 100 * TERA else f"{x / TERA:.1f}") for r in rates],
            _maybe(g.board_power_w, lambda x: f"{x:.0f}"),
            _maybe(g.launch_price_usd, lambda x: f"{x:.0f}"),
        )
    return t


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
