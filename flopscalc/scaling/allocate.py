"""Compute-optimal allocation: N and D for a FLOP budget, its inverses, and the data-constrained case.

All functions are pure; scalars in, a frozen `Allocation` out (the ``*_array`` helpers broadcast).

References: [H22] Hoffmann et al. 2022, eq. 4 / App. D.2; [K20] Kaplan et al. 2020, Table 5;
[M23] Muennighoff et al. 2023, eq. 5-7 and the datablations README.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import DomainError, UsageError
from ..scalar import operands, with_ops
from .laws import FLOPS_PER_PARAM_TOKEN, ParametricLoss, ScalingLaw
from .validity import range_warnings, uniform_warning

# Search span of the data-constrained optimum around the unconstrained one: +-4 decades in N.
DC_SEARCH_DECADES = 4.0
# Grid points of that search before the local refinement (log-spaced).
DC_GRID_POINTS = 4001
# Golden-section steps of the refinement: each keeps 0.618 of the bracket (2 grid steps, 0.0046 in ln N), so 60
# leave 1e-15 of it, below float resolution of ln N.
DC_GOLDEN_STEPS = 60
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0  # inverse golden ratio
# Bisection of tokens_for_loss with a data limit: ln D in [0, ln 1e30]; 100 halvings leave 5e-29 of the span of
# 69, below float resolution. 1e30 tokens is ~ 10^17 epochs of any dataset, the decay's limit for all purposes.
TOKENS_SEARCH_MAX = 1e30
TOKENS_BISECTION_STEPS = 100


@dataclass(frozen=True)
class Allocation:
    """A compute-optimal (or data-constrained optimal) split of a FLOP budget.

    c_flops: budget (FLOP); n_params: parameters; n_tokens: training tokens (total, with repeats);
    loss: predicted loss (nats/token), or None when the law has no loss formula or its formula gives more than
    a uniform guess (``above_uniform``); unique_tokens / epochs: only for data-constrained allocations;
    warnings: where the law is asked about a point far outside its fitted range (`validity.range_warnings`);
    law_flops: 6ND, the budget in the law's own convention, when ``c_flops`` counts model FLOPs otherwise
    (`per_token.optimal_per_token`: attention included), else None.
    """

    law: str
    c_flops: float
    n_params: float
    n_tokens: float
    loss: float | None
    method: str
    unique_tokens: float | None = None
    warnings: tuple[str, ...] = ()
    above_uniform: bool = False
    law_flops: float | None = None

    @property
    def tokens_per_param(self) -> float:
        return self.n_tokens / self.n_params

    @property
    def epochs(self) -> float | None:
        return None if self.unique_tokens is None else self.n_tokens / self.unique_tokens


# What each engine argument is, for `in_float_range`'s message.
_ARGUMENT_WORDS = {"c_flops": "a budget of {:.3g} FLOP", "n_params": "{:.3g} parameters", "n_tokens": "{:.3g} tokens",
                   "target_loss": "a target loss of {:.4g}", "unique_tokens": "{:.3g} unique tokens",
                   "inference_tokens": "{:.3g} inference tokens"}


def in_float_range(fn):
    """``fn(law, ...)`` with an OverflowError (a power of the law's constants or of the inputs past 1.8e308, Python's
    ``sys.float_info.max``) turned into a one-line `DomainError` naming the law and the inputs: a saved law with
    A = 1e308 overflowed computing G (Hoffmann eq. 4) for any budget."""
    import functools

    names = fn.__code__.co_varnames[1:fn.__code__.co_argcount]  # the positional parameters after ``law``

    @functools.wraps(fn)
    def wrapper(law, *args, **kwargs):
        try:
            return fn(law, *args, **kwargs)
        except OverflowError:
            bound = {**dict(zip(names, args)), **kwargs}
            at = ", ".join(_ARGUMENT_WORDS[k].format(v) for k, v in bound.items()
                           if k in _ARGUMENT_WORDS and isinstance(v, (int, float)))
            raise DomainError(f"law {law.name!r} gives a number past float range (1.8e308) at {at}: its constants or "
                              "these inputs are far outside any fitted law's; check the law ('flopscalc scaling laws "
                              "--json') or choose another with --law") from None

    return wrapper


def _allocation(law: ScalingLaw, c: float, n: float, d: float, loss: float | None, method: str,
                unique_tokens: float | None = None) -> Allocation:
    """An `Allocation` with the law's validity applied: no loss above a uniform guess, range warnings."""
    above = loss is not None and loss > law.uniform_loss
    warnings = range_warnings(law, n, d, c, unique_tokens) + ((uniform_warning(law),) if above else ())
    return Allocation(law.name, c, n, d, None if above else loss, method, unique_tokens, warnings, above)


def _check_positive(x: float, what: str) -> float:
    x = float(x)
    if not (math.isfinite(x) and x > 0):
        raise UsageError(f"{what} must be a positive number, got {x}")
    return x


def optimal_arrays(law: ScalingLaw, c_flops) -> tuple:
    """(N_opt, D_opt) for budgets ``c_flops`` (FLOP, array-like); broadcastable (floats for a positive number)."""
    (c,) = operands(c_flops)
    if law.allocation is not None:
        return law.allocation.n_opt(c), law.allocation.d_opt(c)
    form = law.loss_form
    if not isinstance(form, ParametricLoss):
        raise DomainError(f"law {law.name!r} has no allocation rule")
    return form.n_opt(c), form.d_opt(c)  # N = G (C/6)^a, D = G^-1 (C/6)^b  [H22, eq. 4]


@in_float_range
def optimal(law: ScalingLaw, c_flops: float) -> Allocation:
    """The loss-minimising N and D for a budget of ``c_flops`` (FLOP) under ``law``."""
    c = _check_positive(c_flops, "the FLOP budget")
    n, d = (float(v) for v in optimal_arrays(law, c))
    method = "power law" if law.allocation is not None else "closed form (Hoffmann eq. 4)"
    return _allocation(law, c, n, d, float(law.loss(n, d)) if law.has_loss else None, method)


@in_float_range
def flops_for_params(law: ScalingLaw, n_params: float) -> Allocation:
    """The budget at which a model of ``n_params`` parameters is compute-optimal, and its tokens."""
    n = _check_positive(n_params, "the parameter count")
    if law.allocation is not None:
        c = float(law.allocation.flops_for_params(n))
    else:
        form = law.loss_form
        c = FLOPS_PER_PARAM_TOKEN * (n / form.G) ** (1.0 / form.a)  # invert N = G (C/6)^a  [H22, eq. 4]
    alloc = optimal(law, c)
    return _allocation(law, c, n, alloc.n_tokens, float(law.loss(n, alloc.n_tokens)) if law.has_loss else None,
                       "inverse of N_opt(C)")


@in_float_range
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
    if target >= law.uniform_loss:
        raise DomainError(f"target loss {target} is not below a uniform guess over {law.name}'s vocabulary "
                          f"(ln {law.vocab_size or 'vocab'} = {law.uniform_loss:.2f} nats/token): any trained model "
                          f"reaches it; aim between E={form.E:.4g} and {law.uniform_loss:.2f}")
    term_n = (target - form.E) * form.beta / (form.alpha + form.beta)  # A N^-alpha at the optimum
    n = (form.A / term_n) ** (1.0 / form.alpha)
    term_d = term_n * form.alpha / form.beta  # B D^-beta = (alpha/beta) A N^-alpha at the optimum
    d = (form.B / term_d) ** (1.0 / form.beta)
    c = FLOPS_PER_PARAM_TOKEN * n * d
    return _allocation(law, c, n, d, float(form.loss(n, d)), "inverse of L_opt(C), closed form")


# ----------------------------------------------------------------------------- data-constrained [M23]


def effective_data(unique_tokens, n_tokens, r_d_star: float):
    """D' = U + U R_D* (1 - exp(-R_D / R_D*)), R_D = D/U - 1 repeated epochs  [M23, eq. 5]."""
    (u, d), ops = with_ops(unique_tokens, n_tokens)  # floats or arrays (flopscalc.scalar)
    r_d = ops.maximum(d / u - 1.0, 0.0)
    return ops.where(d <= u, d, u + u * r_d_star * (1.0 - ops.exp(-r_d / r_d_star)))  # [M23, eq. 5]


def data_constrained_loss(law: ScalingLaw, n_params, n_tokens, unique_tokens):
    """Loss (nats/token) of N parameters trained on D tokens drawn from U unique tokens  [M23, eq. 7].

    Excess parameters decay like repeated data: U_N = min(N, N_opt for U), N' = U_N + U_N R_N* (1 -
    exp(-R_N / R_N*)), R_N = N / U_N - 1 (datablations README ``scaling_law``). A run of D tokens sees at most D
    unique ones, so U counts as min(U, D): the same run gets the same loss whatever is left unread. Broadcastable.
    """
    form, rep = law.loss_form, law.repetition
    if rep is None or not isinstance(form, ParametricLoss):
        raise DomainError(f"law {law.name!r} has no data-constrained form; use a parametric law with Muennighoff "
                          "et al.'s repetition decay (besiroglu2024, chinchilla or muennighoff2023)")
    (n, d, u), ops = with_ops(n_params, n_tokens, unique_tokens)  # floats or arrays (flopscalc.scalar)
    u = ops.minimum(u, d)  # unique tokens the run actually sees
    d_eff = effective_data(u, d, rep.r_d_star)
    n_for_u = form.G * (u * form.G) ** (form.beta / form.alpha)  # N_opt whose D_opt is U  [H22, eq. 4]
    u_n = ops.minimum(n, n_for_u)
    r_n = ops.maximum(n / u_n - 1.0, 0.0)
    n_eff = u_n + u_n * rep.r_n_star * (1.0 - ops.exp(-r_n / rep.r_n_star))  # [M23, eq. 6]
    return form.E + form.A / n_eff**form.alpha + form.B / d_eff**form.beta  # [M23, eq. 7]


@in_float_range
def optimal_data_constrained(law: ScalingLaw, c_flops: float, unique_tokens: float) -> Allocation:
    """Loss-minimising N and D = C / 6N for a budget when only ``unique_tokens`` distinct tokens exist.

    Minimised numerically along C = 6ND: a log-spaced grid over +-4 decades of N around the unconstrained
    optimum, then golden-section search between the best grid point's neighbours. Not a parabola: the loss has
    a kink where N passes the parameters the unique data support (U_N, Muennighoff eq. 6).
    """
    c = _check_positive(c_flops, "the FLOP budget")
    u = _check_positive(unique_tokens, "the number of unique tokens")
    import numpy as np  # a grid search over arrays; only a plan with --dataset-tokens comes here

    n0, _ = optimal_arrays(law, c)
    log_n = np.log(float(n0)) + np.linspace(-1, 1, DC_GRID_POINTS) * DC_SEARCH_DECADES * math.log(10)

    def loss_at(x):  # loss along C = 6ND at log N = x
        n = np.exp(x)
        return data_constrained_loss(law, n, c / (FLOPS_PER_PARAM_TOKEN * n), u)

    k = int(np.clip(np.argmin(loss_at(log_n)), 1, DC_GRID_POINTS - 2))
    lo, hi = float(log_n[k - 1]), float(log_n[k + 1])
    for _ in range(DC_GOLDEN_STEPS):  # golden-section search on a unimodal bracket
        x1, x2 = hi - GOLDEN * (hi - lo), lo + GOLDEN * (hi - lo)
        if loss_at(x1) <= loss_at(x2):
            hi = x2
        else:
            lo = x1
    n = float(np.exp(0.5 * (lo + hi)))
    d = c / (FLOPS_PER_PARAM_TOKEN * n)
    loss = float(data_constrained_loss(law, n, d, u))
    return _allocation(law, c, n, d, loss, "numeric minimum of Muennighoff eq. 7 along C = 6ND", unique_tokens=u)


@in_float_range
def tokens_for_loss(law: ScalingLaw, n_params: float, target_loss: float, unique_tokens: float | None = None
                    ) -> float:
    """Training tokens D at which N parameters reach ``target_loss`` (nats/token); inf if they never do.

    Without U: D = (B / (L - E - A/N^alpha))^(1/beta), inverting [H22, eq. 2]. With U unique tokens: the loss of
    `data_constrained_loss` [M23, eq. 7] falls with D (effective data and U_N both grow), so bisection on ln D;
    inf when even endless repeats (D' -> U (1 + R_D*)) do not reach the target.
    """
    form = law.loss_form
    if not isinstance(form, ParametricLoss):
        raise DomainError(f"law {law.name!r} has no parametric loss E + A/N^alpha + B/D^beta to aim at a target with")
    n = _check_positive(n_params, "the parameter count")
    if unique_tokens is None:
        gap = target_loss - form.E - form.A / n**form.alpha
        return math.inf if gap <= 0 else (form.B / gap) ** (1.0 / form.beta)  # [H22, eq. 2]
    u = _check_positive(unique_tokens, "the number of unique tokens")
    lo, hi = 0.0, math.log(TOKENS_SEARCH_MAX)
    if float(data_constrained_loss(law, n, TOKENS_SEARCH_MAX, u)) > target_loss:
        return math.inf
    for _ in range(TOKENS_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if float(data_constrained_loss(law, n, math.exp(mid), u)) > target_loss:
            lo = mid
        else:
            hi = mid
    return math.exp(hi)


# ----------------------------------------------------------------------------- one prediction, checked


@dataclass(frozen=True)
class LossPrediction:
    """What a law predicts for one run, and whether to believe it.

    law_value: the law's formula (nats/token), whatever its size; loss: the same, or None where it exceeds a
    uniform guess (``uniform_loss`` = ln vocabulary); effective_tokens: D' of repeated data [M23, eq. 5], None
    without a data limit; warnings: range and uniform-guess warnings (`validity`).
    """

    law: str
    n_params: float
    n_tokens: float
    unique_tokens: float | None
    law_value: float
    uniform_loss: float
    effective_tokens: float | None
    warnings: tuple[str, ...]

    @property
    def above_uniform(self) -> bool:
        return self.law_value > self.uniform_loss

    @property
    def loss(self) -> float | None:
        return None if self.above_uniform else self.law_value

    @property
    def c_flops(self) -> float:
        return FLOPS_PER_PARAM_TOKEN * self.n_params * self.n_tokens  # C = 6ND  [H22, sec. 3]


@in_float_range
def predict_loss(law: ScalingLaw, n_params: float, n_tokens: float, unique_tokens: float | None = None
                 ) -> LossPrediction:
    """The loss ``law`` predicts for N parameters (as the law counts them) trained on D tokens, optionally drawn
    from U unique tokens: the one function behind `flopscalc plan` and `flopscalc scaling loss`.

    Without U: the law's L(N, D). With U: Muennighoff et al. 2023 eq. 7 (`data_constrained_loss`: repeated
    tokens and excess parameters both decay), for laws that carry a repetition decay. A value above ln(vocab) is
    returned as ``law_value`` with ``loss`` None; points far outside the fitted range add warnings.
    """
    if not law.has_loss:
        raise DomainError(f"law {law.name!r} is an allocation rule without a loss formula; "
                          "use a parametric law such as besiroglu2024 or chinchilla")
    n = _check_positive(n_params, "the parameter count")
    d = _check_positive(n_tokens, "the number of training tokens")
    if unique_tokens is None:
        value, d_eff = float(law.loss(n, d)), None
    else:
        u = _check_positive(unique_tokens, "the number of unique tokens")
        value = float(data_constrained_loss(law, n, d, u))
        d_eff = float(effective_data(min(u, d), d, law.repetition.r_d_star))  # [M23, eq. 5]
    warnings = range_warnings(law, n, d, unique_tokens=unique_tokens)
    if value > law.uniform_loss:
        warnings += (uniform_warning(law),)
    return LossPrediction(law.name, n, d, unique_tokens, value, law.uniform_loss, d_eff, warnings)
