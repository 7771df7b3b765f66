"""How far past compute-optimal a run is trained, and which measurements reach that far (issue 16, item 4).

Split from `scaling.inference` (which re-exports it) so that every plan, which states this note, does not load the
inference-aware solvers only `--inference-tokens` uses (start-up, issue 18).

References
----------
[S24] Sardana, Portes, Doubov, Frankle 2024, "Beyond Chinchilla-Optimal: Accounting for Inference in Language
      Model Scaling Laws", ICML 2024, arXiv:2401.00448; code github.com/nikhilsardana/beyond-chinchilla.
[H22] Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models", arXiv:2203.15556.
[G24] Gadre et al. 2024, "Language models scale reliably with over-training and on downstream tasks",
      arXiv:2403.08540.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import UsageError
from .laws import CHINCHILLA_TOKENS_PER_PARAM  # ~20 tokens per parameter [H22, Table 3]

if TYPE_CHECKING:
    from .laws import ScalingLaw

# Sardana et al. trained 47 models from 10 to 10,000 tokens per parameter and found that a law fitted at usual
# ratios overestimates what extra tokens buy at extreme ones [S24, abstract; README "Data"].
SARDANA_MAX_TOKENS_PER_PARAM = 10_000.0
# Where the caveat starts: 5x Chinchilla's ratio. A judgement, not a published threshold: the Chinchilla laws'
# own runs centre on ~20 (their IsoFLOP minima [H22, Fig. 3]), and past ~100 the runs Sardana et al. and Gadre
# et al. trained are the only data; below it the law is used as fitted.
OVERTRAINING_WARN_TOKENS_PER_PARAM = 100.0


@dataclass(frozen=True)
class OvertrainingNote:
    """How far past Chinchilla's ~20 tokens per parameter a run is, and which data cover it.

    tokens_per_param: D / N; times_chinchilla: that over `CHINCHILLA_TOKENS_PER_PARAM`; warning: one line when
    past `OVERTRAINING_WARN_TOKENS_PER_PARAM`, else None.
    """

    law: str
    tokens_per_param: float
    times_chinchilla: float
    warning: str | None


def overtraining_note(law: ScalingLaw, n_params: float, n_tokens: float) -> OvertrainingNote:
    """Caveat for a loss predicted far beyond compute-optimal training (issue 16, item 4).

    Gadre et al. 2024 [G24] fit an over-training law on 104 models (11M to 6.9B parameters, C4, RedPajama and
    RefinedWeb); its constants differ by dataset and are not built in. The note says how far out the run is and
    which measurements reach that far: Sardana et al.'s runs to 10,000 tokens/parameter [S24], Gadre et al.'s.
    """
    if not (n_params > 0 and n_tokens > 0):
        raise UsageError(f"parameters and tokens must be positive, got {n_params} and {n_tokens}")
    ratio = n_tokens / n_params
    times = ratio / CHINCHILLA_TOKENS_PER_PARAM
    head = f"{ratio:,.0f} tokens per parameter is {times:,.0f}x Chinchilla's ~20"
    warning = None
    if ratio > SARDANA_MAX_TOKENS_PER_PARAM:
        warning = (f"{head}, beyond every run of Sardana et al. 2024 (up to 10,000): {law.name}'s loss here is an "
                   "extrapolation no measurement checks; such laws overestimate what extra tokens buy at extreme "
                   "ratios (arXiv:2401.00448)")
    elif ratio > OVERTRAINING_WARN_TOKENS_PER_PARAM:
        warning = (f"{head}: {law.name} was fitted near compute-optimal runs and is extrapolated here; Sardana et "
                   "al. 2024 trained to 10,000 and found such laws overestimate what extra tokens buy at extreme "
                   "ratios (arXiv:2401.00448); Gadre et al. 2024 fit an over-training law on their own data "
                   "(arXiv:2403.08540)")
    return OvertrainingNote(law.name, ratio, times, warning)
