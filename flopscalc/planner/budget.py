"""The FLOP budget of GPUs x time, and what it buys each GPT-2 preset at 20 tokens per parameter.

Two efficiency knobs are kept apart on purpose (the seed note folds them into one "90% utilization"):
- ``utilization``: duty cycle, the share of wall-clock time the GPUs are busy training;
- ``mfu``: model FLOPs utilization while busy, achieved model FLOP/s over peak (Chowdhery et al. 2022, App. B).

MFU counts model FLOPs only; HFU counts recomputation too (Korthikanti et al. 2022, sec. 5). The efficiency a
user states (``--mfu``, or `DEFAULT_MFU`) is the GPU's hardware efficiency while it computes: the MFU of a step
without recomputation. A plan's budget carries the MFU of the run it recommends, which recomputation (extra
FLOPs at the same hardware rate), exposed communication and offload lower below the stated figure, so the
budget's model FLOPs are what that run delivers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UsageError
from ..hardware import DEFAULT_PRECISION, GpuSpec, Precision  # noqa: F401 (DEFAULT_PRECISION: re-exported)
from ..memory.settings import MAX_N_GPUS, check_gpu_count_bound  # noqa: F401 (the engine's bound, re-exported)
from ..model import ModelConfig, count_params
from ..scaling.laws import CHINCHILLA_TOKENS_PER_PARAM  # re-exported: Hoffmann et al. 2022 Table 3

# Default duty cycle: Llama 3 405B pre-training had "higher than 90% effective training time"
# (Dubey et al. 2024, "The Llama 3 Herd of Models", sec. 3.3.4); also the seed note's 90%.
DEFAULT_UTILIZATION = 0.90
# Default hardware efficiency, stated as the MFU of a step without recomputation: well-tuned dense-transformer
# training reaches MFU ~0.4 (Llama 3 405B BF16: 38-43%,
# Dubey et al. 2024, Table 4; PaLM 540B: 46.2%, Chowdhery et al. 2022, Table 3). State yours with --mfu.
DEFAULT_MFU = 0.40


@dataclass(frozen=True)
class ComputeBudget:
    """FLOPs a set of GPUs delivers over a wall-clock duration."""

    gpu: GpuSpec
    n_gpus: int
    duration_s: float
    precision: Precision
    utilization: float
    mfu: float

    def __post_init__(self) -> None:
        if self.n_gpus < 1:
            raise UsageError(f"number of GPUs must be at least 1, got {self.n_gpus}")
        check_gpu_count_bound(self.n_gpus)  # as PlanRequest checks it (plot frontier --mfu builds a budget alone)
        if not self.duration_s > 0:
            raise UsageError(f"duration must be positive, got {self.duration_s} s")
        for knob in ("utilization", "mfu"):
            v = getattr(self, knob)
            if not 0 < v <= 1:
                raise UsageError(f"{knob} must be a fraction in (0, 1], got {v}")

    @property
    def peak_flop_per_s_per_gpu(self) -> float:
        return self.gpu.peak_flop_per_s(self.precision)

    @property
    def peak_flop_per_s(self) -> float:
        """All GPUs at their dense peak (FLOP/s)."""
        return self.n_gpus * self.peak_flop_per_s_per_gpu

    @property
    def achieved_flop_per_s(self) -> float:
        """Model FLOP/s averaged over wall-clock time: peak x duty cycle x MFU."""
        return self.peak_flop_per_s * self.utilization * self.mfu

    @property
    def peak_flops(self) -> float:
        """Peak rate for the whole duration: the ceiling nothing reaches (FLOP)."""
        return self.peak_flop_per_s * self.duration_s

    @property
    def busy_flops(self) -> float:
        """Peak x duty cycle x time: the seed note's '1.14e21' kind of number (MFU = 1) (FLOP)."""
        return self.peak_flops * self.utilization

    @property
    def model_flops(self) -> float:
        """Useful model FLOPs the run delivers: busy FLOPs x MFU (FLOP)."""
        return self.busy_flops * self.mfu


@dataclass(frozen=True)
class Candidate:
    """What one model gets out of a budget, with the setup and speed the planner gives it (`PlanOption`)."""

    model: ModelConfig
    n_params: int  # all parameters, Chinchilla's N
    seq_len: int
    model_flops_per_token: float  # exact matmul count, forward + backward, dense attention
    budget_tokens: float  # tokens the whole budget trains it on (0 when it fits no setup)
    wall_tokens_per_s: float  # tokens per wall-clock second with its setup, duty cycle included (0: does not fit)
    min_gpus: int | None = None  # fewest GPUs that would hold it, when it fits no setup on the plan's GPUs

    @property
    def fits(self) -> bool:
        return self.wall_tokens_per_s > 0

    @property
    def chinchilla_tokens(self) -> float:
        """20 x N tokens (Hoffmann et al. 2022, Table 3)."""
        return CHINCHILLA_TOKENS_PER_PARAM * self.n_params

    @property
    def chinchilla_flops(self) -> float:
        """Model FLOPs for 20 x N tokens."""
        return self.chinchilla_tokens * self.model_flops_per_token

    @property
    def chinchilla_time_s(self) -> float:
        """Wall-clock time for 20 x N tokens at the speed of the setup the plan chose for it (inf when it fits
        no setup); on several GPUs that setup's batch grows with the budget's predicted loss."""
        return self.chinchilla_tokens / self.wall_tokens_per_s if self.fits else math.inf

    @property
    def tokens_per_param(self) -> float:
        return self.budget_tokens / self.n_params

    @property
    def reaches_chinchilla(self) -> bool:
        return self.tokens_per_param >= CHINCHILLA_TOKENS_PER_PARAM


def candidate(model: ModelConfig, seq_len: int, budget_tokens: float, wall_tokens_per_s: float,
              min_gpus: int | None = None) -> Candidate:
    """Tokens, tokens per parameter and time to 20 tokens/parameter for ``model``, from the tokens the budget
    trains it on and its speed (tokens per wall-clock second) with the setup that fits."""
    from ..flops import Recompute  # here: the option defaults above must not load numpy
    from .options import _training_flops  # the plan's FLOP convention (a sliding window's pairs)

    return Candidate(model, count_params(model).total, seq_len,
                     _training_flops(model, seq_len, Recompute.none).model_flops_per_token, budget_tokens,
                     wall_tokens_per_s, min_gpus)
