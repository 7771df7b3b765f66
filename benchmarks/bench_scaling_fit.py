"""Approach-3 fit benchmark (issue 4): one fit on ~250 runs with the paper's 4,500-start grid, and a
1000-resample bootstrap. Targets on a 2-core machine: fit < 2 s, bootstrap < 60 s.

The runs are synthetic (Besiroglu et al. 2024's constants, Chinchilla-like spread, 2% log-normal noise)
because the real extracted data is not shipped. Also reports how well the fit recovered the truth and a
small coverage check (the same one as tests/test_scaling_fit.py).

    python benchmarks/bench_scaling_fit.py [--runs 245] [--bootstrap 1000] [--repeat 3] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _conditions

_conditions.pin_threads(1)  # one BLAS thread, set before numpy loads; the fit's own threads: --threads

import numpy as np

from flopscalc.atomic import write_text_atomic
from flopscalc.scaling.fit import bootstrap_approach3, fit_approach3
from flopscalc.scaling.laws import BESIROGLU2024
from flopscalc.scaling.optimize import DEFAULT_THREADS
from flopscalc.scaling.runs import Runs

TRUTH = BESIROGLU2024.loss_form
NAMES = ("E", "A", "B", "alpha", "beta")


def synthetic_runs(rng, n_runs: int, sigma: float = 0.02) -> Runs:
    n = np.exp(rng.uniform(np.log(7e7), np.log(1.6e10), n_runs))
    c = np.exp(rng.uniform(np.log(1e18), np.log(1e22), n_runs))
    d = c / (6 * n)
    return Runs.from_arrays(n, d, TRUTH.loss(n, d) * np.exp(rng.normal(0, sigma, n_runs)), source="synthetic")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=245)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--coverage-draws", type=int, default=20)
    ap.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="the fit's own threads (its default)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "scaling_fit.json"))
    args = ap.parse_args()

    cond = _conditions.start()
    print(_conditions.summary(cond), flush=True)
    runs = synthetic_runs(np.random.default_rng(1), args.runs)
    fit_approach3(runs, grid="small")  # warm-up: imports scipy, page in numpy
    fit_s, fit_cpu_s = [], []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fit = fit_approach3(runs, grid="paper", n_threads=args.threads)
        fit_s.append(time.perf_counter() - t0)
        fit_cpu_s.append(time.process_time() - c0)
    t0, c0 = time.perf_counter(), time.process_time()
    boot = bootstrap_approach3(runs, fit, n_samples=args.bootstrap, seed=0, n_threads=args.threads)
    boot_s, boot_cpu_s = time.perf_counter() - t0, time.process_time() - c0

    recovery = {k: {"truth": getattr(TRUTH, k), "fit": fit.law.constants()[k], "ci95": boot.interval(k),
                    "covered": boot.interval(k)[0] <= getattr(TRUTH, k) <= boot.interval(k)[1]} for k in NAMES}
    rng = np.random.default_rng(123)
    hits = []
    t0 = time.perf_counter()
    for _ in range(args.coverage_draws):
        r = synthetic_runs(rng, 150)
        f = fit_approach3(r, grid="small", polish=False)
        b = bootstrap_approach3(r, f, n_samples=100, seed=int(rng.integers(1 << 30)))
        hits += [b.interval(k)[0] <= getattr(TRUTH, k) <= b.interval(k)[1] for k in NAMES]
    cov_s = time.perf_counter() - t0

    cond = _conditions.finish(cond)
    cond["threads"]["fit"] = args.threads
    result = {
        "conditions": cond,
        "n_runs": args.runs, "n_starts": fit.n_starts,
        "fit_s": {"median": statistics.median(fit_s), "all": fit_s, "target": 2.0,
                  "cpu_s_median": statistics.median(fit_cpu_s), "cpu_s_all": fit_cpu_s},
        "bootstrap_s": {"value": boot_s, "cpu_s": boot_cpu_s, "n_samples": args.bootstrap,
                        "starts_per_sample": boot.starts_per_sample, "target": 60.0},
        "fit_diagnostics": {"n_converged": fit.n_converged, "n_reached_best": fit.n_reached_best,
                            "bound_hits": list(fit.bound_hits), "polish": fit.polish},
        "recovery": recovery,
        "coverage": {"draws": args.coverage_draws, "resamples": 100, "grid": "small (32 starts)", "runs": 150,
                     "nominal": 0.95, "observed": float(np.mean(hits)), "seconds": cov_s},
    }
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print(f"fit (4,500 starts, {args.runs} runs): median {result['fit_s']['median']:.2f} s wall, "
          f"{result['fit_s']['cpu_s_median']:.2f} s CPU (target 2 s)")
    print(f"bootstrap ({args.bootstrap} resamples x {boot.starts_per_sample} warm starts): {boot_s:.1f} s (target 60 s)")
    print(f"coverage of 95% intervals over {args.coverage_draws} draws: {result['coverage']['observed']:.2f}")
    for k, v in recovery.items():
        print(f"  {k}: truth {v['truth']:.4g}, fit {v['fit']:.4g}, 95% CI {v['ci95'][0]:.4g} .. {v['ci95'][1]:.4g}")
    print(_conditions.summary(cond) + f", fit threads {args.threads} (other work on the machine slows this down)")


if __name__ == "__main__":
    main()
