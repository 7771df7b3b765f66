"""Batch size and learning rate (DeepSeek LLM's laws) against the settings DeepSeek actually trained with.

DeepSeek LLM (arXiv:2401.02954) Table 2: 7B: 30 layers, d_model 4096, context 4096, batch 2304 sequences, peak
learning rate 4.2e-4, 2.0T tokens; 67B: 95 layers, d_model 8192, context 4096, batch 4608, 3.2e-4, 2.0T. The
authors placed both on their fitted curves (Fig. 3, blue stars); the laws are eq. 1 with C = M D, M of eq. 2.

Observed (2026-11): 7B batch 2252 sequences (2.3% under 2304), lr 4.246e-4 (1.1% over); 67B batch 5043 (9.4%
over 4608), lr 3.120e-4 (2.5% under). Tolerances: batch 10%, learning rate 3%, the worst observed rounded up;
the swap test shows they still tell the two models apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopscalc.batch_size import critical_batch_tokens
from flopscalc.errors import UsageError
from flopscalc.scaling.hyperparams import (
    DEEPSEEK_MULTISTEP,
    DEEPSEEK_WARMUP_STEPS,
    Schedule,
    deepseek_compute_flops,
    deepseek_flops_per_token,
    learning_rate_multiplier,
    optimal_batch_tokens,
    optimal_learning_rate,
    recommend_hyperparameters,
    warmup_steps_for,
)


@dataclass(frozen=True)
class Run:
    name: str
    n_layer: int
    n_embd: int
    seq_len: int
    n_tokens: float
    batch_sequences: int
    learning_rate: float


DEEPSEEK_TABLE_2 = [Run("7B", 30, 4096, 4096, 2.0e12, 2304, 4.2e-4), Run("67B", 95, 8192, 4096, 2.0e12, 4608, 3.2e-4)]
BATCH_REL_TOL = 0.10
LR_REL_TOL = 0.03


@pytest.mark.parametrize("run", DEEPSEEK_TABLE_2, ids=lambda r: r.name)
def test_predicts_deepseeks_own_batch_and_learning_rate(run):
    h = recommend_hyperparameters(run.n_layer, run.n_embd, run.seq_len, run.n_tokens)
    assert h.batch_sequences == pytest.approx(run.batch_sequences, rel=BATCH_REL_TOL)
    assert h.learning_rate == pytest.approx(run.learning_rate, rel=LR_REL_TOL)
    assert any("extrapolated" in w for w in h.warnings)  # both lie far above the 1e17-2e19 fitting budgets


def test_the_tolerances_tell_7b_from_67b():
    small, big = (recommend_hyperparameters(r.n_layer, r.n_embd, r.seq_len, r.n_tokens) for r in DEEPSEEK_TABLE_2)
    assert small.batch_sequences != pytest.approx(DEEPSEEK_TABLE_2[1].batch_sequences, rel=BATCH_REL_TOL)
    assert big.batch_sequences != pytest.approx(DEEPSEEK_TABLE_2[0].batch_sequences, rel=BATCH_REL_TOL)
    assert small.learning_rate != pytest.approx(DEEPSEEK_TABLE_2[1].learning_rate, rel=LR_REL_TOL)
    assert big.learning_rate != pytest.approx(DEEPSEEK_TABLE_2[0].learning_rate, rel=LR_REL_TOL)


def test_m_is_six_flops_per_block_weight_plus_palms_attention_term():
    """M = 72 L d^2 + 12 L d T [DeepSeek eq. 2] = 6 x (12 L d^2 block weights) + 12 L d T [PaLM App. B]."""
    n_layer, d, t = 12, 768, 1024
    block_weights = n_layer * (4 * d * d + 8 * d * d)  # attention q, k, v, o + MLP d -> 4d -> d
    assert deepseek_flops_per_token(n_layer, d, t) == 6 * block_weights + 12 * n_layer * d * t
    assert deepseek_compute_flops(n_layer, d, t, 1e9) == deepseek_flops_per_token(n_layer, d, t) * 1e9


@settings(max_examples=50, deadline=None)
@given(log_c=st.floats(15, 26))
def test_laws_are_the_published_power_laws(log_c):
    """Doubling compute multiplies the batch by 2^0.3271 and the learning rate by 2^-0.125 [eq. 1]."""
    c = 10.0**log_c
    assert optimal_batch_tokens(2 * c) / optimal_batch_tokens(c) == pytest.approx(2**0.3271, rel=1e-12)
    assert optimal_learning_rate(2 * c) / optimal_learning_rate(c) == pytest.approx(2**-0.125, rel=1e-12)


def test_critical_batch_caps_the_batch_and_warns():
    loss = 3.3
    free = recommend_hyperparameters(24, 2048, 2048, 3e11)
    capped = recommend_hyperparameters(24, 2048, 2048, 3e11, loss_nats=loss)
    b_crit = critical_batch_tokens(loss)
    assert free.batch_tokens > b_crit  # the law alone asks for more than B_crit here
    assert capped.batch_tokens <= b_crit < capped.batch_tokens + 2048
    assert capped.critical_batch_tokens == b_crit
    assert any("critical batch" in w for w in capped.warnings)
    assert capped.n_steps > free.n_steps


def test_plans_batch_above_critical_is_warned_with_its_token_cost():
    b_crit = critical_batch_tokens(3.3)
    h = recommend_hyperparameters(12, 768, 1024, 2.5e9, loss_nats=3.3, planned_batch_tokens=3 * b_crit)
    assert any("4.00x the tokens" in w for w in h.warnings)  # 1 + B / B_crit = 4 [Kaplan eq. 5.5]
    with pytest.raises(UsageError):
        recommend_hyperparameters(12, 768, 1024, 2.5e9, planned_batch_tokens=1e6)  # needs a loss to compare


def test_batch_rounds_to_the_data_parallel_multiple():
    h = recommend_hyperparameters(12, 768, 1024, 2.5e9, sequences_multiple=24)
    assert h.batch_sequences % 24 == 0
    assert abs(h.batch_tokens - h.law_batch_tokens) <= 12 * 1024


def test_warmup_is_deepseeks_2000_steps_capped_for_short_runs():
    assert warmup_steps_for(10**6) == DEEPSEEK_WARMUP_STEPS
    assert warmup_steps_for(1000) == 20
    assert warmup_steps_for(1) == 1


def test_schedules():
    cos = recommend_hyperparameters(12, 768, 1024, 2.5e9)
    assert learning_rate_multiplier(cos, cos.warmup_steps - 1) == 1.0
    assert learning_rate_multiplier(cos, cos.n_steps - 1) == pytest.approx(0.1, abs=1e-6)
    ms = recommend_hyperparameters(12, 768, 1024, 2.5e9, schedule="multistep")
    assert ms.schedule is Schedule.multistep and ms.milestones == DEEPSEEK_MULTISTEP
    n = ms.n_steps
    assert learning_rate_multiplier(ms, int(0.79 * n)) == 1.0
    assert learning_rate_multiplier(ms, int(0.85 * n)) == 0.316
    assert learning_rate_multiplier(ms, n - 1) == 0.1
    with pytest.raises(UsageError):
        recommend_hyperparameters(12, 768, 1024, 2.5e9, schedule="wsd")


def test_as_dict_carries_units_and_sources():
    d = recommend_hyperparameters(12, 768, 1024, 2.5e9).as_dict()
    assert d["batch_tokens"] == d["batch_sequences"] * d["seq_len"]
    assert "2401.02954" in d["sources"]["learning_rate"]
