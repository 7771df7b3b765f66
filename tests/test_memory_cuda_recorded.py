"""The memory estimator against the CUDA peaks recorded on an NVIDIA H200 (torch 2.11.0+cu130, 2026-11-28).

RECORDED (read here, never rewritten): ``torch.cuda.max_memory_allocated`` of steady-state training steps,
- ``benchmarks/results/memory_cuda_nvidia-h200.json`` (``benchmarks/bench_memory_gpu.py``): GPT-2 small..XL x
  micro-batch 1, 2, 4, 8, sequence 1024, bf16 autocast, flash SDPA, fused AdamW, no recomputation;
- ``benchmarks/results/calibration_h200-sxm_20261128_{eager,eager-sizes,recompute-*}.json``
  (``flopscalc calibrate``, the reference trainer): ``points[].peak_memory_bytes`` of eager runs, with and without
  recomputation (compiled runs are another program: torch.compile frees and fuses differently, out of scope).
The estimate is ``MemoryBreakdown.allocated_peak_bytes`` for the same settings, from today's code.

What the estimator leaves out, so every row may fall short of the measurement by it (docs/memory.md): the caching
allocator's block rounding (``c10/cuda/CUDACachingAllocator.cpp``: allocations of 10 MiB and more get segments
rounded up to 2 MiB, and a remainder of 1 MiB or less is not split off but counted as allocated), which depends on
the order of allocations and frees. It only adds bytes, so the estimate must not exceed any measurement; the bound
below is the largest shortfall seen (GPT-2 small, full recomputation: -2.6%), rounded up. GPT-2 medium's tensors are
whole 2-MiB blocks or split off exactly, so there no rounding applies and the estimate must land within a few MiB.

The loss's own buffers are also measured on this machine's CPU, by the profiler's allocation events: PyTorch's
cross-entropy as CPU autocast runs it, and as CUDA autocast runs it (settings [12]: ``log_softmax`` in bf16, then
``nll_loss`` on an fp32 copy), spelled out op by op since no GPU is here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flopscalc.calibration import load_profile
from flopscalc.flops import Recompute
from flopscalc.memory import Device, MemoryPrecision, TrainingSetup, estimate_memory
from flopscalc.memory.precision import trainer_memory_precision
from flopscalc.memory.settings import INDEX_BYTES
from flopscalc.model import PRESETS, ModelConfig

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
MEMORY_JSON = RESULTS / "memory_cuda_nvidia-h200.json"
CALIBRATIONS = ("eager", "eager-sizes", "recompute-full-gpt2", "recompute-full-gpt2-xl",
                "recompute-selective-gpt2-xl")
# Largest shortfall allowed, as a fraction of the measured peak: the worst row after the fix is -2.6% (above).
MAX_SHORTFALL = 0.03
# GPT-2 medium, where no block rounding applies: the shortfall seen is 0.7-2.9 MiB (small tensors' 512-byte blocks,
# transients beside the peak), against 64 MiB of cuBLAS workspaces the estimate would miss without memory.workspace [1].
MEDIUM_SHORTFALL_BYTES = 4 * 2**20
# Issue 3's target, which the estimate before the fix missed (+19.7% for GPT-2 small at micro-batch 8).
ISSUE_TARGET = 0.10


def _bench_rows() -> list[tuple[str, ModelConfig, TrainingSetup, float, float]]:
    """(label, model, setup, measured bytes, estimate recorded with the measurement) of the memory benchmark."""
    rows = []
    for r in json.loads(MEMORY_JSON.read_text())["rows"]:
        setup = TrainingSetup(micro_batch=r["micro_batch"], seq_len=r["seq_len"], recompute=Recompute(r["recompute"]),
                              flash=r["flash"], precision=MemoryPrecision(r["precision"]), device=Device.cuda)
        rows.append((f"{r['model']} mb{r['micro_batch']}", PRESETS[r["model"]], setup,
                     r["measured_allocated_bytes"], r["estimated_allocated_bytes"]))
    return rows


def _trainer_rows() -> list[tuple[str, ModelConfig, TrainingSetup, float, float]]:
    """The same for the eager trainer's calibration points (settings as ``train.bench.predicted_peak_bytes``)."""
    rows = []
    for name in CALIBRATIONS:
        for p in load_profile(RESULTS / f"calibration_h200-sxm_20261128_{name}.json").points:
            assert not p.compiled
            setup = TrainingSetup(micro_batch=p.micro_batch, seq_len=p.seq_len, grad_accum=p.grad_accum,
                                  n_gpus=p.n_devices, precision=trainer_memory_precision(p.precision),
                                  recompute=Recompute(p.recompute), flash=p.attention == "sdpa", device=Device.cuda)
            rows.append((f"{name}: {p.model.name} mb{p.micro_batch} {p.recompute}", p.model, setup,
                         p.peak_memory_bytes, p.predicted_memory_bytes))
    return rows


ROWS = _bench_rows() + _trainer_rows()


def _error(cfg: ModelConfig, setup: TrainingSetup, measured: float) -> float:
    return estimate_memory(cfg, setup).allocated_peak_bytes / measured - 1


def test_the_recorded_rows_are_all_here():
    assert len(_bench_rows()) == 16 and len(_trainer_rows()) == 9  # 4 models x 4 micro-batches; 9 trainer points
    assert {s.recompute for _, _, s, _, _ in ROWS} == set(Recompute)


@pytest.mark.parametrize("label, cfg, setup, measured, _", ROWS, ids=[r[0] for r in ROWS])
def test_estimate_is_within_the_shortfall_left_by_what_it_leaves_out(label, cfg, setup, measured, _):
    err = _error(cfg, setup, measured)
    assert -MAX_SHORTFALL <= err <= 0.0, f"{label}: {100 * err:+.1f}%"


def test_where_no_block_rounding_applies_the_estimate_is_the_measurement_to_a_few_mib():
    medium = [(cfg, s, m) for label, cfg, s, m, _ in ROWS if cfg.name == "gpt2-medium"]
    assert len(medium) == 5
    for cfg, setup, measured in medium:
        assert 0 <= measured - estimate_memory(cfg, setup).allocated_peak_bytes <= MEDIUM_SHORTFALL_BYTES


def test_the_bound_tells_the_estimate_before_the_fix_apart():
    """The estimates recorded beside the measurements (the code before this fix) break the bound, and GPT-2 small
    even issue 3's 10%: this test can fail."""
    before = {label: old / m - 1 for label, _, _, m, old in ROWS}
    assert sum(not (-MAX_SHORTFALL <= e <= 0.0) for e in before.values()) >= 20
    assert before["gpt2 mb8"] > ISSUE_TARGET


# ------------------------------------------------------------------ the loss's buffers, measured on CPU kernels

def _loss_peak_bytes(torch, loss_fn, n_tokens: int, vocab: int) -> int:
    """Peak of the bytes allocated while ``loss_fn`` runs forward and backward on bf16 logits made beforehand (so not
    counted: the trainer holds no logits of its own, settings [14]), from the CPU profiler's allocation events."""
    from torch.profiler import ProfilerActivity, profile

    logits = torch.randn(n_tokens, vocab, dtype=torch.bfloat16, requires_grad=True)
    targets = torch.randint(0, vocab, (n_tokens,))
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        loss_fn(logits, targets).backward()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    now = peak = 0
    for e in events:
        now += e.nbytes()
        peak = max(peak, now)
    return peak


def _autocast_loss(torch, device: Device):
    """F.cross_entropy on bf16 logits as ``device``'s autocast runs it (on this machine's CPU kernels)."""
    import torch.nn.functional as F

    def cpu(logits, targets):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return F.cross_entropy(logits, targets)  # CPU autocast's fp32 list holds cross_entropy_loss whole

    def cuda(logits, targets):
        # what CUDA autocast makes of F.cross_entropy (settings [12]): log_softmax keeps the dtype cross_entropy_loss
        # passes it (the logits' bf16), nll_loss (CUDA fp32 list) runs on an fp32 copy
        return F.nll_loss(torch.log_softmax(logits, 1, dtype=torch.bfloat16).float(), targets)

    return cpu if device is Device.cpu else cuda


@pytest.mark.parametrize("device", list(Device))
def test_loss_buffers_alive_at_once_equal_the_estimate(device):
    """The saved loss and the backward transient the estimator prices equal the measured peak of the loss's own
    allocations (12 b s V bytes on CPU, 10 on CUDA), to the few 0-dim fp32 tensors beside them (the loss,
    nll_loss's total_weight, backward's seed gradient)."""
    n_tokens, vocab = 256, 4096
    cfg = ModelConfig(n_layer=1, n_head=1, n_embd=8, block_size=n_tokens, vocab_size=vocab)
    est = estimate_memory(cfg, TrainingSetup(micro_batch=1, seq_len=n_tokens, device=device))
    predicted = est.activations.loss - INDEX_BYTES * n_tokens + est.loss_transient_bytes  # targets made beforehand
    torch = pytest.importorskip("torch")
    measured = _loss_peak_bytes(torch, _autocast_loss(torch, device), n_tokens, vocab)
    assert 0 <= measured - predicted <= 3 * 4, (measured, predicted)
    assert round(measured / (n_tokens * vocab)) == (12 if device is Device.cpu else 10)
