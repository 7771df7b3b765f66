"""The approach-3 fitter in bounded memory (issue 18): the tiled objective equals an independent reference, its
scratch does not grow with the number of runs, and running out of memory is one line.

Memory is read with tracemalloc, which numpy reports its array buffers to (numpy's PyTraceMalloc_Track), so a
peak here is the bytes numpy asked for, not the process's RSS.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from scipy.special import huber, logsumexp

from flopscalc.errors import DomainError
from flopscalc.scaling import fit as fit_module
from flopscalc.scaling.fit import bootstrap_approach3, fit_approach3
from flopscalc.scaling.laws import BESIROGLU2024
from flopscalc.scaling.optimize import LOWER, TILE_ELEMENTS, UPPER, huber_objective
from flopscalc.scaling.runs import Runs

TRUTH = BESIROGLU2024.loss_form
MIB = 2**20


def synthetic_runs(n_runs: int, seed: int = 0) -> Runs:
    """Chinchilla-like spread (N 70M-16B, C 1e18-1e22), loss from Besiroglu et al.'s law x 2% log-normal noise."""
    rng = np.random.default_rng(seed)
    n = np.exp(rng.uniform(np.log(7e7), np.log(1.6e10), n_runs))
    d = np.exp(rng.uniform(np.log(1e18), np.log(1e22), n_runs)) / (6 * n)
    return Runs.from_arrays(n, d, TRUTH.loss(n, d) * np.exp(rng.normal(0, 0.02, n_runs)), source="synthetic")


def logs(runs: Runs):
    return np.log(runs.n_params), np.log(runs.n_tokens), np.log(runs.loss)


def reference_objective(x, log_n, log_d, log_l, w):
    """sum_i w_i Huber_1e-3(LSE(a - alpha log N_i, b - beta log D_i, e) - log L_i) [Hoffmann et al. 2022, eq. 3],
    from scipy.special's logsumexp and huber, one row at a time."""
    a, b, e, alpha, beta = x
    u = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    return float(np.sum(w * huber(1e-3, logsumexp(u, axis=0) - log_l)))


def random_rows(rng, n_rows):
    return rng.uniform(LOWER, UPPER, size=(n_rows, 5))


def test_tiled_objective_equals_scipy_reference_and_finite_differences():
    rng = np.random.default_rng(3)
    log_n, log_d, log_l = logs(synthetic_runs(700))
    x = np.vstack([random_rows(rng, 6), [[np.log(TRUTH.A), np.log(TRUTH.B), np.log(TRUTH.E), TRUTH.alpha,
                                          TRUTH.beta]]])
    weights = rng.integers(0, 3, size=(3, 700)).astype(float)
    rows = np.array([2, 0, 1, 1, 0, 2, 2])
    # tile_elements=300 forces many tiles (and a last short one) on both axes
    f, g = huber_objective(x, log_n, log_d, log_l, weights, weight_rows=rows, tile_elements=300)
    for i in range(len(x)):
        assert f[i] == pytest.approx(reference_objective(x[i], log_n, log_d, log_l, weights[rows[i]]), rel=1e-12)
        for k in range(5):  # central differences, step scaled to the coordinate
            h = 1e-6 * max(1.0, abs(x[i, k]))
            xp, xm = x[i].copy(), x[i].copy()
            xp[k] += h
            xm[k] -= h
            fd = (reference_objective(xp, log_n, log_d, log_l, weights[rows[i]])
                  - reference_objective(xm, log_n, log_d, log_l, weights[rows[i]])) / (2 * h)
            assert g[i, k] == pytest.approx(fd, rel=1e-5, abs=1e-9 * max(1.0, abs(f[i]))), (i, k)
    f1, g1 = huber_objective(x, log_n, log_d, log_l, weights[rows])  # one weight row per start, default tiles
    np.testing.assert_allclose(f1, f, rtol=1e-13)
    np.testing.assert_allclose(g1, g, rtol=1e-11, atol=1e-15)


def _peak_extra_bytes(fn) -> int:
    """Peak bytes numpy and Python allocated during ``fn()`` beyond what was live before it."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def test_objective_scratch_does_not_grow_with_runs():
    """500 starts: 2,000 -> 20,000 runs. The old untiled objective held ~7 (starts x runs) float64 arrays:
    500 x 20,000 x 8 B = 76 MiB each. Tiled, the scratch is six tiles of TILE_ELEMENTS float64 (1.5 MiB) plus
    O(runs) slices, whatever the number of runs."""
    x = random_rows(np.random.default_rng(0), 500)
    peaks = {}
    for n_runs in (2_000, 20_000):
        data = logs(synthetic_runs(n_runs))
        peaks[n_runs] = _peak_extra_bytes(lambda data=data: huber_objective(x, *data))
    tile_bound = 6 * TILE_ELEMENTS * 8 + 1 * MIB  # six float64 tiles + results, slices and bookkeeping
    assert peaks[20_000] <= tile_bound, peaks
    assert peaks[20_000] - peaks[2_000] <= 18_000 * 8 * 8, peaks  # at most a few O(runs) vectors more


def test_fit_peak_memory_at_20000_runs_is_the_data_plus_a_fixed_scratch():
    """A 32-start fit (with the polish) on 20,000 runs. Bound: the runs' data and the per-run vectors a fit keeps
    (RUN_BYTES per run, plus as many again for transient per-run vectors), two threads' tile scratch, 2 MiB slack.
    The untiled objective needed 32 x 20,000 x 8 B = 4.9 MiB per temporary, ~7 at once per thread: ~34 MiB."""
    import scipy.optimize  # noqa: F401  (the polish's first import is module objects, not the fit's arrays)

    runs = synthetic_runs(20_000)
    peak = _peak_extra_bytes(lambda: fit_approach3(runs, grid="small", n_threads=2))
    bound = 2 * fit_module.RUN_BYTES * len(runs) + 2 * 6 * TILE_ELEMENTS * 8 + 2 * MIB
    assert peak <= bound, f"peak {peak / MIB:.1f} MiB > bound {bound / MIB:.1f} MiB"


def test_bootstrap_batches_shrink_so_their_weights_stay_under_the_cap():
    assert fit_module.bootstrap_chunk(245) == fit_module.BOOTSTRAP_CHUNK
    for n_runs in (100_000, 1_000_000, 10**8):
        chunk = fit_module.bootstrap_chunk(n_runs)
        assert chunk >= 1
        assert chunk == 1 or chunk * n_runs * 8 <= fit_module.BOOTSTRAP_WEIGHTS_BYTES


def test_bootstrap_on_more_runs_than_one_full_batch_holds():
    """Past the cap the batches shrink; resamples still each get their own weights (distinct fits)."""
    runs = synthetic_runs(300)
    fit = fit_approach3(runs, grid="small", polish=False)
    cap = fit_module.BOOTSTRAP_WEIGHTS_BYTES
    try:
        fit_module.BOOTSTRAP_WEIGHTS_BYTES = 8 * 300 * 3  # three resamples per batch
        boot = bootstrap_approach3(runs, fit, n_samples=7, seed=0)
    finally:
        fit_module.BOOTSTRAP_WEIGHTS_BYTES = cap
    assert boot.n_samples == 7
    assert len(set(np.round(boot.samples["alpha"], 12))) == 7


@pytest.mark.parametrize("where", ["fit", "bootstrap"])
def test_out_of_memory_is_one_line_with_a_suggestion(monkeypatch, where):
    runs = synthetic_runs(300)
    fit = fit_approach3(runs, grid="small", polish=False) if where == "bootstrap" else None

    def no_memory(*args, **kwargs):
        raise MemoryError()  # what numpy raises when an allocation fails

    monkeypatch.setattr(fit_module, "batched_bfgs", no_memory)
    with pytest.raises(DomainError) as err:
        if where == "fit":
            fit_approach3(runs, grid="paper")
        else:
            bootstrap_approach3(runs, fit, n_samples=10)
    text = str(err.value)
    assert "\n" not in text and text.startswith("out of memory") and "300 runs" in text
    assert ("--grid small" in text) == (where == "fit")
    assert err.value.__cause__ is None and err.value.__suppress_context__


@pytest.mark.parametrize("approach", [1, 2])
def test_power_law_fits_out_of_memory_is_one_line(monkeypatch, approach):
    from flopscalc.scaling import fit_power

    def no_memory(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(fit_power, "_envelope" if approach == 1 else "_approach2_points", no_memory)
    monkeypatch.setattr(fit_power, "isoflop_groups", lambda runs: [np.array([0, 3, 6])] * 3)  # three sizes per "budget"
    runs = synthetic_runs(300)
    rows = np.repeat(np.arange(100), 3)  # three checkpoints per size, so approach 1 gets past its input check
    runs = Runs.from_arrays(runs.n_params[rows], runs.n_tokens, runs.loss, source="synthetic")
    with pytest.raises(DomainError, match=f"^out of memory fitting approach {approach} on 300 runs; fit fewer runs"):
        (fit_power.fit_approach1 if approach == 1 else fit_power.fit_approach2)(runs)
