"""Approach-3 fitter against plain scipy, 100 to 100,000 runs: CPU time ratio and peak memory (issue 18).

Baseline (written here, not flopscalc's code): scipy's L-BFGS-B run from one start at a time over the same
starts and bounds, on the same Huber objective (delta = 1e-3, sum over runs; Hoffmann et al. 2022 sec. 3.3)
written as plain numpy with the usual max-shifted log-sum-exp, scipy's default tolerances; its best end point is
then polished with the same tight L-BFGS-B settings flopscalc's fit uses. Ours: `fit_approach3` (batched BFGS
over all starts, then the polish), one thread. Both run with one BLAS thread, each side in its own subprocess
(so its peak RSS is its own), the two sides interleaved at every size, the order alternating.

Runs are synthetic: Besiroglu et al. 2024's constants, Chinchilla-like spread, 2% log-normal noise.
The baseline costs ~160 ms per start at 100,000 runs on the 2-core test machine (12 minutes for 4,500 starts),
so at that size both sides use the same 243-start sub-grid of the paper grid (every other value of each axis);
`--grid` per size says which. A memory-only probe then runs ours on the full 4,500-start grid at the largest
size for two iterations (the peak comes with the first full-batch evaluation).

    python benchmarks/bench_fit_vs_scipy.py [--sizes 100 1000 10000 100000] [--out PATH]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _conditions

_conditions.pin_threads(1)  # before numpy

import argparse
import json
import resource
import subprocess
import time

import numpy as np

# Constants of the synthetic law: Besiroglu et al. 2024's replication of Chinchilla (Table 1, their fit).
TRUTH = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
NOISE_SIGMA = 0.02
# Paper grid [Hoffmann et al. 2022, App. D.2] and its sub-grid of every other value per axis (3^5 = 243 starts).
GRIDS = {
    "paper": {"alpha": [0, .5, 1, 1.5, 2], "beta": [0, .5, 1, 1.5, 2], "e": [-1, -.5, 0, .5, 1],
              "a": [0, 5, 10, 15, 20, 25], "b": [0, 5, 10, 15, 20, 25]},
    "paper/2": {"alpha": [0, 1, 2], "beta": [0, 1, 2], "e": [-1, 0, 1], "a": [0, 10, 20], "b": [0, 10, 20]},
}
DEFAULT_GRID_BY_SIZE = {100: "paper", 1000: "paper", 10000: "paper", 100000: "paper/2"}
# Agreement required between the two optima: relative difference of the objective.
SAME_OPTIMUM_REL = 1e-10
HUBER_DELTA = 1e-3


def synthetic(n_runs: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    n = np.exp(rng.uniform(np.log(7e7), np.log(1.6e10), n_runs))
    c = np.exp(rng.uniform(np.log(1e18), np.log(1e22), n_runs))
    d = c / (6 * n)
    loss = TRUTH["E"] + TRUTH["A"] / n ** TRUTH["alpha"] + TRUTH["B"] / d ** TRUTH["beta"]
    return n, d, loss * np.exp(rng.normal(0, NOISE_SIGMA, n_runs))


def plain_huber(x, log_n, log_d, log_l, delta=HUBER_DELTA):
    """The baseline's objective and gradient for one start, as one would write it with numpy."""
    a, b, e, alpha, beta = x
    u1, u2 = a - alpha * log_n, b - beta * log_d
    m = np.maximum(np.maximum(u1, u2), e)
    p1, p2, p3 = np.exp(u1 - m), np.exp(u2 - m), np.exp(e - m)
    s = p1 + p2 + p3
    r = m + np.log(s) - log_l  # LSE - log L  [Hoffmann et al. 2022, eq. 3 / App. D.2]
    c = np.clip(r, -delta, delta)
    q = c / s
    q1, q2 = q * p1, q * p2
    grad = np.array([q1.sum(), q2.sum(), (q * p3).sum(), -(q1 @ log_n), -(q2 @ log_d)])
    return float(np.sum(c * (r - 0.5 * c))), grad


def _baseline(starts, log_n, log_d, log_l):
    from scipy.optimize import minimize

    from flopscalc.scaling.optimize import LOWER, UPPER

    bounds = list(zip(LOWER, UPPER))
    best = None
    for x0 in starts:
        res = minimize(plain_huber, x0, args=(log_n, log_d, log_l), jac=True, method="L-BFGS-B", bounds=bounds)
        if best is None or res.fun < best.fun:
            best = res
    # the same polish settings as flopscalc.scaling.fit._polish
    res = minimize(plain_huber, best.x, args=(log_n, log_d, log_l), jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"ftol": 1e-14, "gtol": 1e-12, "maxiter": 2000})
    return res.x, float(res.fun)


def worker(side: str, n_runs: int, grid: str) -> dict:
    """One side at one size, in this (fresh) process: CPU and wall time, peak RSS, the optimum."""
    from flopscalc.scaling.fit import fit_approach3, grid_starts
    from flopscalc.scaling.optimize import batched_bfgs, huber_objective
    from flopscalc.scaling.runs import Runs

    n, d, loss = synthetic(n_runs)
    runs = Runs.from_arrays(n, d, loss, source="synthetic")
    log_n, log_d, log_l = np.log(n), np.log(d), np.log(loss)
    starts = grid_starts({k: np.array(v, float) for k, v in GRIDS[grid].items()})
    import scipy.optimize  # noqa: F401  (import cost outside the timing, for both sides)

    rss_setup = _rss_bytes()
    t_cpu, t_wall = time.process_time(), time.perf_counter()
    if side == "ours":
        fit = fit_approach3(runs, grid={k: np.array(v, float) for k, v in GRIDS[grid].items()}, n_threads=1)
        x, f = fit.x, fit.objective
    elif side == "baseline":
        x, f = _baseline(starts, log_n, log_d, log_l)
    else:  # "ours-memory": the full batch for two iterations
        batched_bfgs(starts, log_n, log_d, log_l, max_iter=2, n_threads=1)
        x, f = starts[0], float("nan")
    cpu_s, wall_s = time.process_time() - t_cpu, time.perf_counter() - t_wall
    f_check = float(huber_objective(np.asarray(x)[None], log_n, log_d, log_l)[0][0])
    return {"side": side, "n_runs": n_runs, "grid": grid, "n_starts": len(starts), "cpu_s": cpu_s,
            "wall_s": wall_s, "peak_rss_bytes": _peak_rss_bytes(), "rss_after_setup_bytes": rss_setup,
            "x": [float(v) for v in x], "objective": f, "objective_rechecked": f_check}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _spawn(side: str, n_runs: int, grid: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", side, "--runs", str(n_runs), "--grid", grid],
                         check=True, capture_output=True, text=True, env=os.environ.copy())
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_GRID_BY_SIZE))
    ap.add_argument("--grid", nargs="+", default=None, help="grid per size (paper or paper/2); default by size")
    ap.add_argument("--memory-probe", type=int, default=100000, help="runs for the full-grid memory probe (0: off)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "fit_vs_scipy.json")
    ap.add_argument("--worker", choices=("ours", "baseline", "ours-memory"), help=argparse.SUPPRESS)
    ap.add_argument("--runs", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.runs, args.grid[0])))
        return
    grids = args.grid or [DEFAULT_GRID_BY_SIZE.get(s, "paper/2") for s in args.sizes]
    cond = _conditions.start()
    print(_conditions.summary(cond), flush=True)
    rows = []
    for i, (size, grid) in enumerate(zip(args.sizes, grids)):
        order = ("ours", "baseline") if i % 2 == 0 else ("baseline", "ours")
        got = {side: _spawn(side, size, grid) for side in order}
        ours, base = got["ours"], got["baseline"]
        rel = abs(ours["objective"] - base["objective"]) / base["objective"]
        row = {"n_runs": size, "grid": grid, "n_starts": ours["n_starts"], "order": list(order),
               "cpu_ratio_ours_to_baseline": ours["cpu_s"] / base["cpu_s"],
               "objective_rel_diff": rel, "same_optimum": rel <= SAME_OPTIMUM_REL,
               "max_abs_x_diff": max(abs(a - b) for a, b in zip(ours["x"], base["x"])),
               "ours": ours, "baseline": base}
        rows.append(row)
        print(f"{size:>7} runs, {ours['n_starts']:>4} starts: CPU ours {ours['cpu_s']:7.2f} s, baseline "
              f"{base['cpu_s']:7.2f} s, ratio {row['cpu_ratio_ours_to_baseline']:.3f}; peak RSS ours "
              f"{ours['peak_rss_bytes'] / 2**20:6.0f} MiB, baseline {base['peak_rss_bytes'] / 2**20:6.0f} MiB; "
              f"objective rel diff {rel:.1e}", flush=True)
    probe = None
    if args.memory_probe:
        probe = _spawn("ours-memory", args.memory_probe, "paper")
        print(f"memory probe: {args.memory_probe} runs x 4,500 starts, two iterations: peak RSS "
              f"{probe['peak_rss_bytes'] / 2**20:.0f} MiB ({probe['cpu_s']:.1f} s CPU)", flush=True)
    cond = _conditions.finish(cond)
    result = {
        "benchmark": "approach-3 fit vs plain scipy L-BFGS-B one start at a time (issue 18)",
        "conditions": cond,
        "ours_threads": 1,
        "targets": {"peak_rss_bytes_at_100k_paper_grid": 2**30, "cpu_ratio_max": 1.0,
                    "same_optimum_objective_rel": SAME_OPTIMUM_REL},
        "start_subsampling": {g: len(GRIDS[g]["alpha"]) * len(GRIDS[g]["beta"]) * len(GRIDS[g]["e"])
                              * len(GRIDS[g]["a"]) * len(GRIDS[g]["b"]) for g in GRIDS},
        "sizes": rows,
        "memory_probe_full_grid": probe,
    }
    from flopscalc.atomic import write_text_atomic

    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print(_conditions.summary(cond))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
