"""What a fine-tuning run takes: whole sequences, micro-batches and optimizer steps, as a trainer counts them.

A run takes whole sequences (an example, or a packed sequence, is never split across two), whole micro-batches
(the last of an epoch may hold fewer sequences) and at least one optimizer update per epoch.

References
----------
[1] PyTorch ``torch.utils.data.DataLoader`` (``drop_last=False``, the default): ``len(loader)`` =
    ceil(samples / batch_size); the last batch holds the remainder.
[2] transformers ``Trainer.set_initial_training_values`` (``trainer.py``, 5.24): ``num_update_steps_per_epoch =
    max(len_dataloader // gradient_accumulation_steps + int(len_dataloader % gradient_accumulation_steps > 0), 1)``
    and, for a run given in epochs, ``max_steps = math.ceil(num_train_epochs * num_update_steps_per_epoch)``; the
    training loop updates at the end of each epoch even when fewer than ``gradient_accumulation_steps``
    micro-batches are left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RunSteps:
    """Whole counts of one run (sequences, micro-batches, optimizer steps)."""

    n_sequences: int  # sequences the run computes on, over every epoch
    n_micro_batches: int  # forward + backward passes
    n_optimizer_steps: int  # optimizer updates
    n_sequences_per_epoch: int  # one pass over the dataset
    n_micro_batches_per_epoch: int  # ceil(sequences an epoch / micro-batch) [1]
    n_steps_per_epoch: int  # max(ceil(micro-batches an epoch / accumulation), 1) [2]


def run_steps(n_sequences_per_epoch: int, micro_batch: int, grad_accum: int, n_epochs: float) -> RunSteps:
    """The sequences, micro-batches and optimizer steps of ``n_epochs`` passes over ``n_sequences_per_epoch``.

    Parameters
    ----------
    n_sequences_per_epoch : int
        Sequences in one pass over the dataset (sequences, >= 1).
    micro_batch : int
        Sequences per forward pass (sequences).
    grad_accum : int
        Micro-batches per optimizer step (count).
    n_epochs : float
        Passes over the dataset; a fraction runs the steps [2] rounds up, from the start of the last epoch.
    """
    micro_per_epoch = -(-n_sequences_per_epoch // micro_batch)  # [1]: the last micro-batch holds the remainder
    steps_per_epoch = max(-(-micro_per_epoch // grad_accum), 1)  # [2] num_update_steps_per_epoch
    n_steps = math.ceil(n_epochs * steps_per_epoch)  # [2] max_steps
    full_epochs, rest_steps = divmod(n_steps, steps_per_epoch)
    rest_micro = min(micro_per_epoch, rest_steps * grad_accum)  # the partial epoch's micro-batches
    return RunSteps(
        n_sequences=full_epochs * n_sequences_per_epoch + min(n_sequences_per_epoch, rest_micro * micro_batch),
        n_micro_batches=full_epochs * micro_per_epoch + rest_micro,
        n_optimizer_steps=n_steps, n_sequences_per_epoch=n_sequences_per_epoch,
        n_micro_batches_per_epoch=micro_per_epoch, n_steps_per_epoch=steps_per_epoch)
