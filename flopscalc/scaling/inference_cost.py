"""Inference-aware allocation in dollars: the model that reaches a loss for the fewest dollars over its life.

Training is priced at its GPU-hour price, peak rate and MFU; serving splits into prefill (prompt tokens) and decode
(output tokens), each at its own MFU. Dividing the dollar objective by the training price per FLOP turns it into the
FLOP problem of `scaling.inference` with an effective inference demand [S24, their code's ``cost_optimal.py``].

References
----------
[S24] Sardana, Portes, Doubov, Frankle 2024, "Beyond Chinchilla-Optimal: Accounting for Inference in Language
      Model Scaling Laws", ICML 2024, arXiv:2401.00448; code github.com/nikhilsardana/beyond-chinchilla.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..errors import UsageError
from ..units import SECONDS_PER_HOUR
from .allocate import in_float_range
from .inference import (
    INFERENCE_FLOPS_PER_PARAM_TOKEN,
    InferenceAllocation,
    _check_inference_tokens,
    inference_optimal_for_loss,
)
from .laws import FLOPS_PER_PARAM_TOKEN, ScalingLaw


@dataclass(frozen=True)
class InferencePrices:
    """What a FLOP costs in training and in serving: GPU-hour prices, peak rates, and the MFU each phase reaches.

    Serving splits into prefill (prompt tokens, compute-bound) and decode (output tokens, memory-bound, low MFU)
    [S24, real-world cost; their code's ``CostModel``].
    """

    train_usd_per_gpu_hour: float
    train_peak_flop_per_s: float
    train_mfu: float
    inference_usd_per_gpu_hour: float
    inference_peak_flop_per_s: float
    prefill_mfu: float
    decode_mfu: float

    def __post_init__(self) -> None:
        for name in ("train_usd_per_gpu_hour", "train_peak_flop_per_s", "inference_usd_per_gpu_hour",
                     "inference_peak_flop_per_s"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise UsageError(f"{name} must be a positive number, got {getattr(self, name)}")
        for name in ("train_mfu", "prefill_mfu", "decode_mfu"):
            if not 0 < getattr(self, name) <= 1:
                raise UsageError(f"{name} must be in (0, 1], got {getattr(self, name)}")

    @property
    def train_usd_per_flop(self) -> float:
        """Dollars per training FLOP delivered: price / (3600 s x peak x MFU)  [S24 code, ``cost_per_flop``]."""
        return self.train_usd_per_gpu_hour / (SECONDS_PER_HOUR * self.train_peak_flop_per_s * self.train_mfu)

    @property
    def inference_usd_per_peak_flop(self) -> float:
        """Dollars per serving FLOP at full peak: price / (3600 s x peak); each phase divides by its MFU."""
        return self.inference_usd_per_gpu_hour / (SECONDS_PER_HOUR * self.inference_peak_flop_per_s)

    def usd(self, n_params: float, n_tokens: float, prefill_tokens: float, decode_tokens: float) -> float:
        """Life-cycle dollars: 6ND at the training rate, 2N per prompt and per output token at their MFUs."""
        return (FLOPS_PER_PARAM_TOKEN * n_params * n_tokens * self.train_usd_per_flop
                + INFERENCE_FLOPS_PER_PARAM_TOKEN * n_params * self.inference_usd_per_peak_flop
                * (prefill_tokens / self.prefill_mfu + decode_tokens / self.decode_mfu))  # [S24 code, total_cost]

    def training_equivalent_tokens(self, prefill_tokens: float, decode_tokens: float) -> float:
        """Served tokens that cost as much as the demand if served at the training price per FLOP.

        Dividing the dollar objective by the training price per FLOP leaves 6ND + 2N T_eff, so the FLOP optimum
        with T_eff is the dollar optimum [S24 code, ``cost_optimal_train_tokens``].
        """
        return (self.inference_usd_per_peak_flop * (prefill_tokens / self.prefill_mfu + decode_tokens / self.decode_mfu)
                / self.train_usd_per_flop)


@dataclass(frozen=True)
class CostAllocation:
    """The dollar-optimal model of a loss beside the Chinchilla model of that loss (``allocation`` holds N, D)."""

    allocation: InferenceAllocation  # its inference_tokens are `InferencePrices.training_equivalent_tokens`
    prefill_tokens: float
    decode_tokens: float
    prices: InferencePrices

    @property
    def usd(self) -> float:
        a = self.allocation
        return self.prices.usd(a.n_params, a.n_tokens, self.prefill_tokens, self.decode_tokens)

    @property
    def chinchilla_usd(self) -> float:
        a = self.allocation
        return self.prices.usd(a.chinchilla_n_params, a.chinchilla_n_tokens, self.prefill_tokens, self.decode_tokens)

    @property
    def saving_usd(self) -> float:
        return self.chinchilla_usd - self.usd

    @property
    def saving_fraction(self) -> float:
        return self.saving_usd / self.chinchilla_usd


@in_float_range
def inference_cost_optimal_for_loss(law: ScalingLaw, target_loss: float, prefill_tokens: float, decode_tokens: float,
                                    prices: InferencePrices) -> CostAllocation:
    """The N and D that reach ``target_loss`` for the fewest dollars over the model's life [S24, cost_optimal.py].

    ``prefill_tokens`` and ``decode_tokens``: prompt and output tokens served over the life of the model (count).
    """
    t_in, t_out = _check_inference_tokens(prefill_tokens), _check_inference_tokens(decode_tokens)
    t_eff = prices.training_equivalent_tokens(t_in, t_out)
    a = inference_optimal_for_loss(law, target_loss, t_eff)
    return CostAllocation(replace(a, method="root of the Lagrange condition in dollars (Sardana et al. 2024)"),
                          t_in, t_out, prices)
