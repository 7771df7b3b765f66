"""`flopscalc calibrate`'s sweep: the built-in CPU shapes, interleaved timing with a GEMM probe, and the fit.

Timing is `flopscalc.train.bench` (`run_benchmarks` with ``rounds`` and ``gemm_probe``); the fit of the step-time
model's device factors is `flopscalc.perf.calibrate` (no torch). Results: docs/performance_model.md, "Calibration".
"""

from __future__ import annotations

from dataclasses import replace

from ..calibration import CalibrationProfile
from ..errors import UsageError
from ..hardware import get_gpu
from ..model import ModelConfig
from .bench import BenchSetup, run_benchmarks

# The default sweep of 'flopscalc calibrate' on a CPU: GPT-2-style shapes of 0.2-1.1M parameters (vocabulary 2048,
# so the blocks, not the embedding, hold most of them), micro-batches 2-8 and sequences 32-128, chosen so that
# GEMMs, the attention core, memory-bound kernels and per-operator overhead each dominate some point, which
# is what lets four factors be told apart. (layers, heads, width, micro-batch, sequence); about 10 s at 1 thread.
CPU_SWEEP_VOCAB = 2048
CPU_SWEEP = ((2, 2, 64, 2, 128), (2, 2, 64, 8, 128), (2, 4, 128, 2, 128), (2, 4, 128, 8, 64), (4, 4, 128, 4, 128),
             (3, 2, 96, 4, 64), (2, 2, 64, 4, 32))
DEFAULT_ROUNDS = 5


def cpu_sweep(warmup_steps: int = 2, timed_steps: int = 2, vocab_size: int = CPU_SWEEP_VOCAB,
              sweep=CPU_SWEEP) -> list[BenchSetup]:
    """`CPU_SWEEP` as bench setups on the CPU (fp32, fused attention, no recomputation)."""
    return [BenchSetup(model=ModelConfig(n_layer=L, n_head=H, n_embd=E, block_size=T, vocab_size=vocab_size,
                                         name=f"{L}x{E}"),
                       micro_batch=b, seq_len=T, device="cpu", precision="fp32", warmup_steps=warmup_steps,
                       timed_steps=timed_steps) for L, H, E, b, T in sweep]


def run_calibration(setups: list[BenchSetup], *, gpu: str | None = None, peak_tflops: float | None = None,
                    extra_csv=(), n_threads: int | None = None, rounds: int = DEFAULT_ROUNDS) -> CalibrationProfile:
    """Time ``setups`` interleaved (`run_benchmarks`) and fit the step-time model's device factors to them
    (`flopscalc.perf.calibrate.fit_profile`): the profile then predicts any model on this device."""
    from ..perf.calibrate import MIN_POINTS, fit_profile  # scipy, inside the fit only

    # what is timed first (a wrong kind of step is wrong at any count), then whether there are enough to fit
    if any(s.compile for s in setups):
        raise UsageError("calibrate fits the model of eager PyTorch kernels: drop --compile (or use 'bench')")
    if any(s.lora_rank for s in setups):  # the profile's factors describe pre-training steps (perf/step.py)
        raise UsageError("calibrate fits the pre-training step model: drop the LoRA settings (or use 'bench')")
    if len(setups) < MIN_POINTS:  # refused before minutes of timing: the profile would have nothing to fit
        raise UsageError(f"calibrate fits the step-time model's 4 device factors and needs at least {MIN_POINTS} "
                         f"setups, got {len(setups)}: on a CPU name no model for the built-in sweep, or give more (every "
                         "--model x --micro-batch x --seq is timed; repeat them), or time these with 'bench'")
    profile = run_benchmarks(setups, gpu=gpu, peak_tflops=peak_tflops, extra_csv=extra_csv, n_threads=n_threads,
                             rounds=rounds, gemm_probe=True)
    if len(profile.points) < MIN_POINTS:  # (setups lost while timing) the measurements still give a measured MFU
        note = (f"no device factors fitted: the step-time model's 4 factors need {MIN_POINTS} setups or more, "
                f"{len(profile.points)} were timed ('step --calibration' needs them; 'plan' reads the measured MFU)")
        return replace(profile, notes=(*profile.notes, note))
    spec = get_gpu(profile.gpu_key, extra_csv) if profile.gpu_key else None
    return fit_profile(profile, spec)
