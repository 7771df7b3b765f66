"""Built-in laws and allocation against published tables and independent computations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopscalc.errors import DomainError, UsageError
from flopscalc.scaling import (
    BUILTIN_LAWS,
    data_constrained_loss,
    flops_for_loss,
    flops_for_params,
    optimal,
    optimal_data_constrained,
)
from flopscalc.scaling.io import get_law, load_law, save_law
from flopscalc.scaling.laws import ParametricLoss, ScalingLaw

# Hoffmann et al. 2022, Table 3 (approach 1) and Table A3 (approach 2): parameters, FLOPs, tokens.
TABLE3_A1 = [(400e6, 1.92e19, 8.0e9), (1e9, 1.21e20, 20.2e9), (10e9, 1.23e22, 205.1e9), (67e9, 5.76e23, 1.5e12),
             (175e9, 3.85e24, 3.7e12), (280e9, 9.90e24, 5.9e12), (520e9, 3.43e25, 11.0e12),
             (1e12, 1.27e26, 21.2e12), (10e12, 1.30e28, 216.2e12)]
TABLEA3_A2 = [(400e6, 1.84e19, 7.7e9), (1e9, 1.20e20, 20.0e9), (10e9, 1.32e22, 219.5e9), (67e9, 6.88e23, 1.7e12),
              (175e9, 4.54e24, 4.3e12), (280e9, 1.18e25, 7.1e12), (520e9, 4.19e25, 13.4e12),
              (1e12, 1.59e26, 26.5e12), (10e12, 1.75e28, 292.0e12)]


def _rounding(x: float, sig_figs: int) -> float:
    """Half a unit in the last printed digit, relative: 1.92e19 -> 0.005/1.92."""
    exponent = np.floor(np.log10(x))
    return 0.5 * 10 ** (exponent - sig_figs + 1) / x


@pytest.mark.parametrize("law_name, table", [("chinchilla-a1", TABLE3_A1), ("chinchilla-a2", TABLEA3_A2)])
def test_chinchilla_tables_reproduced_within_rounding(law_name, table):
    """FLOPs (3 significant figures) and tokens (1 decimal in B/T) per model size, as printed.

    The 67B row is Gopher's budget (5.76e23, "1 Gopher unit") rounded to a model size; it disagrees with
    the other rows' power law by 2.7% (approach 1) and 7% (approach 2) and is checked loosely.
    """
    law = get_law(law_name)
    for n, c_paper, d_paper in table:
        alloc = flops_for_params(law, n)
        c_tol = _rounding(c_paper, 3)
        d_unit = 1e12 if d_paper >= 1e12 else 1e9
        d_tol = 0.05 * d_unit / d_paper
        if n == 67e9:
            c_tol, d_tol = 0.08, 0.08
        else:  # allow the table's own inconsistency: 6ND of a printed row differs from its FLOPs by up to 1.1%
            d_tol += 0.011
        assert alloc.c_flops == pytest.approx(c_paper, rel=c_tol), (n, alloc.c_flops)
        assert alloc.n_tokens == pytest.approx(d_paper, rel=d_tol), (n, alloc.n_tokens)


def test_approach_exponents_round_to_table2():
    """Hoffmann Table 2: approach 1 a=0.50 b=0.50, approach 2 a=0.49 b=0.51 (to 2 decimals)."""
    assert round(get_law("chinchilla-a1").allocation.a, 2) == 0.50
    assert round(get_law("chinchilla-a1").allocation.d_exponent, 2) == 0.50
    assert round(get_law("chinchilla-a2").allocation.a, 2) == 0.49
    assert round(get_law("chinchilla-a2").allocation.d_exponent, 2) == 0.51
    # approach 3 published constants imply a = 0.28/0.62 = 0.45 (the paper's Table 2 says 0.46, from unrounded fit)
    assert get_law("chinchilla").loss_form.a == pytest.approx(0.4516, abs=1e-4)


@pytest.mark.parametrize("name", ["chinchilla", "besiroglu2024", "muennighoff2023"])
@pytest.mark.parametrize("c", [1e18, 1e21, 1e24])
def test_closed_form_is_the_numeric_minimum(name, c):
    """Hoffmann eq. 4 vs brute force: minimise L(N, C/6N) on a fine log grid (independent of the formula)."""
    law = get_law(name)
    n_grid = np.logspace(6, 14, 200001)
    losses = law.loss(n_grid, c / (6 * n_grid))
    n_num = n_grid[np.argmin(losses)]
    alloc = optimal(law, c)
    assert alloc.n_params == pytest.approx(n_num, rel=2e-3)
    assert alloc.loss == pytest.approx(losses.min(), rel=1e-9)
    assert 6 * alloc.n_params * alloc.n_tokens == pytest.approx(c, rel=1e-12)


def test_besiroglu_law_gives_about_20_tokens_per_param():
    """Besiroglu et al. 2024: their refit agrees with approaches 1-2 (~20 tokens/parameter)."""
    for c in (1e20, 1e22, 1e24):
        tpp = optimal(get_law("besiroglu2024"), c).tokens_per_param
        assert 15 < tpp < 30


def test_muennighoff_readme_reference_values():
    """datablations README, 'Parametric Fit': their scaling_law() printed for the Figure 1 models."""
    law = get_law("muennighoff2023")
    assert data_constrained_loss(law, 6.34e9, 242e9, 25e9) == pytest.approx(2.2256440889984477, rel=1e-9)
    assert data_constrained_loss(law, 8.67e9, 178e9, 25e9) == pytest.approx(2.2269634075087867, rel=1e-9)


def test_muennighoff_optimal_allocation_matches_readme():
    """README: optimal_allocation(8.67e9, 178e9, 25e9) -> 227B tokens, 9.1 epochs, 6.8B parameters."""
    law = get_law("muennighoff2023")
    a = optimal_data_constrained(law, 6 * 8.67e9 * 178e9, 25e9)
    assert a.n_tokens == pytest.approx(227e9, rel=0.005)
    assert a.epochs == pytest.approx(9.1, abs=0.05)
    assert a.n_params == pytest.approx(6.8e9, rel=0.01)


def test_data_constraint_is_harmless_when_data_suffices():
    """With unique tokens beyond the compute-optimal D, the constrained optimum is the unconstrained one."""
    law = get_law("muennighoff2023")
    free = optimal(law, 1e21)
    dc = optimal_data_constrained(law, 1e21, 100 * free.n_tokens)
    assert dc.n_params == pytest.approx(free.n_params, rel=1e-3)
    assert dc.loss == pytest.approx(free.loss, rel=1e-9)


def test_kaplan_allocation_table5():
    """Kaplan Table 5: N_opt = 1.3e9 params at C_min = 1 PF-day; exponent 0.73."""
    law = get_law("kaplan2020")
    assert optimal(law, 8.64e19).n_params == pytest.approx(1.3e9, rel=1e-12)
    ratio = optimal(law, 8.64e21).n_params / optimal(law, 8.64e19).n_params
    assert ratio == pytest.approx(100**0.73, rel=1e-12)
    assert law.n_counts_embeddings is False


@settings(max_examples=40, deadline=None)
@given(log_c=st.floats(17, 27), name=st.sampled_from(["chinchilla", "besiroglu2024", "chinchilla-a1",
                                                      "chinchilla-a2", "kaplan2020"]))
def test_budget_params_budget_round_trip(log_c, name):
    law = get_law(name)
    a = optimal(law, 10**log_c)
    assert flops_for_params(law, a.n_params).c_flops == pytest.approx(10**log_c, rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(log_c=st.floats(17, 27), name=st.sampled_from(["chinchilla", "besiroglu2024", "muennighoff2023"]))
def test_loss_inverse_round_trip_and_monotone(log_c, name):
    law = get_law(name)
    a = optimal(law, 10**log_c)
    back = flops_for_loss(law, a.loss)
    assert back.c_flops == pytest.approx(10**log_c, rel=1e-6)
    assert optimal(law, 2 * 10**log_c).loss < a.loss


def test_loss_below_irreducible_is_a_domain_error():
    with pytest.raises(DomainError, match="irreducible"):
        flops_for_loss(get_law("chinchilla"), 1.5)


def test_unknown_law_suggests_the_closest(tmp_path):
    with pytest.raises(UsageError, match="did you mean besiroglu2024"):
        get_law("besiroglu2025", directory=tmp_path)


def test_aliases_resolve():
    assert get_law("Epoch").name == "besiroglu2024"
    assert get_law("hoffmann2022").name == "chinchilla"


def test_saved_law_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOPSCALC_HOME", str(tmp_path))
    law = ScalingLaw(name="mine", title="t", source="s", flop_convention="C = 6ND", n_counts_embeddings=None,
                     loss_form=ParametricLoss(E=1.8, A=500.0, B=2000.0, alpha=0.35, beta=0.36),
                     uncertainty={"E": (1.7, 1.9)}, uncertainty_kind="test")
    path = save_law(law)
    assert path == tmp_path / "laws" / "mine.json"
    assert json.loads(path.read_text())["schema_version"] == 1
    assert not list((tmp_path / "laws").glob(".*tmp"))  # no temp file left behind
    back = get_law("mine")
    assert back.loss(1e9, 2e10) == pytest.approx(law.loss(1e9, 2e10), rel=1e-15)
    assert back.uncertainty == {"E": (1.7, 1.9)}
    with pytest.raises(UsageError, match="built-in"):
        save_law(ScalingLaw(**{**law.__dict__, "name": "chinchilla"}))


def test_law_file_with_wrong_schema(tmp_path):
    p = tmp_path / "old.json"
    p.write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(UsageError, match="schema_version"):
        load_law(p)


def test_every_builtin_cites_a_source():
    for law in BUILTIN_LAWS.values():
        assert any(tag in law.source for tag in ("Table", "eq.", "README", "arXiv")), law.name
