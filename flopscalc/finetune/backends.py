"""Which devices run what a fine-tuning setup needs: bitsandbytes (QLoRA's quantized base, 8-bit and paged
optimizers) and PyTorch's CUDA runtime (the CUDA context, caching-allocator reserve and cuBLAS workspaces).

References
----------
[1] bitsandbytes 0.50.2 README, "Accelerator support" (columns LLM.int8(), QLoRA 4-bit, 8-bit Optimizers): NVIDIA
    GPU (``cuda``) all three; AMD GPU (ROCm, also ``cuda``; CDNA gfx908, gfx90a, gfx942, gfx950) all three; Intel GPU
    (``xpu``) all three; Intel Gaudi (``hpu``, Gaudi2, Gaudi3) LLM.int8() yes, QLoRA 4-bit partly, 8-bit optimizers
    no; CPUs and Apple Silicon. No Google TPU (XLA) or AWS Trainium (Neuron) backend. Paged optimizers are
    bitsandbytes optimizers (``bnb.optim.PagedAdamW``, QLoRA sec. 3), whatever their state's width.
[2] PyTorch, "HIP (ROCm) semantics": ROCm builds expose AMD GPUs through the ``torch.cuda`` interface (the same
    caching allocator, context and BLAS-handle machinery), so the CUDA rows apply to them; TPUs (PyTorch/XLA),
    Trainium (Neuron) and Gaudi (HPU) run other runtimes, whose own memory is not modelled here.
"""

from __future__ import annotations

from ..errors import UsageError
from ..hardware import GpuSpec
from ..memory.settings import Optimizer
from .adapters import Method

# Vendors (data/gpu_specs.csv ``vendor``) of the accelerators with no bitsandbytes backend at all ([1]).
NO_BITSANDBYTES_VENDORS = {"Google": "TPUs (XLA)", "AWS": "Trainium (Neuron)"}
# Architectures (prefix) with bitsandbytes quantization but not its optimizers ([1]: Intel Gaudi, 8-bit optimizers no).
NO_BITSANDBYTES_OPTIMIZER_ARCHITECTURES = ("Gaudi",)
# Vendors whose accelerators PyTorch drives through its CUDA runtime ([2]: NVIDIA; AMD via ROCm/HIP).
CUDA_RUNTIME_VENDORS = ("NVIDIA", "AMD")
# Memory components that exist only under PyTorch's CUDA runtime (flopscalc.memory.estimate.COMPONENTS keys).
CUDA_RUNTIME_KEYS = ("allocator_overhead", "cuda_context", "blas_workspaces")
# Where bitsandbytes runs ([1]), for the refusal's suggestion.
BITSANDBYTES_DEVICES = "NVIDIA and AMD GPUs, Intel GPUs and Gaudi, CPUs, Apple Silicon"


def runs_cuda(gpu: GpuSpec) -> bool:
    """Whether PyTorch drives ``gpu`` through its CUDA runtime ([2]); a row without a vendor is taken as CUDA (the
    database's default device)."""
    return not gpu.vendor.strip() or gpu.vendor.strip() in CUDA_RUNTIME_VENDORS


def bitsandbytes_refusal(method: Method, optimizer: Optimizer, paged: bool, gpu: GpuSpec) -> str | None:
    """Why bitsandbytes cannot run this setup's part of it on ``gpu`` ([1]); None when it can (or none is used)."""
    quantized = method is Method.qlora
    flags = " and ".join(f for f in ("--optimizer adamw8bit" if optimizer is Optimizer.adamw8bit else "",
                                     "--paged" if paged else "") if f)
    parts = (["QLoRA's quantized base (--method qlora)"] if quantized else []) + ([flags] if flags else [])
    bnb_optimizer = bool(flags)
    vendor = gpu.vendor.strip()
    if vendor in NO_BITSANDBYTES_VENDORS and parts:
        what = " and ".join(parts)
        fix = "; ".join((["use --method lora or full"] if quantized else [])
                        + (["use --optimizer adamw without --paged"] if bnb_optimizer else []))
        return (f"{what} needs bitsandbytes, which has no backend for {NO_BITSANDBYTES_VENDORS[vendor]} such as "
                f"{gpu.name} (it runs on {BITSANDBYTES_DEVICES}; bitsandbytes README, 'Accelerator support'): {fix}, "
                "or pick a GPU")
    if bnb_optimizer and gpu.architecture.strip().startswith(NO_BITSANDBYTES_OPTIMIZER_ARCHITECTURES):
        return (f"{parts[-1]} needs bitsandbytes' optimizers, which it does not offer on {gpu.name} (bitsandbytes "
                "README, 'Accelerator support': 8-bit optimizers not supported on Intel Gaudi): use --optimizer "
                "adamw without --paged, or pick a GPU")
    return None


def check_bitsandbytes(method: Method, optimizer: Optimizer, paged: bool, gpu: GpuSpec) -> None:
    """Refuse (`UsageError`) a setup that needs bitsandbytes where it does not run ([1])."""
    if (why := bitsandbytes_refusal(method, optimizer, paged, gpu)) is not None:
        raise UsageError(why)
