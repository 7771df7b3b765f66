"""The batch grown past GPT-3's to hide data-parallel communication, within the critical batch size (several GPUs
only: one GPU has no communication to hide, so a one-GPU plan never loads this; start-up, issue 18)."""

from __future__ import annotations

from dataclasses import dataclass

from ..batch_size import critical_batch_tokens, token_cost_factor
from ..hardware import GpuSpec, Precision
from ..model import ModelConfig
from .options import ChosenSetup, Throughput
from .setups import choose_setup

# Doublings of GPT-3's batch tried when the batch grows (each within Kaplan's critical batch, eq. 5.3).
MAX_BATCH_DOUBLINGS = 6


@dataclass(frozen=True)
class BatchGrowth:
    """Tokens per step grown past GPT-3's (`target_tokens_per_step`) to hide data-parallel communication, never
    past the critical batch size at the run's loss (`grow_batch`, `planner.layout.grow_layout_batch`)."""

    default_tokens_per_step: int  # GPT-3 Table 2.1, whole sequences per GPU
    tokens_per_step: int  # the grown batch the setup runs
    critical_tokens: float  # Kaplan et al. 2020 eq. 5.3 at ``loss_nats`` (WebText2 nats: an order-of-magnitude guide)
    loss_nats: float  # the predicted loss the critical batch is taken at
    default_scaling_efficiency: float  # compute / (compute + exposed comm + overlap slowdown) at the default batch
    reason: str  # why growth stopped: "critical batch size" or "best trade-off" (`best_doubling`)

    @property
    def token_value(self) -> float:
        """What a token at the grown batch is worth against one at the default batch: (1 + B0/B_crit) /
        (1 + B/B_crit), from E = E_min (1 + B/B_crit) (Kaplan et al. 2020 eq. 5.5; McCandlish et al. 2018 eq.
        2.11). The plan predicts the loss on tokens x this."""
        return (token_cost_factor(self.default_tokens_per_step, self.critical_tokens)
                / token_cost_factor(self.tokens_per_step, self.critical_tokens))  # Kaplan et al. 2020 eq. 5.5


def grow_batch(cfg: ModelConfig, gpu: GpuSpec, n_gpus: int, seq_len: int, precision: Precision,
               capacity_bytes: float | None, search_efficiency: float, chosen: ChosenSetup, speed: Throughput,
               loss_nats: float | None, speed_of, time_model=None) -> tuple[ChosenSetup, Throughput, BatchGrowth] | None:
    """The setup at a batch grown to hide communication, or None when the default batch is best.

    Each doubling of the default batch within the critical batch at ``loss_nats`` (at most MAX_BATCH_DOUBLINGS) is
    searched (`choose_setup`, under the plan's ``time_model``) and timed by ``speed_of(chosen)`` (the plan's time
    model at the run's efficiency); the one with the most useful tokens per second (tokens/s x
    `BatchGrowth.token_value`, Kaplan et al. 2020 eq. 5.5) is kept if it beats the default's. Every doubling is
    searched, as `planner.layout.grow_layout_batch` does, because a larger per-GPU batch may take a larger
    micro-batch (whose longer backward hides more communication) or another ZeRO stage: `batch_to_hide_comm`'s
    closed form holds the exposed communication fixed, so it refused growth that pays (32.7B on 1024 H100s at
    --mfu 0.4: micro-batch 2 -> 4 at twice the batch, scaling efficiency 80% -> 100%, 4% more useful tokens/s).
    """
    if n_gpus == 1 or not speed.comm.exposed_s > 0 or loss_nats is None or not loss_nats > 0:
        return None
    crit = critical_batch_tokens(loss_nats)
    b0 = chosen.tokens_per_step

    def search(tokens: int) -> tuple[ChosenSetup, Throughput] | None:
        grown = choose_setup(cfg, gpu, n_gpus, seq_len, precision, capacity_bytes, search_efficiency, tokens,
                             time_model)
        return None if grown is None else (grown, speed_of(grown))

    found = best_doubling(b0, crit, speed.tokens_per_s, search)
    if found is None:
        return None  # no larger batch gains useful tokens per second
    grown, new, reason = found
    return grown, new, BatchGrowth(b0, grown.tokens_per_step, crit, loss_nats, speed.scaling_efficiency, reason)


def best_doubling(b0: int, crit: float, base_tokens_per_s: float, search):
    """The doubling of the batch ``b0`` (k = 1..MAX_BATCH_DOUBLINGS, never past the critical batch ``crit``, Kaplan
    et al. 2020 eq. 5.3) whose ``search(tokens)`` -> (chosen, speed) or None gives the most useful tokens per second,
    tokens/s x (1 + B0/Bc) / (1 + B/Bc) (eq. 5.5), if that beats ``base_tokens_per_s`` (the default batch's); with
    why growth stopped ("critical batch size" or "best trade-off"). None when no doubling beats the default. The one
    loop of `grow_batch` and `planner.layout.grow_layout_batch`."""
    best = None
    reason = "best trade-off"
    for k in range(1, MAX_BATCH_DOUBLINGS + 1):
        tokens = b0 * 2**k
        if tokens > crit:
            reason = "critical batch size"
            break
        found = search(tokens)
        if found is None:
            continue
        value = token_cost_factor(b0, crit) / token_cost_factor(found[0].tokens_per_step, crit)  # Kaplan eq. 5.5
        useful = found[1].tokens_per_s * value
        if useful > (best[0] if best else base_tokens_per_s):
            best = (useful, found)
    if best is None:
        return None
    grown, speed = best[1]
    if reason == "critical batch size" and grown.tokens_per_step * 2 <= crit:
        reason = "best trade-off"  # a larger batch was allowed and lost
    return grown, speed, reason
