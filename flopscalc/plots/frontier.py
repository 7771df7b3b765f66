"""Compute-optimal frontier: N_opt(C) and D_opt(C) for several scaling laws, with landmarks.

`frontier_data` gathers the numbers from the engines (no matplotlib); `draw_frontier` draws them;
`frontier_figure` does both. Landmarks: the GPT-2 presets at the budget where each is compute-optimal under
the first law (``scaling.flops_for_params``), published runs at C = 6ND (Kaplan et al. 2020, sec. 2.1) from
``data/published_runs.csv``, the user's budget with each law's optimum for it, and the model sizes that fit a
GPU's memory. The compute axis is each law's own C = 6ND (Hoffmann et al. 2022, sec. 3); a budget of model FLOPs
(``budget_request``: time on a GPU, as `plan` counts it) has its optimum placed as `plan` places it, at the budget
converted to that convention (`planner.model_flops_optimum`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UsageError
from ..fit_search import largest_fitting_params
from ..flops import FLOPS_PER_PARAM_TOKEN
from ..hardware import GpuSpec, Precision
from ..model import GPT2_BLOCK_SIZE, PRESETS, count_params
from . import _common as C

if TYPE_CHECKING:
    from ..planner.request import PlanRequest

# Laws drawn when none are named: the corrected Chinchilla fit, the published one, the IsoFLOP approach
# and Kaplan's; the others are one --law away.
DEFAULT_FRONTIER_LAWS = ("besiroglu2024", "chinchilla", "chinchilla-a2", "kaplan2020")
# Compute span drawn by default (FLOP): GPT-2 small's optimum (~2e18) to Llama 3.1 405B (~4e25).
DEFAULT_C_RANGE_FLOPS = (1e17, 1e26)
# Points per law line (log-spaced in C); the lines are power laws, so this is plenty.
FRONTIER_POINTS = 101
# Points of two runs closer than this in both log10 coordinates share one label.
MERGE_DECADES = 0.15


def _check_range(c_range_flops) -> tuple[float, float]:
    lo, hi = (float(v) for v in c_range_flops)
    if not (0 < lo < hi and math.isfinite(hi)):
        raise UsageError(f"compute range must be two positive numbers, low < high, got {lo:g}..{hi:g}; "
                         "e.g. --c-min 1e17 --c-max 1e26")
    return lo, hi


def frontier_data(laws=DEFAULT_FRONTIER_LAWS, c_range_flops=DEFAULT_C_RANGE_FLOPS, budget_flops: float | None = None,
                  budget_label: str | None = None, gpu: GpuSpec | None = None, n_gpus: int = 1,
                  seq_len: int = GPT2_BLOCK_SIZE, precision: Precision | str = Precision.bf16,
                  capacity_bytes: float | None = None, published: bool = True,
                  budget_request: PlanRequest | None = None) -> dict:
    """The numbers behind the frontier plot (JSON-ready; units in the keys).

    Parameters
    ----------
    laws : sequence of str or ScalingLaw
        Laws to draw; the first also places the GPT-2 presets and the budget's optimum.
    c_range_flops : (float, float)
        Training compute span (FLOP).
    budget_flops : float, optional
        The user's budget (FLOP), drawn as a vertical line: in the laws' C = 6ND, or model FLOPs with
        ``budget_request``.
    budget_label : str, optional
        How the budget was obtained, for the legend (e.g. "1 year on 1x RTX 4070 Ti").
    gpu, n_gpus, seq_len, precision, capacity_bytes
        The memory region: which model sizes fit (see `largest_fitting_params`).
    published : bool
        Mark the published runs of ``data/published_runs.csv``.
    budget_request : PlanRequest, optional
        The plan question whose model FLOPs ``budget_flops`` are (a time on a GPU): each law's optimum is then the
        one `plan` states (`planner.model_flops_optimum`), at ``law_flops``, the budget as that law counts it
        (C = 6ND); without it the budget is taken in the laws' own convention.
    """
    from ..scaling import flops_for_params, optimal
    from ..scaling.allocate import optimal_arrays
    from ..scaling.io import resolve_law
    from ..scaling.laws import n_for_law

    lo, hi = _check_range(c_range_flops)
    law_objs = [resolve_law(x) for x in laws]
    if not law_objs:
        raise UsageError("name at least one scaling law, e.g. --law besiroglu2024")
    c = np.logspace(math.log10(lo), math.log10(hi), FRONTIER_POINTS)
    lines = []
    for law in law_objs:
        n, d = optimal_arrays(law, c)
        n_exp = float(np.polyfit(np.log(c), np.log(n), 1)[0])
        lines.append({"law": law.name, "title": law.title, "n_counts_embeddings": law.n_counts_embeddings,
                      "n_exponent": n_exp, "c_flops": c.tolist(), "n_params": np.asarray(n).tolist(),
                      "n_tokens": np.asarray(d).tolist()})
    primary = law_objs[0]
    presets = []
    for name, cfg in PRESETS.items():
        alloc = flops_for_params(primary, n_for_law(primary, cfg))
        presets.append({"name": name, "law": primary.name, "n_params": alloc.n_params, "c_flops": alloc.c_flops,
                        "n_tokens": alloc.n_tokens, "inside_range": lo <= alloc.c_flops <= hi})
    runs = []
    if published:
        from ..runs import published_runs

        for r in published_runs():
            n = r.n_params if r.config is None else count_params(r.config).total
            c_run = FLOPS_PER_PARAM_TOKEN * n * r.n_tokens  # C = 6ND  [Kaplan et al. 2020, sec. 2.1]
            runs.append({"run": r.run, "kind": r.kind, "n_params": float(n), "n_tokens": r.n_tokens,
                         "c_flops": c_run, "inside_range": lo <= c_run <= hi})
    budget = None
    if budget_flops is not None:
        if not (budget_flops > 0 and math.isfinite(budget_flops)):
            raise UsageError(f"the budget must be a positive number of FLOPs, got {budget_flops}")
        if budget_request is None:  # the budget in the laws' own C = 6ND
            allocs = [optimal(law, budget_flops) for law in law_objs]
        else:  # model FLOPs: each law's optimum as plan places it (the budget converted to the law's C = 6ND)
            from ..planner import model_flops_optimum

            allocs = [model_flops_optimum(budget_request, budget_flops, law) for law in law_objs]
        budget = {"c_flops": float(budget_flops), "label": budget_label,
                  "counted_as": "the laws' C = 6ND" if budget_request is None else "model FLOPs, as plan counts them",
                  "optimal": [{"law": a.law, "n_params": a.n_params, "n_tokens": a.n_tokens,
                               "law_flops": a.c_flops if a.law_flops is None else a.law_flops} for a in allocs]}
    fit = None
    if gpu is not None:
        fit = largest_fitting_params(gpu, n_gpus, seq_len, precision, capacity_bytes)
    return {"plot": "frontier", "c_range_flops": [lo, hi], "laws": lines, "presets": presets,
            "published_runs": runs, "budget": budget, "gpu_fit": fit}


def _merge_close(points: list[dict], ykey: str) -> list[tuple[float, float, str]]:
    """Points (c, y, name) with near-coincident ones merged into one label (first point's position)."""
    out: list[list] = []
    for p in sorted(points, key=lambda p: p["c_flops"]):
        x, y = p["c_flops"], p[ykey]
        for q in out:
            if abs(math.log10(q[0] / x)) < MERGE_DECADES and abs(math.log10(q[1] / y)) < MERGE_DECADES:
                q[2] += ", " + p["name"]
                break
        else:
            out.append([x, y, p["name"]])
    return [tuple(q) for q in out]


def draw_frontier(data: dict):
    """Draw `frontier_data`'s numbers: N_opt (top) and D_opt (bottom) against C, log-log. Returns a Figure."""
    from ..units import format_count

    fig, (ax_n, ax_d) = C.new_figure(9.0, 10.0, 2, 1, sharex=True)
    lo, hi = data["c_range_flops"]
    for i, line in enumerate(data["laws"]):
        color = C.SERIES_COLORS[i % len(C.SERIES_COLORS)]
        note = " (N without embeddings)" if line["n_counts_embeddings"] is False else ""
        ax_n.plot(line["c_flops"], line["n_params"], color=color, lw=2,
                  label=f"{line['law']}: N ∝ C^{line['n_exponent']:.2f}{note}", gid=f"law:{line['law']}")
        ax_d.plot(line["c_flops"], line["n_tokens"], color=color, lw=2, label=line["law"], gid=f"law:{line['law']}")
    primary_color = C.SERIES_COLORS[0]
    presets = [p for p in data["presets"] if p["inside_range"]]
    runs = [{**r, "name": r["run"]} for r in data["published_runs"] if r["inside_range"] and r["kind"] == "measured"]
    # y limits from everything drawn, with a margin, so the shaded memory band can start at the bottom
    for ax, key in ((ax_n, "n_params"), (ax_d, "n_tokens")):
        ys = [y for line in data["laws"] for y in line[key]] + [p[key] for p in presets] + [r[key] for r in runs]
        ax.set_ylim(min(ys) / 3, max(ys) * 3)
        ax.set_xlim(lo, hi)
    if presets:
        for ax, key in ((ax_n, "n_params"), (ax_d, "n_tokens")):
            ax.scatter([p["c_flops"] for p in presets], [p[key] for p in presets], s=42, marker="o",
                       facecolor="white", edgecolor=primary_color, linewidths=1.8, zorder=5, gid="presets",
                       label=f"GPT-2 presets at their {presets[0]['law']} optimum")
    if runs:
        for ax, key in ((ax_n, "n_params"), (ax_d, "n_tokens")):
            ax.scatter([r["c_flops"] for r in runs], [r[key] for r in runs], s=36, marker="D", color="black",
                       zorder=6, gid="published_runs", label="published runs, C = 6ND")
    budget = data["budget"]
    if budget is not None:
        c_b = budget["c_flops"]
        model_flops = budget.get("counted_as", "").startswith("model")
        label = (f"budget {C.sci_label(c_b)} {'model ' if model_flops else ''}FLOP"
                 + (f" ({budget['label']})" if budget.get("label") else ""))
        best = budget["optimal"][0]
        # a model-FLOP budget's star sits where plan places the optimum: at the budget as the law counts it (6ND)
        how, at = ((" as plan converts it", f", 6ND = {C.sci_label(best['law_flops'])}") if model_flops else ("", ""))
        for ax, key, sym in ((ax_n, "n_params", "N"), (ax_d, "n_tokens", "D")):
            ax.axvline(c_b, color="black", ls="--", lw=1.3, label=label, gid="budget")
            ax.scatter([best["law_flops"]], [best[key]], marker="*", s=200, color="gold", edgecolor="black",
                       zorder=7, gid="budget_optimum",
                       label=f"{sym}_opt at the budget{how} ({best['law']}{at}): {format_count(best[key])}")
    fit = data["gpu_fit"]
    if fit is not None:
        y0 = ax_n.get_ylim()[0]
        gpus = f"{fit['n_gpus']}× {C.short_gpu_name(fit['gpu'])}"
        # the lightest setup searched offloads AdamW's states to the CPU (planner.options: offload keeps AdamW)
        lightest = ("ZeRO-3, " if fit["n_gpus"] > 1 else "") + "full recompute, AdamW offloaded to the CPU"
        if fit["n_max_params_any_setup"]:
            ax_n.axhspan(y0, fit["n_max_params_any_setup"], color="#2ca02c", alpha=0.10, lw=0, gid="fit:any_setup",
                         label=f"fits {gpus} with {lightest} (≤ {format_count(fit['n_max_params_any_setup'])})")
        if fit["n_max_params_plain_adamw"]:
            ax_n.axhspan(y0, fit["n_max_params_plain_adamw"], color="#2ca02c", alpha=0.18, lw=0,
                         gid="fit:plain_adamw",
                         label=f"fits {gpus} with AdamW, no recompute (≤ {format_count(fit['n_max_params_plain_adamw'])})")
    C.style_axes(ax_n, "", "compute-optimal parameters N (count)", "Compute-optimal model size", logx=True, logy=True)
    C.style_axes(ax_d, "training compute C (FLOP)", "compute-optimal training tokens D (tokens)",
                 "Compute-optimal training data", logx=True, logy=True)
    ax_n.legend(loc="upper left", fontsize=C.LEGEND_SIZE, framealpha=0.9)
    handles, labels = ax_d.get_legend_handles_labels()
    keep = [(h, lab) for h, lab in zip(handles, labels) if not any(lab == line["law"] for line in data["laws"])]
    if keep:
        ax_d.legend(*zip(*keep), loc="upper left", fontsize=C.LEGEND_SIZE, framealpha=0.9)
    # labels of the landmarks, placed clear of each other, the markers and the legends
    renderer = C.layout_now(fig)
    for ax, key in ((ax_n, "n_params"), (ax_d, "n_tokens")):
        taken = [ax.get_legend().get_window_extent(renderer)] if ax.get_legend() else []
        pts = [{"c_flops": p["c_flops"], key: p[key], "name": p["name"]} for p in presets] + runs
        taken += C.point_boxes(fig, ax, [p["c_flops"] for p in pts], [p[key] for p in pts])
        if budget is not None:
            taken += C.point_boxes(fig, ax, [budget["optimal"][0]["law_flops"]], [budget["optimal"][0][key]],
                                   radius_pt=8)
        for group, color in ((presets, primary_color), (runs, "black")):
            merged = _merge_close([{"c_flops": p["c_flops"], key: p[key], "name": p["name"]} for p in group], key)
            if merged:
                C.place_labels(fig, ax, *zip(*merged), color=color, avoid=taken)
    return fig


def frontier_figure(laws=DEFAULT_FRONTIER_LAWS, c_range_flops=DEFAULT_C_RANGE_FLOPS, budget_flops: float | None = None,
                    **kwargs):
    """Compute-optimal N and D against compute for ``laws``, with landmarks; see `frontier_data`. A Figure."""
    return draw_frontier(frontier_data(laws, c_range_flops, budget_flops, **kwargs))
