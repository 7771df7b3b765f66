"""Shared pieces of the plots: a new `Figure` (object API, no pyplot), axis styling, and atomic saving.

matplotlib is imported inside these functions only, so importing ``flopscalc.plots`` stays cheap and the
CLI's start-up never pays for it. Nothing here touches pyplot's global state; figures render with the Agg
canvas, so every plot works headless.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

from ..atomic import write_bytes_atomic
from ..errors import UsageError
from ..units import GIB  # noqa: F401  (re-exported: the plots write C.GIB)

# File formats `save_figure` writes, by suffix (matplotlib's format names).
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
# Raster resolution of saved PNGs (dots per inch); 150 keeps labels sharp and files small.
PNG_DPI = 150
# Resolutions accepted for raster output: below 20 dpi text is unreadable, above 1200 a figure is hundreds of MB.
MIN_DPI, MAX_DPI = 20, 1200
# Font sizes (points): axis labels, tick labels, legends, titles, annotations.
LABEL_SIZE = 12
TICK_SIZE = 10
LEGEND_SIZE = 9
TITLE_SIZE = 13
NOTE_SIZE = 8.5
# Colours of successive series (matplotlib's tab10, colour-blind friendlier than its default order).
SERIES_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
                 "#7f7f7f", "#bcbd22")


def new_figure(width_in: float, height_in: float, nrows: int = 1, ncols: int = 1, **subplot_kw):
    """A `Figure` with constrained layout and its axes (a single Axes, or an array for several)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=True, **subplot_kw)
    return fig, axes


def style_axes(ax, xlabel: str, ylabel: str, title: str | None = None, *, logx: bool = False,
               logy: bool = False) -> None:
    """Labels with units, readable font sizes, log scales and a light grid."""
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel, fontsize=LABEL_SIZE)
    ax.set_ylabel(ylabel, fontsize=LABEL_SIZE)
    if title:
        ax.set_title(title, fontsize=TITLE_SIZE)
    ax.tick_params(labelsize=TICK_SIZE)
    ax.grid(True, which="major", alpha=0.3)
    if logx or logy:
        ax.grid(True, which="minor", alpha=0.08)


def readable_log_ticks(ax, axis: str = "x", kind: str = "count") -> None:
    """Ticks at 1, 2, 5 x 10^k labelled compactly (124.4M, 0.02 s), so a span under a decade stays legible.

    ``kind``: "count" (format_count: 200M, 1.5B) or "plain" (%g).
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from ..units import format_count

    def count(v, _pos):
        return re.sub(r"\.0(?=[kMBT]?$)", "", format_count(v))  # 200.0M -> 200M

    fmt = count if kind == "count" else (lambda v, _pos: f"{v:g}")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(fmt))
    target.set_minor_formatter(NullFormatter())


def empty_panel(ax, message: str, title: str) -> None:
    """An axes that says why it has nothing to show (instead of an empty frame)."""
    ax.set_title(title, fontsize=TITLE_SIZE)
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=LABEL_SIZE - 1, wrap=True,
            transform=ax.transAxes, color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])


def short_gpu_name(name: str) -> str:
    """'NVIDIA GeForce RTX 4070 Ti' -> 'RTX 4070 Ti': brand words dropped, for legends."""
    from ..gpu_names import BRAND_WORDS

    words = [w for w in name.split() if w.lower() not in BRAND_WORDS]
    return " ".join(words) or name


def sci_label(x: float) -> str:
    """1e21 -> '1e21', 2.28e21 -> '2.3e21' (for short labels on plots)."""
    exponent = math.floor(math.log10(x))
    mantissa = round(x / 10**exponent, 1)
    if mantissa >= 10:  # 9.96e19 rounds to 1.0e20
        mantissa, exponent = mantissa / 10, exponent + 1
    if abs(mantissa - round(mantissa)) < 0.05:
        return f"{round(mantissa)}e{exponent}"
    return f"{mantissa:.1f}e{exponent}"


def format_for(path: str | Path) -> str:
    """The file format of ``path`` from its suffix; UsageError for anything but .png, .svg, .pdf."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"cannot tell the image format of {str(path)!r} (suffix {suffix or 'none'!r}); "
                         f"accepted: {', '.join(FORMATS)}, e.g. --out frontier.png")
    return FORMATS[suffix]


def figure_bytes(fig, fmt: str, dpi: int = PNG_DPI) -> bytes:
    """Render ``fig`` to bytes in ``fmt`` (png, svg or pdf) with the Agg canvas (headless)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # attaches itself as fig.canvas; svg and pdf switch to their own canvas for printing
    buf = io.BytesIO()
    metadata = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}[fmt]  # reproducible
    fig.savefig(buf, format=fmt, dpi=dpi, metadata=metadata)
    return buf.getvalue()



def save_figure(fig, path: str | Path, dpi: int = PNG_DPI) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix) atomically: temp file in the folder, then rename."""
    path = Path(path)
    fmt = format_for(path)
    if not MIN_DPI <= dpi <= MAX_DPI:
        raise UsageError(f"resolution must be between {MIN_DPI} and {MAX_DPI} dots per inch, got {dpi}; e.g. --dpi 150")
    data = figure_bytes(fig, fmt, dpi)
    try:
        write_bytes_atomic(path, data)
    except OSError as e:
        raise UsageError(f"cannot write {str(path)!r}: {e.strerror or e}; choose a writable --out path") from None
    return path


# Offsets (points) tried in turn for a point's label: right, left, above, below, then further out.
LABEL_OFFSETS = ((6, 3, "left", "bottom"), (6, -3, "left", "top"), (-6, 3, "right", "bottom"),
                 (-6, -3, "right", "top"), (0, 9, "center", "bottom"), (0, -9, "center", "top"),
                 (10, 14, "left", "bottom"), (10, -14, "left", "top"), (-10, 14, "right", "bottom"),
                 (-10, -14, "right", "top"))
# Where none of those is clear: further out, joined to the point by a thin leader line (points; the distances
# grow so a crowded cluster, e.g. palm-540b beside llama31-405b on the frontier, finds room).
LEADER_OFFSETS = tuple((sx * r, sy * r * 0.6, "left" if sx > 0 else "right" if sx < 0 else "center",
                        "bottom" if sy > 0 else "top")
                       for r in (18, 28, 40, 55) for sx, sy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1), (0, -1)))


def place_labels(fig, ax, xs, ys, names, *, color: str = "black", fontsize: float = NOTE_SIZE,
                 avoid: list | None = None) -> list:
    """Annotate points with names, trying `LABEL_OFFSETS`, then `LEADER_OFFSETS` (further out, with a leader line),
    until a label overlaps no earlier label.

    Uses the Agg renderer to measure text, so it runs after the axes limits are final. ``avoid`` is a
    list of display-space boxes (matplotlib ``Bbox``) the labels must also stay clear of; it is extended
    with the boxes placed here, so several calls share one list. Returns the annotation artists.
    """
    renderer = layout_now(fig)
    taken = avoid if avoid is not None else []
    axes_box = ax.get_window_extent(renderer)
    out = []
    for x, y, name in zip(xs, ys, names):
        best = None
        for (dx, dy, ha, va), leader in [*((o, False) for o in LABEL_OFFSETS), *((o, True) for o in LEADER_OFFSETS)]:
            ann = _annotate(ax, name, x, y, dx, dy, ha, va, fontsize, color, leader)
            box = _label_box(ann, renderer)
            inside = axes_box.contains(box.x0, box.y0) and axes_box.contains(box.x1, box.y1)
            clear = inside and not any(box.overlaps(t) for t in taken)
            if clear:
                best = (ann, box)
                break
            ann.remove()
        if best is None:  # nowhere clear (not seen on the shipped charts): the first place inside the axes, overlapping
            for dx, dy, ha, va in LABEL_OFFSETS:
                ann = _annotate(ax, name, x, y, dx, dy, ha, va, fontsize, color)
                box = ann.get_window_extent(renderer)
                if axes_box.contains(box.x0, box.y0) and axes_box.contains(box.x1, box.y1):
                    break
                ann.remove()
            else:
                dx, dy, ha, va = LABEL_OFFSETS[0]
                ann = _annotate(ax, name, x, y, dx, dy, ha, va, fontsize, color)
                box = ann.get_window_extent(renderer)
            best = (ann, box)
        taken.append(best[1])
        out.append(best[0])
    return out


def _label_box(ann, renderer):
    """The display box of a label's text (an annotation's own extent would include its leader line)."""
    from matplotlib.text import Text

    ann.update_positions(renderer)
    return Text.get_window_extent(ann, renderer)


def _annotate(ax, name, x, y, dx, dy, ha, va, fontsize, color, leader: bool = False):
    """A label beside a point, on a translucent white box so lines under it do not hide it; ``leader`` joins a
    label placed further out to its point with a thin line."""
    arrow = {"arrowstyle": "-", "lw": 0.5, "color": color, "shrinkA": 0, "shrinkB": 3} if leader else None
    ann = ax.annotate(name, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, fontsize=fontsize,
                      color=color, annotation_clip=False, zorder=8, arrowprops=arrow,
                      bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75})
    ann.set_in_layout(False)
    return ann


def layout_now(fig):
    """Run the layout engine now (final axes positions) and return the Agg renderer, to measure text."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    fig.get_layout_engine().execute(fig)
    return canvas.get_renderer()


def point_boxes(fig, ax, xs, ys, radius_pt: float = 4.0) -> list:
    """Display-space boxes around data points (so labels keep off the markers)."""
    from matplotlib.transforms import Bbox

    r = radius_pt * fig.dpi / 72.0
    boxes = []
    for x, y in zip(xs, ys):
        px, py = ax.transData.transform((x, y))
        boxes.append(Bbox([[px - r, py - r], [px + r, py + r]]))
    return boxes
