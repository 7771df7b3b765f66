"""The engines' formulas give a number the same answer as an array holding it (issue 18: numbers skip numpy).

`flopscalc.scalar` lets a broadcastable formula compute a plain number in floats and `math`, so that `flopscalc
plan` never imports numpy. The reference for each scalar result is the same formula evaluated by numpy on an array
(the path the plots and fits take): equal to the last bit where the formula is +, -, *, /, min and max (IEEE
rounding is the same in Python and numpy), and within `REL_TOL` where it calls ** or exp (numpy evaluates them
with its own vectorised kernels on this machine's AVX-512, the scalar path with the C library: each is within 1
unit in the last place of the exact value, and they disagree in the last bit for about 5% of arguments). Edge
values (0, negatives) keep numpy's answers (inf, nan), not Python's exceptions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopscalc.flops import attention_context
from flopscalc.perf.roofline import roofline_s
from flopscalc.scaling.allocate import data_constrained_loss, effective_data, optimal_arrays, tokens_for_loss
from flopscalc.scaling.laws import BUILTIN_LAWS, chinchilla_allocation

# Relative difference allowed between the two paths where ** or exp is involved: 1e-14, 45 units in the last place.
# Observed over 20,000 random points per law (seed 1): loss 2 ulps, allocation 4, data-constrained loss 3,
# effective data 12 (1 - exp(-x) cancels for small x and magnifies exp's last-bit difference).
REL_TOL = 1e-14

positive = st.floats(1e3, 1e15, allow_nan=False, allow_infinity=False)
LAWS = sorted(BUILTIN_LAWS)


def _element(array_result) -> float:
    out = np.asarray(array_result)
    assert out.shape == (1,)
    return float(out[0])


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from([n for n in LAWS if BUILTIN_LAWS[n].has_loss]), n=positive, d=positive)
def test_loss_of_numbers_is_the_element_of_the_array_loss(name, n, d):
    law = BUILTIN_LAWS[name]
    scalar = law.loss(n, d)
    assert type(scalar) is float
    assert scalar == pytest.approx(_element(law.loss(np.array([n]), np.array([d]))), rel=REL_TOL, abs=0)


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(LAWS), c=st.floats(1e10, 1e30))
def test_allocation_of_a_number_is_the_element_of_the_array_allocation(name, c):
    law = BUILTIN_LAWS[name]
    n, d = optimal_arrays(law, c)
    n_arr, d_arr = optimal_arrays(law, np.array([c]))
    assert (n, d) == pytest.approx((_element(n_arr), _element(d_arr)), rel=REL_TOL, abs=0)
    if law.allocation is not None:
        assert law.allocation.flops_for_params(n) == pytest.approx(
            _element(law.allocation.flops_for_params(np.array([n]))), rel=REL_TOL, abs=0)


@settings(max_examples=100, deadline=None)
@given(c=st.floats(1e10, 1e30), a=st.floats(1.0, 1e4), b=st.floats(1.0, 1e4), alpha=st.floats(0.05, 1.0),
       beta=st.floats(0.05, 1.0))
def test_chinchilla_allocation_of_numbers_is_the_element_of_arrays(c, a, b, alpha, beta):
    scalar = chinchilla_allocation(c, a, b, alpha, beta)
    arrays = chinchilla_allocation(np.array([c]), np.array([a]), np.array([b]), np.array([alpha]), np.array([beta]))
    assert scalar == pytest.approx(tuple(_element(x) for x in arrays), rel=REL_TOL, abs=0)


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from([n for n in LAWS if BUILTIN_LAWS[n].repetition is not None]), n=positive, d=positive,
       u=positive)
def test_data_constrained_loss_of_numbers_is_the_element_of_arrays(name, n, d, u):
    law = BUILTIN_LAWS[name]
    assert effective_data(u, d, law.repetition.r_d_star) == pytest.approx(
        _element(effective_data(np.array([u]), np.array([d]), law.repetition.r_d_star)), rel=REL_TOL, abs=0)
    assert data_constrained_loss(law, n, d, u) == pytest.approx(
        _element(data_constrained_loss(law, np.array([n]), np.array([d]), np.array([u]))), rel=REL_TOL, abs=0)


@settings(max_examples=200, deadline=None)
@given(flops=st.floats(0, 1e18), n_bytes=st.floats(0, 1e12), rate=st.floats(1e9, 1e16), bw=st.floats(1e8, 1e13),
       floor=st.floats(0, 1e-4))
def test_roofline_of_numbers_is_the_element_of_arrays(flops, n_bytes, rate, bw, floor):
    scalar = roofline_s(flops, n_bytes, rate, bw, min_s=floor)
    assert type(scalar) is float
    assert scalar == _element(roofline_s(np.array([flops]), np.array([n_bytes]), rate, bw, min_s=floor))


@pytest.mark.parametrize("seq_len", [1, 7, 4096, 4097, 32768])
def test_windowed_attention_context_of_a_number_is_the_element_of_the_array(seq_len):
    scalar = attention_context(seq_len, causal=True, window=4096)
    assert type(scalar) is float
    assert scalar == _element(attention_context(np.array([seq_len]), causal=True, window=4096))
    # limit cases: within the window every query sees its prefix, (T + 1) / 2 keys on average
    if seq_len <= 4096:
        assert scalar == (seq_len + 1) / 2


def test_edge_values_keep_numpys_answers_not_pythons_errors():
    """0 and negative inputs are not positive numbers: they take the array path (inf and nan, with numpy's
    warnings), as before numbers had a path of their own."""
    law = BUILTIN_LAWS["besiroglu2024"]
    with np.errstate(divide="ignore", invalid="ignore"):
        assert law.loss(0.0, 1e9) == math.inf
        assert math.isnan(law.loss(-1.0, 1e9))
        assert roofline_s(1.0, 1.0, 0.0, 1.0) == math.inf


def test_token_bisection_on_numbers_agrees_with_the_closed_form():
    """tokens_for_loss with unique tokens bisects ln D over data_constrained_loss, now in floats; with far more
    unique tokens than the run reads nothing repeats, so it must land on the closed-form inverse of eq. 2."""
    law = BUILTIN_LAWS["besiroglu2024"]
    d = tokens_for_loss(law, 1e9, 2.4, unique_tokens=1e12)  # far more unique tokens than needed: no repeats
    assert d == pytest.approx(tokens_for_loss(law, 1e9, 2.4), rel=1e-12)
    assert float(data_constrained_loss(law, 1e9, d, 1e12)) == pytest.approx(2.4, abs=1e-12)
