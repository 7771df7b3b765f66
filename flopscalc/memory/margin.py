"""Whether a "fits" is closer to the edge than the estimate's own measured error on CUDA.

The CUDA estimate leaves out the caching allocator's block rounding (docs/memory.md, "On CUDA"), so it may fall short
of ``torch.cuda.max_memory_allocated``; a fit with less room than that shortfall may not fit when run.
"""

from __future__ import annotations

from .settings import Device

# The largest shortfall of the estimate below PyTorch's measured peak, as a fraction of that peak: -2.6%, GPT-2 small
# at micro-batch 16 with full recomputation, the worst of the 25 points recorded on one H200 (docs/memory.md "On
# CUDA"; benchmarks/results/memory_cuda_nvidia-h200.json and calibration_h200-sxm_20261128_*.json).
# tests/test_memory_margin_note_s17.py recomputes it from those files and fails if any point falls further short.
MEASURED_CUDA_SHORTFALL = 0.026
# What `flopscalc plan` keeps free (planner.options.PLAN_MEMORY_HEADROOM), named in the note as the margin to judge with;
# a literal here, since the memory engine does not import the planner (tests check the two agree).
PLAN_HEADROOM_WORDS = "0.05"


def margin_inside_error(required_bytes: float, capacity_bytes: float, device: Device) -> bool:
    """Whether ``required_bytes`` fits ``capacity_bytes`` with less room than the estimate's measured shortfall: the
    peak that would fill the GPU, required / (1 - `MEASURED_CUDA_SHORTFALL`), does not fit. Never on a CPU device,
    whose estimate equals the measured bytes (tests/test_memory_measured.py)."""
    if Device(device) is Device.cpu or required_bytes > capacity_bytes:
        return False
    return required_bytes / (1 - MEASURED_CUDA_SHORTFALL) > capacity_bytes  # measured = estimate / (1 - shortfall)


def margin_note(required_bytes: float, capacity_bytes: float, device: Device, how: str | None = None) -> str | None:
    """One line when the fit's margin is inside the estimate's measured error (`margin_inside_error`), else None.
    ``how``: how to judge with a margin, where the command has no --headroom of its own."""
    if not margin_inside_error(required_bytes, capacity_bytes, device):
        return None
    margin = 1 - required_bytes / capacity_bytes
    how = how or f"--headroom {PLAN_HEADROOM_WORDS}"
    return (f"the margin ({margin:.1%} of the GPU) is inside the estimate's measured error: up to "
            f"{MEASURED_CUDA_SHORTFALL:.1%} below PyTorch's peak on an H200 (docs/memory.md), so it may not fit when "
            f"run; {how} (as 'flopscalc plan' keeps) judges with a margin")
