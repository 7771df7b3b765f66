"""The planner: budget -> allocation -> options that fit -> recommendation -> explanation.

``core`` runs the steps (``plan``); ``passes`` settles the budget at the recommended run's MFU; ``budget`` turns
days, dollars or FLOPs into a FLOP budget; ``search`` picks models and token counts; ``options`` finds the setup
(ZeRO, offload, recomputation, micro-batch) that fits and is fastest; ``speed`` chooses one time model per plan;
``layout`` hands multi-node runs to the layout search; ``family`` and ``notes`` shape and explain. Importing the
package loads nothing; its public names load ``core`` on first use (PEP 562), so engines may import
``flopscalc.planner.budget`` without pulling in the planner.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__all__ = [  # `planner.core.__all__`, every public name of the planner
    "CHINCHILLA_TOKENS_PER_PARAM", "DEFAULT_MFU", "DEFAULT_PRECISION", "DEFAULT_UTILIZATION", "Assumption",
    "Binding", "Candidate", "ComputeBudget", "Plan", "PlanRequest", "candidate", "model_flops_optimum", "plan",
    "plans_frame",
]
_EXPORTS = dict.fromkeys(__all__, "core")
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
