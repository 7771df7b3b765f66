"""Step-time model: one training step as the sum of its operations, each priced by a roofline.

Pure functions of frozen configs (no torch; numpy only where a function is given arrays). Sources and validation:
``docs/performance_model.md``.

The names below load lazily (PEP 562), each from its own module on first use: `planner.layout`, `planner.notes` and
`perf.offload` import this package for one module each, and `flopscalc plan` should not pay for the others at start
(issue 18, item 2).
"""

from __future__ import annotations

from .._lazy import lazy_exports

# name -> the module of this package that defines it
_EXPORTS = {
    "DevicePerf": "device", "device_perf": "device",
    "gemm_efficiency": "gemm", "tile_quantization_efficiency": "gemm", "wave_quantization_efficiency": "gemm",
    "Op": "op_kinds", "OpClass": "op_kinds", "Phase": "op_kinds", "StepOptions": "op_kinds", "step_ops": "ops",
    "ridge_intensity": "roofline", "roofline_s": "roofline",
    "CLASS_ORDER": "step", "StepEstimate": "step", "causal_model_flops_per_token": "utilization",
    "constant_mfu_tokens_per_s_per_gpu": "step", "estimate_step": "step",
}

__all__ = [  # every public name (the keys of _EXPORTS)
    "CLASS_ORDER", "DevicePerf", "Op", "OpClass", "Phase", "StepEstimate", "StepOptions",
    "causal_model_flops_per_token", "constant_mfu_tokens_per_s_per_gpu", "device_perf", "estimate_step",
    "gemm_efficiency", "ridge_intensity", "roofline_s", "step_ops", "tile_quantization_efficiency",
    "wave_quantization_efficiency",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
