"""Which GPU database row `bench --gpu` and `calibrate --gpu` may name: the device they time (torch-free).

A profile's ``gpu_key`` says which GPU its measurements and fitted factors describe; `plan` and `step` match it
against their own ``--gpu``. So the row must be the timed device's: never a GPU for a CPU run (review r13: a CPU
calibration written with ``--gpu h100`` priced GPT-2 on an H100 at CPU speed), and on CUDA the row that
device's name maps to. ``--peak-tflops`` stays the way to measure MFU against any stated peak.
"""

from __future__ import annotations

from ..errors import UsageError
from ..gpu_names import model_number
from ..hardware import GpuSpec, get_gpu


def row_names_device(spec: GpuSpec, runtime_name: str, extra_csv=()) -> bool:
    """Whether the database row ``spec`` can describe the CUDA device the runtime calls ``runtime_name``
    (``torch.cuda.get_device_name``, e.g. 'NVIDIA H100 80GB HBM3').

    A name the database maps to one row must map to ``spec`` (the lookup `identify_gpu` does with no ``--gpu``).
    A name it maps to no row (or to two) is the case ``--gpu`` exists for; the row must then carry the device's
    model number (`gpu_names.model_number`), or that number followed by letters only: 'Tesla V100-SXM2-16GB' may
    be named by the v100 row, 'NVIDIA A10G' by the a10 row, neither by an a100 or h100 row.
    """
    try:
        return get_gpu(runtime_name, extra_csv).key == spec.key
    except UsageError:  # unknown, ambiguous, or characters no GPU name uses
        pass
    device = model_number(runtime_name)
    if device is None:
        return False
    rows = {model_number(t) for t in (spec.key, spec.name, *spec.aliases)} - {None}
    return any(device == r or (device.startswith(r) and device[len(r):].isalpha()) for r in rows)


def refuse_row_of_another_device(device_type: str, runtime_name: str, gpu: str, spec: GpuSpec, extra_csv=()) -> None:
    """UsageError (one line) when ``--gpu`` (``gpu``, read as the row ``spec``) does not name the device timed:
    any row on a CPU, and on CUDA a row `row_names_device` does not accept."""
    stated = "or give --peak-tflops to measure MFU against a stated peak"
    if device_type != "cuda":
        raise UsageError(f"--gpu {gpu} says the profile describes {spec.key}, but the device timed is a CPU "
                         f"({runtime_name}): drop --gpu (a CPU profile prices CPU steps: 'flopscalc step --gpu cpu "
                         f"--calibration FILE'), {stated}, or time on the GPU itself")
    if row_names_device(spec, runtime_name, extra_csv):
        return
    try:
        own = get_gpu(runtime_name, extra_csv).key
    except UsageError:
        own = None
    if own is not None:
        raise UsageError(f"--gpu {gpu} says the profile describes {spec.key}, but the device timed is {runtime_name} "
                         f"(GPU database row {own}): drop --gpu (its own row is used), {stated}")
    number = model_number(runtime_name)
    holds = f"its model number, {number}," if number else "this name"
    raise UsageError(f"--gpu {gpu} says the profile describes {spec.key}, but the device timed is {runtime_name}, "
                     f"which that row does not name: give the row of this GPU (one with {holds} in its key, name or "
                     f"aliases; add one with --gpu-csv), {stated}")
