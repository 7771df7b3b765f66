"""What `flopscalc flops` reports: exact counts per token, step and run beside every convention (`summarize`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from ..model import ModelConfig
from .conventions import CONVENTIONS, Convention, convention_flops_per_token
from .exact import Recompute, TrainingFlops, _check_seq_len, tokens_per_step, training_flops_per_token


@dataclass(frozen=True)
class ConventionResult:
    convention: Convention
    flops_per_token: float

    def ratio_to(self, reference_per_token: float) -> float:
        return self.flops_per_token / reference_per_token


@dataclass(frozen=True)
class StepCount:
    """Optimizer steps of a run (a run is whole steps; tokens that do not fill the last make a last, partial one): whole ones, and the tokens of a last partial one (0 when the tokens fill them)."""

    n_steps: int  # steps the run takes, the partial one included (tokens / tokens per step, rounded up)
    n_full_steps: int
    last_step_tokens: int  # tokens in the last, partial step; 0 when every step is full
    tokens_per_step: int


def step_count(n_tokens: float, tokens_per_step: float) -> StepCount:
    """Whole steps of ``n_tokens`` at ``tokens_per_step`` (both whole numbers of tokens)."""
    n, per = round(n_tokens), round(tokens_per_step)
    full, rest = divmod(n, per)
    return StepCount(full + (1 if rest else 0), full, rest, per)


@dataclass(frozen=True)
class FlopsSummary:
    """Everything `flopscalc flops` reports: exact counts per token, step and run, and every convention."""

    model: ModelConfig
    seq_len: int
    n_tokens: float
    tokens_per_step: float
    causal: bool
    training: TrainingFlops
    conventions: tuple[ConventionResult, ...]
    seq_len_given: int | None = None  # the --seq asked for; None: the model's default (`model.default_train_seq`)

    @property
    def n_steps(self) -> float:
        """Tokens over tokens per step, fractional (the FLOPs per step times this is the run's); `steps` counts them."""
        return self.n_tokens / self.tokens_per_step

    @property
    def steps(self) -> StepCount:
        """The run's optimizer steps, whole, with the tokens of a last partial one (`step_count`)."""
        return step_count(self.n_tokens, self.tokens_per_step)

    @property
    def model_flops(self) -> float:
        """Model FLOPs of the whole run (FLOP)."""
        return self.training.model_flops_per_token * self.n_tokens

    @property
    def hardware_flops(self) -> float:
        """Hardware FLOPs of the whole run, recomputation included (FLOP)."""
        return self.training.hardware_flops_per_token * self.n_tokens

    @property
    def model_flops_per_step(self) -> float:
        return self.training.model_flops_per_token * self.tokens_per_step

    @property
    def hardware_flops_per_step(self) -> float:
        return self.training.hardware_flops_per_token * self.tokens_per_step


def summarize(
    cfg: ModelConfig, n_tokens: float, *, seq_len: int | None = None, micro_batch: int = 1,
    grad_accum: int = 1, n_gpus: int = 1, recompute: Recompute | str = Recompute.none, causal: bool = False,
) -> FlopsSummary:
    """Exact and conventional FLOPs of training ``cfg`` on ``n_tokens`` tokens."""
    if not n_tokens > 0:
        raise UsageError(f"number of training tokens must be positive, got {n_tokens:g}")
    for name, v in (("micro-batch", micro_batch), ("gradient accumulation", grad_accum), ("GPU count", n_gpus)):
        if v < 1:
            raise UsageError(f"{name} must be at least 1, got {v}")
    given, seq_len = seq_len, int(_check_seq_len(cfg, seq_len))
    training = training_flops_per_token(cfg, seq_len, recompute=recompute, causal=causal)
    results = tuple(
        ConventionResult(c, convention_flops_per_token(cfg, c.key, seq_len, causal=causal))
        for c in CONVENTIONS.values()
    )
    return FlopsSummary(cfg, seq_len, float(n_tokens), tokens_per_step(micro_batch, seq_len, grad_accum, n_gpus),
                        causal, training, results, given)
