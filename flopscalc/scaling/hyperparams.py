"""Batch size, peak learning rate, warm-up and schedule for a planned run.

DeepSeek LLM fitted the batch size and learning rate that train best as power laws of compute [DS24, sec. 3.1,
eq. 1], with compute counted their way: C = M D, M the non-embedding FLOPs per token of their eq. 2. The
critical batch size [K20, eq. 5.3] is the ceiling: past it each token teaches less [K20, eq. 5.5; McC18].

Mapping DeepSeek's C onto flopscalc's counts. M = 72 n_layer d^2 + 12 n_layer d l_seq [DS24, eq. 2] is
6 x (12 n_layer d^2), six FLOPs per weight of the standard block (attention 4 d^2, MLP 8 d^2) [K20, sec. 2.1],
plus 12 n_layer d l_seq, the attention-score term of PaLM's model FLOPs [PaLM, App. B: 6N + 12 L H Q T with H Q
= d] with no causal halving. So C_DeepSeek = our PaLM-convention model FLOPs with N the block weights only: no
embedding or LM-head matrix (6 V d per token), no biases or norms; for GPT-2 small at 1,024 tokens it is 17%
below 6ND with all parameters. `deepseek_compute_flops` computes it from the shape, never from our 6ND.

Pure functions of numbers; no I/O.

References
----------
[DS24] DeepSeek-AI (Bi et al.) 2024, "DeepSeek LLM: Scaling Open-Source Language Models with Longtermism",
       arXiv:2401.02954: sec. 2.3 (AdamW, warm-up, multi-step schedule), sec. 3.1 eq. 1 (B_opt, eta_opt),
       eq. 2 (M), Table 2 (7B and 67B settings).
[K20] Kaplan et al. 2020, "Scaling Laws for Neural Language Models", arXiv:2001.08361, eq. 5.3 and 5.5.
[McC18] McCandlish et al. 2018, "An Empirical Model of Large-Batch Training", arXiv:1812.06162, eq. 2.11.
[H22] Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models", arXiv:2203.15556, sec. 3.1
      (learning rate decayed tenfold over the horizon) and App. B (cosine cycle length matched to the run).
[PaLM] Chowdhery et al. 2022, "PaLM: Scaling Language Modeling with Pathways", arXiv:2204.02311, App. B.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from ..batch_size import critical_batch_tokens, token_cost_factor
from ..errors import UsageError
from ..units import format_count, format_flops
from .validity import RANGE_FACTOR

# B_opt = 0.2920 C^0.3271 (tokens per step), eta_opt = 0.3118 C^-0.1250  [DS24, sec. 3.1, eq. 1].
DEEPSEEK_BATCH_COEF = 0.2920
DEEPSEEK_BATCH_EXP = 0.3271
DEEPSEEK_LR_COEF = 0.3118
DEEPSEEK_LR_EXP = -0.1250
# M = 72 n_layer d^2 + 12 n_layer d l_seq  [DS24, eq. 2]: weight and attention-score FLOPs per token, fwd + bwd.
DEEPSEEK_M_WEIGHT_FACTOR = 72
DEEPSEEK_M_ATTENTION_FACTOR = 12
# The budgets of the grid searches the laws were fitted on: 1e17 to 2e19 (DeepSeek's own 7B and 67B, 8.5e22 and
# 9.9e23 in this convention, lie beyond and land within 10% of the law; tests/test_hyperparams.py).
DEEPSEEK_FIT_C_FLOPS = (1e17, 2e19)
# The optimizer the laws were fitted under: AdamW beta1 = 0.9, beta2 = 0.95, weight decay 0.1, gradient clip 1.0
# [DS24, sec. 2.3]; GPT-3's recipe too (flopscalc.train.config defaults).
DEEPSEEK_ADAM_BETAS = (0.9, 0.95)
DEEPSEEK_WEIGHT_DECAY = 0.1
DEEPSEEK_GRAD_CLIP = 1.0
# "the learning rate reaches its maximum value after 2000 warmup steps" [DS24, sec. 2.3].
DEEPSEEK_WARMUP_STEPS = 2000
# Short runs: warm-up capped at 2% of the steps, the largest share in DeepSeek's runs (67B: 2,000 of 2T / (4,608
# x 4,096) = 105,968 steps, 1.9%; 7B: 0.9%) [DS24, Table 2]. A derived cap, not a published rule.
WARMUP_MAX_FRACTION = 0.02
# Multi-step: 31.6% of the peak after 80% of the tokens, 10% after 90% [DS24, sec. 2.3].
DEEPSEEK_MULTISTEP = ((0.8, 0.316), (0.9, 0.1))
# Cosine over the whole run [H22, App. B: a cycle longer than the run under-trains] down to 10% of the peak [H22,
# sec. 3.1: decayed "by a factor of 10x"; Brown et al. 2020, App. B]: the schedule flopscalc's trainer runs.
COSINE_MIN_LR_RATIO = 0.1


class Schedule(str, Enum):
    """Learning-rate schedule after warm-up. DeepSeek found the two end equally well [DS24, sec. 2.3, Fig. 1]."""

    cosine = "cosine"
    multistep = "multistep"


def deepseek_flops_per_token(n_layer: int, n_embd: int, seq_len: int) -> float:
    """M, non-embedding training FLOPs per token, DeepSeek's measure of model scale [DS24, eq. 2]."""
    for name, value in (("n_layer", n_layer), ("n_embd", n_embd), ("seq_len", seq_len)):
        if not (value >= 1):
            raise UsageError(f"{name} must be at least 1, got {value}")
    return (DEEPSEEK_M_WEIGHT_FACTOR * n_layer * n_embd**2
            + DEEPSEEK_M_ATTENTION_FACTOR * n_layer * n_embd * seq_len)  # [DS24, eq. 2]


def deepseek_compute_flops(n_layer: int, n_embd: int, seq_len: int, n_tokens: float) -> float:
    """C = M D, training compute in DeepSeek's convention (FLOP) [DS24, sec. 3.2]."""
    return deepseek_flops_per_token(n_layer, n_embd, seq_len) * n_tokens  # C = M D  [DS24, sec. 3.2]


def optimal_batch_tokens(c_flops: float) -> float:
    """B_opt = 0.2920 C^0.3271: tokens per optimizer step for a budget C in DeepSeek's convention [DS24, eq. 1]."""
    return DEEPSEEK_BATCH_COEF * c_flops**DEEPSEEK_BATCH_EXP  # [DS24, sec. 3.1, eq. 1]


def optimal_learning_rate(c_flops: float) -> float:
    """eta_opt = 0.3118 C^-0.1250: peak AdamW learning rate for a budget C (DeepSeek's convention) [DS24, eq. 1]."""
    return DEEPSEEK_LR_COEF * c_flops**DEEPSEEK_LR_EXP  # [DS24, sec. 3.1, eq. 1]


def warmup_steps_for(n_steps: int) -> int:
    """DeepSeek's 2,000 warm-up steps [DS24, sec. 2.3], at most 2% of a short run (at least one step)."""
    return max(1, min(DEEPSEEK_WARMUP_STEPS, math.ceil(WARMUP_MAX_FRACTION * n_steps)))


@dataclass(frozen=True)
class Hyperparameters:
    """Recommended optimizer settings for a run, each with its source.

    c_flops: compute in DeepSeek's convention, C = M D (FLOP); m_flops_per_token: M [DS24, eq. 2];
    law_batch_tokens: B_opt of the law (tokens, unrounded); batch_tokens / batch_sequences: the recommendation,
    whole sequences (a multiple of ``sequences_multiple``), capped at the critical batch when a loss is given;
    learning_rate: eta_opt, the peak; critical_batch_tokens: Kaplan's B_crit at the loss (None without one);
    n_steps, warmup_steps: optimizer steps of the run and of the linear warm-up; schedule, min_lr_ratio,
    milestones: the decay after warm-up ((fraction of tokens, multiplier of the peak) for multi-step);
    warnings: one line each; sources: setting -> where it comes from.
    """

    c_flops: float
    m_flops_per_token: float
    n_tokens: float
    seq_len: int
    law_batch_tokens: float
    batch_sequences: int
    learning_rate: float
    critical_batch_tokens: float | None
    n_steps: int
    warmup_steps: int
    schedule: Schedule
    min_lr_ratio: float
    milestones: tuple[tuple[float, float], ...]
    adam_betas: tuple[float, float] = DEEPSEEK_ADAM_BETAS
    weight_decay: float = DEEPSEEK_WEIGHT_DECAY
    grad_clip: float = DEEPSEEK_GRAD_CLIP
    warnings: tuple[str, ...] = ()
    sources: dict = field(default_factory=dict)

    @property
    def batch_tokens(self) -> int:
        return self.batch_sequences * self.seq_len

    def as_dict(self) -> dict:
        """JSON-ready: the fields, units in the names; what `flopscalc train --from-plan` would read."""
        return {
            "c_flops_deepseek": self.c_flops, "m_flops_per_token": self.m_flops_per_token, "n_tokens": self.n_tokens,
            "seq_len": self.seq_len, "law_batch_tokens": self.law_batch_tokens, "batch_tokens": self.batch_tokens,
            "batch_sequences": self.batch_sequences, "learning_rate": self.learning_rate,
            "critical_batch_tokens": self.critical_batch_tokens, "n_steps": self.n_steps,
            "warmup_steps": self.warmup_steps, "schedule": self.schedule.value, "min_lr_ratio": self.min_lr_ratio,
            "milestones": [list(m) for m in self.milestones], "adam_betas": list(self.adam_betas),
            "weight_decay": self.weight_decay, "grad_clip": self.grad_clip, "warnings": list(self.warnings),
            "sources": dict(self.sources),
        }


SOURCES = {
    "batch_tokens": "DeepSeek LLM (arXiv:2401.02954) sec. 3.1 eq. 1: B_opt = 0.2920 C^0.3271, C = M D (eq. 2)",
    "learning_rate": "DeepSeek LLM (arXiv:2401.02954) sec. 3.1 eq. 1: eta_opt = 0.3118 C^-0.1250",
    "critical_batch_tokens": "Kaplan et al. 2020 eq. 5.3: B_crit = 2.1e8 / L^(1/0.21) tokens (WebText2 losses)",
    "warmup_steps": "DeepSeek LLM sec. 2.3: 2000 steps, capped at 2% of the run",
    "schedule_cosine": "Hoffmann et al. 2022 App. B and sec. 3.1: one cosine cycle over the run, down to 10%",
    "schedule_multistep": "DeepSeek LLM sec. 2.3: 31.6% of the peak after 80% of tokens, 10% after 90%",
    "optimizer": "DeepSeek LLM sec. 2.3: AdamW beta1 0.9, beta2 0.95, weight decay 0.1, clip 1.0",
}


def _sequences(tokens: float, seq_len: int, multiple: int) -> int:
    """Whole sequences nearest ``tokens``, rounded to a multiple of ``multiple`` (at least one multiple)."""
    return max(1, round(tokens / (seq_len * multiple))) * multiple


def recommend_hyperparameters(n_layer: int, n_embd: int, seq_len: int, n_tokens: float, *,
                              loss_nats: float | None = None, planned_batch_tokens: float | None = None,
                              schedule: Schedule | str = Schedule.cosine, sequences_multiple: int = 1
                              ) -> Hyperparameters:
    """Batch size, peak learning rate, warm-up and schedule for a model of this shape trained on ``n_tokens``.

    Parameters
    ----------
    n_layer, n_embd : int
        Transformer blocks and width d_model (the shape DeepSeek's M counts [DS24, eq. 2]).
    seq_len : int
        Tokens per training sequence, l_seq (count).
    n_tokens : float
        Training tokens D (count).
    loss_nats : float, optional
        Predicted final loss (nats/token); gives the critical batch size [K20, eq. 5.3], the ceiling of the batch.
    planned_batch_tokens : float, optional
        The batch the plan actually runs (tokens); warned about when above the critical batch.
    schedule : Schedule or str
        ``cosine`` (what flopscalc's trainer runs) or ``multistep`` (DeepSeek's).
    sequences_multiple : int
        The batch in sequences is rounded to a multiple of this (data-parallel GPUs x micro-batch).

    Returns
    -------
    Hyperparameters
    """
    if not (n_tokens > 0 and math.isfinite(n_tokens)):
        raise UsageError(f"training tokens must be a positive number, got {n_tokens}")
    if sequences_multiple < 1:
        raise UsageError(f"sequences_multiple must be at least 1, got {sequences_multiple}")
    try:
        sched = Schedule(schedule)
    except ValueError:
        raise UsageError(f"schedule must be one of {', '.join(s.value for s in Schedule)}, got {schedule!r}") from None
    m = deepseek_flops_per_token(n_layer, n_embd, seq_len)
    c = m * n_tokens  # C = M D  [DS24, sec. 3.2]
    law_batch = optimal_batch_tokens(c)
    lr = optimal_learning_rate(c)
    warnings: list[str] = []
    lo, hi = DEEPSEEK_FIT_C_FLOPS
    if c < lo / RANGE_FACTOR or c > hi * RANGE_FACTOR:
        side, factor = ("below", lo / c) if c < lo else ("above", c / hi)
        warnings.append(f"the DeepSeek batch and learning-rate laws are extrapolated: C = M D = {format_flops(c)} is "
                        f"{factor:,.0f}x {side} the {format_flops(lo)} to {format_flops(hi)} budgets they were fitted "
                        "on (DeepSeek's own 7B and 67B, 4,000x and 50,000x above, land within 10%)")
    seqs = _sequences(law_batch, seq_len, sequences_multiple)
    b_crit = None
    if loss_nats is not None:
        b_crit = critical_batch_tokens(loss_nats)
        if seqs * seq_len > b_crit:
            capped = max(sequences_multiple, int(b_crit // (seq_len * sequences_multiple)) * sequences_multiple)
            warnings.append(f"DeepSeek's batch {format_count(law_batch)} tokens is above the critical batch "
                            f"{format_count(b_crit)} tokens at loss {loss_nats:.3g} (Kaplan et al. eq. 5.3, measured on "
                            f"WebText2: an order-of-magnitude guide); recommending {format_count(capped * seq_len)}")
            seqs = capped
        if planned_batch_tokens is not None and planned_batch_tokens > b_crit:
            factor = token_cost_factor(planned_batch_tokens, b_crit)  # E = E_min (1 + B / B_crit)  [K20, eq. 5.5]
            warnings.append(f"the plan's batch {format_count(planned_batch_tokens)} tokens is above the critical batch "
                            f"{format_count(b_crit)}: it needs {factor:.2f}x the tokens a small batch needs for the "
                            "same loss (Kaplan et al. eq. 5.5); fewer GPUs or accumulation steps waste less")
    elif planned_batch_tokens is not None:
        raise UsageError("planned_batch_tokens is compared with the critical batch, which needs loss_nats")
    n_steps = max(1, math.ceil(n_tokens / (seqs * seq_len)))
    milestones = DEEPSEEK_MULTISTEP if sched is Schedule.multistep else ()
    min_ratio = DEEPSEEK_MULTISTEP[-1][1] if sched is Schedule.multistep else COSINE_MIN_LR_RATIO
    sources = {k: v for k, v in SOURCES.items() if not k.startswith("schedule_")}
    sources["schedule"] = SOURCES[f"schedule_{sched.value}"]
    return Hyperparameters(c, m, float(n_tokens), seq_len, law_batch, seqs, lr, b_crit, n_steps,
                           warmup_steps_for(n_steps), sched, min_ratio, milestones, warnings=tuple(warnings),
                           sources=sources)


def schedule_multiplier(step: int, n_steps: int, warmup_steps: int, min_lr_ratio: float,
                        schedule: Schedule | str = Schedule.cosine, milestones: tuple = ()) -> float:
    """Learning rate at optimizer step ``step`` (0-based) over the peak: linear warm-up, then the schedule.

    Cosine: half a cosine from 1 to ``min_lr_ratio`` over the steps after warm-up [H22, App. B; SGDR eq. 5]; the
    same numbers as `flopscalc.train.config.learning_rate_at`. Multi-step: 1, then each milestone's multiplier
    once that fraction of the steps (tokens) is trained [DS24, sec. 2.3]. Primitives only, so the trainer can call it.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps  # linear warm-up [DS24, sec. 2.3; Goyal et al. 2017, sec. 2.2]
    if Schedule(schedule) is Schedule.multistep:
        done = step / n_steps  # fraction of the tokens already trained when this step starts
        mult = 1.0
        for fraction, value in milestones:
            if done >= fraction:  # "after processing 80% of the tokens": the first step that starts past it
                mult = value  # [DS24, sec. 2.3]
        return mult
    progress = min(1.0, (step - warmup_steps) / max(1, n_steps - warmup_steps))
    return min_lr_ratio + 0.5 * (1 - min_lr_ratio) * (1 + math.cos(math.pi * progress))  # SGDR eq. 5


def learning_rate_multiplier(h: Hyperparameters, step: int) -> float:
    """`schedule_multiplier` for a recommendation."""
    return schedule_multiplier(step, h.n_steps, h.warmup_steps, h.min_lr_ratio, h.schedule, h.milestones)
