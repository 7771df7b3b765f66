"""Measured on our own GPU: the reference trainer's step times against the step-time model (issue 11, items 4 and 6).

Reads calibration profiles the trainer wrote on one GPU (default: every ``benchmarks/results/calibration_<gpu>_*``
file of the ``--gpu`` row) and, for every measured point:

1. the raw model: `estimate_step` on the GPU's database row (datasheet figures, sourced fractions, the fitted
   `SUSTAINED_FRACTION`; what `flopscalc step` prints), for the setup the trainer ran
   (`flopscalc.perf.calibrate.point_setup`: micro-batch, precision, one device, recomputation, SDPA's fused
   attention, fused AdamW); error = predicted / measured - 1. Eager points are summarised; torch.compile points
   apart (a reference, never fitted: the model prices them with padded GEMMs and a 16-bit residual stream, the
   inductor fusion of the stream's add, norm and cast, and no other fusion);
2. the cross-size calibration (issue 11 item 4, on a GPU): the device factors fitted
   (`fit_device_factors`, the GEMM rate held at the 8192^3 matmul probe timed beside the fitted points, as
   `flopscalc calibrate` does) on the eager points of the SMALL models only (parameters <= ``--fit-max-params``),
   then every larger model's eager point predicted with `calibrated_step`; beside it, the old way: the largest
   fitted model's measured model FLOP/s carried over (a constant MFU).

No timing and no torch: it re-runs in about a second on a CPU, so the JSON and the table in
docs/performance_model.md ("Measured on our own GPU") are regenerated after every change to the model.

    python benchmarks/bench_perf_own_gpu.py [--gpu h200-sxm] [--profile PATH ...] [--out PATH] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _conditions

_conditions.pin_threads(1)  # BLAS/OpenMP before numpy and scipy load

from flopscalc.atomic import write_text_atomic
from flopscalc.calibration import CalibrationPoint, CalibrationProfile, load_profile
from flopscalc.errors import DomainError, UsageError
from flopscalc.hardware import GpuSpec, get_gpu
from flopscalc.perf.calibrate import (
    MIN_POINTS,
    MeasuredStep,
    calibrated_step,
    fit_device_factors,
    measured_steps,
    point_estimate,
)

RESULTS = ROOT / "benchmarks" / "results"
# The small models the cross-size fit may use: GPT-2 124M gives 4 eager points (micro-batch 8/16/32, and full
# recomputation at 16), one short of the fit's MIN_POINTS (5, one more than the 4 factors, so the fit has a
# residual even with the GEMM rate held), so GPT-2 355M at micro-batch 8 is the fifth.
FIT_MAX_PARAMS = 4e8
# Issue 11 item 4's target for a model 4-8x larger than the fitted ones (stated there for the CPU).
CROSS_SIZE_TARGET = 0.15


@dataclass(frozen=True)
class Measured:
    """One measured point with the file it came from and the setup the model reads (`point_setup`)."""

    source: str  # the profile's file name
    point: CalibrationPoint
    step: MeasuredStep  # model, setup, measured wall seconds per step

    @property
    def key(self) -> tuple:
        """What tells this point apart: its file and the whole setup the model prices (model, micro-batch,
        sequence, precision, recomputation, attention, devices: `point_setup`) and torch.compile, so a sweep over
        any of them (--seq, recomputation at one micro-batch) keeps its rows apart."""
        return self.source, self.step.model, self.step.setup, self.point.compiled


def gpu_profiles(gpu_key: str, results: Path = RESULTS) -> list[Path]:
    """Every calibration profile of one GPU row under ``results`` (calibration_<gpu>_*.json), sorted."""
    return sorted(results.glob(f"calibration_{gpu_key}_*.json"))


def load_points(paths: list[Path], gpu: GpuSpec) -> tuple[list[Measured], dict[str, CalibrationProfile]]:
    """Every point of ``paths`` (profiles measured on ``gpu``), and the profiles by file name."""
    if not paths:
        raise UsageError(f"no calibration profiles of {gpu.key} given or found; pass --profile PATH, or run "
                         "benchmarks/gpu_session.sh on that GPU")
    profiles = {p.name: load_profile(p) for p in paths}
    out = []
    for name, prof in profiles.items():
        if prof.gpu_key != gpu.key:
            raise UsageError(f"{name} was measured on {prof.gpu_key or prof.device_name}, not {gpu.key}; pass "
                             f"--gpu {prof.gpu_key or 'ROW'} or leave the file out")
        out += [Measured(name, p, m) for p, m in zip(prof.points, measured_steps(prof))]
    seen = set()
    for m in out:
        if m.key in seen:
            raise UsageError(f"{m.source} holds two points of one setup ({m.point.model.name}, micro-batch "
                             f"{m.point.micro_batch}, sequence {m.point.seq_len}, {m.point.recompute} recomputation); "
                             "keep one, or leave the file out")
        seen.add(m.key)
    return out, profiles


def cross_size(points: list[Measured], profiles: dict[str, CalibrationProfile], gpu: GpuSpec, raw_s: dict,
               fit_max_params: float = FIT_MAX_PARAMS) -> tuple[dict, dict, set]:
    """Fit the device factors on the small models' eager points, predict the larger models' eager points.

    ``raw_s``: the raw model's step time (s) of every point by `Measured.key` (`evaluate` prices each once).
    Returns the JSON-ready result, its target rows by `Measured.key`, and the keys of the fitted points.

    The GEMM rate is held at the median of the matmul probes recorded in the profiles the fitted points come
    from (all profiles' probes when none of those has one). UsageError when fewer than MIN_POINTS points qualify.
    """
    eager = [m for m in points if not m.point.compiled]
    fit = [m for m in eager if m.point.n_params <= fit_max_params]
    targets = [m for m in eager if m.point.n_params > fit_max_params]
    if len(fit) < MIN_POINTS or not targets:
        raise UsageError(f"the cross-size fit needs {MIN_POINTS}+ eager points of models up to "
                         f"{fit_max_params:.3g} parameters and a larger one to predict; got {len(fit)} and "
                         f"{len(targets)}: change --fit-max-params")
    probes = {m.source: profiles[m.source].measured_gemm_flop_per_s for m in fit}
    probes = {k: v for k, v in probes.items() if v} or {k: p.measured_gemm_flop_per_s for k, p in profiles.items()
                                                       if p.measured_gemm_flop_per_s}
    gemm = statistics.median(probes.values()) if probes else None  # None: the GEMM rate is fitted too
    factors = fit_device_factors([m.step for m in fit], gpu, gemm)
    factors_all_four = fit_device_factors([m.step for m in fit], gpu, None)
    profile = replace(profiles[fit[0].source], device_factors=factors)
    profile_all_four = replace(profile, device_factors=factors_all_four)
    largest = max((m for m in fit if m.point.recompute == "none"), key=lambda m: (m.point.n_params, m.point.micro_batch))
    lp = largest.point
    rate = lp.model_flops_per_token * lp.micro_batch * lp.seq_len * lp.grad_accum / lp.step_time_s  # model FLOP/s
    smallest = min(m.point.n_params for m in fit)
    rows = []
    for m in targets:
        p, measured = m.point, m.step.step_s
        est = calibrated_step(m.step.model, m.step.setup, profile, gpu)
        pred = est.step_s
        pred4 = calibrated_step(m.step.model, m.step.setup, profile_all_four, gpu).step_s
        # constant MFU counts model FLOPs only, so it is compared on the targets without recomputation
        const = (p.model_flops_per_token * p.micro_batch * p.seq_len * p.grad_accum / rate
                 if p.recompute == "none" else None)
        rows.append({"source": m.source, "model": p.model.name, "n_params": p.n_params,
                     "x_largest_fitted": p.n_params / lp.n_params, "x_smallest_fitted": p.n_params / smallest,
                     "micro_batch": p.micro_batch, "recompute": p.recompute, "measured_s": measured,
                     "calibrated_s": pred, "error": pred / measured - 1, "calibrated_by_class_s": est.class_seconds,
                     "fit_all_four_s": pred4, "fit_all_four_error": pred4 / measured - 1,
                     "constant_mfu_s": const, "constant_mfu_error": None if const is None else const / measured - 1})
    errs = [abs(r["error"]) for r in rows]
    raw_errs = [abs(raw_s[m.key] / m.step.step_s - 1) for m in targets]  # the same rows, uncalibrated
    const_errs = [abs(r["constant_mfu_error"]) for r in rows if r["constant_mfu_error"] is not None]
    return ({
        "fitted_points": [{"source": m.source, "model": m.point.model.name, "n_params": m.point.n_params,
                           "micro_batch": m.point.micro_batch, "recompute": m.point.recompute,
                           "measured_s": m.step.step_s} for m in fit],
        "fit_max_params": fit_max_params, "gemm_probe_flop_per_s": probes, "gemm_held_flop_per_s": gemm,
        "factors": asdict(factors), "factors_fit_all_four": asdict(factors_all_four),
        "constant_mfu_from": {"model": lp.model.name, "micro_batch": lp.micro_batch, "model_flop_per_s": rate},
        "targets": rows,
        "summary": {"n_targets": len(rows), "median_abs_error": statistics.median(errs), "max_abs_error": max(errs),
                    "fit_all_four_median_abs_error": statistics.median(abs(r["fit_all_four_error"]) for r in rows),
                    "fit_all_four_max_abs_error": max(abs(r["fit_all_four_error"]) for r in rows),
                    "raw_median_abs_error": statistics.median(raw_errs), "raw_max_abs_error": max(raw_errs),
                    "constant_mfu_median_abs_error": statistics.median(const_errs) if const_errs else None,
                    "constant_mfu_max_abs_error": max(const_errs) if const_errs else None,
                    "target": CROSS_SIZE_TARGET,
                    "within_target": [r["model"] + f" mb{r['micro_batch']} {r['recompute']}" for r in rows
                                      if abs(r["error"]) <= CROSS_SIZE_TARGET]},
    }, {m.key: r for m, r in zip(targets, rows)}, {m.key for m in fit})


def _abs_summary(errors: list[float]) -> dict:
    a = [abs(e) for e in errors]
    return {"n": len(a), "median_abs_error": statistics.median(a) if a else None, "max_abs_error": max(a, default=None)}


def evaluate(paths: list[Path], gpu: GpuSpec, fit_max_params: float = FIT_MAX_PARAMS) -> dict:
    """Every point against the raw model, and the cross-size calibration (pure: reads the profiles, no timing)."""
    points, profiles = load_points(paths, gpu)
    raw = {m.key: point_estimate(m.point, gpu) for m in points}  # the raw model, once per point
    cross, calibrated, fitted = cross_size(points, profiles, gpu, {k: e.step_s for k, e in raw.items()},
                                           fit_max_params)
    rows = []
    for m in points:
        p, est, key = m.point, raw[m.key], m.key
        role = "compiled (reference)" if p.compiled else "fitted" if key in fitted else "held out"
        rows.append({"source": m.source, "model": p.model.name, "n_params": p.n_params,
                     "micro_batch": p.micro_batch, "seq_len": p.seq_len, "precision": p.precision,
                     "recompute": p.recompute, "compiled": p.compiled, "attention": p.attention,
                     "n_rounds": len(p.round_step_times_s) or 1, "n_timed_steps": p.n_timed_steps,
                     "measured_s": m.step.step_s, "measured_mfu": p.mfu,
                     "raw_predicted_s": est.step_s, "raw_error": est.step_s / m.step.step_s - 1,
                     "raw_mfu": est.mfu, "raw_by_class_s": est.class_seconds, "cross_size_role": role,
                     "calibrated_s": calibrated[key]["calibrated_s"] if key in calibrated else None,
                     "calibrated_error": calibrated[key]["error"] if key in calibrated else None})
    return {
        "what": f"the reference trainer's measured step times on one {gpu.name} against the step-time model: raw "
                "(datasheet + sourced fractions, no calibration) for every point, and calibrated from the small "
                "models' eager points for the larger ones (issue 11 items 4 and 6); error = predicted / measured - 1",
        "gpu": gpu.key, "profiles": sorted(profiles),
        "points": rows,
        "summary": {"raw_eager": _abs_summary([r["raw_error"] for r in rows if not r["compiled"]]),
                    "raw_eager_no_recompute": _abs_summary([r["raw_error"] for r in rows
                                                            if not r["compiled"] and r["recompute"] == "none"]),
                    "raw_compiled": _abs_summary([r["raw_error"] for r in rows if r["compiled"]]),
                    "raw_eager_signed_range": [min(r["raw_error"] for r in rows if not r["compiled"]),
                                               max(r["raw_error"] for r in rows if not r["compiled"])]},
        "cross_size": cross,
    }


def markdown(result: dict) -> str:
    """The tables of docs/performance_model.md's "Measured on our own GPU" section: eager without recomputation,
    eager with it, and torch.compile apart (a reference: priced with padded GEMMs and a 16-bit stream)."""
    groups = (("Eager, no recomputation", lambda r: not r["compiled"] and r["recompute"] == "none"),
              ("Eager, with recomputation", lambda r: not r["compiled"] and r["recompute"] != "none"),
              ("torch.compile (reference, never fitted; priced with padded GEMMs and a 16-bit residual stream)", lambda r: r["compiled"]))
    lines = []
    for title, keep in groups:
        rows = sorted((r for r in result["points"] if keep(r)),
                      key=lambda r: (r["n_params"], r["model"], r["recompute"], r["micro_batch"]))
        lines += [f"{title}:", "", ("| model | params | micro-batch | recompute | measured | raw model | error | "
                                   "calibrated from small | error |"), "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
        for r in rows:
            cal = ("fitted" if r["cross_size_role"] == "fitted" else "-") if r["calibrated_s"] is None else \
                f"{1e3 * r['calibrated_s']:.1f} ms"
            cal_err = "-" if r["calibrated_error"] is None else f"{100 * r['calibrated_error']:+.1f}%"
            lines.append(f"| {r['model']} | {r['n_params'] / 1e6:.0f}M | {r['micro_batch']} | {r['recompute']} | "
                         f"{1e3 * r['measured_s']:.1f} ms | {1e3 * r['raw_predicted_s']:.1f} ms | "
                         f"{100 * r['raw_error']:+.1f}% | {cal} | {cal_err} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", default="h200-sxm", help="GPU database row the profiles were measured on")
    ap.add_argument("--profile", type=Path, action="append",
                    help="a calibration profile (repeat); default: benchmarks/results/calibration_<gpu>_*.json")
    ap.add_argument("--fit-max-params", type=float, default=FIT_MAX_PARAMS,
                    help="largest model (parameters) whose eager points the cross-size fit uses")
    ap.add_argument("--out", type=Path, default=RESULTS / "perf_own_gpu.json")
    ap.add_argument("--markdown", action="store_true", help="also print the documentation's table")
    args = ap.parse_args(argv)
    try:
        gpu = get_gpu(args.gpu)
        cond = _conditions.start()
        result = evaluate(args.profile or gpu_profiles(gpu.key), gpu, args.fit_max_params)
    except UsageError as e:  # bad input: exit 2
        print(f"error: {e}", file=sys.stderr)
        return 2
    except DomainError as e:  # no answer exists: exit 1
        print(f"error: {e}", file=sys.stderr)
        return 1
    result["conditions"] = _conditions.finish(cond)
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    for r in result["points"]:
        print(f"{r['model']:>18} mb {r['micro_batch']:>2} {r['recompute']:>9} compile {'on ' if r['compiled'] else 'off'}"
              f": measured {1e3 * r['measured_s']:6.1f} ms, raw model {1e3 * r['raw_predicted_s']:6.1f} ms "
              f"({100 * r['raw_error']:+.1f}%)" + ("" if r["calibrated_error"] is None else
                                                   f", calibrated from small {100 * r['calibrated_error']:+.1f}%"))
    s, c = result["summary"], result["cross_size"]
    compiled = s["raw_compiled"]  # none where no profile was compiled
    print(f"raw model, eager: median |error| {s['raw_eager']['median_abs_error']:.1%}, worst "
          f"{s['raw_eager']['max_abs_error']:.1%} ({s['raw_eager']['n']} points); compiled (reference): " + (
              f"median {compiled['median_abs_error']:.1%}, worst {compiled['max_abs_error']:.1%}" if compiled["n"]
              else "no points"))
    f = c["factors"]
    print(f"cross-size fit on {len(c['fitted_points'])} points (GEMM held at {f['gemm_flop_per_s'] / 1e12:.0f} "
          f"TFLOP/s): bandwidth {f['memory_bytes_per_s'] / 1e12:.2f} TB/s, kernel floor {f['kernel_min_s'] * 1e6:.1f} "
          f"us, attention {f['attention_fraction']:.3f}, fit rms {f['rms_rel_error']:.1%}")
    for t in c["targets"]:
        print(f"  {t['model']:>12} ({t['x_largest_fitted']:.1f}x the largest fitted, {t['x_smallest_fitted']:.1f}x "
              f"the smallest) mb {t['micro_batch']} {t['recompute']}: {100 * t['error']:+.1f}% (all four fitted "
              f"{100 * t['fit_all_four_error']:+.1f}%" + ("" if t["constant_mfu_error"] is None else
                                                        f", constant MFU {100 * t['constant_mfu_error']:+.1f}%") + ")")
    cs = c["summary"]
    print(f"cross-size: median |error| {cs['median_abs_error']:.1%}, worst {cs['max_abs_error']:.1%} (raw model on "
          f"the same rows {cs['raw_median_abs_error']:.1%}, {cs['raw_max_abs_error']:.1%}; all four fitted "
          f"{cs['fit_all_four_median_abs_error']:.1%}, {cs['fit_all_four_max_abs_error']:.1%}; constant MFU "
          f"{cs['constant_mfu_median_abs_error']:.1%}, {cs['constant_mfu_max_abs_error']:.1%}); within "
          f"{cs['target']:.0%}: {', '.join(cs['within_target']) or 'none'} -> {args.out}")
    if args.markdown:
        print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
