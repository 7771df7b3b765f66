"""Batched Huber objective of Chinchilla's approach 3 and a batched projected BFGS that runs many starts at once.

Hoffmann et al. 2022 (sec. 3.3, eq. 3 and App. D.2) fit log L with

    min over (a, b, e, alpha, beta) of  sum_i Huber_delta( LSE(a - alpha log N_i, b - beta log D_i, e) - log L_i )

with delta = 1e-3, A = exp(a), B = exp(b), E = exp(e), minimised by L-BFGS from a grid of starts. Here
every start (and, for the bootstrap, every resample as a row of run weights) is one row of a batch, so
the objective and its analytic gradient are a few numpy array operations for all starts together.
The optimiser is BFGS on the inverse Hessian with an Armijo backtracking line search, projected onto a
wide box; converged rows leave the batch. scipy is not needed here.
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


def huber_objective(x: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
                    weights: np.ndarray | None = None, delta: float = HUBER_DELTA) -> tuple[np.ndarray, np.ndarray]:
    """Objective and gradient for a batch of parameter rows.

    x: (S, 5) rows of (a, b, e, alpha, beta); log_n, log_d, log_l: (P,) logs of runs' N, D and loss;
    weights: None (all ones), (P,) or (S, P) run weights (bootstrap counts). Returns f (S,), grad (S, 5).
    Written with in-place array operations: this function is the whole cost of a fit.
    """
    a, b, e, alpha, beta = (x[:, k : k + 1] for k in range(5))
    u1 = np.multiply(alpha, -log_n)
    u1 += a  # log(A / N^alpha)
    u2 = np.multiply(beta, -log_d)
    u2 += b  # log(B / D^beta)
    m = np.maximum(u1, u2)
    np.maximum(m, e, out=m)
    u1 -= m
    p1 = np.exp(u1, out=u1)
    u2 -= m
    p2 = np.exp(u2, out=u2)
    p3 = np.subtract(e, m)
    np.exp(p3, out=p3)
    s = p1 + p2
    s += p3
    r = np.log(s)
    r += m
    r -= log_l  # LSE(a - alpha log N, b - beta log D, e) - log L  [H22, eq. 3]
    c = np.clip(r, -delta, delta, out=m)  # dHuber/dr
    r -= 0.5 * c
    r *= c  # Huber(r) = c (r - c/2) with c = clip(r, -delta, delta)  (Huber 1964)
    if weights is not None:
        r *= weights
        c *= weights
    f = r.sum(axis=1)
    c /= s  # dHuber/dr times 1/s: dLSE/du_k = p_k / s
    p1 *= c
    p2 *= c
    p3 *= c
    grad = np.empty_like(x)
    grad[:, 0] = p1.sum(axis=1)
    grad[:, 1] = p2.sum(axis=1)
    grad[:, 2] = p3.sum(axis=1)
    grad[:, 3] = -(p1 @ log_n)
    grad[:, 4] = -(p2 @ log_d)
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
                 callback: Callable[[int, int], None] | None = None) -> BatchResult:
    """Minimise the Huber objective from every row of ``x0`` (S, 5) at once.

    ``weights`` is (P,) shared by all rows, (S, P) one row per start, or None for all ones.
    ``callback(done, total)`` is called after each iteration with the rows that have stopped (a progress bar).
    """
    x = np.clip(np.array(x0, float), LOWER, UPPER)
    n_rows = x.shape[0]
    shared = weights is None or np.ndim(weights) == 1
    w_all = weights if shared else np.asarray(weights, float)

    pool = ThreadPoolExecutor(n_threads) if n_threads > 1 else None

    def fg1(xs, rows):
        return huber_objective(xs, log_n, log_d, log_l, w_all if shared else w_all[rows], delta)

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
