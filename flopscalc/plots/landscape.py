"""Loss landscape: contours of a law's L(N, D), with lines of equal compute C = 6ND and the compute-optimal path.

On log axes an iso-compute line D = C / 6N is a straight line of slope -1 (Kaplan et al. 2020, sec. 2.1);
the optimal path (N_opt(C), D_opt(C)) crosses each at the point of lowest loss along it.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import DomainError, UsageError
from ..flops import FLOPS_PER_PARAM_TOKEN
from . import _common as C

# Default axes span: 10M to 1T parameters, 100M to 100T tokens.
DEFAULT_N_RANGE = (1e7, 1e12)
DEFAULT_D_RANGE = (1e8, 1e14)
# Grid resolution of the contour plot per axis (log-spaced).
LANDSCAPE_GRID = 121
# Filled contour bands.
LANDSCAPE_LEVELS = 14
# Points along the optimal path.
PATH_POINTS = 120


def _span(r, what: str, option: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in r)
    if not (0 < lo < hi and math.isfinite(hi)):
        raise UsageError(f"{what} range must be two positive numbers, low < high, got {lo:g}..{hi:g}; "
                         f"e.g. {option}")
    return lo, hi


def landscape_data(law=None, n_range=DEFAULT_N_RANGE, d_range=DEFAULT_D_RANGE, budgets_flops=None) -> dict:
    """The numbers behind the landscape plot (JSON-ready; units in the keys).

    Parameters
    ----------
    law : str or ScalingLaw, optional
        A law with a loss formula (default ``scaling.DEFAULT_LAW``).
    n_range, d_range : (float, float)
        Parameters (count) and training tokens (tokens) spanned.
    budgets_flops : sequence of float, optional
        Iso-compute lines to draw (FLOP); default: every decade that crosses the plot.
    """
    from ..scaling.allocate import optimal_arrays
    from ..scaling.io import resolve_law

    law = resolve_law(law)
    if not law.has_loss:
        raise DomainError(f"law {law.name!r} has no loss formula to draw; use besiroglu2024, chinchilla or kaplan2020")
    n_lo, n_hi = _span(n_range, "parameter", "--n-min 1e7 --n-max 1e12")
    d_lo, d_hi = _span(d_range, "token", "--d-min 1e8 --d-max 1e14")
    n = np.logspace(math.log10(n_lo), math.log10(n_hi), LANDSCAPE_GRID)
    d = np.logspace(math.log10(d_lo), math.log10(d_hi), LANDSCAPE_GRID)
    loss = np.asarray(law.loss(n[None, :], d[:, None]), float)  # rows: D, columns: N
    c_lo, c_hi = FLOPS_PER_PARAM_TOKEN * n_lo * d_lo, FLOPS_PER_PARAM_TOKEN * n_hi * d_hi  # C = 6ND at the corners
    if budgets_flops is None:
        budgets_flops = [10.0**k for k in range(math.ceil(math.log10(c_lo)) + 1, math.floor(math.log10(c_hi)))]
    budgets = sorted(float(b) for b in budgets_flops)
    if not all(b > 0 and math.isfinite(b) for b in budgets):
        raise UsageError(f"budgets must be positive numbers of FLOPs, got {budgets_flops}")
    iso = []
    for c in budgets:
        nn = np.logspace(math.log10(max(n_lo, c / (FLOPS_PER_PARAM_TOKEN * d_hi))), math.log10(min(n_hi, c / (FLOPS_PER_PARAM_TOKEN * d_lo))), 50)
        iso.append({"c_flops": c, "n_params": nn.tolist(), "n_tokens": (c / (FLOPS_PER_PARAM_TOKEN * nn)).tolist()})  # D = C / 6N
    c_path = np.logspace(math.log10(c_lo), math.log10(c_hi), PATH_POINTS)
    n_opt, d_opt = (np.asarray(v, float) for v in optimal_arrays(law, c_path))
    inside = (n_opt >= n_lo) & (n_opt <= n_hi) & (d_opt >= d_lo) & (d_opt <= d_hi)
    # a published power-law allocation (Kaplan's, Chinchilla approaches 1-2) need not be the minimum of L along C = 6ND
    path_method = "published allocation" if law.allocation is not None else "minimum of L along C = 6ND"
    return {"plot": "landscape", "law": law.name, "n_counts_embeddings": law.n_counts_embeddings,
            "path_method": path_method,
            "n_params": n.tolist(), "n_tokens": d.tolist(), "loss": loss.tolist(), "iso_compute": iso,
            "optimal_path": {"c_flops": c_path[inside].tolist(), "n_params": n_opt[inside].tolist(),
                             "n_tokens": d_opt[inside].tolist()}}


def draw_landscape(data: dict):
    """Draw `landscape_data`'s numbers: filled loss contours over log N and log D, iso-compute lines, optimal path."""
    fig, ax = C.new_figure(9.0, 7.0)
    n, d, loss = np.array(data["n_params"]), np.array(data["n_tokens"]), np.array(data["loss"])
    lo, hi = float(np.min(loss)), float(np.percentile(loss, 98))  # the far corner would squash every band
    from matplotlib.ticker import MaxNLocator

    levels = MaxNLocator(LANDSCAPE_LEVELS).tick_values(lo, hi)  # round steps: 0.1, 0.2, 0.25 ...
    levels = levels[(levels >= lo - 1e-9) | (np.arange(len(levels)) == 0)]
    filled = ax.contourf(n, d, np.minimum(loss, hi), levels=levels, cmap="viridis_r", gid="loss")
    line_levels = levels[1::2]
    lines = ax.contour(n, d, loss, levels=line_levels, colors="white", linewidths=0.6, alpha=0.7)
    # dark text on the light (low-loss) bands, white on the dark ones
    ink = ["black" if v < 0.5 * (lo + hi) else "white" for v in line_levels]
    ax.clabel(lines, fmt="%g", fontsize=C.NOTE_SIZE, inline=True, colors=ink)
    bar = fig.colorbar(filled, ax=ax, pad=0.02)
    bar.set_label("predicted loss (nats/token)", fontsize=C.LABEL_SIZE)
    bar.ax.tick_params(labelsize=C.TICK_SIZE)
    for k, line in enumerate(data["iso_compute"]):
        ax.plot(line["n_params"], line["n_tokens"], color="black", ls="--", lw=1.0, gid=f"iso:{line['c_flops']:g}",
                label="C = 6ND (FLOP)" if k == 0 else None)
    path = data["optimal_path"]
    ax.plot(path["n_params"], path["n_tokens"], color="#d62728", lw=2.5, gid="optimal_path",
            label=f"compute-optimal path ({data['law']}: {data['path_method']})")
    ax.set_xlim(n[0], n[-1])
    ax.set_ylim(d[0], d[-1])
    n_note = ", without embeddings" if data["n_counts_embeddings"] is False else ""
    C.style_axes(ax, f"parameters N (count{n_note})", "training tokens D (tokens)",
                 f"Loss landscape L(N, D) under {data['law']}", logx=True, logy=True)
    fig.legend(loc="outside lower center", ncols=2, fontsize=C.LEGEND_SIZE, frameon=False)
    C.layout_now(fig)  # final axes box, so the labels can follow the lines' on-screen angle
    for line in data["iso_compute"]:
        (x0, y0), (x1, y1) = ax.transData.transform([(line["n_params"][0], line["n_tokens"][0]),
                                                      (line["n_params"][-1], line["n_tokens"][-1])])
        angle = math.degrees(math.atan2(y1 - y0, x1 - x0))
        mid = len(line["n_params"]) // 2
        ax.annotate(f"{C.sci_label(line['c_flops'])} FLOP", (line["n_params"][mid], line["n_tokens"][mid]),
                    fontsize=C.NOTE_SIZE, ha="center", va="center", rotation=angle, rotation_mode="anchor", zorder=6,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    return fig


def landscape_figure(law=None, n_range=DEFAULT_N_RANGE, d_range=DEFAULT_D_RANGE, budgets_flops=None):
    """Contours of ``law``'s L(N, D) with iso-compute lines and the optimal path; see `landscape_data`. A Figure."""
    return draw_landscape(landscape_data(law, n_range, d_range, budgets_flops))
