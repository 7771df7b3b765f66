"""Critical batch size, and the batch that best hides data-parallel communication below it.

A step of data-parallel training costs compute in proportion to its tokens and a communication time that does
not grow with them (the gradient all-reduce happens once per step, `flopscalc.perf.parallel`). A larger batch
spreads that time over more tokens, but past the critical batch size each token teaches less: to reach a loss,
training needs E = E_min (1 + B / B_crit) tokens [1, eq. 5.5; 2, eq. 2.11]. `batch_to_hide_comm` weighs the
two, growing the default batch by powers of two up to B_crit.

References
----------
[1] Kaplan et al. 2020, "Scaling Laws for Neural Language Models", arXiv:2001.08361: eq. 5.3
    B_crit(L) = B_* / L^(1/alpha_B), B_* ~ 2e8 tokens, alpha_B ~ 0.21 (Table 5: B_* = 2.1e8, alpha_B = 0.21);
    sec. 5.1 / Fig. 10: B_crit roughly doubles for every 13% decrease in loss; eq. 5.4-5.5: S_min = S / (1 +
    B_crit / B), E_min = E / (1 + B / B_crit).
[2] McCandlish et al. 2018, "An Empirical Model of Large-Batch Training", arXiv:1812.06162, eq. 2.11:
    (S / S_min - 1)(E / E_min - 1) = 1, B_crit = E_min / S_min.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import DomainError, UsageError

# Kaplan et al. 2020 Table 5 (eq. 5.3 rounds B_* to 2e8): losses in nats per token on WebText2 with GPT-2's
# tokenizer; other datasets and tokenizers shift the loss scale, so B_crit is an order-of-magnitude guide there.
KAPLAN_B_STAR_TOKENS = 2.1e8
KAPLAN_ALPHA_B = 0.21


def critical_batch_tokens(loss_nats: float, *, b_star_tokens: float = KAPLAN_B_STAR_TOKENS,
                          alpha_b: float = KAPLAN_ALPHA_B) -> float:
    """Critical batch size (tokens) at training loss ``loss_nats`` (nats per token), Kaplan et al. eq. 5.3 [1]."""
    if not (loss_nats > 0 and math.isfinite(loss_nats)):
        raise UsageError(f"loss must be a positive number of nats per token, got {loss_nats}")
    try:
        return b_star_tokens / loss_nats ** (1 / alpha_b)  # [1] eq. 5.3: B_crit = B_* / L^(1/alpha_B)
    except (OverflowError, ZeroDivisionError):  # L^(1/alpha_B) past float range, or below it (loss 1e-300)
        raise DomainError(f"a loss of {loss_nats:g} nats per token gives a critical batch beyond float range "
                          f"(B_* / L^(1/{alpha_b:g}), Kaplan et al. 2020 eq. 5.3); give a loss a model reaches, "
                          "e.g. 3.3") from None


def token_cost_factor(tokens_per_step: float, critical_tokens: float) -> float:
    """Tokens needed at this batch over the minimum at a tiny batch, 1 + B / B_crit ([1] eq. 5.5, [2] eq. 2.11)."""
    return 1 + tokens_per_step / critical_tokens  # [1] eq. 5.5: E = E_min (1 + B / B_crit)


@dataclass(frozen=True)
class BatchChoice:
    """Tokens per step chosen to hide communication, with what it costs and gains."""

    tokens_per_step: int
    sequences_per_gpu: int  # per optimizer step
    grad_accum: int  # micro-batches per GPU per step at the given micro-batch
    critical_tokens: float
    speedup: float  # useful tokens per second over the default batch: rate gain x token value ([1] eq. 5.5)
    reason: str  # why growth stopped: "no exposed communication", "critical batch size", "best trade-off"


def batch_to_hide_comm(default_tokens_per_step: int, *, n_gpus: int, seq_len: int, micro_batch: int,
                       critical_tokens: float, compute_s_per_token: float, exposed_comm_s: float,
                       max_doublings: int = 30) -> BatchChoice:
    """The batch (default x 2^k, never past ``critical_tokens``) with the most useful tokens per second.

    Parameters
    ----------
    default_tokens_per_step : int
        The planner's batch (GPT-3 Table 2.1), tokens; rounded down to whole sequences per GPU (at least one).
    n_gpus, seq_len, micro_batch : int
        Data-parallel GPUs; tokens per sequence; sequences per GPU per micro-batch (the one that fits memory).
    critical_tokens : float
        Critical batch size, tokens (`critical_batch_tokens`).
    compute_s_per_token : float
        Compute time of one step divided by its tokens (s), all GPUs working at once.
    exposed_comm_s : float
        Communication per step that backward does not hide (s); it does not grow with the batch.

    A step takes B c + x seconds; each token is worth 1 / (1 + B / B_crit) of one at a tiny batch [1, eq. 5.5],
    so useful tokens per second are B / ((B c + x)(1 + B / B_crit)), largest at B = sqrt(x B_crit / c).
    Candidates are the default doubled k times while within B_crit; the default stands even above B_crit.
    """
    for name, value in (("number of GPUs", n_gpus), ("sequence length", seq_len), ("micro-batch", micro_batch),
                        ("default tokens per step", default_tokens_per_step)):
        if value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}")
    for name, value in (("critical batch size", critical_tokens), ("compute time per token", compute_s_per_token)):
        if not (value > 0 and math.isfinite(value)):
            raise UsageError(f"{name} must be a positive number, got {value}")
    if not (exposed_comm_s >= 0 and math.isfinite(exposed_comm_s)):
        raise UsageError(f"exposed communication must be a finite number of seconds >= 0, got {exposed_comm_s}")

    def useful_rate(tokens: int) -> float:  # useful tokens per second ([1] eq. 5.5)
        return tokens / ((tokens * compute_s_per_token + exposed_comm_s) * token_cost_factor(tokens, critical_tokens))

    seqs0 = max(1, default_tokens_per_step // (seq_len * n_gpus))
    per_gpu = [seqs0 * 2**k for k in range(max_doublings + 1)
               if k == 0 or seqs0 * 2**k * seq_len * n_gpus <= critical_tokens]
    best = max(per_gpu, key=lambda s: useful_rate(s * seq_len * n_gpus))  # first of equals: the smaller batch
    tokens = best * seq_len * n_gpus
    if exposed_comm_s == 0:
        reason = "no exposed communication"
    elif seqs0 * seq_len * n_gpus > critical_tokens:
        reason = "default already above the critical batch size"
    elif best == per_gpu[-1] and len(per_gpu) <= max_doublings:
        reason = "critical batch size"  # the next doubling would pass B_crit
    else:
        reason = "best trade-off"  # useful tokens per second peaked below B_crit
    return BatchChoice(tokens, best, math.ceil(best / micro_batch), critical_tokens,
                       useful_rate(tokens) / useful_rate(seqs0 * seq_len * n_gpus), reason)
