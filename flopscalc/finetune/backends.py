"""Which devices run what a fine-tuning setup needs: bitsandbytes (QLoRA's quantized base, 8-bit and paged
optimizers) and PyTorch's CUDA runtime (the CUDA context, caching-allocator reserve and cuBLAS workspaces).

References
----------
[1] bitsandbytes 0.50.2 README, "Accelerator support" (columns LLM.int8(), QLoRA 4-bit, 8-bit Optimizers): NVIDIA
    GPU (``cuda``) all three; AMD GPU (ROCm, also ``cuda``; CDNA gfx908, gfx90a, gfx942, gfx950) all three; Intel GPU
    (``xpu``) all three; Intel Gaudi (``hpu``, Gaudi2, Gaudi3) LLM.int8() yes, QLoRA 4-bit partly, 8-bit optimizers
    no; CPUs and Apple Silicon. No Google TPU (XLA) or AWS Trainium (Neuron) backend. Paged optimizers are
    bitsandbytes optimizers (``bnb.optim.PagedAdamW``, QLoRA sec. 3), whatever their state's width.
[2] The device rules live in `flopscalc.memory.workspace`: the CUDA runtime (`runs_cuda`, its reference [3]) and
    bitsandbytes' optimizers (`runs_bitsandbytes_optimizers`, its [4]), used by memory, plan, layout, step and
    finetune alike; this module words the refusal.
"""

from __future__ import annotations

from ..errors import UsageError
from ..hardware import GpuSpec
from ..memory.settings import Optimizer
from ..memory.workspace import NO_BITSANDBYTES_VENDORS, runs_bitsandbytes_optimizers
from .adapters import Method

# Where each bitsandbytes feature runs ([1]), for the refusal's suggestion: the QLoRA 4-bit column (Gaudi partly;
# Apple Silicon through its CPU and Metal) and the 8-bit optimizers column (not Gaudi; Metal planned).
QLORA_DEVICES = "NVIDIA and AMD GPUs, Intel GPUs, Intel Gaudi (partly), CPUs and Apple Silicon"
OPTIMIZER_DEVICES = "NVIDIA and AMD GPUs, Intel GPUs and CPUs (not Intel Gaudi; Apple's Metal planned)"
# The flags that ask for QLoRA when none names it: what a refusal tells the user to drop.
QUANT_FLAGS = ("--quant", "--double-quant", "--no-double-quant")


def bitsandbytes_refusal(method: Method, optimizer: Optimizer, paged: bool, gpu: GpuSpec,
                         qlora_flags: tuple[str, ...] = ("--method qlora",)) -> str | None:
    """Why bitsandbytes cannot run this setup's part of it on ``gpu`` ([1]); None when it can (or none is used).

    ``qlora_flags``: the options the user typed that ask for QLoRA (``--method qlora``, or ``--quant nf4`` /
    ``--double-quant`` on an automatic method), named in the refusal; the quantization flags among them are the
    ones it says to drop. Each feature's own devices are listed (`QLORA_DEVICES`, `OPTIMIZER_DEVICES`)."""
    quantized = method is Method.qlora
    flags = " and ".join(f for f in ("--optimizer adamw8bit" if optimizer is Optimizer.adamw8bit else "",
                                     "--paged" if paged else "") if f)
    # the command without them: AdamW, and --paged dropped where it was typed
    use_instead = ("use --optimizer adamw" + (" without --paged" if paged else "")
                   if optimizer is Optimizer.adamw8bit else "drop --paged")
    vendor = gpu.vendor.strip()
    if vendor in NO_BITSANDBYTES_VENDORS and (quantized or flags):
        what, where, fix = [], [], []
        if quantized:
            what.append(f"QLoRA's quantized base ({' and '.join(qlora_flags)})")
            where.append(f"QLoRA 4-bit runs on {QLORA_DEVICES}")
            drop = [f for f in qlora_flags if f.startswith(QUANT_FLAGS)]
            fix.append((f"drop {' and '.join(drop)} and " if drop else "") + "use --method lora or full")
        if flags:
            what.append(flags)
            where.append(f"its 8-bit and paged optimizers on {OPTIMIZER_DEVICES}")
            fix.append(use_instead)
        return (f"{' and '.join(what)} need{'' if len(what) > 1 else 's'} bitsandbytes, which has no backend for "
                f"{NO_BITSANDBYTES_VENDORS[vendor]} such as {gpu.name} ({'; '.join(where)}: bitsandbytes README, "
                f"'Accelerator support'): {'; '.join(fix)}, or pick a GPU")
    if flags and not runs_bitsandbytes_optimizers(gpu):
        return (f"{flags} needs bitsandbytes' optimizers, which it does not offer on {gpu.name} (bitsandbytes "
                f"README, 'Accelerator support': 8-bit optimizers on {OPTIMIZER_DEVICES}): {use_instead}, or pick "
                "a GPU")
    return None


def check_bitsandbytes(method: Method, optimizer: Optimizer, paged: bool, gpu: GpuSpec,
                       qlora_flags: tuple[str, ...] = ("--method qlora",)) -> None:
    """Refuse (`UsageError`) a setup that needs bitsandbytes where it does not run ([1])."""
    if (why := bitsandbytes_refusal(method, optimizer, paged, gpu, qlora_flags)) is not None:
        raise UsageError(why)
