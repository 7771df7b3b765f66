"""Held-out checks (issue 17 item 4): constants fitted to one published table, checked against a figure they
were not fitted to.

`chinchilla-a1` and `chinchilla-a2` are fitted to the rows of Hoffmann et al. 2022 Table 3 / Table A3 (all but
the Gopher-budget 67B row); `besiroglu2024` is Besiroglu et al.'s refit of Chinchilla's runs. None of them saw
the model the Chinchilla authors then built for Gopher's budget: 70B parameters on 1.4T tokens (Hoffmann et al.
2022, abstract and Table 1), their own reading of what their approaches predicted.
"""

from __future__ import annotations

import pytest

from flopscalc.scaling import BUILTIN_LAWS, optimal

GOPHER_BUDGET_FLOPS = 5.76e23  # Gopher's training compute (Hoffmann et al. 2022, sec. 1 and Table 3)
CHINCHILLA_PARAMS, CHINCHILLA_TOKENS = 70e9, 1.4e12  # Hoffmann et al. 2022, Table 1
# The authors built one model from several approaches' predictions (Table 3's approach 1 printed 67B for this
# budget, approach 2 a smaller one), so each fitted law is held to the spread between them, not to rounding:
# observed -3% (a1), -9% (a2), +3% (besiroglu2024) in N; +1%, +8%, -5% in D.
HELD_OUT_REL_TOL = 0.10
LAWS_FITTED_TO_CHINCHILLA = ("chinchilla-a1", "chinchilla-a2", "besiroglu2024")


@pytest.mark.parametrize("name", LAWS_FITTED_TO_CHINCHILLA)
def test_fitted_laws_predict_the_model_chinchilla_built(name):
    a = optimal(BUILTIN_LAWS[name], GOPHER_BUDGET_FLOPS)
    assert a.n_params == pytest.approx(CHINCHILLA_PARAMS, rel=HELD_OUT_REL_TOL)
    assert a.n_tokens == pytest.approx(CHINCHILLA_TOKENS, rel=HELD_OUT_REL_TOL)


def test_held_out_tolerance_tells_a_wrong_law_apart():
    # Hoffmann et al.'s printed approach-3 constants (eq. 10) give less than half of 70B at this budget, the
    # inconsistency with approaches 1-2 that Besiroglu et al. 2024 (abstract) report: the tolerance above would catch it
    a = optimal(BUILTIN_LAWS["chinchilla"], GOPHER_BUDGET_FLOPS)
    assert abs(a.n_params / CHINCHILLA_PARAMS - 1) > HELD_OUT_REL_TOL
