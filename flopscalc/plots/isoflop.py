"""IsoFLOP curves: predicted loss against model size at fixed compute (Hoffmann et al. 2022, Fig. 3 left).

Along a budget C every model size N trains on D = C / 6N tokens (Kaplan et al. 2020, sec. 2.1), so the
law's L(N, C / 6N) is a valley whose floor is the compute-optimal N. Runs read from a CSV
(``scaling.io.read_runs``) are grouped by their FLOPs and drawn over the curves.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import UsageError
from ..flops import FLOPS_PER_PARAM_TOKEN
from . import _common as C

# Budgets drawn when none are named (FLOP): five decades around small single-GPU runs.
DEFAULT_ISOFLOP_BUDGETS = (1e18, 1e19, 1e20, 1e21, 1e22)
# Each curve spans this many decades of N either side of its optimum, as Hoffmann et al.'s Fig. 3 does.
ISOFLOP_HALF_SPAN_DECADES = 1.25
# Points per curve (log-spaced in N).
ISOFLOP_POINTS = 161
# Runs whose FLOPs differ by less than this relative amount belong to one IsoFLOP group.
DEFAULT_FLOPS_TOLERANCE = 0.10
# Most run groups shown (the most populated ones); more would not be told apart by colour.
MAX_RUN_GROUPS = 8
# A group is an IsoFLOP profile (gets its own colour and curve) when it has at least this many model sizes;
# the other runs are drawn in grey without a curve.
MIN_PROFILE_SIZES = 3


def group_by_flops(c_flops, rel_tol: float = DEFAULT_FLOPS_TOLERANCE) -> list[np.ndarray]:
    """Indices of runs grouped by FLOPs: sorted, a new group starts when C exceeds the group's first by ``rel_tol``."""
    if not 0 < rel_tol < 10:
        raise UsageError(f"FLOPs tolerance must be a positive fraction such as 0.1, got {rel_tol}")
    c = np.asarray(c_flops, float)
    order = np.argsort(c)
    groups: list[list[int]] = []
    for i in order:
        if groups and c[i] <= c[groups[-1][0]] * (1 + rel_tol):
            groups[-1].append(int(i))
        else:
            groups.append([int(i)])
    return [np.array(g) for g in groups]


# Span searched for the floor of a curve when the law has no closed form (decades of N either side).
NUMERIC_SEARCH_DECADES = 4.0
NUMERIC_SEARCH_POINTS = 4001


def _closed_form(law) -> bool:
    from ..scaling.laws import ParametricLoss

    return isinstance(law.loss_form, ParametricLoss) and law.allocation is None


def curve_minimum(law, c_flops: float) -> tuple[float, float, str]:
    """(N, loss, method) at the floor of the IsoFLOP curve of ``c_flops`` (FLOP) under ``law``.

    The law's closed form where it has one (Hoffmann et al. 2022, eq. 4: the minimum of eq. 2 along
    C = 6ND); otherwise (e.g. Kaplan's eq. 1.5, whose published allocation is not this minimum) a log-spaced
    search over +-4 decades around the law's allocation, refined by a parabola through the best 3 points.
    """
    from ..scaling import optimal
    from ..scaling.allocate import optimal_arrays

    if _closed_form(law):
        a = optimal(law, c_flops)  # [Hoffmann et al. 2022, eq. 4]
        # the curve is drawn from the law's formula, so its floor is the formula's value even where the
        # allocation withholds it as a prediction (above ln(vocabulary) at tiny budgets)
        return a.n_params, float(law.loss(a.n_params, a.n_tokens)), "closed form (Hoffmann eq. 4)"
    n0 = float(optimal_arrays(law, c_flops)[0])
    x = math.log(n0) + np.linspace(-1, 1, NUMERIC_SEARCH_POINTS) * NUMERIC_SEARCH_DECADES * math.log(10)
    loss = np.asarray(law.loss(np.exp(x), c_flops / (FLOPS_PER_PARAM_TOKEN * np.exp(x))), float)  # D = C / 6N
    k = int(np.clip(np.argmin(loss), 1, len(loss) - 2))
    y0, y1, y2 = loss[k - 1 : k + 2]
    h = x[1] - x[0]
    denom = y0 - 2 * y1 + y2
    shift = 0.5 * h * (y0 - y2) / denom if denom > 0 else 0.0  # vertex of the parabola through 3 points
    n = float(math.exp(x[k] + shift))
    return n, float(law.loss(n, c_flops / (FLOPS_PER_PARAM_TOKEN * n))), "numeric minimum along C = 6ND"


def isoflop_data(budgets_flops=None, law=None, runs_csv=None, flops_tolerance: float = DEFAULT_FLOPS_TOLERANCE) -> dict:
    """The numbers behind the IsoFLOP plot (JSON-ready; units in the keys).

    Parameters
    ----------
    budgets_flops : sequence of float, optional
        Budgets to draw (FLOP); default: the FLOPs of the runs' IsoFLOP groups (geometric mean; groups of at
        least `MIN_PROFILE_SIZES` model sizes) when runs are given, else `DEFAULT_ISOFLOP_BUDGETS`.
    law : str or ScalingLaw, optional
        A law with a loss formula (default: ``scaling.DEFAULT_LAW``).
    runs_csv : path, optional
        Training runs (n_params, n_tokens or c_flops, loss) to overlay, grouped by FLOPs.
    flops_tolerance : float
        Relative FLOPs difference within which runs share a group.
    """
    from ..errors import DomainError
    from ..scaling.io import read_runs, resolve_law

    if not 0 < flops_tolerance < 10:
        raise UsageError(f"FLOPs tolerance must be a positive fraction such as 0.1, got {flops_tolerance}")
    law = resolve_law(law)
    if not law.has_loss:
        raise DomainError(f"law {law.name!r} has no loss formula, so it has no IsoFLOP curves; "
                          "use a parametric law such as besiroglu2024, chinchilla or kaplan2020")
    run_groups, others = [], None
    if runs_csv is not None:
        runs = read_runs(runs_csv)
        groups = group_by_flops(runs.c_flops, flops_tolerance)
        profiles = [g for g in groups if np.unique(runs.n_params[g]).size >= MIN_PROFILE_SIZES]
        profiles = sorted(profiles, key=len, reverse=True)[:MAX_RUN_GROUPS]
        chosen = {int(i) for g in profiles for i in g}
        rest = np.array(sorted(set(range(len(runs))) - chosen), dtype=int)
        if rest.size:
            others = {"n_params": runs.n_params[rest].tolist(), "loss": runs.loss[rest].tolist(),
                      "c_flops": runs.c_flops[rest].tolist()}
        for g in sorted(profiles, key=lambda g: float(np.mean(runs.c_flops[g]))):
            run_groups.append({"c_flops": float(np.exp(np.mean(np.log(runs.c_flops[g])))),
                               "n_params": runs.n_params[g].tolist(), "n_tokens": runs.n_tokens[g].tolist(),
                               "loss": runs.loss[g].tolist(), "run_c_flops": runs.c_flops[g].tolist()})
    if budgets_flops is None:
        budgets_flops = [g["c_flops"] for g in run_groups] or list(DEFAULT_ISOFLOP_BUDGETS)
    budgets = sorted(float(b) for b in budgets_flops)
    if not budgets or not all(b > 0 and math.isfinite(b) for b in budgets):
        raise UsageError(f"budgets must be positive numbers of FLOPs, got {budgets_flops}; e.g. --flops 1e20")
    curves = []
    for c in budgets:
        n_min, loss_min, how = curve_minimum(law, c)
        span = ISOFLOP_HALF_SPAN_DECADES
        n = np.logspace(math.log10(n_min) - span, math.log10(n_min) + span, ISOFLOP_POINTS)
        d = c / (FLOPS_PER_PARAM_TOKEN * n)  # D = C / 6N  [Kaplan et al. 2020, sec. 2.1]
        loss = np.asarray(law.loss(n, d), float)
        curves.append({"c_flops": c, "n_params": n.tolist(), "n_tokens": d.tolist(), "loss": loss.tolist(),
                       "min_n_params": n_min, "min_n_tokens": c / (FLOPS_PER_PARAM_TOKEN * n_min), "min_loss": loss_min,
                       "min_method": how})
    return {"plot": "isoflop", "law": law.name, "law_title": law.title,
            "n_counts_embeddings": law.n_counts_embeddings, "curves": curves,
            "run_groups": run_groups, "other_runs": others, "flops_tolerance": flops_tolerance,
            "runs_source": None if runs_csv is None else str(runs_csv)}


def draw_isoflop(data: dict):
    """Draw `isoflop_data`'s numbers: loss against N (log x), one curve per budget, minima marked."""
    from ..units import format_count

    fig, ax = C.new_figure(11.5, 6.0)
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    curves = data["curves"]
    colors = [cmap(0.9 * i / max(1, len(curves) - 1)) for i in range(len(curves))]
    for curve, color in zip(curves, colors):
        ax.plot(curve["n_params"], curve["loss"], color=color, lw=2, gid=f"curve:{curve['c_flops']:g}",
                label=f"predicted, C = {C.sci_label(curve['c_flops'])} FLOP")
    ax.scatter([c["min_n_params"] for c in curves], [c["min_loss"] for c in curves], marker="*", s=160,
               color="gold", edgecolor="black", zorder=6, gid="minima", label="minimum: compute-optimal N")
    for curve in curves:
        ax.annotate(format_count(curve["min_n_params"]), (curve["min_n_params"], curve["min_loss"]),
                    xytext=(0, -12), textcoords="offset points", ha="center", va="top", fontsize=C.NOTE_SIZE,
                    zorder=7, bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    for j, g in enumerate(data["run_groups"]):
        # colour of the curve at the same budget, if one is within the tolerance
        match = [k for k, c in enumerate(curves) if abs(c["c_flops"] / g["c_flops"] - 1) <= data["flops_tolerance"]]
        color = colors[match[0]] if match else C.SERIES_COLORS[j % len(C.SERIES_COLORS)]
        ax.scatter(g["n_params"], g["loss"], marker="o", s=30, facecolor=color, edgecolor="black", linewidths=0.6,
                   zorder=5, gid=f"runs:{g['c_flops']:g}", label=f"measured runs at ~{C.sci_label(g['c_flops'])} FLOP")
    others = data.get("other_runs")
    if others:
        ax.scatter(others["n_params"], others["loss"], marker="o", s=18, color="#999999", zorder=4, gid="other_runs",
                   label=f"other measured runs (< {MIN_PROFILE_SIZES} sizes at their FLOPs)")
    # loss axis: the minima and the IsoFLOP groups set it; other runs may extend it downwards only (tiny models'
    # high losses would flatten every curve)
    values = [c["min_loss"] for c in curves] + [x for g in data["run_groups"] for x in g["loss"]]
    spread = max(values) - min(values)
    low = min(values + (others["loss"] if others else []))
    ax.set_ylim(low - 0.15 * spread - 0.05, max(values) + 0.6 * spread + 0.2)
    n_note = ", without embeddings" if data["n_counts_embeddings"] is False else ""
    C.style_axes(ax, f"parameters N (count{n_note})", "loss (nats/token)",
                 f"IsoFLOP curves under {data['law']}", logx=True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=C.LEGEND_SIZE, frameon=False,
              ncols=2 if len(curves) > 12 else 1)  # outside the axes: the curves' arms fill the corners
    return fig


def isoflop_figure(budgets_flops=None, law=None, runs_csv=None, flops_tolerance: float = DEFAULT_FLOPS_TOLERANCE):
    """IsoFLOP curves of ``law`` for ``budgets_flops``, with optional runs overlaid; see `isoflop_data`. A Figure."""
    return draw_isoflop(isoflop_data(budgets_flops, law, runs_csv, flops_tolerance))
