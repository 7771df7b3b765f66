"""Calibration: what the trainer measured against what flopscalc predicts, from a calibration profile.

Three panels: step time measured against the FLOPs engine's prediction at a stated MFU (time = model FLOPs /
(devices x peak x MFU), PaLM App. B); measured MFU per model size with the interpolation the planner reads
(``CalibrationProfile.mfu_for``); peak allocated memory measured (``torch.cuda.max_memory_allocated``)
against the memory estimator's prediction stored in the profile.
"""

from __future__ import annotations

import math

import numpy as np

from . import _common as C

# The memory estimator's accuracy target: within 10% of the measured peak (issue 3).
MEMORY_TARGET_FRACTION = 0.10
# Points of the planner's MFU interpolation curve.
MFU_CURVE_POINTS = 60


def calibration_data(profile, assumed_mfu: float | None = None) -> dict:
    """The numbers behind the calibration plot (JSON-ready; units in the keys).

    Parameters
    ----------
    profile : CalibrationProfile
    assumed_mfu : float, optional
        MFU (fraction) at which the step time is predicted; default the planner's ``DEFAULT_MFU``.
    """
    from ..errors import UsageError
    from ..flops import tokens_per_step, training_flops_per_token
    from ..perf.utilization import seconds_at_utilization
    from ..planner.budget import DEFAULT_MFU  # where it is defined; planner.core would load the whole planner

    mfu = DEFAULT_MFU if assumed_mfu is None else float(assumed_mfu)
    if not 0 < mfu <= 1:
        raise UsageError(f"the assumed MFU must be a fraction in (0, 1], got {assumed_mfu}; e.g. --mfu 0.4")
    if assumed_mfu is not None and not any(p.peak_flop_per_s for p in profile.points):
        # it predicts step times (tokens x FLOPs / (peak x MFU)) and marks the MFU panel: both need a peak rate
        raise UsageError("--mfu would be ignored: this profile has no peak rate (a CPU timed without --peak-tflops), "
                         "so nothing is predicted at an MFU; drop --mfu, or re-run calibrate with --gpu or "
                         "--peak-tflops")
    points = []
    for p in profile.points:
        flops_per_token = training_flops_per_token(p.model, p.seq_len).model_flops_per_token
        tokens = tokens_per_step(p.micro_batch, p.seq_len, p.grad_accum, p.n_devices)
        predicted = None
        if p.peak_flop_per_s:
            predicted = seconds_at_utilization(tokens * flops_per_token, p.n_devices, p.peak_flop_per_s, mfu)
        points.append({
            "model": p.model.name, "n_params": p.n_params, "micro_batch": p.micro_batch, "seq_len": p.seq_len,
            "grad_accum": p.grad_accum, "n_devices": p.n_devices, "compiled": p.compiled, "precision": p.precision,
            "tokens_per_step": tokens, "model_flops_per_token": flops_per_token,
            "step_time_s": p.step_time_s, "predicted_step_time_s": predicted, "mfu": p.mfu,
            "peak_memory_bytes": p.peak_memory_bytes, "predicted_memory_bytes": p.predicted_memory_bytes,
        })
    curve = None
    mfu_points = profile.mfu_points()
    if mfu_points:
        ns = [p.n_params for p in mfu_points]
        lo, hi = min(ns), max(ns)
        grid = np.logspace(math.log10(lo) - 0.3, math.log10(hi) + 0.3, MFU_CURVE_POINTS)
        curve = {"n_params": grid.tolist(), "mfu": [profile.mfu_for(float(n)) for n in grid],
                 "micro_batch": max(p.micro_batch for p in mfu_points)}
    return {"plot": "calibration", "device_name": profile.device_name, "gpu_key": profile.gpu_key,
            "created": profile.created, "assumed_mfu": mfu, "points": points, "mfu_curve": curve}


def _identity(ax, values, band: float | None = None, log: bool = True) -> None:
    """The y = x line over the span of ``values`` (and a +-band), for measured-vs-predicted panels."""
    lo, hi = (min(values) / 1.5, max(values) * 1.5) if log else (0.0, max(values) * 1.1)
    ax.plot([lo, hi], [lo, hi], color="black", lw=1, gid="identity", label="measured = predicted")
    if band:
        xs = np.array([lo, hi])
        ax.fill_between(xs, xs * (1 - band), xs * (1 + band), color="#2ca02c", alpha=0.12, lw=0,
                        label=f"within ±{band:.0%}")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)


def draw_calibration(data: dict):
    """Draw `calibration_data`'s numbers: step time, MFU and peak memory panels."""
    fig, (ax_t, ax_m, ax_mem) = C.new_figure(16.0, 5.6, 1, 3)
    pts = data["points"]
    models = sorted({p["model"] for p in pts}, key=lambda m: min(p["n_params"] for p in pts if p["model"] == m))
    color = {m: C.SERIES_COLORS[i % len(C.SERIES_COLORS)] for i, m in enumerate(models)}

    timed = [p for p in pts if p["predicted_step_time_s"]]
    if timed:
        for m in models:
            sel = [p for p in timed if p["model"] == m]
            if sel:
                ax_t.scatter([p["predicted_step_time_s"] for p in sel], [p["step_time_s"] for p in sel], s=40,
                             color=color[m], edgecolor="black", linewidths=0.5, zorder=5, label=m, gid=f"time:{m}")
        _identity(ax_t, [p["predicted_step_time_s"] for p in timed] + [p["step_time_s"] for p in timed])
        C.style_axes(ax_t, f"predicted at MFU {data['assumed_mfu']:.2f} (s/step)", "measured (s/step)",
                     "Step time", logx=True, logy=True)
        C.readable_log_ticks(ax_t, "x", "plain")
        C.readable_log_ticks(ax_t, "y", "plain")
        ax_t.legend(loc="upper left", fontsize=C.LEGEND_SIZE)
    else:
        C.empty_panel(ax_t, "no peak rate in this profile:\nre-run calibrate with --gpu or --peak-tflops",
                      "Step time")

    with_mfu = [p for p in pts if p["mfu"] is not None]
    if with_mfu:
        batches = sorted({p["micro_batch"] for p in with_mfu})
        markers = "osD^v<>p"
        for j, b in enumerate(batches):
            sel = [p for p in with_mfu if p["micro_batch"] == b]
            ax_m.scatter([p["n_params"] for p in sel], [p["mfu"] for p in sel], s=45, marker=markers[j % len(markers)],
                         color=C.SERIES_COLORS[j % len(C.SERIES_COLORS)], edgecolor="black", linewidths=0.5,
                         zorder=5, label=f"measured, micro-batch {b}", gid=f"mfu:{b}")
        curve = data["mfu_curve"]
        ax_m.plot(curve["n_params"], curve["mfu"], color="black", lw=1.5, gid="mfu_curve",
                  label=f"what the planner reads (micro-batch {curve['micro_batch']})")
        ax_m.axhline(data["assumed_mfu"], color="#d62728", ls="--", lw=1.3, gid="assumed_mfu",
                     label=f"assumed MFU {data['assumed_mfu']:.2f}")
        top = max([p["mfu"] for p in with_mfu] + [data["assumed_mfu"]])
        ax_m.set_ylim(0, min(1.0, top * 1.3))
        C.style_axes(ax_m, "parameters N (count)", "MFU (fraction of dense peak)", "Model FLOPs utilization",
                     logx=True)
        C.readable_log_ticks(ax_m, "x", "count")
        ax_m.legend(loc="lower right", fontsize=C.LEGEND_SIZE)
    else:
        C.empty_panel(ax_m, "no MFU in this profile:\nthe device had no known peak rate", "Model FLOPs utilization")

    mem = [p for p in pts if p["peak_memory_bytes"] and p["predicted_memory_bytes"]]
    if mem:
        for m in models:
            sel = [p for p in mem if p["model"] == m]
            if sel:
                ax_mem.scatter([p["predicted_memory_bytes"] / C.GIB for p in sel],
                               [p["peak_memory_bytes"] / C.GIB for p in sel], s=40, color=color[m], edgecolor="black",
                               linewidths=0.5, zorder=5, label=m, gid=f"memory:{m}")
        _identity(ax_mem, [p[k] / C.GIB for p in mem for k in ("predicted_memory_bytes", "peak_memory_bytes")],
                  band=MEMORY_TARGET_FRACTION, log=False)
        C.style_axes(ax_mem, "estimated allocated peak (GiB)", "measured max_memory_allocated (GiB)", "Peak memory")
        ax_mem.legend(loc="upper left", fontsize=C.LEGEND_SIZE)
    else:
        C.empty_panel(ax_mem, "no measured peak memory in this profile\n(CPU runs do not report it)", "Peak memory")
    fig.suptitle(f"Calibration: {data['device_name']} ({data['created']})", fontsize=C.TITLE_SIZE)
    return fig


def calibration_figure(profile, assumed_mfu: float | None = None):
    """Measured against predicted step time, MFU and peak memory for ``profile``; see `calibration_data`."""
    return draw_calibration(calibration_data(profile, assumed_mfu))
