"""Fit Chinchilla's approach 3 to your runs, with bootstrap confidence intervals.

Method as in Hoffmann et al. 2022 (sec. 3.3, App. D.2): minimise the Huber loss (delta = 1e-3) of
log-loss residuals, log L = LSE(a - alpha log N, b - beta log D, e), by L-BFGS from the grid
alpha, beta in {0, 0.5, ..., 2}, e in {-1, -0.5, ..., 1}, a, b in {0, 5, ..., 25} (4,500 starts), and keep
the best. Here all starts run at once in a batched BFGS (``optimize.py``); the best distinct end points are
then polished with scipy's L-BFGS-B. The objective is the *sum* of Huber terms, as Besiroglu et al. 2024
(sec. 4) point out the published fit's averaging stopped L-BFGS early.

The bootstrap resamples runs with replacement; each resample is a row of run weights (multinomial
counts) in the same batched objective, warm-started from the full-data optimum and the four grid
starts that ended best on the full data (not the full grid: see ``BOOTSTRAP_STARTS``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import product

import numpy as np

from ..errors import DomainError
from .laws import FittedRange, ParametricLoss, ScalingLaw, chinchilla_allocation
from .optimize import HUBER_DELTA, LOWER, PARAM_NAMES, UPPER, batched_bfgs, huber_objective, on_bound
from .resampling import resample_warnings
from .runs import Runs, seeded_rng

# Initialisation grid of approach 3 [H22, App. D.2].
PAPER_GRID = {
    "alpha": np.arange(0.0, 2.01, 0.5), "beta": np.arange(0.0, 2.01, 0.5), "e": np.arange(-1.0, 1.01, 0.5),
    "a": np.arange(0.0, 25.01, 5.0), "b": np.arange(0.0, 25.01, 5.0),
}
# A 32-start grid for quick fits and repeated synthetic checks (not the paper's).
SMALL_GRID = {"alpha": np.array([0.25, 0.75]), "beta": np.array([0.25, 0.75]), "e": np.array([-0.5, 0.5]),
              "a": np.array([5.0, 15.0]), "b": np.array([5.0, 15.0])}
GRIDS = {"paper": PAPER_GRID, "small": SMALL_GRID}
# Starts per bootstrap resample: the full-data optimum plus the 4 best-ending grid starts.
BOOTSTRAP_STARTS = 5
# Relative tolerance of the batched phase; the polish then runs scipy L-BFGS-B to its own tolerance.
BATCH_FTOL = 1e-7
# Bootstrap resamples per batch (and per progress callback), fewer when their run weights would pass the cap below.
BOOTSTRAP_CHUNK = 100
# Most bytes of run weights (resamples x runs, float64) one bootstrap batch holds: 100 resamples of up to 83,886
# runs; beyond that the batches shrink, so the bootstrap's memory stays bounded at any number of runs.
BOOTSTRAP_WEIGHTS_BYTES = 64 * 2**20
# Reference budgets at which the bootstrap reports the implied allocation (FLOP).
DEFAULT_REF_FLOPS = (1e21, 1e23, 1e25)
# Two end points closer than this (max abs difference of a, b, e, alpha, beta) count as one solution.
DISTINCT_TOL = 1e-3
# Number of best distinct end points polished with scipy.
N_POLISH = 3


def grid_starts(grid: dict) -> np.ndarray:
    """Starts as (S, 5) rows of (a, b, e, alpha, beta) from a grid dict."""
    rows = [(a, b, e, al, be) for al, be, e, a, b in product(grid["alpha"], grid["beta"], grid["e"],
                                                                grid["a"], grid["b"])]
    return np.array(rows, float)


def params_from_x(x: np.ndarray) -> dict[str, np.ndarray]:
    """(.., 5) rows of (a, b, e, alpha, beta) -> E, A, B, alpha, beta and the allocation exponents."""
    x = np.asarray(x, float)
    A, B, E, alpha, beta = np.exp(x[..., 0]), np.exp(x[..., 1]), np.exp(x[..., 2]), x[..., 3], x[..., 4]
    return {"E": E, "A": A, "B": B, "alpha": alpha, "beta": beta,
            "a": beta / (alpha + beta), "b": alpha / (alpha + beta)}  # [H22, eq. 4]


@dataclass(frozen=True)
class Approach3Fit:
    """Result of an approach-3 fit: the law, objective and diagnostics.

    residuals: predicted minus observed log loss per run (nats, log scale); bound_hits: constants that
    ended on the search box; n_reached_best: starts whose batched end point is within 1e-6 of the best.
    """

    law: ParametricLoss
    x: np.ndarray
    objective: float
    residuals: np.ndarray
    n_runs: int
    n_starts: int
    n_converged: int
    n_reached_best: int
    bound_hits: tuple[str, ...]
    polish: str
    grid: str
    huber_delta: float = HUBER_DELTA
    best_starts: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)))
    excluded: int = 0


def _polish(x0: np.ndarray, log_n, log_d, log_l, delta: float):
    from scipy.optimize import minimize  # scipy only when fitting

    def fun(x):
        f, g = huber_objective(x[None, :], log_n, log_d, log_l, None, delta)
        return float(f[0]), g[0]

    res = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=list(zip(LOWER, UPPER)),
                   options={"ftol": 1e-14, "gtol": 1e-12, "maxiter": 2000})
    return res.x, float(res.fun), str(res.message)


def _out_of_memory(what: str, n_runs: int, suggestion: str) -> DomainError:
    return DomainError(f"out of memory {what} on {n_runs:,} runs (the data alone take "
                       f"{n_runs * RUN_BYTES / 2**20:.0f} MiB); {suggestion}, or free memory and retry")


# Bytes the fit keeps per run: N, D, loss, their logs, residuals and a predicted loss (float64).
RUN_BYTES = 8 * 8


def fit_approach3(runs: Runs, *, grid: str | dict = "paper", delta: float = HUBER_DELTA, polish: bool = True,
                  exclude_highest_loss: int = 0, n_threads: int | None = None,
                  callback: Callable[[int, int], None] | None = None) -> Approach3Fit:
    """Fit L(N, D) = E + A/N^alpha + B/D^beta to ``runs`` as approach 3 of Hoffmann et al. 2022.

    ``exclude_highest_loss`` drops that many highest-loss runs first (Besiroglu et al. 2024, sec. 3,
    drop 5). ``grid``: "paper" (4,500 starts), "small" (32) or a dict of the five value lists.
    ``callback(done, total)``: starts of the batched phase that have stopped, after each iteration (progress).
    Memory: the runs' data, O(starts) optimiser state and a fixed scratch per thread (``optimize.TILE_ELEMENTS``);
    running out of it raises one `DomainError`, not numpy's MemoryError.
    """
    try:
        return _fit_approach3(runs, grid, delta, polish, exclude_highest_loss, n_threads, callback)
    except MemoryError:
        raise _out_of_memory("fitting approach 3", len(runs), "fit fewer runs or use --grid small") from None


def _fit_approach3(runs: Runs, grid, delta, polish, exclude_highest_loss, n_threads, callback) -> Approach3Fit:
    runs = runs.drop_highest_loss(exclude_highest_loss)
    runs.require_fit_ready(n_constants=5)
    log_n, log_d, log_l = np.log(runs.n_params), np.log(runs.n_tokens), np.log(runs.loss)
    grid_name = grid if isinstance(grid, str) else "custom"
    starts = grid_starts(GRIDS[grid] if isinstance(grid, str) else grid)
    kw = {} if n_threads is None else {"n_threads": n_threads}
    res = batched_bfgs(starts, log_n, log_d, log_l, ftol=BATCH_FTOL, delta=delta, callback=callback, **kw)
    order = np.argsort(res.f)
    best_f = res.f[order[0]]
    distinct: list[int] = []
    for k in order:
        if len(distinct) == N_POLISH:
            break
        if all(np.abs(res.x[k] - res.x[j]).max() > DISTINCT_TOL for j in distinct):
            distinct.append(int(k))
    x_best, f_best, message = res.x[order[0]], float(best_f), "not polished"
    if polish:
        for k in distinct:
            x, f, msg = _polish(res.x[k], log_n, log_d, log_l, delta)
            if f <= f_best:
                x_best, f_best, message = x, f, msg
    if not np.all(np.isfinite(x_best)):
        raise DomainError(f"approach-3 fit to {runs.source} did not converge to finite constants")
    p = params_from_x(x_best)
    law = ParametricLoss(E=float(p["E"]), A=float(p["A"]), B=float(p["B"]),
                         alpha=float(p["alpha"]), beta=float(p["beta"]))
    f_pred, _ = huber_objective(x_best[None], log_n, log_d, log_l, None, delta)
    residuals = np.log(law.loss(runs.n_params, runs.n_tokens)) - log_l
    hits = tuple(name for name, hit in zip(PARAM_NAMES, on_bound(x_best[None])[0]) if hit)
    reached = int(np.sum(res.f <= best_f * (1 + 1e-6) + 1e-15))
    return Approach3Fit(law=law, x=np.asarray(x_best), objective=float(f_pred[0]), residuals=residuals,
                        n_runs=len(runs), n_starts=len(starts), n_converged=int(res.converged.sum()),
                        n_reached_best=reached, bound_hits=hits, polish=message, grid=grid_name,
                        huber_delta=delta, best_starts=starts[order[:BOOTSTRAP_STARTS - 1]],
                        excluded=exclude_highest_loss)


@dataclass(frozen=True)
class Bootstrap:
    """Bootstrap distribution of the fitted constants and of the allocation they imply.

    samples: name -> (n_samples,) array (E, A, B, alpha, beta, a, b, n_opt@C, d_opt@C per reference C).
    """

    samples: dict[str, np.ndarray]
    n_samples: int
    seed: int
    n_converged: int
    starts_per_sample: int
    ref_flops: tuple[float, ...]

    def interval(self, name: str, level: float = 0.95) -> tuple[float, float]:
        """Percentile interval of ``name`` at ``level`` (two-sided)."""
        lo, hi = np.percentile(self.samples[name], [50 * (1 - level), 50 * (1 + level)])
        return float(lo), float(hi)

    def std(self, name: str) -> float:
        return float(np.std(self.samples[name], ddof=1))

    @property
    def warnings(self) -> tuple[str, ...]:
        """Why the intervals are not to be trusted, if they are not (too few resamples: `resampling.resample_warnings`)."""
        return resample_warnings(self.n_samples)


def _allocation_samples(x: np.ndarray, ref_flops) -> dict[str, np.ndarray]:
    p = params_from_x(x)
    out = dict(p)
    for c in ref_flops:  # N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b  [H22, eq. 4]
        out[f"n_opt@{c:.0e}"], out[f"d_opt@{c:.0e}"] = chinchilla_allocation(c, p["A"], p["B"], p["alpha"], p["beta"])
    return out


def bootstrap_chunk(n_runs: int) -> int:
    """Resamples per bootstrap batch: ``BOOTSTRAP_CHUNK``, fewer when their weights would pass the byte cap."""
    return max(1, min(BOOTSTRAP_CHUNK, BOOTSTRAP_WEIGHTS_BYTES // (8 * max(n_runs, 1))))


def bootstrap_approach3(runs: Runs, fit: Approach3Fit, *, n_samples: int = 1000, seed: int = 0,
                        ref_flops=DEFAULT_REF_FLOPS, callback: Callable[[int, int], None] | None = None,
                        n_threads: int | None = None) -> Bootstrap:
    """Resample runs with replacement ``n_samples`` times and refit each (warm-started, see module doc).

    ``callback(done, total)`` is called after each batch of resamples (for a progress bar).
    """
    if n_samples < 2:
        raise DomainError(f"the bootstrap needs at least 2 resamples, got {n_samples}")
    try:
        return _bootstrap_approach3(runs, fit, n_samples, seed, ref_flops, callback, n_threads)
    except MemoryError:
        raise _out_of_memory("bootstrapping approach 3", len(runs), "fit fewer runs") from None


def _bootstrap_approach3(runs: Runs, fit: Approach3Fit, n_samples, seed, ref_flops, callback, n_threads) -> Bootstrap:
    runs = runs.drop_highest_loss(fit.excluded)
    log_n, log_d, log_l = np.log(runs.n_params), np.log(runs.n_tokens), np.log(runs.loss)
    rng = seeded_rng(seed)
    starts = np.vstack([fit.x[None], fit.best_starts])
    k = len(starts)
    kw = {} if n_threads is None else {"n_threads": n_threads}
    best_x = np.empty((n_samples, 5))
    conv = 0
    chunk = bootstrap_chunk(len(runs))
    for lo in range(0, n_samples, chunk):
        m = min(chunk, n_samples - lo)
        counts = rng.multinomial(len(runs), np.full(len(runs), 1.0 / len(runs)), size=m).astype(float)
        res = batched_bfgs(np.tile(starts, (m, 1)), log_n, log_d, log_l, counts, ftol=1e-12,
                           delta=fit.huber_delta, weight_rows=np.repeat(np.arange(m), k), **kw)
        f = res.f.reshape(m, k)
        pick = np.argmin(f, axis=1)
        rows = np.arange(m) * k + pick
        best_x[lo : lo + m] = res.x[rows]
        conv += int(res.converged[rows].sum())
        if callback is not None:
            callback(lo + m, n_samples)
    return Bootstrap(samples=_allocation_samples(best_x, tuple(ref_flops)), n_samples=n_samples, seed=seed,
                     n_converged=conv, starts_per_sample=k, ref_flops=tuple(ref_flops))


def law_from_fit(fit: Approach3Fit, name: str, source: str, boot: Bootstrap | None = None,
                 level: float = 0.95, runs: Runs | None = None) -> ScalingLaw:
    """A `ScalingLaw` from a fit, with bootstrap percentile intervals when given, and the span of ``runs`` (the
    runs it was fitted on) as its fitted range, so that predictions outside it warn like the built-ins'."""
    unc, kind = {}, ""
    if boot is not None:
        unc = {k: boot.interval(k, level) for k in ("E", "A", "B", "alpha", "beta", "a", "b")}
        kind = f"{100 * level:.0f}% bootstrap percentile interval, {boot.n_samples} resamples, seed {boot.seed}"
    span = None
    if runs is not None:
        span = FittedRange(n_params=(float(runs.n_params.min()), float(runs.n_params.max())),
                           n_tokens=(float(runs.n_tokens.min()), float(runs.n_tokens.max())),
                           source=f"the {len(runs)} runs of the fit")
    return ScalingLaw(name=name, title=f"fitted: approach 3 on {fit.n_runs} runs", source=source,
                      flop_convention="C = 6ND", n_counts_embeddings=None, loss_form=fit.law,
                      uncertainty=unc, uncertainty_kind=kind, fitted_range=span)
