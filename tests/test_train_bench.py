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


def _on_cuda(monkeypatch, runtime_name: str):
    """`resolve_peak` on a CUDA device the runtime calls ``runtime_name``, on this CPU: --gpu must name the device
    timed (a CPU run with --gpu is refused since review r13, in train too since r15: tests/test_s18_b110.py); the
    precision as asked (no CUDA capability queries)."""
    from flopscalc.train import bench

    monkeypatch.setattr(bench, "pick_device", lambda *a: torch.device("cuda"))
    monkeypatch.setattr(bench, "device_name", lambda d: runtime_name)
    monkeypatch.setattr(bench, "resolve_precision", lambda precision, device: precision)
    monkeypatch.setattr(bench, "peak_precision", lambda precision, device: precision)


def test_named_gpu_uses_its_database_peak(monkeypatch):
    # the lookup bench and train share
    from flopscalc.hardware import get_gpu
    from flopscalc.train.bench import resolve_peak

    _on_cuda(monkeypatch, "NVIDIA H100 80GB HBM3")
    _, spec, peak, _ = resolve_peak("cuda", "fp32", "h100", None)
    assert spec.key == get_gpu("h100").key
    assert peak == get_gpu("h100").peak_flop_per_s("fp32")  # the precision's own peak


def test_gpu_row_without_the_precision_gives_no_mfu_and_says_so(monkeypatch):
    # a pre-Ampere row (T4: FP32 and FP16 only) has no BF16 peak to divide by
    from flopscalc.train.bench import resolve_peak

    _on_cuda(monkeypatch, "Tesla T4")
    _, spec, peak, notes = resolve_peak("cuda", "bf16", "t4", None)
    assert spec.key == "t4" and peak is None
    assert "no dense bf16 peak" in notes[-1] and "--peak-tflops" in notes[-1]


def test_out_of_memory_is_recognised_from_cuda_and_its_libraries():
    from flopscalc.train.bench import is_out_of_memory

    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be ..."))
    assert is_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate`"))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


def test_bench_refuses_to_run_under_torchrun(monkeypatch, capsys):
    from flopscalc.cli import run

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert run(["bench", "--device", "cpu", "--n-layer", "1", "--n-head", "2", "--n-embd", "32",
                "--block-size", "32", "--micro-batch", "2"]) == 2
    assert "without torchrun" in capsys.readouterr().err
