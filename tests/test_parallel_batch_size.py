"""Critical batch size (Kaplan et al. 2020 eq. 5.3) and the batch that hides communication below it."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopscalc.batch_size import (
    KAPLAN_B_STAR_TOKENS,
    batch_to_hide_comm,
    critical_batch_tokens,
    token_cost_factor,
)
from flopscalc.errors import UsageError


def test_critical_batch_doubles_for_every_13_percent_decrease_in_loss():
    # Kaplan et al. 2020 sec. 5.1 / Fig. 10: B_crit "roughly doubles for every 13% decrease in loss".
    # With alpha_B = 0.21: 0.87^(-1/0.21) = 1.94 (observed); tolerance 4%.
    for loss in (1.8, 2.5, 3.5, 5.0):
        assert critical_batch_tokens(0.87 * loss) / critical_batch_tokens(loss) == pytest.approx(2, rel=0.04)


def test_critical_batch_at_one_nat_is_b_star():
    # eq. 5.3 at L = 1: B_crit = B_* (Table 5: 2.1e8 tokens)
    assert critical_batch_tokens(1.0) == KAPLAN_B_STAR_TOKENS == 2.1e8


def test_one_critical_batch_costs_twice_the_minimum_tokens():
    # McCandlish et al. 2018 eq. 2.11 / Kaplan eq. 5.5: at B = B_crit, E = 2 E_min and S = 2 S_min.
    assert token_cost_factor(3e6, 3e6) == 2
    assert token_cost_factor(0.0, 3e6) == 1


@settings(max_examples=60, deadline=None)
@given(loss=st.floats(0.5, 10), lower=st.floats(0.01, 0.99))
def test_lower_loss_never_lowers_the_critical_batch(loss, lower):
    assert critical_batch_tokens(loss * lower) > critical_batch_tokens(loss)


def kw(**over):
    base = {"n_gpus": 1024, "seq_len": 1024, "micro_batch": 2, "critical_tokens": critical_batch_tokens(2.2),
            "compute_s_per_token": 1.4 / 2**21, "exposed_comm_s": 3.0}
    return {**base, **over}


def test_without_exposed_communication_the_default_batch_stands():
    c = batch_to_hide_comm(2**21, **kw(exposed_comm_s=0.0))
    assert c.tokens_per_step == 2**21 and c.speedup == 1 and c.reason == "no exposed communication"


def test_grows_by_powers_of_two_and_never_past_the_critical_batch():
    c = batch_to_hide_comm(2**21, **kw())
    k = math.log2(c.tokens_per_step / 2**21)
    assert k == int(k) and k >= 1
    assert c.tokens_per_step <= c.critical_tokens < 2 * c.tokens_per_step  # 4.2M of B_crit(2.2) = 4.9M
    assert c.reason == "critical batch size" and c.speedup > 1
    assert c.grad_accum * 2 * 1024 * 1024 == c.tokens_per_step  # micro-batch 2 x seq 1024 x 1024 GPUs


def test_choice_sits_within_a_doubling_of_the_analytic_optimum():
    # d/dB of B / ((B c + x)(1 + B/K)) = 0 at B = sqrt(x K / c); the power-of-two search lands within sqrt(2)
    # (log-distance) of it when the optimum lies between the default and B_crit.
    c_tok, x, crit = 1e-7, 0.05, 1e8
    optimum = math.sqrt(x * crit / c_tok)  # 7.07M tokens
    c = batch_to_hide_comm(2**19, n_gpus=64, seq_len=2048, micro_batch=1, critical_tokens=crit,
                           compute_s_per_token=c_tok, exposed_comm_s=x)
    assert c.reason == "best trade-off"
    assert abs(math.log2(c.tokens_per_step / optimum)) <= 0.5 + 1e-9


def test_a_default_above_the_critical_batch_is_kept_and_said():
    c = batch_to_hide_comm(2**22, **kw(critical_tokens=1e6))
    assert c.tokens_per_step == 2**22 and c.reason == "default already above the critical batch size"


@settings(max_examples=60, deadline=None)
@given(x=st.floats(0.0, 10.0), more=st.floats(1.0, 100.0), crit=st.floats(1e5, 1e9))
def test_more_exposed_communication_never_shrinks_the_batch(x, more, crit):
    a = batch_to_hide_comm(2**20, **kw(exposed_comm_s=x, critical_tokens=crit))
    b = batch_to_hide_comm(2**20, **kw(exposed_comm_s=x * more, critical_tokens=crit))
    assert b.tokens_per_step >= a.tokens_per_step
    assert a.tokens_per_step <= max(crit, 2**20)


def test_bad_inputs_are_usage_errors():
    with pytest.raises(UsageError, match="loss"):
        critical_batch_tokens(0.0)
    with pytest.raises(UsageError, match="micro-batch"):
        batch_to_hide_comm(2**20, **kw(micro_batch=0))
    with pytest.raises(UsageError, match="exposed communication"):
        batch_to_hide_comm(2**20, **kw(exposed_comm_s=-1.0))
