"""The law's optimum for a budget counted in exact model FLOPs, not in the law's C = 6ND.

Hoffmann et al. 2022 fit their law on C = 6ND (sec. 3: "FLOPs(N, D) ~ 6ND", and eq. 4's N_opt, D_opt are the
minimum of L(N, D) along it); so do Besiroglu et al. 2024 (the same convention). A plan's budget is model FLOPs as
the planner counts them per token (dense attention, PaLM App. B's 6N + 12 L H Q T): at a long sequence the
attention term is several times 6N (a Llama 3-shaped model at 131,072 tokens: about 5x), and eq. 4 applied to
those FLOPs names an (N, D) the budget cannot buy. `optimal_per_token` converts the budget to the law's convention
instead: C_law = C x 6N / F(N), where F(N) is the model FLOPs per token of the model of N parameters that will be
trained, at the law's own optimum N for C_law (a fixed point). Then D = C_law / 6N = C / F(N): the optimum is a
point the budget buys, and it is the minimum of L(N, D) along D x F(N) = C wherever F(N) / N is constant around
it (a family's shapes of one width). With F(N) = 6N it is the law's optimum for C itself.

References: [H22] Hoffmann et al. 2022, sec. 3 and eq. 4; [M23] Muennighoff et al. 2023, eq. 5-7.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from .allocate import Allocation, _check_positive, in_float_range, optimal, optimal_data_constrained
from .laws import FLOPS_PER_PARAM_TOKEN, ScalingLaw

# Passes of the fixed point C_law = C x 6N / F(N) at N = N_opt(C_law). Its map rises with C_law and is flat within a
# shape of F(N) / N constant, so it settles once C_law's optimum stays in one shape; FIXED_POINT_REL is far below
# any digit a report prints.
MAX_FIXED_POINT_PASSES = 60
FIXED_POINT_REL = 1e-12


@in_float_range
def optimal_per_token(law: ScalingLaw, c_flops: float, flops_per_token: Callable[[float], float],
                      unique_tokens: float | None = None) -> Allocation:
    """The law's optimum for ``c_flops`` model FLOPs counted at ``flops_per_token``(N) per token.

    Parameters
    ----------
    law : ScalingLaw
    c_flops : float
        The budget, in the FLOPs ``flops_per_token`` counts (FLOP).
    flops_per_token : callable
        N (parameters, as the law counts them) -> FLOP per training token of the model of that size.
    unique_tokens : float, optional
        Distinct tokens available: the data-constrained optimum [M23, eq. 7] (`optimal_data_constrained`).

    Returns
    -------
    Allocation
        `optimal` (or `optimal_data_constrained`) at C_law, the budget in the law's convention (``law_flops`` =
        6ND [H22, sec. 3]), with ``c_flops`` the budget as given: D x ``flops_per_token``(N) = ``c_flops``.
    """
    c = _check_positive(c_flops, "the FLOP budget")

    def at(c_law: float) -> Allocation:
        return optimal(law, c_law) if unique_tokens is None else optimal_data_constrained(law, c_law, unique_tokens)

    c_law = c
    for _ in range(MAX_FIXED_POINT_PASSES):
        n = at(c_law).n_params
        c_next = c * FLOPS_PER_PARAM_TOKEN * n / flops_per_token(n)  # C x 6N / F(N)  [H22, sec. 3: C = 6ND]
        settled = abs(c_next / c_law - 1) <= FIXED_POINT_REL
        c_law = c_next
        if settled:
            break
    a = at(c_law)
    return replace(a, c_flops=c, law_flops=c_law,
                   method=f"{a.method}, at the budget converted to the law's {law.flop_convention} at the model FLOPs "
                          "per token of an N-parameter model (attention included)")
