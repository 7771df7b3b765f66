"""PyTorch's cuBLAS workspace in a training step's memory: its size by the GPU's architecture (compute capability),
the handles a step holds, whether the device runs PyTorch's CUDA runtime at all (`runs_cuda`), and a setup placed on
a GPU (`on_gpu`, `gpu_setup_fields`). Sizes are bytes.

References
----------
[1] PyTorch ``aten/src/ATen/cuda/CublasHandlePool.cpp``: ``parseChosenWorkspaceSize`` (":4096:2:16:8 default,
    32MiB for Hopper and Blackwell": 4096 KiB x 8 when ``cudaDeviceProp.major`` is 9, 10, 11 or 12, else 4096 KiB x 2
    + 16 KiB x 8; the ``CUBLAS_WORKSPACE_CONFIG`` environment variable overrides both, and is not modelled),
    ``getNewWorkspace`` (from the CUDA caching allocator, so inside ``max_memory_allocated``), one workspace per
    (handle, stream), shared with cuBLASLt by default (``TORCH_CUBLASLT_UNIFIED_WORKSPACE``), and one handle per
    thread (thread-local ``PoolWindow``).
[2] PyTorch ``torch/csrc/autograd/engine.cpp`` ``Engine::start_device_threads``: backward runs on one worker thread
    per CUDA device, not the caller's thread, so a training step uses two cuBLAS handles.
[3] PyTorch, "HIP (ROCm) semantics": ROCm builds expose AMD GPUs through the ``torch.cuda`` interface (the same
    caching allocator, context and BLAS-handle machinery), so the CUDA rows apply to them; TPUs (PyTorch/XLA),
    Trainium (Neuron) and Gaudi (HPU) run other runtimes, whose own memory is not modelled here.
[4] bitsandbytes 0.50.2 README, "Accelerator support" (columns LLM.int8(), QLoRA 4-bit, 8-bit Optimizers): NVIDIA
    GPU (``cuda``) all three; AMD GPU (ROCm) all three; Intel GPU (``xpu``) all three; Intel Gaudi (``hpu``) LLM.int8()
    yes, QLoRA 4-bit partly, 8-bit optimizers no; CPUs and Apple Silicon. No Google TPU (XLA) or AWS Trainium
    (Neuron) backend.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import UsageError
from .settings import MIB, Device, Optimizer

# cuBLAS workspace per (handle, stream), PyTorch's default by the GPU's compute capability ([1]
# ``parseChosenWorkspaceSize``): 4096 KiB x 8 = 32 MiB where the major version is 9, 10, 11 or 12 ("32MiB for Hopper
# and Blackwell"), else ":4096:2:16:8" = 4096 KiB x 2 + 16 KiB x 8 = 8.125 MiB (Volta, Turing, Ampere, Ada).
CUBLAS_WORKSPACE_LARGE_BYTES = 4096 * 1024 * 8
CUBLAS_WORKSPACE_SMALL_BYTES = 4096 * 1024 * 2 + 16 * 1024 * 8
CUBLAS_LARGE_WORKSPACE_CC_MAJORS = frozenset({9, 10, 11, 12})  # [1]: ``properties->major == 9 || ... == 12``
# Compute-capability major of each NVIDIA architecture in data/gpu_specs.csv (NVIDIA, "CUDA GPUs - Compute
# Capability", developer.nvidia.com/cuda-gpus: V100 7.0, T4 7.5, A100 8.0, RTX 30 8.6, RTX 40 / L4 / L40 8.9, H100 /
# H200 9.0, B200 10.0, B300 10.3, RTX 50 / RTX PRO 6000 12.0: Blackwell is 10 or 12, both in the 32 MiB set).
ARCHITECTURE_CC_MAJOR = {"Volta": 7, "Turing": 7, "Ampere": 8, "Ada Lovelace": 8, "Hopper": 9, "Blackwell": 10,
                         "Blackwell Ultra": 10}
# Where the GPU is not known (no --gpu, or an architecture PyTorch's CUDA rule does not name: AMD, TPU, Gaudi,
# Trainium), the larger of the two is assumed, the safe side for a fit; the estimate's assumptions say so.
CUBLAS_WORKSPACE_BYTES = CUBLAS_WORKSPACE_LARGE_BYTES
# cuBLAS handles a training step holds, one per thread running matmuls ([1]): the forward's and autograd's device
# thread ([2]). Measured: GPT-2 medium on an H200 (tensors all whole 2-MiB blocks) is 0.063-0.065 GiB above the
# estimate without them at every micro-batch (tests/test_memory_cuda_recorded.py).
N_CUBLAS_HANDLES = 2
# Vendors (data/gpu_specs.csv ``vendor``) whose accelerators PyTorch drives through its CUDA runtime ([3]: NVIDIA;
# AMD through ROCm/HIP). Elsewhere (TPU, Trainium, Gaudi) no CUDA context, caching-allocator reserve or cuBLAS
# workspace is counted.
CUDA_RUNTIME_VENDORS = ("NVIDIA", "AMD")
# Memory components that exist only under PyTorch's CUDA runtime (`memory.estimate.COMPONENTS` keys).
CUDA_RUNTIME_KEYS = ("allocator_overhead", "cuda_context", "blas_workspaces")


# Vendors (data/gpu_specs.csv ``vendor``) of the accelerators with no bitsandbytes backend at all ([4]).
NO_BITSANDBYTES_VENDORS = {"Google": "TPUs (XLA)", "AWS": "Trainium (Neuron)"}
# Architectures (prefix) with bitsandbytes quantization but not its optimizers ([4]: Intel Gaudi, 8-bit optimizers no).
NO_BITSANDBYTES_OPTIMIZER_ARCHITECTURES = ("Gaudi",)
# The optimizers of `memory.settings.Optimizer` that only bitsandbytes provides ([4]: ``bnb.optim.AdamW8bit``).
BITSANDBYTES_OPTIMIZERS = frozenset({Optimizer.adamw8bit})


def runs_bitsandbytes_optimizers(gpu) -> bool:
    """Whether bitsandbytes' 8-bit and paged optimizers run on ``gpu`` (a `hardware.GpuSpec`, [4]): not on TPUs,
    Trainium or Gaudi. The one rule for memory's fixes and --optimizer, the plan's setup search and finetune."""
    return (gpu.vendor.strip() not in NO_BITSANDBYTES_VENDORS
            and not gpu.architecture.strip().startswith(NO_BITSANDBYTES_OPTIMIZER_ARCHITECTURES))


def runs_cuda(gpu) -> bool:
    """Whether PyTorch drives ``gpu`` (a `hardware.GpuSpec`) through its CUDA runtime ([3]); a row without a vendor
    is taken as CUDA (the database's default device). The one rule for memory, plan, layout, step and finetune."""
    return not gpu.vendor.strip() or gpu.vendor.strip() in CUDA_RUNTIME_VENDORS


def no_cuda_runtime_note(gpu) -> str | None:
    """The note every report prints for a device without PyTorch's CUDA runtime ([3]); None on a CUDA device."""
    if runs_cuda(gpu):
        return None
    return (f"{gpu.name} does not run PyTorch's CUDA runtime, so no CUDA context, caching-allocator reserve or cuBLAS "
            "workspace is counted; its own runtime's memory is not modelled")


def gpu_setup_fields(gpu) -> dict:
    """The `TrainingSetup` fields a GPU sets: its architecture (the cuBLAS workspace, [1]) and whether it runs
    PyTorch's CUDA runtime ([3])."""
    return {"gpu_architecture": gpu.architecture, "cuda_runtime": runs_cuda(gpu)}


def cublas_workspace(architecture: str | None) -> tuple[float, str]:
    """(bytes, why) of PyTorch's default cuBLAS workspace per (handle, stream) on a CUDA GPU of ``architecture``.

    The size follows the compute capability ([1] ``parseChosenWorkspaceSize``, ``CUBLAS_WORKSPACE_CONFIG`` unset):
    32 MiB on Hopper and Blackwell, 8.125 MiB before. ``architecture`` None (no GPU named) or one the rule does not
    name (`ARCHITECTURE_CC_MAJOR`: AMD, TPU, ...) gets the larger, CUBLAS_WORKSPACE_BYTES, and ``why`` says so.
    """
    major = ARCHITECTURE_CC_MAJOR.get(architecture.strip()) if architecture is not None else None
    if major is None:
        size = f"{CUBLAS_WORKSPACE_BYTES / MIB:g} MiB"
        older = f"{CUBLAS_WORKSPACE_SMALL_BYTES / MIB:g} MiB on Ampere, Ada and older"
        if architecture is None:
            return float(CUBLAS_WORKSPACE_BYTES), (f"no GPU named, so Hopper/Blackwell's {size} is assumed (the larger; "
                                                   f"{older}); name the GPU for its own size")
        if not architecture.strip():
            return float(CUBLAS_WORKSPACE_BYTES), (f"the GPU's row names no architecture, so Hopper/Blackwell's {size} "
                                                   f"is assumed (the larger; {older}); fill its architecture column")
        return float(CUBLAS_WORKSPACE_BYTES), (f"PyTorch's CUDA rule does not name the {architecture} architecture, "
                                               f"so {size} (the larger of its two sizes) is assumed")
    large = major in CUBLAS_LARGE_WORKSPACE_CC_MAJORS  # [1]: major 9-12
    size = CUBLAS_WORKSPACE_LARGE_BYTES if large else CUBLAS_WORKSPACE_SMALL_BYTES
    rule = "for Hopper and Blackwell (compute capability 9-12)" if large else "before Hopper (compute capability < 9)"
    return float(size), f"{architecture}: PyTorch's default {rule}"


def on_gpu(setup, gpu):
    """``setup`` (a `TrainingSetup` or `finetune.memory.FinetuneSetup`) run on ``gpu`` (a `hardware.GpuSpec`): on
    CUDA, with its architecture, which sizes the cuBLAS workspace ([1]), and whether it runs the CUDA runtime ([3]). A setup naming another architecture than
    the GPU's is refused (two GPUs for one run)."""
    if setup.device is not Device.cuda:
        return setup
    if setup.gpu_architecture not in (None, gpu.architecture):
        raise UsageError(f"the setup names GPU architecture {setup.gpu_architecture!r} but {gpu.name} is "
                         f"{gpu.architecture!r}; drop the setup's architecture (the GPU's is taken)")
    return replace(setup, **gpu_setup_fields(gpu))
