"""cuBLAS workspaces sized by the GPU's architecture, as PyTorch sizes them.

References, written out here independently of flopscalc.memory.settings:
- PyTorch ``aten/src/ATen/cuda/CublasHandlePool.cpp`` ``parseChosenWorkspaceSize`` (``CUBLAS_WORKSPACE_CONFIG``
  unset): ``use32mb = major == 9 || major == 10 || major == 11 || major == 12``; ``default_size = use32mb ?
  4096 * 8 * 1024 : 4096 * 1024 * 2 + 16 * 1024 * 8`` bytes ("4096:2:16:8 default, 32MiB for Hopper and Blackwell").
- NVIDIA, "CUDA GPUs - Compute Capability" (developer.nvidia.com/cuda-gpus): the compute capability of each card.
- One workspace per (handle, stream), one handle per thread running matmuls: the forward's thread and autograd's
  CUDA device thread (``torch/csrc/autograd/engine.cpp`` ``start_device_threads``), so two per training step; the
  H200 peaks recorded in tests/test_memory_cuda_recorded.py measure them (64 MiB).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from flopscalc.errors import UsageError
from flopscalc.hardware import builtin_database, get_gpu
from flopscalc.layout.memory import layout_memory
from flopscalc.layout.spec import Layout
from flopscalc.memory import Device, TrainingSetup, answer, estimate_memory
from flopscalc.model import get_preset
from tests.conftest import cli_json

# PyTorch's two default sizes (CublasHandlePool.cpp, above), bytes
PYTORCH_HOPPER_AND_LATER_BYTES = 4096 * 8 * 1024  # 32 MiB
PYTORCH_DEFAULT_BYTES = 4096 * 1024 * 2 + 16 * 1024 * 8  # 8.125 MiB
PYTORCH_32MIB_MAJORS = (9, 10, 11, 12)
HANDLES_PER_STEP = 2  # forward thread + autograd's device thread (engine.cpp)

# Compute capability of cards in data/gpu_specs.csv (NVIDIA's CUDA GPUs table)
COMPUTE_CAPABILITY = {
    "v100-sxm2-32gb": (7, 0), "t4": (7, 5), "a100-sxm-80gb": (8, 0), "a100-pcie-40gb": (8, 0), "rtx-3090": (8, 6),
    "rtx-3060-12gb": (8, 6), "a10": (8, 6), "rtx-4070-ti": (8, 9), "rtx-4090": (8, 9), "l4": (8, 9), "l40s": (8, 9),
    "h100-sxm": (9, 0), "h200-sxm": (9, 0), "gh200": (9, 0), "b200": (10, 0), "gb200": (10, 0), "b300": (10, 3),
    "rtx-5090": (12, 0), "rtx-pro-6000-blackwell": (12, 0),
}


def pytorch_workspace_bytes(key: str) -> int:
    """PyTorch's default workspace for the card, from its compute capability."""
    major, _ = COMPUTE_CAPABILITY[key]
    return PYTORCH_HOPPER_AND_LATER_BYTES if major in PYTORCH_32MIB_MAJORS else PYTORCH_DEFAULT_BYTES


def _on(key: str, **kw) -> TrainingSetup:
    return TrainingSetup(micro_batch=2, seq_len=1024, gpu_architecture=get_gpu(key).architecture, **kw)


GPT2_MEDIUM = get_preset("gpt2-medium")


@pytest.mark.parametrize("key", sorted(COMPUTE_CAPABILITY))
def test_each_card_gets_pytorchs_workspace_for_its_compute_capability_with_two_handles(key):
    b = estimate_memory(GPT2_MEDIUM, _on(key))
    assert b.blas_workspace_bytes == HANDLES_PER_STEP * pytorch_workspace_bytes(key)
    assert b.component_bytes()["blas_workspaces"] == HANDLES_PER_STEP * pytorch_workspace_bytes(key)


def test_ada_and_ampere_get_8_125_mib_hopper_and_blackwell_32_mib():
    mib = 2**20
    for key in ("rtx-4070-ti", "a100-sxm-80gb", "rtx-3090"):
        assert estimate_memory(GPT2_MEDIUM, _on(key)).blas_workspace_bytes == 2 * 8.125 * mib
    for key in ("h100-sxm", "h200-sxm", "b200", "rtx-5090", "b300"):
        assert estimate_memory(GPT2_MEDIUM, _on(key)).blas_workspace_bytes == 2 * 32 * mib


def test_4070ti_estimate_differs_from_the_h200_keyed_one_by_exactly_the_workspaces():
    ada = estimate_memory(GPT2_MEDIUM, _on("rtx-4070-ti"))
    hopper = estimate_memory(GPT2_MEDIUM, _on("h200-sxm"))
    gap = HANDLES_PER_STEP * (PYTORCH_HOPPER_AND_LATER_BYTES - PYTORCH_DEFAULT_BYTES)  # 47.75 MiB
    assert hopper.allocated_peak_bytes - ada.allocated_peak_bytes == gap
    a, h = ada.component_bytes(), hopper.component_bytes()
    # nothing else moves but the allocator's share of the allocated bytes
    assert {k for k in a if a[k] != h[k]} == {"blas_workspaces", "allocator_overhead"}
    assert h["allocator_overhead"] - a["allocator_overhead"] == pytest.approx(0.05 * gap, rel=1e-12)


def test_every_nvidia_architecture_in_the_database_has_a_rule():
    # a new NVIDIA architecture must be given its size, not fall silently to the unknown-architecture default
    for gpu in builtin_database():
        if gpu.vendor.startswith("NVIDIA"):
            assumed = [x for x in estimate_memory(GPT2_MEDIUM, TrainingSetup(gpu_architecture=gpu.architecture))
                       .assumptions if x.name == "cuBLAS workspaces"]
            assert "does not name" not in assumed[0].value, gpu.key


def test_no_gpu_named_takes_the_larger_size_and_says_so():
    b = estimate_memory(GPT2_MEDIUM, TrainingSetup())
    assert b.blas_workspace_bytes == HANDLES_PER_STEP * PYTORCH_HOPPER_AND_LATER_BYTES
    (line,) = [x for x in b.assumptions if x.name == "cuBLAS workspaces"]
    assert "no GPU named" in line.value and "32 MiB" in line.value and "8.125 MiB" in line.value


def test_an_architecture_the_rule_does_not_name_is_said_not_guessed_silently():
    b = estimate_memory(GPT2_MEDIUM, TrainingSetup(gpu_architecture=get_gpu("mi300x").architecture))
    assert b.blas_workspace_bytes == HANDLES_PER_STEP * PYTORCH_HOPPER_AND_LATER_BYTES
    (line,) = [x for x in b.assumptions if x.name == "cuBLAS workspaces"]
    assert "CDNA 3" in line.value and "does not name" in line.value


def test_a_cpu_has_no_workspace_and_refuses_an_architecture():
    b = estimate_memory(GPT2_MEDIUM, TrainingSetup(device=Device.cpu))
    assert b.blas_workspace_bytes == 0.0
    assert not [x for x in b.assumptions if x.name == "cuBLAS workspaces"]
    with pytest.raises(UsageError, match="CPU"):
        TrainingSetup(device=Device.cpu, gpu_architecture="Hopper")
    with pytest.raises(UsageError, match="architecture"):
        TrainingSetup(gpu_architecture=9)


def test_a_gpu_row_without_an_architecture_takes_the_larger_size_and_says_so():
    # a --gpu-csv row may leave the architecture column empty
    b = estimate_memory(GPT2_MEDIUM, TrainingSetup(gpu_architecture=""))
    assert b.blas_workspace_bytes == HANDLES_PER_STEP * PYTORCH_HOPPER_AND_LATER_BYTES
    (line,) = [x for x in b.assumptions if x.name == "cuBLAS workspaces"]
    assert "names no architecture" in line.value


def test_answer_takes_the_gpus_architecture_and_refuses_another():
    gpu = get_gpu("4070ti")
    got = answer(GPT2_MEDIUM, TrainingSetup(), gpu).breakdown
    assert got.blas_workspace_bytes == HANDLES_PER_STEP * PYTORCH_DEFAULT_BYTES
    with pytest.raises(UsageError, match="Hopper"):
        answer(GPT2_MEDIUM, TrainingSetup(gpu_architecture="Hopper"), gpu)


@pytest.mark.parametrize("gpu,key", [("4070ti", "rtx-4070-ti"), ("a100-80gb", "a100-sxm-80gb"), ("h200", "h200-sxm")])
def test_memory_command_prices_the_named_gpus_workspace_and_says_which(capsys, gpu, key):
    d = cli_json(capsys, "memory", "--model", "gpt2-medium", "--gpu", gpu)
    b = d.get("breakdown", d)
    assert b["components_bytes"]["blas_workspaces"] == HANDLES_PER_STEP * pytorch_workspace_bytes(key)
    (line,) = [x for x in b["assumptions"] if x["name"] == "cuBLAS workspaces"]
    assert get_gpu(gpu).architecture in line["value"]
    assert f"{pytorch_workspace_bytes(key) / 2**20:g} MiB" in line["value"]


def test_plot_memory_says_the_size_it_assumes_without_a_gpu_and_not_with_one(capsys):
    without = cli_json(capsys, "plot", "memory", "--model", "gpt2")
    assert any("cuBLAS workspaces" in n and "32 MiB" in n for n in without["notes"])
    assert without["bars"][0]["component_bytes"]["blas_workspaces"] == 2 * PYTORCH_HOPPER_AND_LATER_BYTES
    named = cli_json(capsys, "plot", "memory", "--model", "gpt2", "--gpu", "4070ti")
    assert not any("cuBLAS" in n for n in named.get("notes", []))
    assert named["bars"][0]["component_bytes"]["blas_workspaces"] == 2 * PYTORCH_DEFAULT_BYTES


def test_planner_chooses_with_the_gpus_workspace():
    from flopscalc.hardware import Precision
    from flopscalc.planner.setups import choose_setup

    gpu = get_gpu("4070ti")
    chosen = choose_setup(get_preset("gpt2-large"), gpu, 1, 1024, Precision.bf16)
    assert chosen.setup.gpu_architecture == "Ada Lovelace"
    ada = estimate_memory(get_preset("gpt2-large"), chosen.setup)
    unnamed = estimate_memory(get_preset("gpt2-large"), replace(chosen.setup, gpu_architecture=None))
    gap = HANDLES_PER_STEP * (PYTORCH_HOPPER_AND_LATER_BYTES - PYTORCH_DEFAULT_BYTES)
    assert unnamed.allocated_peak_bytes - ada.allocated_peak_bytes == gap
    assert chosen.peak_memory_bytes == ada.peak_bytes


def test_finetune_full_and_lora_take_the_gpus_workspace():
    from flopscalc.finetune.memory import FinetuneSetup
    from flopscalc.finetune.plan import plan_finetune

    cfg = get_preset("gpt2")
    for key in ("rtx-4070-ti", "h200-sxm"):
        plan = plan_finetune(cfg, FinetuneSetup(method="full", seq_len=512), get_gpu(key), n_dataset_tokens=1e6)
        assert plan.memory.component_bytes()["blas_workspaces"] == HANDLES_PER_STEP * pytorch_workspace_bytes(key)
    llama = get_preset("llama-2-7b")
    for method in ("lora", "qlora"):
        for key in ("rtx-4070-ti", "h200-sxm"):
            plan = plan_finetune(llama, FinetuneSetup(method=method, seq_len=256), get_gpu(key),
                                 n_dataset_tokens=1e6)
            assert plan.memory.component_bytes()["blas_workspaces"] == HANDLES_PER_STEP * pytorch_workspace_bytes(key)


@pytest.mark.parametrize("engine_layout", [
    Layout(micro_batch=2, n_micro=1),  # plain DDP: the memory engine's estimate
    Layout(tp=2, pp=2, micro_batch=1, n_micro=4),  # Megatron-LM: Korthikanti's count
])
def test_layout_memory_takes_the_architecture(engine_layout):
    cfg = get_preset("gpt2-medium")
    ada = layout_memory(cfg, engine_layout, 1024, gpu_architecture="Ada Lovelace")
    hopper = layout_memory(cfg, engine_layout, 1024, gpu_architecture="Hopper")
    unnamed = layout_memory(cfg, engine_layout, 1024)
    gap = HANDLES_PER_STEP * (PYTORCH_HOPPER_AND_LATER_BYTES - PYTORCH_DEFAULT_BYTES)
    assert hopper.blas_workspaces - ada.blas_workspaces == gap  # their own row since helper b85
    assert unnamed.blas_workspaces == hopper.blas_workspaces
