"""Inference-aware allocation: the model that is cheapest over its life, training plus serving.

Chinchilla-optimal minimises training compute for a loss. A model that will then serve T tokens costs
2N FLOPs per served token as well, so the cheapest model of a given quality over its whole life is smaller and
trained on more tokens [S24]:

    min over (N, D) of  6 N D + 2 N T   subject to  L(N, D) = l          [S24]

with L the Chinchilla parametric law E + A/N^alpha + B/D^beta [H22, eq. 2]. Pure functions; scipy is
imported inside the solvers only. The same problem in dollars: `scaling.inference_cost`.

FLOP convention: 6 FLOPs per parameter per training token and 2 per inference token (forward only) [K20,
sec. 2.1], with N as the law counts it (all parameters for the Chinchilla-family laws); attention's
context-dependent FLOPs, which `flopscalc.flops` counts exactly, are left out as the paper leaves them out.
It is the same C = 6ND as `flopscalc.scaling.laws.FLOPS_PER_PARAM_TOKEN`.

References
----------
[S24] Sardana, Portes, Doubov, Frankle 2024, "Beyond Chinchilla-Optimal: Accounting for Inference in Language
      Model Scaling Laws", ICML 2024, arXiv:2401.00448; code github.com/nikhilsardana/beyond-chinchilla.
[H22] Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models", arXiv:2203.15556.
[K20] Kaplan et al. 2020, "Scaling Laws for Neural Language Models", arXiv:2001.08361.
[G24] Gadre et al. 2024, "Language models scale reliably with over-training and on downstream tasks",
      arXiv:2403.08540.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..errors import DomainError, UsageError
from ..flops import FLOPS_PER_MAC
from .allocate import flops_for_loss, in_float_range, optimal
from .laws import (
    CHINCHILLA_A3,
    CHINCHILLA_RUNS,
    FLOPS_PER_PARAM_TOKEN,
    MASSIVETEXT_VOCAB_SIZE,
    ParametricLoss,
    ScalingLaw,
)
from .overtraining import (  # noqa: F401 - re-exported: the note lives apart so plans need not load this module
    OVERTRAINING_WARN_TOKENS_PER_PARAM,
    SARDANA_MAX_TOKENS_PER_PARAM,
    OvertrainingNote,
    overtraining_note,
)
from .validity import range_warnings

# Forward pass only: 2 FLOPs per parameter per token served (a multiply and an add per weight) [K20, sec. 2.1;
# S24: inference costs 2N per token].
INFERENCE_FLOPS_PER_PARAM_TOKEN = FLOPS_PER_MAC

# The constants Sardana et al. use: Hoffmann et al.'s approach 3 with alpha and beta to three figures
# (alpha = 0.336, beta = 0.283, A = 406.4, B = 410.7, E = 1.69) [S24 code, utils.ChinchillaConstants; README,
# "Advanced Features"]. Hoffmann eq. 10 prints alpha = 0.34, beta = 0.28 (flopscalc's `chinchilla` law).
SARDANA2024 = ScalingLaw(
    name="sardana2024",
    title="Chinchilla approach 3 with the exponents Sardana et al. 2024 use",
    source="Sardana et al. 2024 (arXiv:2401.00448), code defaults: Hoffmann et al. 2022 approach 3",
    flop_convention="C = 6ND; inference 2N per token",
    n_counts_embeddings=True,
    loss_form=replace(CHINCHILLA_A3.loss_form, alpha=0.336, beta=0.283),  # E, A, B: Chinchilla's [H22, eq. 10]
    fitted_range=CHINCHILLA_RUNS,
    vocab_size=MASSIVETEXT_VOCAB_SIZE,
)

# Search for the optimal D: the root lies above the Chinchilla D of the same loss; the upper end of the bracket
# grows tenfold until the stationarity condition changes sign (40 decades is past any float budget).
ROOT_BRACKET_DECADES = 40
# Relative tolerance of the roots, in ln D and in the loss: far below the 4 figures any source prints.
ROOT_RTOL = 1e-12


def lifetime_flops(n_params, n_tokens, inference_tokens):
    """Training plus inference FLOPs of a model over its life: 6 N D + 2 N T  [S24]."""
    return FLOPS_PER_PARAM_TOKEN * n_params * n_tokens + INFERENCE_FLOPS_PER_PARAM_TOKEN * n_params * inference_tokens


def life_cycle_flops_at_speed(n_params, n_tokens, inference_tokens, train_time_s, reference_flop_per_s):
    """Life-cycle FLOPs of a run whose training is priced by its time: `lifetime_flops` 6ND + 2NT [S24], plus what
    its training time exceeds (or falls short of) the time 6ND takes at ``reference_flop_per_s`` (FLOP/s), priced at
    that rate.

    n_params (law's N), n_tokens (D) and inference_tokens (T): counts; train_time_s: the run's training time (s);
    reference_flop_per_s: the 6ND per second of the run the others are priced against. Equal to rate x train_time_s
    + 2NT: runs that reach one loss on one cluster compare by the cluster time their whole life takes at that rate,
    so a run at the reference speed costs exactly its 6ND + 2NT, and a slower one the FLOPs its extra time forgoes.
    """
    train_flops = FLOPS_PER_PARAM_TOKEN * n_params * n_tokens  # 6ND [S24; K20 sec. 2.1]
    return (lifetime_flops(n_params, n_tokens, inference_tokens)
            + (reference_flop_per_s * train_time_s - train_flops))  # the time beyond 6ND's, at the reference rate


@dataclass(frozen=True)
class InferenceAllocation:
    """The life-cycle optimum for a loss and an inference demand, beside the Chinchilla model of the same loss.

    target_loss: the loss both models reach (nats/token); inference_tokens: tokens served over the model's life
    (prompt plus output); chinchilla_*: the training-compute-optimal model of that loss [H22, eq. 4];
    n_params, n_tokens: the inference-aware optimum [S24]; budget_flops: the training budget the question
    started from (None when it started from a loss); warnings: where the law is extrapolated.
    """

    law: str
    target_loss: float
    inference_tokens: float
    chinchilla_n_params: float
    chinchilla_n_tokens: float
    n_params: float
    n_tokens: float
    method: str
    budget_flops: float | None = None
    warnings: tuple[str, ...] = ()

    @property
    def train_flops(self) -> float:
        return FLOPS_PER_PARAM_TOKEN * self.n_params * self.n_tokens  # C = 6ND  [H22, sec. 3]

    @property
    def chinchilla_train_flops(self) -> float:
        return FLOPS_PER_PARAM_TOKEN * self.chinchilla_n_params * self.chinchilla_n_tokens  # C = 6ND

    @property
    def inference_flops(self) -> float:
        return INFERENCE_FLOPS_PER_PARAM_TOKEN * self.n_params * self.inference_tokens  # 2 N T  [S24]

    @property
    def chinchilla_inference_flops(self) -> float:
        return INFERENCE_FLOPS_PER_PARAM_TOKEN * self.chinchilla_n_params * self.inference_tokens

    @property
    def lifetime_flops(self) -> float:
        return self.train_flops + self.inference_flops

    @property
    def chinchilla_lifetime_flops(self) -> float:
        return self.chinchilla_train_flops + self.chinchilla_inference_flops

    @property
    def saving_flops(self) -> float:
        """Life-cycle FLOPs the inference-aware model saves over the Chinchilla model of the same loss."""
        return self.chinchilla_lifetime_flops - self.lifetime_flops

    @property
    def saving_fraction(self) -> float:
        return self.saving_flops / self.chinchilla_lifetime_flops

    @property
    def params_ratio(self) -> float:
        """N over the Chinchilla model's N (below 1: a smaller model)."""
        return self.n_params / self.chinchilla_n_params

    @property
    def tokens_ratio(self) -> float:
        """D over the Chinchilla model's D (above 1: trained longer)."""
        return self.n_tokens / self.chinchilla_n_tokens

    @property
    def tokens_per_param(self) -> float:
        return self.n_tokens / self.n_params

    @property
    def chinchilla_tokens_per_param(self) -> float:
        return self.chinchilla_n_tokens / self.chinchilla_n_params


def _form(law: ScalingLaw) -> ParametricLoss:
    form = law.loss_form
    if not isinstance(form, ParametricLoss):
        raise DomainError(f"law {law.name!r} has no parametric loss E + A/N^alpha + B/D^beta; inference-aware "
                          "allocation needs one (use --law besiroglu2024 or --law chinchilla)")
    return form


def _check_inference_tokens(inference_tokens: float) -> float:
    t = float(inference_tokens)
    if not (math.isfinite(t) and t >= 0):
        raise UsageError(f"inference tokens must be a number >= 0, e.g. 2T, got {inference_tokens}")
    return t


def _optimal_tokens(form: ParametricLoss, loss: float, inference_tokens: float, d_chinchilla: float) -> float:
    """The D that minimises 6ND + 2NT on the curve L(N, D) = loss.

    Stationarity of the Lagrangian, with A N^-alpha = loss - E - B D^-beta substituted [S24; their
    code's ``compute_optimal_train_tokens``]:
        g(D) = (beta B / alpha + B) D^-beta + (T beta B / (3 alpha)) D^(-beta-1) + E - loss = 0.
    g falls with D, from +inf to E - loss < 0, so the root is unique; at T = 0 it is the Chinchilla D.
    """
    from scipy.optimize import brentq

    c1 = form.beta * form.B / form.alpha + form.B
    c2 = inference_tokens * form.beta * form.B / (3.0 * form.alpha)

    def g(log_d: float) -> float:  # [S24] stationarity in ln D
        return c1 * math.exp(-form.beta * log_d) + c2 * math.exp((-form.beta - 1.0) * log_d) + form.E - loss

    lo = math.log(d_chinchilla)
    if g(lo) <= 0:  # T = 0 (or rounding at it): the Chinchilla model itself
        return d_chinchilla
    hi = lo
    for _ in range(ROOT_BRACKET_DECADES):
        hi += math.log(10.0)
        if g(hi) < 0:
            break
    else:
        raise DomainError(f"no inference-aware optimum within {ROOT_BRACKET_DECADES} decades of training tokens for "
                          f"loss {loss:.4g} serving {inference_tokens:.3g} tokens; give fewer inference tokens or "
                          "aim at a higher loss")
    return math.exp(brentq(g, lo, hi, xtol=ROOT_RTOL, rtol=ROOT_RTOL))


@in_float_range
def inference_optimal_for_loss(law: ScalingLaw, target_loss: float, inference_tokens: float, *,
                               budget_flops: float | None = None) -> InferenceAllocation:
    """The N and D that reach ``target_loss`` (nats/token) with the fewest training plus inference FLOPs.

    Parameters
    ----------
    law : ScalingLaw
        A law with a parametric loss E + A/N^alpha + B/D^beta [H22, eq. 2].
    target_loss : float
        Loss to reach (nats/token), above the law's E and below a uniform guess.
    inference_tokens : float
        Tokens the model will serve over its life, prompt plus output (count); 0 gives the Chinchilla model.
    budget_flops : float, optional
        Recorded on the result when the loss came from a training budget.

    References: [S24, Fig. 1; code ``compute_optimal.py``] for the problem; [H22, eq. 4] for the Chinchilla model of the same loss.
    """
    form = _form(law)
    t = _check_inference_tokens(inference_tokens)
    chin = flops_for_loss(law, target_loss)  # checks E < loss < uniform guess
    d = _optimal_tokens(form, target_loss, t, chin.n_tokens)
    n = (form.A / (target_loss - form.E - form.B / d**form.beta)) ** (1.0 / form.alpha)  # invert [H22, eq. 2]
    over = overtraining_note(law, n, d).warning
    warnings = range_warnings(law, n, d) + ((over,) if over else ())
    return InferenceAllocation(law.name, float(target_loss), t, chin.n_params, chin.n_tokens, n, d,
                               "root of the Lagrange condition (Sardana et al. 2024)", budget_flops, warnings)


@in_float_range
def inference_optimal_for_budget(law: ScalingLaw, c_flops: float, inference_tokens: float) -> InferenceAllocation:
    """The life-cycle optimum for the loss a training budget reaches compute-optimally [S24, Fig. 1].

    The Chinchilla model of ``c_flops`` (FLOP) sets the quality; the inference-aware model of that quality
    trains longer (more than ``c_flops``) on a smaller model and saves over the life of the model.
    """
    _form(law)  # an allocation rule has no loss at any budget: say so, not "give a larger budget"
    chin = optimal(law, c_flops)
    if chin.loss is None:
        raise DomainError(f"law {law.name!r} predicts no loss at {c_flops:.3g} FLOP (none, or above a uniform guess);"
                          " give a larger budget or a parametric law")
    return inference_optimal_for_loss(law, chin.loss, inference_tokens, budget_flops=chin.c_flops)


@in_float_range
def inference_optimal_for_training_budget(law: ScalingLaw, c_flops: float, inference_tokens: float
                                          ) -> InferenceAllocation:
    """The life-cycle optimum whose training costs exactly ``c_flops`` (FLOP): for a fixed cluster and time.

    Finds the loss l whose inference-aware model [S24] trains in ``c_flops``; that model is smaller and
    sees more tokens than the Chinchilla model of ``c_flops``, reaches a slightly higher loss, and is compared
    with the Chinchilla model of its own loss l (which trains in less than ``c_flops``). Training FLOPs of the
    optimum fall as l rises, so the root is unique; bisection (Brent) on l.
    """
    from scipy.optimize import brentq

    _form(law)
    t = _check_inference_tokens(inference_tokens)
    chin = optimal(law, c_flops)
    if chin.loss is None or t == 0:
        return inference_optimal_for_budget(law, c_flops, t)
    c = chin.c_flops

    def excess(loss: float) -> float:  # ln of training FLOPs over the budget
        return math.log(inference_optimal_for_loss(law, loss, t).train_flops / c)

    lo = chin.loss  # here the optimum trains in at least c (Chinchilla is the least training for a loss)
    if excess(lo) <= 0:
        return inference_optimal_for_loss(law, lo, t, budget_flops=c)
    hi = lo + 0.999 * (law.uniform_loss - lo)
    if excess(hi) > 0:
        raise DomainError(f"no model below a uniform guess trains in {c:.3g} FLOP and serves {t:.3g} tokens at the "
                          "life-cycle optimum; give a larger budget or fewer inference tokens")
    loss = brentq(excess, lo, hi, xtol=ROOT_RTOL, rtol=ROOT_RTOL)
    return inference_optimal_for_loss(law, loss, t, budget_flops=c)


def flops_per_nat(law: ScalingLaw, n_params: float, n_tokens: float) -> float:
    """Life-cycle FLOPs one nat of loss is worth at a life-cycle optimum (N, D): the Lagrange multiplier of [S24].

    Stationarity in D of 6ND + 2NT + lambda (L(N, D) - l) gives 6N + lambda dL/dD = 0, with
    dL/dD = -beta B D^(-beta-1) [H22, eq. 2], so lambda = 6 N D^(beta+1) / (beta B) (FLOP per nat). By the envelope
    theorem it is also the slope -dK/dl of the least life-cycle FLOPs K(l) of a loss l: the life-cycle FLOPs a run
    saves per nat it gives up, near the optimum.
    """
    form = _form(law)
    return FLOPS_PER_PARAM_TOKEN * n_params * n_tokens ** (form.beta + 1.0) / (form.beta * form.B)  # [S24] + [H22, eq. 2]


def life_cycle_flops_at_budget(law: ScalingLaw, optimum: InferenceAllocation, n_params: float, loss: float) -> float:
    """Life-cycle FLOPs of a run that spends the training budget of ``optimum`` (a life-cycle optimum for a training
    budget, `inference_optimal_for_training_budget`) on ``n_params`` parameters (law's N) and reaches ``loss``
    (nats/token), its loss priced at the optimum's rate.

    C + 2NT + lambda (loss - l*), with C, l* the optimum's training FLOPs and loss and lambda `flops_per_nat` there
    [S24]: runs of one training budget differ in what they serve (2NT) and in the loss they reach, and lambda is the
    exchange rate between the two at which the optimum is cheapest. On the curve 6ND = C it is least at the optimum
    itself (where it equals 6ND + 2NT): stationarity of 2NT + lambda L subject to 6ND = C is the Lagrange condition
    of [S24]; with T = 0 the least is the lowest loss.
    """
    lam = flops_per_nat(law, optimum.n_params, optimum.n_tokens)
    return (optimum.train_flops + INFERENCE_FLOPS_PER_PARAM_TOKEN * n_params * optimum.inference_tokens
            + lam * (loss - optimum.target_loss))  # [S24]: 6ND + 2NT, the loss gap at lambda


@in_float_range
def life_cycle_comparison(law: ScalingLaw, n_params: float, n_tokens: float, inference_tokens: float
                          ) -> InferenceAllocation:
    """Any run (N, D) beside the Chinchilla model of the loss it reaches: what serving T tokens saves or costs.

    For a plan's candidates: each option's life-cycle FLOPs 6ND + 2NT [S24] against the least-training
    model of its own quality [H22, eq. 4]. The saving is 0 for a Chinchilla-optimal run and largest near the
    inference-aware optimum; negative for a model larger than Chinchilla's of its loss.
    """
    _form(law)
    t = _check_inference_tokens(inference_tokens)
    if not (n_params > 0 and n_tokens > 0):
        raise UsageError(f"parameters and tokens must be positive, got {n_params} and {n_tokens}")
    loss = float(law.loss(n_params, n_tokens))
    chin = flops_for_loss(law, loss)
    return InferenceAllocation(law.name, loss, t, chin.n_params, chin.n_tokens, float(n_params), float(n_tokens),
                               "the given run", None, range_warnings(law, n_params, n_tokens))
