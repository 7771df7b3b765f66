"""Compute-optimal allocation: N and D for a FLOP budget, its inverses, and the data-constrained case.

All functions are pure; scalars in, a frozen `Allocation` out (the ``*_array`` helpers broadcast).

References: [H22] Hoffmann et al. 2022, eq. 4 / App. D.2; [K20] Kaplan et al. 2020, Table 5;
[M23] Muennighoff et al. 2023, eq. 5-7 and the datablations README.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import DomainError, UsageError
from .laws import FLOPS_PER_PARAM_TOKEN, ParametricLoss, ScalingLaw

# Search span of the data-constrained optimum around the unconstrained one: +-4 decades in N.
DC_SEARCH_DECADES = 4.0
# Grid points of that search before the local refinement (log-spaced).
DC_GRID_POINTS = 4001


@dataclass(frozen=True)
class Allocation:
    """A compute-optimal (or data-constrained optimal) split of a FLOP budget.

    c_flops: budget (FLOP); n_params: parameters; n_tokens: training tokens (total, with repeats);
    loss: predicted loss (nats/token) or None when the law has no loss formula;
    unique_tokens / epochs: only for data-constrained allocations.
    """

    law: str
    c_flops: float
    n_params: float
    n_tokens: float
    loss: float | None
    method: str
    unique_tokens: float | None = None

    @property
    def tokens_per_param(self) -> float:
        return self.n_tokens / self.n_params

    @property
    def epochs(self) -> float | None:
        return None if self.unique_tokens is None else self.n_tokens / self.unique_tokens


def _check_positive(x: float, what: str) -> float:
    x = float(x)
    if not (math.isfinite(x) and x > 0):
        raise UsageError(f"{what} must be a positive number, got {x}")
    return x


def optimal_arrays(law: ScalingLaw, c_flops) -> tuple[np.ndarray, np.ndarray]:
    """(N_opt, D_opt) for budgets ``c_flops`` (FLOP, array-like); broadcastable."""
    c = np.asarray(c_flops, float)
    if law.allocation is not None:
        return law.allocation.n_opt(c), law.allocation.d_opt(c)
    form = law.loss_form
    if not isinstance(form, ParametricLoss):
        raise DomainError(f"law {law.name!r} has no allocation rule")
    return form.n_opt(c), form.d_opt(c)  # N = G (C/6)^a, D = G^-1 (C/6)^b  [H22, eq. 4]


def optimal(law: ScalingLaw, c_flops: float) -> Allocation:
    """The loss-minimising N and D for a budget of ``c_flops`` (FLOP) under ``law``."""
    c = _check_positive(c_flops, "the FLOP budget")
    n, d = (float(v) for v in optimal_arrays(law, c))
    method = "power law" if law.allocation is not None else "closed form (Hoffmann eq. 4)"
    return Allocation(law.name, c, n, d, float(law.loss(n, d)) if law.has_loss else None, method)


def flops_for_params(law: ScalingLaw, n_params: float) -> Allocation:
    """The budget at which a model of ``n_params`` parameters is compute-optimal, and its tokens."""
    n = _check_positive(n_params, "the parameter count")
    if law.allocation is not None:
        c = float(law.allocation.flops_for_params(n))
    else:
        form = law.loss_form
        c = FLOPS_PER_PARAM_TOKEN * (n / form.G) ** (1.0 / form.a)  # invert N = G (C/6)^a  [H22, eq. 4]
    alloc = optimal(law, c)
    return Allocation(law.name, c, n, alloc.n_tokens, alloc.loss, "inverse of N_opt(C)")


def flops_for_loss(law: ScalingLaw, target_loss: float) -> Allocation:
    """The smallest budget whose compute-optimal model reaches ``target_loss`` (nats/token).

    Closed form for the parametric law: at the optimum alpha A N^-alpha = beta B D^-beta (the Lagrange
    condition of eq. 4 in [H22]), so L - E = A N^-alpha (alpha + beta) / beta.
    """
    target = _check_positive(target_loss, "the target loss")
    form = law.loss_form
    if not isinstance(form, ParametricLoss):
        raise DomainError(f"law {law.name!r} has no parametric loss; the inverse needs one "
                          "(try --law besiroglu2024 or --law chinchilla)")
    if target <= form.E:
        raise DomainError(f"target loss {target} is at or below the law's irreducible loss E={form.E:.4g}; "
                          "no budget reaches it")
    term_n = (target - form.E) * form.beta / (form.alpha + form.beta)  # A N^-alpha at the optimum
    n = (form.A / term_n) ** (1.0 / form.alpha)
    term_d = term_n * form.alpha / form.beta  # B D^-beta = (alpha/beta) A N^-alpha at the optimum
    d = (form.B / term_d) ** (1.0 / form.beta)
    c = FLOPS_PER_PARAM_TOKEN * n * d
    return Allocation(law.name, c, n, d, float(form.loss(n, d)), "inverse of L_opt(C), closed form")


# ----------------------------------------------------------------------------- data-constrained [M23]


def effective_data(unique_tokens, n_tokens, r_d_star: float):
    """D' = U + U R_D* (1 - exp(-R_D / R_D*)), R_D = D/U - 1 repeated epochs  [M23, eq. 5]."""
    u, d = np.asarray(unique_tokens, float), np.asarray(n_tokens, float)
    r_d = np.maximum(d / u - 1.0, 0.0)
    return np.where(d <= u, d, u + u * r_d_star * (1.0 - np.exp(-r_d / r_d_star)))  # [M23, eq. 5]


def data_constrained_loss(law: ScalingLaw, n_params, n_tokens, unique_tokens):
    """Loss (nats/token) of N parameters trained on D tokens drawn from U unique tokens  [M23, eq. 7].

    Excess parameters decay like repeated data: U_N = min(N, N_opt for U), N' = U_N + U_N R_N* (1 -
    exp(-R_N / R_N*)), R_N = N / U_N - 1 (datablations README ``scaling_law``). Broadcastable.
    """
    form, rep = law.loss_form, law.repetition
    if rep is None or not isinstance(form, ParametricLoss):
        raise DomainError(f"law {law.name!r} has no data-constrained form; use --law muennighoff2023")
    n, d, u = (np.asarray(v, float) for v in (n_params, n_tokens, unique_tokens))
    d_eff = effective_data(u, d, rep.r_d_star)
    n_for_u = form.G * (u * form.G) ** (form.beta / form.alpha)  # N_opt whose D_opt is U  [H22, eq. 4]
    u_n = np.minimum(n, n_for_u)
    r_n = np.maximum(n / u_n - 1.0, 0.0)
    n_eff = u_n + u_n * rep.r_n_star * (1.0 - np.exp(-r_n / rep.r_n_star))  # [M23, eq. 6]
    return form.E + form.A / n_eff**form.alpha + form.B / d_eff**form.beta  # [M23, eq. 7]


def optimal_data_constrained(law: ScalingLaw, c_flops: float, unique_tokens: float) -> Allocation:
    """Loss-minimising N and D = C / 6N for a budget when only ``unique_tokens`` distinct tokens exist.

    Minimised numerically along C = 6ND: a log-spaced grid over +-4 decades of N around the
    unconstrained optimum, then a parabola through the best grid point and its neighbours.
    """
    c = _check_positive(c_flops, "the FLOP budget")
    u = _check_positive(unique_tokens, "the number of unique tokens")
    n0, _ = optimal_arrays(law, c)
    log_n = np.log(float(n0)) + np.linspace(-1, 1, DC_GRID_POINTS) * DC_SEARCH_DECADES * math.log(10)
    n_grid = np.exp(log_n)
    losses = data_constrained_loss(law, n_grid, c / (FLOPS_PER_PARAM_TOKEN * n_grid), u)
    k = int(np.clip(np.argmin(losses), 1, DC_GRID_POINTS - 2))
    y0, y1, y2 = losses[k - 1 : k + 2]
    h = log_n[1] - log_n[0]
    denom = y0 - 2 * y1 + y2
    shift = 0.5 * h * (y0 - y2) / denom if denom > 0 else 0.0
    n = float(np.exp(log_n[k] + shift))
    d = c / (FLOPS_PER_PARAM_TOKEN * n)
    loss = float(data_constrained_loss(law, n, d, u))
    return Allocation(law.name, c, n, d, loss, "numeric minimum of Muennighoff eq. 7 along C = 6ND",
                      unique_tokens=u)
