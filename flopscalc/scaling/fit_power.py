"""Chinchilla's approaches 1 and 2: compute-optimal (C, N_opt) points, then power laws N_opt = k C^a.

Approach 1 [H22, sec. 3.1]: the envelope of training curves: at each FLOP count, the model size whose
(interpolated) curve has the lowest loss. Needs several rows per model size (checkpoints of one run).
Approach 2 [H22, sec. 3.2]: IsoFLOP profiles: for each budget, a parabola of loss in log N; its vertex
is N_opt. Needs several model sizes per budget. Both bootstrap by resampling (model sizes for
approach 1, runs within each budget for approach 2).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import DomainError, UsageError
from .laws import FLOPS_PER_PARAM_TOKEN, FittedRange, PowerLawAllocation, ScalingLaw
from .resampling import resample_warnings
from .runs import Runs, seeded_rng

# Runs whose FLOPs differ by less than this ratio are one IsoFLOP budget (Chinchilla's closest are 1.67x).
ISOFLOP_GROUP_RATIO = 1.10
# Fewest model sizes per IsoFLOP budget for a parabola, and fewest budgets for a power law.
MIN_SIZES_PER_BUDGET = 3
MIN_BUDGETS = 2
# Approach 1: FLOP values on which the envelope is read (log-spaced) [H22, sec. 3.1 uses 1500].
ENVELOPE_POINTS = 1500


@dataclass(frozen=True)
class PowerFit:
    """Fitted N_opt = k_n C^a, D_opt = k_d C^b from optimal points (c_flops, n_opt, d_opt arrays).

    warnings: e.g. IsoFLOP vertices outside the sampled sizes; samples: bootstrap draws by name.
    """

    approach: int
    a: float
    k_n: float
    b: float
    k_d: float
    c_flops: np.ndarray
    n_opt: np.ndarray
    d_opt: np.ndarray
    n_runs: int
    warnings: tuple[str, ...] = ()
    samples: dict = field(default_factory=dict)
    seed: int | None = None

    def interval(self, name: str, level: float = 0.95) -> tuple[float, float]:
        lo, hi = np.percentile(self.samples[name], [50 * (1 - level), 50 * (1 + level)])
        return float(lo), float(hi)


def _one_line_out_of_memory(approach: int):
    """Turn numpy's MemoryError inside a fit into one `DomainError` line with a suggestion."""
    def wrap(fit):
        @functools.wraps(fit)
        def run(runs: Runs, **kwargs):
            try:
                return fit(runs, **kwargs)
            except MemoryError:
                raise DomainError(f"out of memory fitting approach {approach} on {len(runs):,} runs; fit fewer runs "
                                  "(or fewer --bootstrap resamples), or free memory and retry") from None
        return run
    return wrap


def _power_law(c: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    slope, icpt = np.polyfit(np.log(c), np.log(y), 1)  # log y = slope log C + log k  [H22, sec. 3]
    return float(slope), float(np.exp(icpt))


def isoflop_groups(runs: Runs) -> list[np.ndarray]:
    """Indices of runs per IsoFLOP budget: sorted FLOPs split where neighbours differ by > 10%."""
    order = np.argsort(runs.c_flops)
    logc = np.log(runs.c_flops[order])
    cuts = np.flatnonzero(np.diff(logc) > np.log(ISOFLOP_GROUP_RATIO)) + 1
    return [g for g in np.split(order, cuts)]


def _vertex(log_n: np.ndarray, loss: np.ndarray) -> float | None:
    p2, p1, _ = np.polyfit(log_n, loss, 2)  # loss = p2 x^2 + p1 x + p0, x = log N  [H22, sec. 3.2]
    return None if p2 <= 0 else -p1 / (2 * p2)


def _approach2_points(runs: Runs, groups, rng=None):
    cs, ns, warn = [], [], []
    for g in groups:
        if rng is not None:
            g = rng.choice(g, size=len(g), replace=True)
        log_n = np.log(runs.n_params[g])
        if np.unique(log_n).size < MIN_SIZES_PER_BUDGET:
            continue
        x = _vertex(log_n, runs.loss[g])
        c = float(np.exp(np.mean(np.log(runs.c_flops[g]))))
        if x is None:
            warn.append(f"budget {c:.3g} FLOP: loss is not convex in log N, skipped")
            continue
        if not log_n.min() <= x <= log_n.max():
            warn.append(f"budget {c:.3g} FLOP: parabola minimum N={np.exp(x):.3g} outside the sampled sizes")
        cs.append(c)
        ns.append(float(np.exp(x)))
    return np.array(cs), np.array(ns), warn


@_one_line_out_of_memory(2)
def fit_approach2(runs: Runs, *, n_bootstrap: int = 0, seed: int = 0,
                  callback: Callable[[int, int], None] | None = None) -> PowerFit:
    """IsoFLOP profiles -> N_opt(C) -> power laws [H22, sec. 3.2]; optional bootstrap within budgets."""
    groups = [g for g in isoflop_groups(runs) if np.unique(runs.n_params[g]).size >= MIN_SIZES_PER_BUDGET]
    if len(groups) < MIN_BUDGETS:
        raise UsageError(f"{runs.source}: approach 2 needs at least {MIN_BUDGETS} FLOP budgets with "
                         f"{MIN_SIZES_PER_BUDGET}+ model sizes each (runs within 10% FLOPs form one budget); "
                         f"found {len(groups)}. Use --approach 3 for scattered runs")
    c, n, warn = _approach2_points(runs, groups)
    if len(c) < MIN_BUDGETS:
        raise DomainError(f"{runs.source}: fewer than {MIN_BUDGETS} budgets have a convex IsoFLOP profile")

    def draw(rng):
        cb, nb, _ = _approach2_points(runs, groups, rng)
        return _power_law(cb, nb) if len(cb) >= MIN_BUDGETS else None

    return _power_fit(2, c, n, runs, warn, draw, n_bootstrap, seed, callback)


def _power_fit(approach: int, c, n, runs: Runs, warn, draw, n_bootstrap: int, seed: int, callback) -> PowerFit:
    """Power laws N_opt = k_N C^a and D_opt = k_D C^b through the optimal points (c, n), D = C / 6N, and
    ``n_bootstrap`` resamples: ``draw(rng)`` gives one resample's (a, k_N), or None where it has too few points."""
    d = c / (FLOPS_PER_PARAM_TOKEN * n)  # D_opt = C / 6 N_opt  [H22, sec. 3]
    a, k_n = _power_law(c, n)
    b, k_d = _power_law(c, d)
    samples = {}
    if n_bootstrap:
        rng = seeded_rng(seed)
        draws = []
        for i in range(n_bootstrap):
            one = draw(rng)
            if one is not None:
                draws.append(one)
            if callback is not None and (i + 1) % 100 == 0:
                callback(i + 1, n_bootstrap)
        samples = _power_samples(np.array(draws))
        warn = [*warn, *resample_warnings(n_bootstrap)]
        if len(draws) < n_bootstrap:  # the percentiles are over the draws kept
            warn.append(f"{n_bootstrap - len(draws)} of {n_bootstrap} bootstrap resamples drew too few model sizes or "
                        f"budgets for a power law and were left out: the intervals are over the other {len(draws)}")
    return PowerFit(approach, a, k_n, b, k_d, c, n, d, len(runs), tuple(warn), samples,
                    seed if n_bootstrap else None)


def _power_samples(draws: np.ndarray) -> dict:
    a, k = draws[:, 0], draws[:, 1]
    # D_opt = C / 6 N_opt = C^(1-a) / (6 k_N): b = 1 - a and k_D = 1 / (6 k_N) per draw (least squares of log D_opt
    # on log C is that of log N_opt, reflected: D = C / 6N, H22 sec. 3), as the full-data fit's b and k_D are
    out = {"a": a, "b": 1 - a, "k_N": k, "k_D": 1 / (FLOPS_PER_PARAM_TOKEN * k)}
    for c in (1e21, 1e23, 1e25):
        out[f"n_opt@{c:.0e}"] = k * c**a
        out[f"d_opt@{c:.0e}"] = c / (FLOPS_PER_PARAM_TOKEN * k * c**a)
    return out


def _envelope(runs: Runs, sizes: np.ndarray, grid: np.ndarray):
    """For each FLOP value in grid, the size whose interpolated curve is lowest (NaN if < 2 cover it)."""
    curves = np.full((len(sizes), len(grid)), np.inf)
    for j, size in enumerate(sizes):
        m = runs.n_params == size
        lc, ll = np.log(runs.c_flops[m]), np.log(runs.loss[m])
        o = np.argsort(lc)
        lc, ll = lc[o], ll[o]
        inside = (np.log(grid) >= lc[0]) & (np.log(grid) <= lc[-1])
        curves[j, inside] = np.interp(np.log(grid[inside]), lc, ll)  # log L linear in log C between checkpoints
    covered = np.isfinite(curves).sum(axis=0) >= 2
    best = sizes[np.argmin(curves, axis=0)]
    return grid[covered], best[covered]


@_one_line_out_of_memory(1)
def fit_approach1(runs: Runs, *, n_bootstrap: int = 0, seed: int = 0,
                  callback: Callable[[int, int], None] | None = None) -> PowerFit:
    """Envelope of training curves -> N_opt(C) -> power laws [H22, sec. 3.1]."""
    sizes, counts = np.unique(runs.n_params, return_counts=True)
    sizes = sizes[counts >= 2]
    if len(sizes) < 2:
        raise UsageError(f"{runs.source}: approach 1 needs training curves: several rows (checkpoints) for "
                         f"each of at least 2 model sizes; found {len(sizes)} size(s) with 2+ rows")
    grid = np.exp(np.linspace(np.log(runs.c_flops.min()), np.log(runs.c_flops.max()), ENVELOPE_POINTS))
    c, n = _envelope(runs, sizes, grid)
    if np.unique(n).size < 2:
        raise DomainError(f"{runs.source}: one model size is best at every FLOP count covered by 2+ curves; "
                          "the envelope does not determine a power law")

    def draw(rng):
        pick = np.unique(rng.choice(sizes, size=len(sizes), replace=True))
        if len(pick) < 2:
            return None
        cb, nb = _envelope(runs, pick, grid)
        return _power_law(cb, nb) if np.unique(nb).size >= 2 else None

    return _power_fit(1, c, n, runs, (), draw, n_bootstrap, seed, callback)


def law_from_power_fit(fit: PowerFit, name: str, source: str, level: float = 0.95) -> ScalingLaw:
    unc = {k: fit.interval(k, level) for k in ("a", "b", "k_N")} if fit.samples else {}
    # the law is fitted to its optimal points: their budgets and sizes are where it holds
    span = FittedRange(n_params=(float(fit.n_opt.min()), float(fit.n_opt.max())),
                       c_flops=(float(fit.c_flops.min()), float(fit.c_flops.max())),
                       source=f"the {len(fit.c_flops)} optimal points of the fit")
    return ScalingLaw(name=name, title=f"fitted: approach {fit.approach} on {fit.n_runs} runs", source=source,
                      flop_convention="C = 6ND", n_counts_embeddings=None,
                      allocation=PowerLawAllocation(k_n=fit.k_n, a=fit.a), uncertainty=unc,
                      uncertainty_kind=f"{100 * level:.0f}% bootstrap percentile interval" if unc else "",
                      fitted_range=span)
