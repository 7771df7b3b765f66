"""With --inference-tokens: the plan's option cheapest over its life, training plus serving (Sardana et al. 2024).

The engine's formulas are `scaling.inference` (`lifetime_flops`, `life_cycle_flops_at_budget`); this picks among the
options `planner.search` evaluated, each at its own tokens, loss and speed. See docs/planner.md, step 9.

References
----------
[S24] Sardana, Portes, Doubov, Frankle 2024, "Beyond Chinchilla-Optimal: Accounting for Inference in Language
      Model Scaling Laws", ICML 2024, arXiv:2401.00448.
"""

from __future__ import annotations

from ..scaling.laws import FLOPS_PER_PARAM_TOKEN
from ..scaling.laws import n_for_law as _law_n
from .options import PlanOption


def life_cycle_pick(options: list[PlanOption], plain: PlanOption, law, kind: str, ia) -> PlanOption:
    """The option cheapest over its life, training plus serving ``ia.inference_tokens`` (count) [S24].

    ``plain`` is the pick without inference tokens among ``options``; ``kind`` the budget's ("target": the options
    reach one loss; any other: they spend one budget); ``ia`` the life-cycle optimum the plan prints.

    A budget's options differ in what they serve (2NT) and the loss they reach: the least
    `scaling.inference.life_cycle_flops_at_budget` (2NT + lambda x loss, lambda the FLOPs a nat is worth at ``ia``),
    least at ``ia`` itself on the budget's curve 6ND = C, and the lowest loss (``plain``) as T -> 0: a model that
    memory or speed already shrank is not shrunk again. A target's options reach one loss: the least training plus
    serving, training priced by its time at the 6ND per second of the fastest (``plain``):
    `scaling.inference.life_cycle_flops_at_speed`, so T -> 0 gives the fastest and options at its speed compare by
    `lifetime_flops` 6ND + 2NT exactly.
    """
    from ..scaling.inference import life_cycle_flops_at_budget, life_cycle_flops_at_speed

    if kind == "target":
        rate = FLOPS_PER_PARAM_TOKEN * _law_n(law, plain.model) * plain.n_tokens / plain.train_time_s  # 6ND/s [S24]
        return min(options, key=lambda o: life_cycle_flops_at_speed(_law_n(law, o.model), o.n_tokens,
                                                                    ia.inference_tokens, o.train_time_s, rate))
    return min(options, key=lambda o: life_cycle_flops_at_budget(law, ia, _law_n(law, o.model), o.loss))
