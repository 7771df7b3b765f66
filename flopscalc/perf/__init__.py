"""Step-time model: one training step as the sum of its operations, each priced by a roofline.

Pure functions of frozen configs (numpy only, no torch). Sources and validation: ``docs/performance_model.md``.
"""

from .device import DevicePerf, device_perf
from .gemm import gemm_efficiency, tile_quantization_efficiency, wave_quantization_efficiency
from .ops import Op, OpClass, Phase, StepOptions, step_ops
from .roofline import ridge_intensity, roofline_s
from .step import CLASS_ORDER, StepEstimate, constant_mfu_tokens_per_s_per_gpu, estimate_step

__all__ = [
    "CLASS_ORDER",
    "DevicePerf",
    "Op",
    "OpClass",
    "Phase",
    "StepEstimate",
    "StepOptions",
    "constant_mfu_tokens_per_s_per_gpu",
    "device_perf",
    "estimate_step",
    "gemm_efficiency",
    "ridge_intensity",
    "roofline_s",
    "step_ops",
    "tile_quantization_efficiency",
    "wave_quantization_efficiency",
]
