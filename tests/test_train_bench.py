"""Benchmark: achieved FLOP/s = measured tokens/s x model FLOPs per token, and those FLOPs are what PyTorch counts."""

from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")

from flopscalc.model import ModelConfig
from flopscalc.train.bench import BenchSetup, measure, run_benchmarks
from tests.conftest import measure_flops

TINY = ModelConfig(n_layer=2, n_head=2, n_embd=64, block_size=64, vocab_size=256, name="tiny")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_bench_point_is_consistent_with_flop_counter_and_wall_clock():
    setup = BenchSetup(TINY, micro_batch=4, seq_len=32, device="cpu", warmup_steps=2, timed_steps=5)
    t0 = time.perf_counter()
    p = measure(setup, peak_flop_per_s=2e11)
    wall_s = time.perf_counter() - t0
    counted = measure_flops(TINY, 4, 32)["total"] / (4 * 32)  # FlopCounterMode, forward + backward, per token
    assert p.model_flops_per_token == pytest.approx(counted, rel=1e-12)
    assert p.achieved_flop_per_s == pytest.approx(p.tokens_per_s * counted, rel=1e-12)
    assert p.mfu == pytest.approx(p.achieved_flop_per_s / 2e11, rel=1e-12)
    assert p.tokens_per_s * p.step_time_s == pytest.approx(4 * 32, rel=1e-12)
    assert 5 * p.step_time_s < wall_s  # the timed steps fit inside the wall-clock time of the call
    assert p.peak_memory_bytes is None and p.precision == "fp32"
    # the estimator's prediction is there, and above fp32 weights + gradients + AdamW m and v (4 x 4 bytes/param)
    assert p.predicted_memory_bytes > 16 * p.n_params


def test_cpu_profile_without_peak_says_why():
    prof = run_benchmarks([BenchSetup(TINY, 2, 16, device="cpu", warmup_steps=1, timed_steps=2)])
    assert prof.gpu_key is None and prof.points[0].mfu is None
    assert "not in the GPU database" in prof.notes[0]


def test_named_gpu_uses_its_database_peak():
    from flopscalc.hardware import get_gpu

    prof = run_benchmarks([BenchSetup(TINY, 2, 16, device="cpu", warmup_steps=1, timed_steps=2)], gpu="h100")
    assert prof.gpu_key == get_gpu("h100").key
    assert prof.points[0].peak_flop_per_s == get_gpu("h100").peak_flop_per_s("fp32")  # CPU fp32 run: fp32 peak
