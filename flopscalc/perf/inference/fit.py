"""Changes that make one sequence of an inference setup fit on a GPU, each confirmed by the memory engine.

Part of `flopscalc.perf.inference`. When not even one sequence fits (`memory.max_batch` is 0), the report names
what would make it fit instead of guessing: a smaller weight format the GPU has a GEMM rate for, a smaller KV-cache
format, the longest prompt that holds the setup's batch and the longest that holds one sequence, or, when nothing
fits on this GPU, the smallest GPU of the database that holds one sequence (in the format given, and in each
smaller format when that takes a smaller GPU). Every candidate is
priced by `memory.max_batch` on the GPU it names, so each suggestion fits by the same numbers the report prints.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ...errors import DomainError, UsageError
from ...hardware import GpuSpec, builtin_database
from ...memory.workspace import runs_cuda
from .formats import COMPUTE_PRECISION, DEFAULT_INT4_GROUP, InferenceSetup, KvFormat, WeightFormat
from .memory import inference_memory, max_batch, max_seq_tokens, weights_bytes


@dataclass(frozen=True)
class InferenceFix:
    """One change (the fields that are not None) after which at least one sequence fits, and how many do."""

    max_batch: int  # largest batch with the change, at the setup's tokens per sequence (>= 1)
    memory_bytes: float  # memory of one sequence with the change (bytes)
    weights: WeightFormat | None = None  # a smaller linear-weight format
    kv: KvFormat | None = None  # a smaller KV-cache format
    context: int | None = None  # the longest prompt at max_batch (the setup's batch, or 1), weights and KV as given
    gpu: GpuSpec | None = None  # a GPU of the database with more memory


def _with_weights(setup: InferenceSetup, fmt: WeightFormat) -> InferenceSetup:
    """``setup`` with weights ``fmt`` (int4 at the default group; fitted bandwidth shares reset to the format's)."""
    return replace(setup, weights=fmt, int4_group=DEFAULT_INT4_GROUP, quant_bandwidth_fraction=None)


def _confirmed(cfg, setup: InferenceSetup, on: GpuSpec, **change) -> InferenceFix | None:
    """The fix when one sequence of ``setup`` fits ``on``, else None (an int4 group the model cannot take: None)."""
    setup = replace(setup, cuda_runtime=runs_cuda(on))  # its CUDA context only where it runs CUDA
    try:
        n = max_batch(cfg, setup, on.memory_bytes)
    except UsageError:
        return None
    if n < 1:
        return None
    return InferenceFix(n, inference_memory(cfg, setup, batch=1).total_bytes, **change)


def _smaller_weights(cfg, setup: InferenceSetup, gpu: GpuSpec | None) -> list[tuple[WeightFormat, InferenceSetup]]:
    """Weight formats that store fewer bytes than the setup's (and that ``gpu``, when given, has a GEMM rate for)."""
    given = weights_bytes(cfg, setup)
    out = []
    for fmt in WeightFormat:
        if fmt is setup.weights or (gpu is not None and COMPUTE_PRECISION[fmt] not in gpu.available_precisions()):
            continue
        trial = _with_weights(setup, fmt)
        try:
            if weights_bytes(cfg, trial) < given:
                out.append((fmt, trial))
        except UsageError:  # int4 groups that do not divide the model's widths
            continue
    return out


def _servable(gpu: GpuSpec) -> bool:
    """Whether `estimate_inference` can price ``gpu`` (a memory bandwidth, sourced kernel figures: not a TPU)."""
    from ..device import device_perf

    if gpu.memory_bandwidth_bytes_per_s is None:
        return False
    try:
        device_perf(gpu)
    except DomainError:
        return False
    return True


def smallest_gpu(cfg, setup: InferenceSetup, than: GpuSpec) -> InferenceFix | None:
    """The GPU of the database with the least memory above ``than``'s that holds one sequence of ``setup`` and has
    the GEMM rate of its weight format (ties: the higher bandwidth, then the key); None when none does."""
    need = COMPUTE_PRECISION[setup.weights]
    bigger = sorted((g for g in builtin_database() if g.memory_bytes > than.memory_bytes
                     and need in g.available_precisions() and _servable(g)),
                    key=lambda g: (g.memory_bytes, -g.memory_bandwidth_bytes_per_s, g.key))
    for g in bigger:
        fix = _confirmed(cfg, setup, g, gpu=g)
        if fix is not None:
            return fix
    return None


def one_sequence_fixes(cfg, setup: InferenceSetup, gpu: GpuSpec) -> tuple[InferenceFix, ...]:
    """Changes after which one sequence of ``setup`` fits ``gpu`` (empty when one already fits).

    On ``gpu``: each smaller weight format it has a rate for, each smaller KV format, and the longest prompt at
    the formats given (``gen`` kept), at the setup's batch when one fits there and at batch 1. Only when none of
    those fits: the smallest bigger GPU of the database for the format given, and for each smaller format whose
    smallest GPU has less memory than that one.
    """
    if max_batch(cfg, setup, gpu.memory_bytes) >= 1:
        return ()
    fixes = [f for fmt, trial in _smaller_weights(cfg, setup, gpu) if (f := _confirmed(cfg, trial, gpu, weights=fmt))]
    kv_bytes = setup.kv_bytes_per_element
    for fmt in KvFormat:
        if fmt.bytes_per_element < kv_bytes and (f := _confirmed(cfg, replace(setup, kv=fmt), gpu, kv=fmt)):
            fixes.append(f)
    # the longest prompt at the user's own batch, then at batch 1 (each fix says the largest batch it holds)
    for batch in sorted({setup.batch, 1}, reverse=True):
        longest = max_seq_tokens(cfg, replace(setup, batch=batch), gpu.memory_bytes)
        if longest > setup.gen:  # the prompt shrinks, the generation stays
            shorter = replace(setup, context=longest - setup.gen)
            if f := _confirmed(cfg, shorter, gpu, context=shorter.context):
                fixes.append(f)
    if fixes:
        return tuple(fixes)
    given = smallest_gpu(cfg, setup, gpu)
    if given is not None:
        fixes.append(given)
    for fmt, trial in _smaller_weights(cfg, setup, None):  # each GPU's own rates are checked by smallest_gpu
        f = smallest_gpu(cfg, trial, gpu)
        if f is not None and (given is None or f.gpu.memory_bytes < given.gpu.memory_bytes) and all(
                f.gpu.memory_bytes < x.gpu.memory_bytes for x in fixes if x.weights is not None):
            fixes.append(replace(f, weights=fmt))
    return tuple(fixes)
