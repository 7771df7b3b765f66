"""Precision of a training run's memory: `MemoryPrecision` (how tensors are stored) and the tables that relate it to
`hardware.Precision` (the arithmetic a matmul runs) and to the reference trainer's precisions.

The three precision words and how they relate: docs/nomenclature.md, "Precision".
"""

from __future__ import annotations

from enum import Enum

from ..hardware import Precision


class MemoryPrecision(str, Enum):
    """How weights, gradients and activations are stored."""

    fp32 = "fp32"  # everything float32
    bf16_mixed = "bf16-mixed"  # autocast bf16 matmuls, fp32 master weights (PyTorch AMP)
    fp16_mixed = "fp16-mixed"  # the same with fp16 (plus a loss scaler, a few bytes)
    bf16_pure = "bf16-pure"  # model cast to bf16: weights, grads and optimizer state in bf16

    @property
    def mixed(self) -> bool:
        return self in (MemoryPrecision.bf16_mixed, MemoryPrecision.fp16_mixed)


# The three precision words and the one place they are related (docs/nomenclature.md, "Precision"):
# `hardware.Precision` is the arithmetic a matmul runs (which peak rate), `MemoryPrecision` how tensors are
# stored, and the trainer's "fp32" / "bf16" (train.config.PRECISIONS) what PyTorch is told to run.
# The peak a storage precision computes at: 16-bit modes use the tensor cores in that format; fp32 runs
# PyTorch's default fp32 matmuls (TF32 is off by default: torch.backends.cuda.matmul.allow_tf32 = False).
MATMUL_PRECISION = {
    MemoryPrecision.bf16_mixed: Precision.bf16,
    MemoryPrecision.bf16_pure: Precision.bf16,
    MemoryPrecision.fp16_mixed: Precision.fp16,
    MemoryPrecision.fp32: Precision.fp32,
}
# Mixed-precision memory policy used for each compute precision the peak rate is read at.
MEMORY_PRECISION = {
    Precision.fp32: MemoryPrecision.fp32, Precision.tf32: MemoryPrecision.fp32,
    Precision.bf16: MemoryPrecision.bf16_mixed, Precision.fp16: MemoryPrecision.fp16_mixed,
    Precision.fp16_acc16: MemoryPrecision.fp16_mixed, Precision.fp8: MemoryPrecision.bf16_mixed,
}
# The reference trainer's precisions (after "auto" is resolved) and the storage each runs: "bf16" is
# torch.autocast to bf16 over fp32 weights (PyTorch AMP), so bf16-mixed; "fp32" is plain float32.
TRAINER_MEMORY_PRECISION = {"bf16": MemoryPrecision.bf16_mixed, "fp32": MemoryPrecision.fp32}


def storage_precision(given: MemoryPrecision | None, gpu, *,
                      needs_rate: bool = False) -> tuple[MemoryPrecision, str | None]:
    """(storage precision, note or None) of a training run on ``gpu`` (a `hardware.GpuSpec`; None: a CPU).

    ``given`` None: the storage of the precision `flopscalc plan` picks (`hardware.training_precision`, whose rule is
    `hardware.default_training_precision`): bf16-mixed, or fp16-mixed with a note on a card without a BF16 rate
    (V100, T4), so step, memory and plot price the run the plan recommends; a card with neither is a UsageError. A
    CPU keeps bf16-mixed. ``needs_rate``: the caller prices time, so a ``given`` precision the card has no peak rate
    for is a DomainError naming the ones it has (memory alone does not need the rate).
    """
    from ..errors import DomainError
    from ..hardware import DEFAULT_PRECISION, PRECISION_HELP, default_training_precision, training_precision

    if given is None:
        if gpu is None:
            return MEMORY_PRECISION[DEFAULT_PRECISION], None
        chosen, _ = training_precision(gpu, None, DEFAULT_PRECISION)  # its note names hardware.Precision values
        storage = MEMORY_PRECISION[chosen]
        if chosen is DEFAULT_PRECISION:
            return storage, None
        return storage, (f"{gpu.name} has no {DEFAULT_PRECISION.value} rate in the GPU database, so this runs "
                         f"{storage.value} (as 'flopscalc plan' does on this card); choose another with --precision")
    have = gpu.available_precisions() if gpu is not None else []
    if needs_rate and gpu is not None and MATMUL_PRECISION[given] not in have:
        options = sorted(s.value for s, rate in MATMUL_PRECISION.items() if rate in have)  # bf16-pure too
        preferred = default_training_precision(gpu)
        example = MEMORY_PRECISION[preferred].value if preferred is not None else next(iter(options), None)
        raise DomainError(f"{gpu.name} has no {PRECISION_HELP[MATMUL_PRECISION[given]]} rate in the GPU database, so "
                          f"--precision {given.value} cannot be timed; accepted on this card: "
                          f"{', '.join(options) or 'none'}" + (f" (e.g. --precision {example})" if example else ""))
    return given, None


def trainer_memory_precision(precision: str) -> MemoryPrecision:
    """The `MemoryPrecision` the reference trainer runs for its ``precision`` ("bf16" or "fp32")."""
    return TRAINER_MEMORY_PRECISION.get(precision, MemoryPrecision.fp32)
