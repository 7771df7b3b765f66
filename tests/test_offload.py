"""Offload's extra step time counts the bytes the real tensors hold (PyTorch module and optimizer state)."""

from __future__ import annotations

import pytest

from flopscalc.flops import Recompute
from flopscalc.memory import MemoryPrecision, Optimizer, TrainingSetup
from flopscalc.model import ModelConfig
from flopscalc.perf.offload import HOST_LINK_BYTES_PER_S, HOST_MEMORY_BYTES_PER_S, offload_time

torch = pytest.importorskip("torch")

TINY = ModelConfig(n_layer=2, n_head=2, n_embd=64, block_size=64, vocab_size=256, name="tiny")


def _setup(**kw) -> TrainingSetup:
    base = {"micro_batch": 1, "seq_len": 64, "precision": MemoryPrecision.bf16_mixed, "recompute": Recompute.none,
            "offload_optimizer": True}
    return TrainingSetup(**{**base, **kw})


def _module_params():
    from flopscalc.train.model import GPT

    return [p.detach() for p in GPT(TINY).parameters()]


def test_link_carries_bf16_gradients_down_and_bf16_weights_up():
    params = _module_params()
    down = sum(p.to(torch.bfloat16).nbytes for p in params)
    t = offload_time(TINY, _setup())
    assert t.link_bytes == 2 * down  # the same bf16 bytes each way
    assert t.link_s == pytest.approx(t.link_bytes / HOST_LINK_BYTES_PER_S)


def test_cpu_update_touches_the_bytes_a_real_adamw_holds():
    # ZeRO-Offload's CPU side: fp32 master weights, fp32 gradients, AdamW m and v, updated in place, then a
    # bf16 copy written for the GPU. Count them on real tensors after a torch AdamW step.
    master = [p.clone().float().requires_grad_() for p in _module_params()]
    for p in master:
        p.grad = torch.randn_like(p)
    opt = torch.optim.AdamW(master, lr=1e-3)
    opt.step()
    states = sum(s.nbytes for st in opt.state.values() for s in st.values())  # m, v and the step counters
    held = states + sum(p.nbytes for p in master) + sum(p.grad.nbytes for p in master)
    copy_back = sum(p.detach().to(torch.bfloat16).nbytes for p in master)
    t = offload_time(TINY, _setup())
    assert t.cpu_bytes == 2 * held + copy_back  # read and write of what it holds, plus the copy written once
    assert t.cpu_s == pytest.approx(t.cpu_bytes / HOST_MEMORY_BYTES_PER_S)


def test_zero_partitions_split_the_link_but_not_the_host():
    one = offload_time(TINY, _setup())
    four = offload_time(TINY, _setup(n_gpus=4, zero_stage=2))
    assert four.link_bytes == pytest.approx(one.link_bytes / 4)  # each GPU sends its own partition
    assert four.cpu_bytes == pytest.approx(one.cpu_bytes)  # one host updates all four partitions
    eight_bit = offload_time(TINY, _setup(optimizer=Optimizer.adamw8bit))
    assert eight_bit.cpu_bytes < one.cpu_bytes  # smaller states, less to stream


def test_no_offload_adds_nothing():
    t = offload_time(TINY, _setup(offload_optimizer=False))
    assert t.total_s == 0 and t.link_bytes == 0 and t.cpu_bytes == 0


def test_plan_step_includes_offload_and_says_how_much():
    from flopscalc.hardware import get_gpu
    from flopscalc.planner import plan

    p = plan(get_gpu("4070ti"), 365 * 86400)
    sp = p.recommended.speed
    assert p.recommended.chosen.setup.offload_optimizer and sp.offload.total_s > 0
    # the 1.4B main job (30 x 1920) at 25 GB/s and 76.8 GB/s: 0.86 s of a 3.6-minute step (0.4%), and the plan
    # says so
    assert 0 < sp.offload.total_s < 0.01 * sp.step_s
    assert any(w.startswith("optimizer offload adds") and "%" in w for w in p.warnings)


@pytest.mark.parametrize("gpu,gen", [("h100-sxm", 5), ("a100-sxm-80gb", 4), ("v100-sxm2-32gb", 3),
                                     ("rtx-4070-ti", 4), ("rtx-5090", 5), ("t4", 3)])
def test_host_link_follows_the_datasheets_pcie_generation(gpu, gen):
    # NVIDIA datasheets: H100 and RTX 50 "PCIe Gen5", A100 and Ada "PCIe Gen4", V100 and T4 "PCIe Gen3"
    from flopscalc.hardware import get_gpu
    from flopscalc.perf.offload import host_link_bytes_per_s, pcie_generation

    g = get_gpu(gpu)
    assert pcie_generation(g) == gen
    # PCI-SIG doubles the x16 rate each generation; 25 GB/s is the measured Gen4 rate
    assert host_link_bytes_per_s(g) == pytest.approx(HOST_LINK_BYTES_PER_S * 2 ** (gen - 4))
