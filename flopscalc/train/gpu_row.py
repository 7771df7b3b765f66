"""Which GPU database row `bench --gpu` and `calibrate --gpu` may name: the device they time (torch-free).

A profile's ``gpu_key`` says which GPU its measurements and fitted factors describe; `plan` and `step` match it
against their own ``--gpu``. So the row must be the timed device's: never a GPU for a CPU run (review r13: a CPU
calibration written with ``--gpu h100`` priced GPT-2 on an H100 at CPU speed), and on CUDA the row that
device's name maps to. ``--peak-tflops`` stays the way to measure MFU against any stated peak.
"""

from __future__ import annotations

import re

from ..errors import UsageError
from ..gpu_names import model_number, name_tokens, name_words
from ..hardware import GpuSpec, get_gpu

# A memory-size word of a runtime name ('80GB' of 'NVIDIA H100 80GB HBM3', '16GB' of 'Tesla V100-SXM2-16GB'):
# dropped before comparing words, since the runtime reports a board's memory in its name while rows of one
# product differ only there (review r15).
MEMORY_SIZE_WORD = re.compile(r"\d+(gb|g|gib)")


def _product_words(text: str) -> set[str]:
    """Words of a GPU name that say which product it is: brand and memory-size words dropped."""
    return {t for t in name_tokens(text) if not MEMORY_SIZE_WORD.fullmatch(t)}


def row_names_device(spec: GpuSpec, runtime_name: str, extra_csv=()) -> bool:
    """Whether the database row ``spec`` can describe the CUDA device the runtime calls ``runtime_name``
    (``torch.cuda.get_device_name``, e.g. 'NVIDIA H100 80GB HBM3').

    A name the database maps to one row must map to ``spec`` (the lookup `identify_gpu` does with no ``--gpu``).
    A name it maps to no row (or to two) is the case ``--gpu`` exists for; the row must then carry the device's
    model number (`gpu_names.model_number`), or that number followed by letters only, and name the same product:
    every other word of the device's name (brand and memory-size words dropped: 'ti', 'super', 'pro', 'nvl',
    'laptop', 'blackwell', ...) must be a word of the row's key, name or aliases, and one of those must hold no
    word the device's name lacks. 'Tesla V100-SXM2-16GB' may be named by the v100 row, 'NVIDIA A10G' by the a10
    row, neither by an a100 or h100 row; 'NVIDIA GeForce RTX 3080 Ti' not by rtx-3080, 'NVIDIA GeForce RTX 5060'
    not by rtx-5060-ti-16gb, 'NVIDIA H200 NVL' not by h200-sxm (review r15).
    """
    try:
        return get_gpu(runtime_name, extra_csv).key == spec.key
    except UsageError:  # unknown, ambiguous, or characters no GPU name uses
        pass
    device = model_number(runtime_name)
    if device is None:
        return False
    texts = (spec.key, spec.name, *spec.aliases)
    rows = {model_number(t) for t in texts} - {None}
    if not any(device == r or (device.startswith(r) and device[len(r):].isalpha()) for r in rows):
        return False
    row_words = set().union(*(_product_words(t) | name_words(t) for t in texts))
    device_words = _product_words(runtime_name)
    if device_words - {device} - row_words:  # 'ti' of an RTX 3080 Ti, 'nvl' of an H200 NVL: another product
        return False
    # the row must be named by one of its texts whole: rtx-5060-ti-16gb (every text says 'ti') is not an RTX 5060
    return any(_product_words(t) - rows <= device_words for t in texts)


def refuse_row_of_another_device(device_type: str, runtime_name: str, gpu: str, spec: GpuSpec, extra_csv=(),
                                 peak_given: bool = False) -> None:
    """UsageError (one line) when ``--gpu`` (``gpu``, read as the row ``spec``) does not name the device timed:
    any row on a CPU, and on CUDA a row `row_names_device` does not accept. ``peak_given``: --peak-tflops was
    given too, so the way to MFU is that option without --gpu (review r15)."""
    stated = ("to measure MFU give --peak-tflops without --gpu" if peak_given
              else "or give --peak-tflops to measure MFU against a stated peak")
    if device_type != "cuda":
        how = "; " + stated if peak_given else ", " + stated
        raise UsageError(f"--gpu {gpu} names the GPU database row {spec.key}, but the device timed is a CPU "
                         f"({runtime_name}): drop --gpu (a CPU profile prices CPU steps: 'flopscalc step --gpu cpu "
                         f"--calibration FILE'){how}, or run on the GPU itself")
    if row_names_device(spec, runtime_name, extra_csv):
        return
    try:
        own = get_gpu(runtime_name, extra_csv).key
    except UsageError:
        own = None
    if own is not None:
        raise UsageError(f"--gpu {gpu} names the GPU database row {spec.key}, but the device timed is "
                         f"{runtime_name} (GPU database row {own}): drop --gpu (its own row is used)"
                         f"{'; ' if peak_given else ', '}{stated}")
    words = " ".join(t for t in name_tokens(runtime_name) if not MEMORY_SIZE_WORD.fullmatch(t))
    holds = f"every word of '{words}'" if words else "this name"
    raise UsageError(f"--gpu {gpu} names the GPU database row {spec.key}, but the device timed is {runtime_name}, "
                     f"which that row does not name: give the row of this GPU (one with {holds} in its key, name or "
                     f"aliases; add one with --gpu-csv){'; ' if peak_given else ', '}{stated}")
