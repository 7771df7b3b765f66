"""When a plan's loss is data-bound: the shortest run of the recommended model and setup that reaches nearly its loss.

With a dataset size (``--dataset-tokens``) repeated tokens lose value (Muennighoff et al. 2023, eq. 5-7: the
effective data saturates near R_D* epochs), so a budget far past that point buys almost nothing: a year of a
4070 Ti on 1B unique tokens trains 136 epochs to loss 2.790, where 138.4 days (51.6B tokens, 51.6 epochs) reach
2.795, within the 0.005-nat tolerance (`plan --gpu 4070ti --days 365 --dataset-tokens 1e9`). The plan still
recommends spending the budget (a user with a fixed budget may want the run); this says what a shorter run gets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .options import PlanOption
from .relax import BINDING_LOSS, RELAX_FACTOR
from .search import _law_n, _loss

# How close to the recommended run's loss the shorter run must come (nats/token): our judgement, five times
# `relax.BINDING_LOSS` (the least gain the plan calls binding) and a twelfth of the besiroglu2024 interval on its
# floor E (+-0.06 nats, +-2 SE, Besiroglu et al. 2024 sec. 3). That interval is not the tolerance: it moves the loss
# of every run alike, so it says nothing about the difference between a shorter and a longer run of one model.
DATA_BOUND_LOSS_TOLERANCE = 0.005
# Bisection on log(tokens) stops when the bracket is this narrow (relative): far below any printed digit.
_BISECT_REL = 1e-6
_BISECT_MAX_STEPS = 200
# Budgets that spend a fixed amount (time, FLOPs, money); fixed tokens and a target have no budget to cut short.
_SPENDING_KINDS = ("time", "flops", "money")


@dataclass(frozen=True)
class ShorterRun:
    """The shortest run of the recommended model and setup within ``tolerance_nats`` of its loss."""

    n_tokens: float  # tokens trained (as the recommended run counts them)
    train_time_s: float  # wall-clock time at the recommended run's speed and duty cycle
    epochs: float  # passes over the unique tokens
    loss: float  # predicted loss (nats/token), the planner's `_loss`
    tolerance_nats: float  # DATA_BOUND_LOSS_TOLERANCE
    budget_loss: float  # the recommended run's loss, spending the whole budget
    budget_train_time_s: float  # the recommended run's wall-clock time

    @property
    def saved_s(self) -> float:
        """Wall-clock time of the budget the shorter run leaves unspent."""
        return self.budget_train_time_s - self.train_time_s


def shorter_run(rec: PlanOption, law, dataset_tokens: float | None, budget_kind: str) -> ShorterRun | None:
    """The shortest run of ``rec``'s model and setup whose loss is within `DATA_BOUND_LOSS_TOLERANCE` of ``rec``'s,
    when the loss is data-bound: a dataset size is given, the run repeats it, and `RELAX_FACTOR` x the tokens
    would improve the loss by less than `relax.BINDING_LOSS` (the compute row of "what limits this run" is slack
    for this model). None otherwise.

    Found by bisection on log(tokens) of the planner's own loss (`search._loss`: Muennighoff et al. 2023 eq. 7
    with the plan's law), which falls as tokens grow; a grown batch's tokens keep their worth
    (``rec.useful_tokens / rec.n_tokens``, Kaplan et al. 2020 eq. 5.5) and the time scales with the tokens at the
    run's own speed.
    """
    if (dataset_tokens is None or budget_kind not in _SPENDING_KINDS or rec.loss is None or not rec.fits
            or not (rec.n_tokens > dataset_tokens) or not math.isfinite(rec.n_tokens)):
        return None
    n_law = _law_n(law, rec.model)
    value = rec.useful_tokens / rec.n_tokens  # each trained token's worth in the law's tokens

    def loss_at(tokens: float) -> float:
        loss = _loss(law, n_law, tokens * value, dataset_tokens)[0]
        return math.inf if loss is None else loss  # above a uniform guess: no prediction, so never close enough

    if rec.loss - loss_at(rec.n_tokens * RELAX_FACTOR) >= BINDING_LOSS:  # more compute still pays: not data-bound
        return None
    goal = rec.loss + DATA_BOUND_LOSS_TOLERANCE
    lo, hi = dataset_tokens, rec.n_tokens  # loss_at(hi) = rec.loss <= goal
    if loss_at(lo) <= goal:  # one epoch is already close enough
        hi = lo
        lo = lo * _BISECT_REL
        if loss_at(lo) <= goal:
            return None
    for _ in range(_BISECT_MAX_STEPS):  # loss_at(lo) > goal >= loss_at(hi)
        if hi / lo - 1 <= _BISECT_REL:
            break
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if loss_at(mid) <= goal else (mid, hi)
    return ShorterRun(hi, rec.train_time_s * hi / rec.n_tokens, hi / dataset_tokens, loss_at(hi),
                      DATA_BOUND_LOSS_TOLERANCE, rec.loss, rec.train_time_s)


def shorter_run_warning(s: ShorterRun) -> str:
    """The plan's line: the shorter run's days, epochs and loss, and what the rest of the budget buys."""
    from ..units import SECONDS_PER_DAY, format_count, format_duration

    days = math.ceil(s.train_time_s / SECONDS_PER_DAY)
    return (f"the loss is data-bound: the same model and setup reach loss {s.loss:.3f} in "
            f"{format_duration(s.train_time_s)} ({format_count(s.n_tokens)} tokens, {s.epochs:.1f} epochs), within "
            f"{s.tolerance_nats:g} nats of the {s.budget_loss:.3f} the whole budget buys; the other "
            f"{format_duration(s.saved_s)} buy less than {s.tolerance_nats:g} nats, since repeated tokens lose their "
            f"value (Muennighoff et al. 2023 eq. 5-7); the plan still spends the budget: --max-days {days} stops "
            "every option there")
