"""Scaling laws: built-in published laws, compute-optimal allocation, and fitting your own (issue 4).

Engines only. Formulas take numbers or numpy arrays; numbers are computed without importing numpy
(`flopscalc.scalar`), and scipy is imported inside the fitting functions when they run.

The names below load lazily (PEP 562), each from its own module on first use: `flopscalc plan` imports
`scaling.laws` and a few functions, and should not pay for the inference-aware allocation and the rest at start
(issue 18, item 2).
"""

from __future__ import annotations

from .._lazy import lazy_exports

# name -> the module of this package that defines it
_EXPORTS = {
    **dict.fromkeys(("Allocation", "data_constrained_loss", "effective_data", "flops_for_loss", "flops_for_params",
                     "optimal", "optimal_data_constrained", "predict_loss", "tokens_for_loss"), "allocate"),
    **dict.fromkeys(("Hyperparameters", "Schedule", "recommend_hyperparameters"), "hyperparams"),
    **dict.fromkeys(("InferenceAllocation", "inference_optimal_for_budget", "inference_optimal_for_loss",
                     "inference_optimal_for_training_budget", "life_cycle_comparison", "overtraining_note"),
                    "inference"),
    **dict.fromkeys(("BUILTIN_LAWS", "DEFAULT_LAW", "ParametricLoss", "PowerLawAllocation", "ScalingLaw"), "laws"),
    "range_warnings": "validity",
    "optimal_per_token": "per_token",
}

__all__ = [  # every public name (the keys of _EXPORTS)
    "BUILTIN_LAWS", "DEFAULT_LAW", "Allocation", "Hyperparameters", "InferenceAllocation", "ParametricLoss",
    "PowerLawAllocation", "ScalingLaw", "Schedule", "data_constrained_loss", "effective_data", "flops_for_loss",
    "flops_for_params", "inference_optimal_for_budget", "inference_optimal_for_loss",
    "inference_optimal_for_training_budget", "life_cycle_comparison", "optimal", "optimal_data_constrained",
    "optimal_per_token", "overtraining_note", "predict_loss", "range_warnings", "recommend_hyperparameters", "tokens_for_loss",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
