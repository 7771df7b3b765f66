"""Batched Huber objective of Chinchilla's approach 3 and a batched projected BFGS that runs many starts at once.

Hoffmann et al. 2022 (sec. 3.3, eq. 3 and App. D.2) fit log L with

    min over (a, b, e, alpha, beta) of  sum_i Huber_delta( LSE(a - alpha log N_i, b - beta log D_i, e) - log L_i )

with delta = 1e-3, A = exp(a), B = exp(b), E = exp(e), minimised by L-BFGS from a grid of starts. Here
every start (and, for the bootstrap, every resample as a row of run weights) is one row of a batch, so
the objective and its analytic gradient are a few numpy array operations for all starts together.
The optimiser is BFGS on the inverse Hessian with an Armijo backtracking line search, projected onto a
wide box; converged rows leave the batch. scipy is not needed here.

Memory: the objective works through the (starts x runs) terms in cache-sized tiles (``TILE_ELEMENTS``), so a
fit holds the runs' data, O(starts) optimiser state and a fixed scratch per thread, whatever the number of runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

# Huber threshold on log-loss residuals [H22, sec. 3.3: "delta = 10^-3"].
HUBER_DELTA = 1e-3
# Parameter order of every vector and matrix here.
PARAM_NAMES = ("a", "b", "e", "alpha", "beta")
# A wide box the search may not leave (a = log A, b = log B, e = log E); a start that ends on it
# is reported as a bound hit: the data do not pin that constant down.
LOWER = np.array([-20.0, -20.0, -10.0, 0.0, 0.0])
UPPER = np.array([60.0, 60.0, 5.0, 5.0, 5.0])
# Largest step in any one coordinate per iteration (a crude trust region for the first steps).
MAX_STEP = 2.0
# Armijo sufficient-decrease constant and the number of halvings before a line search gives up.
ARMIJO_C1 = 1e-4
MAX_HALVINGS = 40
# Convergence: relative decrease of the objective below FTOL, or projected gradient below GTOL.
FTOL = 1e-10
GTOL = 1e-10
# Batches at least this many rows are split across threads (numpy ufuncs release the GIL on big arrays).
THREAD_MIN_ROWS = 256
DEFAULT_THREADS = min(2, os.cpu_count() or 1)


# Elements (starts x runs) of one tile of the objective's temporaries: six float64 tiles of 2^15 elements are
# 1.5 MiB, about the 1 MiB L2 per core of this project's 2-core AMD EPYC test machine (lscpu) plus half; measured
# on it at 245, 1,000 and 10,000 runs x 4,500 starts: 2^12 1.5x slower, 2^14 1.07x, 2^15 and 2^16 the same.
TILE_ELEMENTS = 1 << 15
# Fewest runs in a tile's row: shorter rows spend more on numpy's per-call overhead than on arithmetic.
MIN_TILE_RUNS = 256
_N_TILE_BUFFERS = 6


def tile_shape(n_rows: int, n_runs: int, tile_elements: int = TILE_ELEMENTS) -> tuple[int, int]:
    """(rows, runs) of one tile: the objective never holds more than ``_N_TILE_BUFFERS`` arrays of this size."""
    runs_per_tile = max(1, min(n_runs, max(tile_elements // max(n_rows, 1), MIN_TILE_RUNS)))
    return max(1, min(n_rows, tile_elements // runs_per_tile)), runs_per_tile


def huber_objective(x: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
                    weights: np.ndarray | None = None, delta: float = HUBER_DELTA, *,
                    weight_rows: np.ndarray | None = None,
                    tile_elements: int = TILE_ELEMENTS) -> tuple[np.ndarray, np.ndarray]:
    """Objective and gradient for a batch of parameter rows.

    x: (S, 5) rows of (a, b, e, alpha, beta); log_n, log_d, log_l: (P,) logs of runs' N, D and loss;
    weights: None (all ones), (P,) or (W, P) run weights (bootstrap counts), row ``weight_rows[i]`` of them for
    start i (default: row i). Returns f (S,), grad (S, 5).

    The (S x P) terms are evaluated tile by tile (``tile_shape``), so the temporaries stay in cache and their
    size does not grow with S or P. The log-sum-exp is taken relative to e, exact for any x in the search box:
    LSE(u1, u2, e) = e + log(1 + exp(u1 - e) + exp(u2 - e)), and 1 + ... >= 1 never underflows; u1 - e <= a - e
    <= 70 there, far from overflow (709). This function is the whole cost of a fit.
    """
    x = np.asarray(x, float)
    n_rows, n_runs = x.shape[0], log_n.shape[0]
    f = np.zeros(n_rows)
    grad = np.zeros((n_rows, 5))
    per_row = weights is not None and np.ndim(weights) == 2
    w = np.ones(n_runs) if weights is None else np.asarray(weights, float)
    rows_per_tile, runs_per_tile = tile_shape(n_rows, n_runs, tile_elements)
    buffers = [np.empty(rows_per_tile * runs_per_tile) for _ in range(_N_TILE_BUFFERS)]
    a_minus_e, b_minus_e, e = x[:, 0:1] - x[:, 2:3], x[:, 1:2] - x[:, 2:3], x[:, 2:3]
    alpha, beta = x[:, 3:4], x[:, 4:5]
    for j0 in range(0, n_runs, runs_per_tile):
        j1 = min(n_runs, j0 + runs_per_tile)
        neg_n, neg_d, ll = -log_n[j0:j1], -log_d[j0:j1], log_l[j0:j1]
        # d/da and d/dalpha of u1 = a - alpha log N are 1 and -log N (likewise b, beta, D): one matmul gives both
        jac_n, jac_d = np.column_stack([np.ones(j1 - j0), neg_n]), np.column_stack([np.ones(j1 - j0), neg_d])
        if not per_row:
            jac_n *= w[j0:j1, None]
            jac_d *= w[j0:j1, None]
        for i0 in range(0, n_rows, rows_per_tile):
            i1 = min(n_rows, i0 + rows_per_tile)
            p1, p2, s, r, c, tmp = (b[: (i1 - i0) * (j1 - j0)].reshape(i1 - i0, j1 - j0) for b in buffers)
            np.multiply(alpha[i0:i1], neg_n, out=p1)
            p1 += a_minus_e[i0:i1]
            np.exp(p1, out=p1)  # exp(u1 - e) = A N^-alpha / E
            np.multiply(beta[i0:i1], neg_d, out=p2)
            p2 += b_minus_e[i0:i1]
            np.exp(p2, out=p2)  # exp(u2 - e) = B D^-beta / E
            np.add(p1, p2, out=s)
            s += 1.0
            np.log(s, out=r)
            r += e[i0:i1]
            r -= ll  # LSE(a - alpha log N, b - beta log D, e) - log L  [H22, eq. 3]
            np.minimum(r, delta, out=c)
            np.maximum(c, -delta, out=c)  # dHuber/dr = clip(r, -delta, delta)
            np.multiply(c, 0.5, out=tmp)
            r -= tmp
            r *= c  # Huber(r) = c (r - c/2) with c = clip(r, -delta, delta)  (Huber 1964)
            if per_row:
                wt = w[(np.arange(i0, i1) if weight_rows is None else weight_rows[i0:i1])[:, None],
                       np.arange(j0, j1)]
                r *= wt
                c *= wt
                f[i0:i1] += r.sum(axis=1)
                c /= s  # dHuber/dr times 1/s: dLSE/du_k = exp(u_k - e) / s, dLSE/de = 1 / s
                grad[i0:i1, 2] += c.sum(axis=1)
            else:
                f[i0:i1] += r @ w[j0:j1]
                c /= s
                grad[i0:i1, 2] += c @ w[j0:j1]
            p1 *= c
            p2 *= c
            grad[i0:i1, 0::3] += p1 @ jac_n  # d/da, d/dalpha
            grad[i0:i1, 1::3] += p2 @ jac_d  # d/db, d/dbeta
    return f, grad


@dataclass(frozen=True)
class BatchResult:
    """Final rows of a batched run: x (S, 5), f (S,), converged (S,) bool, n_iter (S,) int."""

    x: np.ndarray
    f: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray


def _projected_grad(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    pg = g.copy()
    pg[(x <= LOWER) & (g > 0)] = 0.0
    pg[(x >= UPPER) & (g < 0)] = 0.0
    return pg


def batched_bfgs(x0: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
                 weights: np.ndarray | None = None, *, max_iter: int = 400, ftol: float = FTOL,
                 delta: float = HUBER_DELTA, n_threads: int = DEFAULT_THREADS,
                 callback: Callable[[int, int], None] | None = None,
                 weight_rows: np.ndarray | None = None) -> BatchResult:
    """Minimise the Huber objective from every row of ``x0`` (S, 5) at once.

    ``weights`` is (P,) shared by all rows, (W, P) rows of run weights, or None for all ones; with (W, P) weights,
    start i uses row ``weight_rows[i]`` (default: row i), so resamples need not be copied once per start.
    ``callback(done, total)`` is called after each iteration with the rows that have stopped (a progress bar).
    """
    x = np.clip(np.array(x0, float), LOWER, UPPER)
    n_rows = x.shape[0]
    shared = weights is None or np.ndim(weights) == 1
    w_all = weights if shared else np.asarray(weights, float)
    w_index = np.arange(n_rows) if weight_rows is None else np.asarray(weight_rows, int)

    pool = ThreadPoolExecutor(n_threads) if n_threads > 1 else None

    def fg1(xs, rows):
        if shared:
            return huber_objective(xs, log_n, log_d, log_l, w_all, delta)
        return huber_objective(xs, log_n, log_d, log_l, w_all, delta, weight_rows=w_index[rows])

    def fg(xs, rows):
        if pool is None or len(rows) < THREAD_MIN_ROWS:
            return fg1(xs, rows)
        parts = np.array_split(np.arange(len(rows)), n_threads)
        outs = list(pool.map(lambda ix: fg1(xs[ix], rows[ix]), parts))
        return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])

    f, g = fg(x, np.arange(n_rows))
    hinv = np.broadcast_to(np.eye(5), (n_rows, 5, 5)).copy()
    first = np.ones(n_rows, bool)
    converged = np.zeros(n_rows, bool)
    n_iter = np.zeros(n_rows, int)
    active = np.arange(n_rows)
    for _ in range(max_iter):
        if active.size == 0:
            break
        xa, fa, ga, ha = x[active], f[active], g[active], hinv[active]
        pg = _projected_grad(xa, ga)
        p = -np.einsum("sij,sj->si", ha, pg)
        # keep the step feasible in direction: drop components that push out of the box at a bound
        p[((xa <= LOWER) & (p < 0)) | ((xa >= UPPER) & (p > 0))] = 0.0
        slope = np.einsum("si,si->s", pg, p)
        bad = slope >= 0  # not a descent direction: restart from steepest descent
        if bad.any():
            p[bad] = -pg[bad]
            ha[bad] = np.eye(5)
            slope[bad] = -np.einsum("si,si->s", pg[bad], pg[bad])
        scale = np.maximum(np.abs(p).max(axis=1) / MAX_STEP, 1.0)
        p /= scale[:, None]
        slope /= scale
        t = np.ones(active.size)
        x_new, f_new, g_new = xa.copy(), fa.copy(), ga.copy()
        todo = np.arange(active.size)
        for _ in range(MAX_HALVINGS):
            if todo.size == 0:
                break
            xt = np.clip(xa[todo] + t[todo, None] * p[todo], LOWER, UPPER)
            ft, gt = fg(xt, active[todo])
            ok = ft <= fa[todo] + ARMIJO_C1 * t[todo] * slope[todo]
            idx = todo[ok]
            x_new[idx], f_new[idx], g_new[idx] = xt[ok], ft[ok], gt[ok]
            todo = todo[~ok]
            t[todo] *= 0.5
        stalled = np.zeros(active.size, bool)
        stalled[todo] = True  # no acceptable step: at (numerical) optimum or stuck
        s = x_new - xa
        y = g_new - ga
        sy = np.einsum("si,si->s", s, y)
        upd = (sy > 1e-12 * np.linalg.norm(s, axis=1) * np.linalg.norm(y, axis=1)) & ~stalled
        if upd.any():
            su, yu, rho = s[upd], y[upd], 1.0 / sy[upd]
            h = ha[upd]
            fst = first[active][upd]
            if fst.any():  # Shanno-Phua scaling of the initial inverse Hessian
                gamma = sy[upd][fst] / np.einsum("si,si->s", yu[fst], yu[fst])
                h[fst] = np.eye(5)[None] * gamma[:, None, None]
            v = np.eye(5)[None] - rho[:, None, None] * np.einsum("si,sj->sij", su, yu)
            h = np.einsum("sij,sjk,slk->sil", v, h, v) + rho[:, None, None] * np.einsum("si,sj->sij", su, su)
            ha[upd] = h
            first[active[upd]] = False
        x[active], f[active], g[active], hinv[active] = x_new, f_new, g_new, ha
        n_iter[active] += 1
        decrease = fa - f_new
        small_f = decrease <= ftol * np.maximum(np.abs(fa), 1e-300)
        small_g = np.abs(_projected_grad(x_new, g_new)).max(axis=1) <= GTOL
        done = small_f | small_g | stalled
        converged[active[done]] = True  # stopped by a criterion, not by max_iter
        active = active[~done]
        if callback is not None:
            callback(n_rows - active.size, n_rows)
    if pool is not None:
        pool.shutdown()
    if callback is not None and active.size:  # the rest stopped at max_iter
        callback(n_rows, n_rows)
    return BatchResult(x=x, f=f, converged=converged, n_iter=n_iter)


def on_bound(x: np.ndarray, rel: float = 1e-6) -> np.ndarray:
    """(S, 5) bool: which parameters sit on the search box."""
    span = UPPER - LOWER
    return (x - LOWER <= rel * span) | (UPPER - x <= rel * span)
