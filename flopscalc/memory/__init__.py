"""Training-memory estimator: what fills a GPU's memory, whether it fits, and what would make it fit.

Pure functions of frozen configs (no torch, no I/O). Components, formulas and sources: ``docs/memory.md``.
"""

from .._lazy import lazy_exports
from .activations import ActivationBreakdown, activation_bytes, logits_buffer_bytes
from .estimate import COMPONENTS, Assumption, MemoryBreakdown, estimate_memory
from .fit import Fit, fits, max_micro_batch
from .precision import MemoryPrecision
from .settings import Device, LossKernel, Optimizer, TrainingSetup
from .states import ModelStates, model_states, optimizer_state_bytes, param_shapes

__all__ = [
    "COMPONENTS",
    "ActivationBreakdown",
    "Assumption",
    "Device",
    "Fit",
    "FitAdvice",
    "Fix",
    "LossKernel",
    "MemoryAnswer",
    "MemoryBreakdown",
    "MemoryPrecision",
    "ModelStates",
    "Optimizer",
    "TrainingSetup",
    "activation_bytes",
    "answer",
    "estimate_memory",
    "fits",
    "logits_buffer_bytes",
    "max_micro_batch",
    "model_states",
    "optimizer_state_bytes",
    "param_shapes",
    "suggest_fixes",
]

# `memory.advice`'s fixes and `answer` load on first use (PEP 562): a plan needs none of them.
_EXPORTS = dict.fromkeys(("Fix", "FitAdvice", "MemoryAnswer", "answer", "suggest_fixes"), "advice")
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
