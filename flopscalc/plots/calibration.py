"""Calibration: what the trainer measured against what flopscalc predicts, from a calibration profile.

Three panels: step time measured against two predictions, the fitted step-time model (the profile's device
factors through ``perf.calibrate.calibrated_step``, what ``flopscalc step --calibration`` and ``plan --calibration``
price with) and the FLOPs engine at a stated MFU (time = model FLOPs / (devices x peak x MFU), PaLM App. B); measured
MFU per model size, with the interpolation the planner reads when a profile has no factors
(``CalibrationProfile.mfu_for``); peak allocated memory measured (``torch.cuda.max_memory_allocated``) against the
memory estimator's prediction stored in the profile.

The peak of a point is its datasheet peak (a GPU of the database, or ``calibrate --peak-tflops``); a CPU has none,
and there the GEMM rate the profile timed stands as the peak, as in ``flopscalc step`` (``perf.calibrate.cpu_spec``:
the fitted factors' rate, which 'calibrate' holds at the timed matmul's ``measured_gemm_flop_per_s``).
"""

from __future__ import annotations

import math

import numpy as np

from . import _common as C

# The memory estimator's accuracy target: within 10% of the measured peak (issue 3).
MEMORY_TARGET_FRACTION = 0.10
# Points of the planner's MFU interpolation curve.
MFU_CURVE_POINTS = 60
# What a point's peak rate is: a datasheet (or --peak-tflops) figure, or a CPU's timed matmul rate.
PEAK_DATASHEET = "datasheet"
PEAK_MEASURED_GEMM = "measured GEMM"


def cpu_peak_flop_per_s(profile) -> float | None:
    """The rate a CPU profile's MFU is measured against (FLOP/s), as `flopscalc step` takes it: the fitted factors'
    GEMM rate (`perf.calibrate.cpu_spec`), else the timed matmul's; None for a GPU profile or a CPU without either."""
    if profile.gpu_key is not None:
        return None
    if profile.device_factors is not None:
        return profile.device_factors.gemm_flop_per_s
    return profile.measured_gemm_flop_per_s


def _timing(profile) -> str:
    """What the profile's times are compared in: "process CPU" seconds when its factors were fitted to them."""
    factors = profile.device_factors
    return factors.timing if factors is not None else "wall"


def _fitted_steps_s(profile) -> list[float | None]:
    """Each point's step time (s) predicted by the fitted factors (`calibrated_step`), None where none is priced."""
    if profile.device_factors is None:
        return [None] * len(profile.points)
    from ..errors import DomainError, UsageError
    from ..memory.settings import Device
    from ..perf.calibrate import calibrated_step, point_setup

    gpu = None
    if profile.gpu_key is not None:
        from ..hardware import get_gpu

        try:
            gpu = get_gpu(profile.gpu_key)
        except UsageError:  # a row added with --gpu-csv when it was measured: nothing to price the fit on
            return [None] * len(profile.points)
    out = []
    for p in profile.points:
        try:
            setup = point_setup(p, Device.cpu if gpu is None else Device.cuda)
            out.append(calibrated_step(p.model, setup, profile, gpu).step_s)
        except (UsageError, DomainError):  # e.g. a compiled point: the model prices eager kernels
            out.append(None)
    return out


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
    from ..perf.utilization import model_flops_utilization, seconds_at_utilization
    from ..planner.budget import DEFAULT_MFU  # where it is defined; planner.core would load the whole planner

    mfu = DEFAULT_MFU if assumed_mfu is None else float(assumed_mfu)
    if not 0 < mfu <= 1:
        raise UsageError(f"the assumed MFU must be a fraction in (0, 1], got {assumed_mfu}; e.g. --mfu 0.4")
    cpu_peak = cpu_peak_flop_per_s(profile)
    if assumed_mfu is not None and cpu_peak is None and not any(p.peak_flop_per_s for p in profile.points):
        # it predicts step times (tokens x FLOPs / (peak x MFU)) and marks the MFU panel: both need a peak rate
        raise UsageError("--mfu would be ignored: this profile has no peak rate (a CPU timed without --peak-tflops "
                         "and without a measured GEMM rate), so nothing is predicted at an MFU; drop --mfu, or re-run "
                         "calibrate with --gpu or --peak-tflops")
    timing = _timing(profile)
    fitted = _fitted_steps_s(profile)
    points = []
    for p, fitted_s in zip(profile.points, fitted):
        flops_per_token = training_flops_per_token(p.model, p.seq_len).model_flops_per_token
        tokens = tokens_per_step(p.micro_batch, p.seq_len, p.grad_accum, p.n_devices)
        # the time the fit read: process CPU seconds where it was fitted to them, else wall seconds
        measured = p.cpu_step_time_s if timing == "process CPU" and p.cpu_step_time_s else p.step_time_s
        peak, source, point_mfu = p.peak_flop_per_s, PEAK_DATASHEET, p.mfu
        if not peak and cpu_peak:
            peak, source = cpu_peak, PEAK_MEASURED_GEMM
            point_mfu = model_flops_utilization(flops_per_token, tokens / measured, p.n_devices, peak)
        predicted = seconds_at_utilization(tokens * flops_per_token, p.n_devices, peak, mfu) if peak else None
        points.append({
            "model": p.model.name, "n_params": p.n_params, "micro_batch": p.micro_batch, "seq_len": p.seq_len,
            "grad_accum": p.grad_accum, "n_devices": p.n_devices, "compiled": p.compiled, "precision": p.precision,
            "tokens_per_step": tokens, "model_flops_per_token": flops_per_token,
            "step_time_s": p.step_time_s, "measured_step_time_s": measured, "predicted_step_time_s": predicted,
            "fitted_step_time_s": fitted_s, "peak_flop_per_s": peak or None, "peak_source": source if peak else None,
            "mfu": point_mfu, "peak_memory_bytes": p.peak_memory_bytes,
            "predicted_memory_bytes": p.predicted_memory_bytes,
        })
    curve = None
    mfu_points = profile.mfu_points()
    if mfu_points:
        ns = [p.n_params for p in mfu_points]
        lo, hi = min(ns), max(ns)
        grid = np.logspace(math.log10(lo) - 0.3, math.log10(hi) + 0.3, MFU_CURVE_POINTS)
        curve = {"n_params": grid.tolist(), "mfu": [profile.mfu_for(float(n)) for n in grid],
                 "micro_batch": max(p.micro_batch for p in mfu_points)}
    factors = profile.device_factors
    fit = None if factors is None else {
        "timing": factors.timing, "gemm_source": factors.gemm_source, "n_points": factors.n_points,
        "rms_rel_error": factors.rms_rel_error, "max_rel_error": factors.max_rel_error}
    return {"plot": "calibration", "device_name": profile.device_name, "gpu_key": profile.gpu_key,
            "created": profile.created, "assumed_mfu": mfu, "timing": timing, "fit": fit, "points": points,
            "mfu_curve": curve}


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
    """Draw `calibration_data`'s numbers: step time (fitted model and constant MFU), MFU and peak memory panels."""
    fig, (ax_t, ax_m, ax_mem) = C.new_figure(16.0, 5.6, 1, 3)
    pts = data["points"]
    models = sorted({p["model"] for p in pts}, key=lambda m: min(p["n_params"] for p in pts if p["model"] == m))
    color = {m: C.SERIES_COLORS[i % len(C.SERIES_COLORS)] for i, m in enumerate(models)}

    timed = [p for p in pts if p["predicted_step_time_s"] or p["fitted_step_time_s"]]
    if timed:
        for m in models:
            sel = [p for p in timed if p["model"] == m and p["fitted_step_time_s"]]
            if sel:  # the fitted model: what step and plan price with this profile
                ax_t.scatter([p["fitted_step_time_s"] for p in sel], [p["measured_step_time_s"] for p in sel], s=42,
                             color=color[m], edgecolor="black", linewidths=0.5, zorder=6,
                             label=f"{m}: fitted factors", gid=f"fitted:{m}")
            sel = [p for p in timed if p["model"] == m and p["predicted_step_time_s"]]
            if sel:
                ax_t.scatter([p["predicted_step_time_s"] for p in sel], [p["measured_step_time_s"] for p in sel],
                             s=40, marker="s", facecolors="none", edgecolors=color[m], linewidths=1.2, zorder=5,
                             label=f"{m}: at MFU {data['assumed_mfu']:.2f}", gid=f"time:{m}")
        values = [p[k] for p in timed for k in ("predicted_step_time_s", "fitted_step_time_s", "measured_step_time_s")
                  if p[k]]
        _identity(ax_t, values)
        cpu_s = data["timing"] == "process CPU"
        C.style_axes(ax_t, "predicted (s/step)", "measured (s/step" + (", process CPU time)" if cpu_s else ")"),
                     "Step time", logx=True, logy=True)
        C.readable_log_ticks(ax_t, "x", "plain")
        C.readable_log_ticks(ax_t, "y", "plain")
        fit = data["fit"]
        if fit is not None and any(p["fitted_step_time_s"] for p in timed):
            ax_t.text(0.98, 0.02, f"fit on {fit['n_points']} points: rms {fit['rms_rel_error']:.1%}, "
                      f"worst {fit['max_rel_error']:.1%}", transform=ax_t.transAxes, ha="right", va="bottom",
                      fontsize=C.LEGEND_SIZE, gid="fit_error")
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
        if curve is not None:  # a CPU profile's MFU is against its timed matmul: no profile MFU the planner reads
            ax_m.plot(curve["n_params"], curve["mfu"], color="black", lw=1.5, gid="mfu_curve",
                      label=f"profile MFU, read without factors (micro-batch {curve['micro_batch']})")
        ax_m.axhline(data["assumed_mfu"], color="#d62728", ls="--", lw=1.3, gid="assumed_mfu",
                     label=f"assumed MFU {data['assumed_mfu']:.2f}")
        top = max([p["mfu"] for p in with_mfu] + [data["assumed_mfu"]])
        ax_m.set_ylim(0, min(1.0, top * 1.3))
        gemm = any(p["peak_source"] == PEAK_MEASURED_GEMM for p in with_mfu)
        C.style_axes(ax_m, "parameters N (count)",
                     "MFU (fraction of the timed matmul rate)" if gemm else "MFU (fraction of dense peak)",
                     "Model FLOPs utilization", logx=True)
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
