"""Does it fit: fit against a GPU and the largest micro-batch. The smallest changes that make a setup fit are in
`memory.advice` (re-exported here on first use: a plan asks only whether a setup fits)."""

from __future__ import annotations

from dataclasses import dataclass

from .._lazy import lazy_exports
from ..errors import UsageError
from ..hardware import GpuSpec
from ..model import ModelConfig
from .estimate import MemoryBreakdown, estimate_memory
from .settings import TrainingSetup, with_micro_batch
from .workspace import on_gpu

# Largest micro-batch searched (sequences); beyond this the answer is "at least this many".
MAX_MICRO_BATCH_SEARCHED = 1 << 20

@dataclass(frozen=True)
class Fit:
    """A breakdown against one GPU (bytes)."""

    gpu: GpuSpec
    capacity_bytes: float
    required_bytes: float
    min_headroom_fraction: float

    @property
    def usable_bytes(self) -> float:
        return self.capacity_bytes * (1 - self.min_headroom_fraction)

    @property
    def fits(self) -> bool:
        return self.required_bytes <= self.usable_bytes

    @property
    def headroom_bytes(self) -> float:
        """Capacity left after the peak (negative when it does not fit)."""
        return self.capacity_bytes - self.required_bytes


def fits(breakdown: MemoryBreakdown, gpu: GpuSpec, min_headroom_fraction: float = 0.0) -> Fit:
    """Whether ``breakdown``'s peak fits ``gpu``, keeping ``min_headroom_fraction`` of its memory free."""
    return Fit(gpu, gpu.memory_bytes, breakdown.peak_bytes, _checked(min_headroom_fraction))


def _checked(min_headroom_fraction: float) -> float:
    if not 0 <= min_headroom_fraction < 1:
        raise UsageError(f"headroom must be a fraction in [0, 1), got {min_headroom_fraction!r}")
    return min_headroom_fraction


def max_micro_batch(cfg: ModelConfig, setup: TrainingSetup, gpu: GpuSpec, min_headroom_fraction: float = 0.0,
                    upper: int = MAX_MICRO_BATCH_SEARCHED) -> int:
    """Largest micro-batch (sequences, at most ``upper``) whose peak fits ``gpu`` (with its architecture's cuBLAS
    workspace, `workspace.on_gpu`, as `answer` counts it); 0 if not even one does.

    The peak grows with the micro-batch (every batch-dependent term is linear in it), so a bisection works; the
    line through the peaks at 1 and 2 predicts the answer first, and two looks confirm it (the peak at the
    prediction fits, one more sequence does not), which is the bisection's answer for any peak that grows with
    the micro-batch; a prediction that is not confirmed falls back to the bisection.
    """
    setup = on_gpu(setup, gpu)
    usable = Fit(gpu, gpu.memory_bytes, 0.0, _checked(min_headroom_fraction)).usable_bytes
    peaks: dict[int, float] = {}  # micro-batch -> peak bytes

    def peak(b: int) -> float:
        if b not in peaks:
            peaks[b] = estimate_memory(cfg, with_micro_batch(setup, b)).peak_bytes
        return peaks[b]

    def ok(b: int) -> bool:
        return peak(b) <= usable  # `Fit.fits`

    if upper >= 3 and ok(1) and ok(2):
        p1, p2 = peak(1), peak(2)
        if p2 > p1:
            guess = min(upper, 2 + int((usable - p2) // (p2 - p1)))
            if ok(guess) and (guess == upper or not ok(guess + 1)):
                return guess
    return largest_that_fits(ok, upper)


def largest_that_fits(ok, upper: int) -> int:
    """Largest n in 1..``upper`` with ``ok(n)``, for ``ok`` true up to a limit and false beyond (memory grows
    with n); 0 if ``ok(1)`` is false. Doubling, then bisection: O(log upper) calls."""
    if not ok(1):
        return 0
    lo, hi = 1, 2
    while hi <= upper and ok(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, upper + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


_ADVICE = ("CHANGE_COST", "Fix", "FitAdvice", "MemoryAnswer", "answer", "suggest_fixes")


# The fixes and the whole answer of `flopscalc memory`, from `memory.advice` on first use (PEP 562).
__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(_ADVICE, "advice"))
