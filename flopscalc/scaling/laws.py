"""Scaling laws as data: loss forms, compute-optimal allocations, and the built-in published laws.

Symbols inside formulas follow the papers: N parameters, D training tokens, C training FLOPs,
L loss in nats per token. Outside formulas: ``n_params``, ``n_tokens``, ``c_flops``.

References
----------
[H22] Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models", arXiv:2203.15556.
[B24] Besiroglu, Erdil, Barnett, You 2024, "Chinchilla Scaling: A replication attempt", arXiv:2404.10102.
[K20] Kaplan et al. 2020, "Scaling Laws for Neural Language Models", arXiv:2001.08361.
[M23] Muennighoff et al. 2023, "Scaling Data-Constrained Language Models", arXiv:2305.16264;
      constants from github.com/huggingface/datablations README, "Parametric Fit".
[R21] Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights from Training Gopher",
      arXiv:2112.11446.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import DomainError
from ..flops import FLOPS_PER_PARAM_TOKEN
from ..model import ModelConfig, count_params
from ..scalar import operands
from ..units import SECONDS_PER_DAY

# Kaplan et al. measure compute in PF-days: 1e15 FLOP/s x 86400 s [K20, sec. 1.3 "Notation"].
PF_DAY_FLOPS = 1e15 * SECONDS_PER_DAY
# Training FLOPs per parameter per token, forward + backward: C ~= 6 N D [K20, sec. 2.1; H22, sec. 3]; defined
# once in flopscalc.flops and re-exported here for the scaling modules.
# Tokenizer vocabularies of the laws' data. A loss above ln(vocab) is worse than a uniform guess over it.
# GPT-2's BPE, 50,257 tokens: Kaplan's WebText2 [K20, sec. 2.3] and Muennighoff's C4 runs [M23; the 7M
# model's embedding in data/datablations_runs.md]. Also the fallback for laws of unknown data (flopscalc's
# models use GPT-2's vocabulary, flopscalc.model.GPT2_VOCAB_SIZE).
GPT2_VOCAB_SIZE = 50257
# MassiveText, SentencePiece 32,000 tokens [R21, sec. 3, the tokenizer paragraph; H22 sec. 4.1: Chinchilla's
# vocabulary is 94.15% the same as Gopher's]. ln 32,000 = 10.37 nats.
MASSIVETEXT_VOCAB_SIZE = 32000
# Chinchilla's compute-optimal data: ~20 tokens per parameter (Hoffmann et al. 2022, Table 3: e.g.
# 1B -> 20.2B tokens, 10B -> 205.1B tokens; parameters counted with embeddings).
CHINCHILLA_TOKENS_PER_PARAM = 20.0


def _check_span(span, what: str) -> None:
    if span is None:
        return
    lo, hi = span
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        raise DomainError(f"fitted range of {what} must be 0 < low <= high, got {span}")


@dataclass(frozen=True)
class FittedRange:
    """The span of the runs a law was fitted on, in the law's own conventions (N as the law counts it).

    Each span is (low, high); None where the source gives none. ``source`` says where each span comes from.
    """

    n_params: tuple[float, float] | None = None
    n_tokens: tuple[float, float] | None = None
    c_flops: tuple[float, float] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        for what in ("n_params", "n_tokens", "c_flops"):
            _check_span(getattr(self, what), what)

    def as_dict(self) -> dict:
        return {"n_params": self.n_params, "n_tokens": self.n_tokens, "c_flops": self.c_flops,
                "source": self.source}


def chinchilla_allocation(c_flops, A, B, alpha, beta):
    """Compute-optimal (N_opt, D_opt) of L = E + A / N^alpha + B / D^beta at budgets ``c_flops`` (FLOP).

    The closed form of [H22, eq. 4] under C = 6ND: N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b with
    G = (alpha A / (beta B))^(1/(alpha+beta)), a = beta/(alpha+beta), b = alpha/(alpha+beta). Every
    argument broadcasts (the bootstrap passes arrays of constants); the one copy of this formula. Positive
    numbers are computed in floats, without numpy (`flopscalc.scalar`).
    """
    c_flops, A, B, alpha, beta = operands(c_flops, A, B, alpha, beta)
    g = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))  # G  [H22, eq. 4 / App. D.2]
    c6 = c_flops / FLOPS_PER_PARAM_TOKEN
    return g * c6 ** (beta / (alpha + beta)), c6 ** (alpha / (alpha + beta)) / g  # [H22, eq. 4]


@dataclass(frozen=True)
class ParametricLoss:
    """L(N, D) = E + A / N^alpha + B / D^beta  [H22, eq. 2]. Loss in nats/token."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def __post_init__(self) -> None:
        for k in ("E", "A", "B", "alpha", "beta"):
            v = getattr(self, k)
            if not (math.isfinite(v) and v > 0):
                raise DomainError(f"parametric law constant {k} must be positive and finite, got {v}")

    def loss(self, n_params, n_tokens):
        n, d = operands(n_params, n_tokens)
        return self.E + self.A / n**self.alpha + self.B / d**self.beta  # [H22, eq. 2]

    @property
    def a(self) -> float:
        """Exponent of N_opt in C: beta / (alpha + beta)  [H22, eq. 4]."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """Exponent of D_opt in C: alpha / (alpha + beta)  [H22, eq. 4]."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def G(self) -> float:
        """G = (alpha A / (beta B))^(1 / (alpha + beta))  [H22, eq. 4 / App. D.2]."""
        # N_opt at C = 6 FLOP, where (C/6)^a = 1, is G itself
        return float(chinchilla_allocation(FLOPS_PER_PARAM_TOKEN, self.A, self.B, self.alpha, self.beta)[0])

    def n_opt(self, c_flops):
        """Compute-optimal parameters N_opt = G (C/6)^a for budgets ``c_flops`` (FLOP)  [H22, eq. 4]."""
        return chinchilla_allocation(c_flops, self.A, self.B, self.alpha, self.beta)[0]

    def d_opt(self, c_flops):
        """Compute-optimal tokens D_opt = G^-1 (C/6)^b for budgets ``c_flops`` (FLOP)  [H22, eq. 4]."""
        return chinchilla_allocation(c_flops, self.A, self.B, self.alpha, self.beta)[1]

    def constants(self) -> dict[str, float]:
        return {"E": self.E, "A": self.A, "B": self.B, "alpha": self.alpha, "beta": self.beta}


@dataclass(frozen=True)
class KaplanLoss:
    """L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D  [K20, eq. 1.5]; N non-embedding."""

    alpha_n: float
    alpha_d: float
    n_c: float
    d_c: float

    def loss(self, n_params, n_tokens):
        n, d = operands(n_params, n_tokens)
        return ((self.n_c / n) ** (self.alpha_n / self.alpha_d) + self.d_c / d) ** self.alpha_d  # [K20, eq. 1.5]

    def constants(self) -> dict[str, float]:
        return {"alpha_N": self.alpha_n, "alpha_D": self.alpha_d, "N_c": self.n_c, "D_c": self.d_c}


@dataclass(frozen=True)
class PowerLawAllocation:
    """N_opt = k_N (C / c_unit)^a and D_opt = k_D (C / c_unit)^b  [H22, sec. 3; K20, Table 5].

    ``k_d=None`` means D_opt = C / (6 N_opt), the C = 6ND convention, so b = 1 - a.
    """

    k_n: float
    a: float
    k_d: float | None = None
    b: float | None = None
    c_unit_flops: float = 1.0

    def n_opt(self, c_flops):
        (c,) = operands(c_flops)
        return self.k_n * (c / self.c_unit_flops) ** self.a

    def d_opt(self, c_flops):
        (c,) = operands(c_flops)
        if self.k_d is None:
            return c / (FLOPS_PER_PARAM_TOKEN * self.n_opt(c))  # C = 6 N D  [H22, sec. 3]
        return self.k_d * (c / self.c_unit_flops) ** self.b

    def flops_for_params(self, n_params):
        """Inverse of n_opt: the budget at which ``n_params`` is compute-optimal (FLOP)."""
        (n,) = operands(n_params)
        return self.c_unit_flops * (n / self.k_n) ** (1.0 / self.a)

    @property
    def d_exponent(self) -> float:
        return 1.0 - self.a if self.k_d is None else float(self.b)

    def constants(self) -> dict[str, float]:
        out = {"k_N": self.k_n, "a": self.a, "b": self.d_exponent, "C_unit_flops": self.c_unit_flops}
        if self.k_d is not None:
            out["k_D"] = self.k_d
        return out


@dataclass(frozen=True)
class RepetitionDecay:
    """Muennighoff et al.'s diminishing returns of repeated data and excess parameters [M23, eq. 5-7].

    D' = U_D + U_D R_D* (1 - exp(-R_D / R_D*)), R_D = epochs - 1; the same form for N with R_N*.
    ``unique_tokens`` is the span of unique-token budgets the decay was fitted on; ``source`` its provenance.
    """

    r_d_star: float
    r_n_star: float
    unique_tokens: tuple[float, float] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        _check_span(self.unique_tokens, "unique tokens")


@dataclass(frozen=True)
class ScalingLaw:
    """A named scaling law: its loss form and/or allocation, constants, uncertainty and provenance.

    Parameters
    ----------
    name : str
        Key used on the command line (``--law NAME``).
    title : str
        One-line human name.
    source : str
        Paper and the table or equation the constants come from.
    flop_convention : str
        How the law counts training compute, e.g. "C = 6ND".
    n_counts_embeddings : bool or None
        Whether N includes embedding parameters (None: whatever the fitted runs counted).
    loss_form : ParametricLoss, KaplanLoss or None
        L(N, D); None when the law is an allocation only.
    allocation : PowerLawAllocation or None
        Published power-law allocation; None means closed form from a parametric ``loss_form``.
    uncertainty : dict
        Constant name -> (low, high) interval, with ``uncertainty_kind`` saying what it is.
    repetition : RepetitionDecay or None
        Data-constrained extension [M23].
    fitted_range : FittedRange or None
        The N, D and/or C span of the runs behind the law; outside it the law extrapolates.
    vocab_size : int or None
        Vocabulary of the tokenizer the law's losses are measured in (None: unknown, GPT-2's is assumed).
    """

    name: str
    title: str
    source: str
    flop_convention: str
    n_counts_embeddings: bool | None
    loss_form: ParametricLoss | KaplanLoss | None = None
    allocation: PowerLawAllocation | None = None
    uncertainty: dict = field(default_factory=dict)
    uncertainty_kind: str = ""
    repetition: RepetitionDecay | None = None
    notes: str = ""
    aliases: tuple[str, ...] = ()
    fitted_range: FittedRange | None = None
    vocab_size: int | None = None

    @property
    def has_loss(self) -> bool:
        return self.loss_form is not None

    @property
    def uniform_loss(self) -> float:
        """ln(vocabulary): the loss of a uniform guess over the law's tokens (nats/token); no prediction above it."""
        return math.log(self.vocab_size or GPT2_VOCAB_SIZE)  # cross-entropy of the uniform distribution

    def loss(self, n_params, n_tokens):
        """Predicted loss (nats/token) for N parameters trained on D tokens; numpy-broadcastable."""
        if self.loss_form is None:
            raise DomainError(f"law {self.name!r} is an allocation rule without a loss formula; "
                              "use a parametric law such as besiroglu2024 or chinchilla")
        return self.loss_form.loss(n_params, n_tokens)

    def constants(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.loss_form is not None:
            out.update(self.loss_form.constants())
        if self.allocation is not None:
            out.update(self.allocation.constants())
        if self.repetition is not None:
            out.update({"R_D*": self.repetition.r_d_star, "R_N*": self.repetition.r_n_star})
        return out


# ------------------------------------------------------------------------------------------ built-ins

# Hoffmann et al.'s runs: "over 400 language models ranging from 70 million to over 16 billion parameters on
# 5 to 500 billion tokens" [H22, abstract; Table A9 lists the shapes]. Approach 3 fits the final losses of
# approaches 1 and 2 [H22, sec. 3.3]; Besiroglu et al. refit a subset of the same runs read off Fig. 4 [B24].
def n_for_law(law: ScalingLaw, cfg: ModelConfig) -> int:
    """The parameter count ``law`` means for model ``cfg``: with embeddings unless the law says otherwise
    (Kaplan et al. 2020 count non-embedding parameters [K20, sec. 1.1]); of a mixture of experts, the active
    ones (those a token uses: its FLOPs per token follow them), which dense-model laws were never fitted on.
    The planner, the plots and the reports all call this one function."""
    pc = count_params(cfg)
    return pc.active_non_embedding if law.n_counts_embeddings is False else pc.active


CHINCHILLA_RUNS = FittedRange(n_params=(70e6, 16e9), n_tokens=(5e9, 500e9),
                              source="Hoffmann et al. 2022, abstract")
# Muennighoff et al.'s released C4 runs (data/datablations_all_runs.csv, 296 runs): 7.1M to 8.67B parameters,
# 100M to 900B tokens, 100M to 178B unique tokens [M23, abstract: "up to 900 billion training tokens and 9
# billion parameter models"]. tests/test_scaling_range.py checks these against the CSV.
DATABLATIONS_RUNS = FittedRange(n_params=(7.098752e6, 8.67e9), n_tokens=(100e6, 900e9),
                                source="Muennighoff et al. 2023, released runs")
# R_D* = 15.387756, R_N* = 5.309743 [M23 README; sec. 3.1 quotes R_D* ~ 15.4, R_N* ~ 5.3]
MUENNIGHOFF_DECAY = RepetitionDecay(
    r_d_star=15.387756, r_n_star=5.309743, unique_tokens=(100e6, 178e9),
    source="Muennighoff et al. 2023, released runs")

CHINCHILLA_A3 = ScalingLaw(
    name="chinchilla",
    title="Chinchilla approach 3, parametric fit as published",
    source="Hoffmann et al. 2022, eq. 10 / App. D.2",
    flop_convention="C = 6ND",
    n_counts_embeddings=True,  # H22 counts all parameters (Table A9 lists totals; sec. 3 N = "parameters")
    # E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28 [H22, eq. 10]
    loss_form=ParametricLoss(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28),
    repetition=MUENNIGHOFF_DECAY,
    notes="Rounded constants; Besiroglu et al. 2024 could not reproduce them from the paper's data "
          "and the implied ~0.45 exponent gives more tokens per parameter than approaches 1 and 2. "
          "Repeated data: Muennighoff et al. 2023's decay (R_D*, R_N*), fitted on C4 with their own base law.",
    aliases=("chinchilla-a3", "hoffmann2022"),
    fitted_range=CHINCHILLA_RUNS,
    vocab_size=MASSIVETEXT_VOCAB_SIZE,
)

# Standard errors reported by Besiroglu et al. 2024 in parentheses beside each constant [B24, sec. 3]; also used
# by tests of our own fit on their data.
BESIROGLU2024_SE = {"E": 0.03, "A": 124.58, "B": 1293.23, "alpha": 0.02, "beta": 0.02}
# Interval width in standard errors: +-2 SE, about 95% for a normal estimate.
INTERVAL_N_SE = 2.0


def _log_space_intervals(logged: dict[str, float], linear: dict[str, float]) -> dict[str, tuple[float, float]]:
    """+-INTERVAL_N_SE standard errors of BESIROGLU2024_SE: in log space for ``logged`` (SE(ln X) = SE(X) / X to
    first order, the delta method), linear for ``linear``."""
    out = {}
    for k, x in logged.items():
        half = INTERVAL_N_SE * BESIROGLU2024_SE[k] / x  # SE(ln X) ~= SE(X) / X  (delta method)
        out[k] = (x * math.exp(-half), x * math.exp(half))
    for k, x in linear.items():
        out[k] = (x - INTERVAL_N_SE * BESIROGLU2024_SE[k], x + INTERVAL_N_SE * BESIROGLU2024_SE[k])
    return out


BESIROGLU2024 = ScalingLaw(
    name="besiroglu2024",
    title="Chinchilla approach 3 refitted by Epoch AI (replication)",
    source="Besiroglu et al. 2024 (arXiv:2404.10102), refit of approach 3 on 240 runs from Hoffmann Fig. 4",
    flop_convention="C = 6ND",
    n_counts_embeddings=True,  # same runs as H22
    # E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658 [B24, fitted law, sec. 3]
    loss_form=ParametricLoss(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658),
    # A, B in log space: SE/X is 26% and 62%, and +-2 SE took B below zero. E, alpha, beta: SE/X <= 6%, where
    # the two ways agree within 0.2% of X; kept as printed.
    uncertainty=_log_space_intervals({"A": 482.01, "B": 2085.43}, {"E": 1.8172, "alpha": 0.3478, "beta": 0.3658}),
    uncertainty_kind="about 95%: +-2 standard errors [B24, sec. 3; bootstrap, 4000 resamples]; for A and B in log "
                     "space (fitted as their logs a, b [H22, App. D.2]: ln X +- 2 SE(X)/X, delta method), so no "
                     "interval goes negative",
    repetition=MUENNIGHOFF_DECAY,
    notes="Repeated data: Muennighoff et al. 2023's decay (R_D*, R_N*), fitted on C4 with their own base law.",
    aliases=("epoch2024", "epoch", "chinchilla-replication"),
    fitted_range=CHINCHILLA_RUNS,
    vocab_size=MASSIVETEXT_VOCAB_SIZE,
)

CHINCHILLA_A1 = ScalingLaw(
    name="chinchilla-a1",
    title="Chinchilla approach 1 (training-curve envelope), N_opt ~ C^0.50",
    source="Hoffmann et al. 2022, Table 2 (a=0.50, b=0.50) and Table 3",
    flop_convention="C = 6ND",
    n_counts_embeddings=True,
    # a = 0.49815, k_N = 0.098981: centre of the (a, log k_N) region in which every FLOPs value of Table 3
    # (except the Gopher-budget 67B row) is reproduced to its 3 printed figures; a rounds to Table 2's
    # 0.50 and lies in its interval (0.488, 0.502).
    allocation=PowerLawAllocation(k_n=0.09898104, a=0.4981525),
    uncertainty={"a": (0.488, 0.502), "b": (0.501, 0.512)},
    uncertainty_kind="10th-90th percentile bootstrap interval [H22, Table 2]",
    aliases=("approach1",),
    # "a fixed family of models (ranging from 70M to over 10B parameters)" [H22, sec. 3.1]
    fitted_range=FittedRange(n_params=(70e6, 10e9), source="Hoffmann et al. 2022, sec. 3.1"),
    vocab_size=MASSIVETEXT_VOCAB_SIZE,
)

CHINCHILLA_A2 = ScalingLaw(
    name="chinchilla-a2",
    title="Chinchilla approach 2 (IsoFLOP profiles), N_opt ~ C^0.49",
    source="Hoffmann et al. 2022, Table 2 (a=0.49, b=0.51) and Table A3",
    flop_convention="C = 6ND",
    n_counts_embeddings=True,
    # a = 0.48988, k_N = 0.145935: centre of the region in which every approach-2 FLOPs value of Table A3
    # (except the 67B row) is reproduced to its 3 printed figures; a rounds to Table 2's 0.49 and lies in
    # its interval (0.462, 0.534).
    allocation=PowerLawAllocation(k_n=0.14593499, a=0.48988),
    uncertainty={"a": (0.462, 0.534), "b": (0.483, 0.529)},
    uncertainty_kind="10th-90th percentile bootstrap interval [H22, Table 2]",
    aliases=("approach2",),
    # "9 different training FLOP counts (ranging from 6 x 10^18 to 3 x 10^21 FLOPs)" [H22, sec. 3.2]
    fitted_range=FittedRange(n_params=CHINCHILLA_RUNS.n_params, c_flops=(6e18, 3e21),
                             source="Hoffmann et al. 2022, sec. 3.2 and abstract"),
    vocab_size=MASSIVETEXT_VOCAB_SIZE,
)

KAPLAN2020 = ScalingLaw(
    name="kaplan2020",
    title="Kaplan et al. 2020: L(N, D) and compute-efficient allocation N_opt ~ C^0.73",
    source="Kaplan et al. 2020, eq. 1.5 and Table 2 (loss); Table 5 / Fig. 14 (allocation)",
    flop_convention="C = 6ND, N non-embedding; N_opt fitted in C_min (PF-days), taken as C; D = C/6N",
    n_counts_embeddings=False,  # K20 sec. 2.1: N excludes vocabulary and position embeddings
    # alpha_N=0.076, alpha_D=0.095, N_c=8.8e13, D_c=5.4e13 [K20, eq. 1.5 / Table 2]
    loss_form=KaplanLoss(alpha_n=0.076, alpha_d=0.095, n_c=8.8e13, d_c=5.4e13),
    # N_opt = 1.3e9 C_min^0.73, C_min in PF-days [K20, Table 5]. D = C/6N, not Table 5's D_opt = 2e10 C_min^0.27:
    # C_min = C / (1 + B/B_crit) [K20, eq. 5.5] is the compute of a run at B << B_crit, where C = C_min and the
    # run reads E_min = B_crit S_min = 2.0e6 x 5.4e3 = 1.08e10 C_min^0.27 tokens [K20, Table 5], which is
    # C/6N = 1.11e10 C_min^0.27 to Table 5's rounding (2.6%). D_opt is the data of a run at B = B_crit, which
    # takes 2 S_min steps on 2 E_min tokens [K20, eq. 5.4] and spends about 2 C_min: 6 N_opt D_opt = 1.8 C_min.
    allocation=PowerLawAllocation(k_n=1.3e9, a=0.73, c_unit_flops=PF_DAY_FLOPS),
    notes="Loss in nats on WebText2 with GPT-2's tokenizer, not comparable with Chinchilla's MassiveText losses. "
          "The allocation is Kaplan's, not the minimum of eq. 1.5 under C = 6ND. D = C/6N (Kaplan's E_min = "
          "B_crit S_min, Table 5, to 2.6%); Kaplan's D_opt = 2e10 C_min^0.27 is a run at the critical batch "
          "(2 S_min steps, eq. 5.4) that spends about 2 C_min (6 N D_opt = 1.8 C_min), so it would overspend the budget.",
    aliases=("kaplan",),
    # "models ranging in size from 768 to 1.5 billion non-embedding parameters ... dataset size ranging from
    # 22 million to 23 billion tokens" [K20, sec. 3]
    fitted_range=FittedRange(n_params=(768.0, 1.5e9), n_tokens=(22e6, 23e9),
                             source="Kaplan et al. 2020, sec. 3"),
    vocab_size=GPT2_VOCAB_SIZE,
)

MUENNIGHOFF2023 = ScalingLaw(
    name="muennighoff2023",
    title="Muennighoff et al. 2023 data-constrained law (C4), repeated epochs decay",
    source="Muennighoff et al. 2023, eq. 5-7; constants from the datablations README 'Parametric Fit'",
    flop_convention="C = 6ND",
    n_counts_embeddings=True,
    # a=6.255414, b=7.3049974, e=0.6254804 (A=e^a, B=e^b, E=e^e), alpha=beta=0.3526596 [M23 README]
    loss_form=ParametricLoss(E=math.exp(0.6254804), A=math.exp(6.255414), B=math.exp(7.3049974),
                             alpha=0.3526596, beta=0.3526596),
    repetition=MUENNIGHOFF_DECAY,
    notes="Fitted on C4; use for the effect of repeating data, not for absolute loss.",
    aliases=("muennighoff", "data-constrained"),
    fitted_range=DATABLATIONS_RUNS,
    vocab_size=GPT2_VOCAB_SIZE,
)

BUILTIN_LAWS: dict[str, ScalingLaw] = {
    law.name: law for law in (BESIROGLU2024, CHINCHILLA_A3, CHINCHILLA_A1, CHINCHILLA_A2, KAPLAN2020, MUENNIGHOFF2023)
}
# Default for allocation and loss: the corrected parametric fit, which agrees with approaches 1 and 2.
DEFAULT_LAW = "besiroglu2024"
