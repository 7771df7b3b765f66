"""Scaling laws: built-in published laws, compute-optimal allocation, and fitting your own (issue 4).

Engines only (numpy; scipy is imported inside the fitting functions when they run).
"""

from .allocate import (
                       Allocation,
                       data_constrained_loss,
                       effective_data,
                       flops_for_loss,
                       flops_for_params,
                       optimal,
                       optimal_data_constrained,
                       predict_loss,
                       tokens_for_loss,
)
from .hyperparams import Hyperparameters, Schedule, recommend_hyperparameters
from .inference import (
                       InferenceAllocation,
                       inference_optimal_for_budget,
                       inference_optimal_for_loss,
                       inference_optimal_for_training_budget,
                       life_cycle_comparison,
                       overtraining_note,
)
from .laws import BUILTIN_LAWS, DEFAULT_LAW, ParametricLoss, PowerLawAllocation, ScalingLaw
from .validity import range_warnings

__all__ = [
                       "BUILTIN_LAWS",
                       "DEFAULT_LAW",
                       "Allocation",
                       "Hyperparameters",
                       "InferenceAllocation",
                       "ParametricLoss",
                       "PowerLawAllocation",
                       "ScalingLaw",
                       "Schedule",
                       "data_constrained_loss",
                       "effective_data",
                       "flops_for_loss",
                       "flops_for_params",
                       "inference_optimal_for_budget",
                       "inference_optimal_for_loss",
                       "inference_optimal_for_training_budget",
                       "life_cycle_comparison",
                       "optimal",
                       "optimal_data_constrained",
                       "overtraining_note",
                       "predict_loss",
                       "range_warnings",
                       "recommend_hyperparameters",
                       "tokens_for_loss",
]
