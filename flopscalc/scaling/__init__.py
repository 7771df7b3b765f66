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
)
from .laws import BUILTIN_LAWS, DEFAULT_LAW, ParametricLoss, PowerLawAllocation, ScalingLaw

__all__ = [
                       "BUILTIN_LAWS",
                       "DEFAULT_LAW",
                       "Allocation",
                       "ParametricLoss",
                       "PowerLawAllocation",
                       "ScalingLaw",
                       "data_constrained_loss",
                       "effective_data",
                       "flops_for_loss",
                       "flops_for_params",
                       "optimal",
                       "optimal_data_constrained",
]
