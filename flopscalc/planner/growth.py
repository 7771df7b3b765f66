"""The batch grown past GPT-3's to hide data-parallel communication, within the critical batch size (several GPUs
only: one GPU has no communication to hide, so a one-GPU plan never loads this; start-up, issue 18)."""

from __future__ import annotations

from dataclasses import dataclass

from ..batch_size import BatchChoice, batch_to_hide_comm, critical_batch_tokens, token_cost_factor
from ..hardware import GpuSpec, Precision
from ..model import ModelConfig
from .options import ChosenSetup, Throughput
from .setups import choose_setup


@dataclass(frozen=True)
class BatchGrowth:
    """Tokens per step grown past GPT-3's (`target_tokens_per_step`) to hide data-parallel communication, never
    past the critical batch size at the run's loss (`batch_size.batch_to_hide_comm`)."""

    default_tokens_per_step: int  # GPT-3 Table 2.1, whole sequences per GPU
    tokens_per_step: int  # the grown batch the setup runs
    critical_tokens: float  # Kaplan et al. 2020 eq. 5.3 at ``loss_nats`` (WebText2 nats: an order-of-magnitude guide)
    loss_nats: float  # the predicted loss the critical batch is taken at
    default_scaling_efficiency: float  # compute / (compute + exposed communication) at the default batch
    reason: str  # why growth stopped: "critical batch size" or "best trade-off" (`BatchChoice.reason`)

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

    ``batch_to_hide_comm`` picks default x 2^k within the critical batch at ``loss_nats`` that gives the most
    useful tokens per second; the setup is then searched again at that batch (`choose_setup`: a larger per-GPU
    batch may allow a larger micro-batch or another ZeRO stage, under the plan's ``time_model``) and timed by
    ``speed_of(chosen)`` (the plan's time model at the run's efficiency). Kept only if its useful tokens per
    second (tokens/s x `BatchGrowth.token_value`) beat the default's.
    """
    if n_gpus == 1 or not speed.comm.exposed_s > 0 or loss_nats is None or not loss_nats > 0:
        return None
    crit = critical_batch_tokens(loss_nats)
    choice: BatchChoice = batch_to_hide_comm(
        chosen.tokens_per_step, n_gpus=n_gpus, seq_len=seq_len, micro_batch=chosen.setup.micro_batch,
        critical_tokens=crit, compute_s_per_token=speed.compute_s / speed.tokens_per_step,
        exposed_comm_s=speed.comm.exposed_s)
    if choice.tokens_per_step <= chosen.tokens_per_step:
        return None
    grown = choose_setup(cfg, gpu, n_gpus, seq_len, precision, capacity_bytes, search_efficiency,
                         choice.tokens_per_step, time_model)
    if grown is None:
        return None
    new = speed_of(grown)
    growth = BatchGrowth(chosen.tokens_per_step, grown.tokens_per_step, crit, loss_nats, speed.scaling_efficiency,
                         choice.reason)
    if new.tokens_per_s * growth.token_value <= speed.tokens_per_s:
        return None  # the search at the larger batch gained no useful tokens per second
    return grown, new, growth
