"""Benchmark the reference trainer and turn the measurements into a `CalibrationProfile`.

A measurement runs full optimizer steps (forward, backward, clipping, fused AdamW) of the reference
GPT-2 on synthetic tokens: ``warmup_steps`` untimed steps (allocator warm-up, cuDNN/cuBLAS heuristics,
``torch.compile``), then ``timed_steps`` steps timed back to back between two device synchronisations.
Achieved FLOP/s = tokens/s x the FLOPs engine's model FLOPs per token (forward + backward matmuls,
no recomputation); MFU = achieved / dense peak of the precision used (Chowdhery et al. 2022, App. B).
"""

from __future__ import annotations

import datetime as _dt
import gc
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass

import torch

from ..calibration import CalibrationPoint, CalibrationProfile
from ..errors import DomainError, UsageError
from ..hardware import GpuSpec, get_gpu
from ..model import ModelConfig, count_params
from ..perf.utilization import model_flops_utilization
from ..units import TERA, format_bytes
from .config import TrainConfig, choose_threads
from .data import synthetic_tokens
from .distributed import DistInfo, dist_info_from_env, pick_device
from .gpu_row import refuse_row_of_another_device
from .trainer import Trainer, peak_precision, resolve_precision

# Untimed steps before timing: the first step allocates optimizer state and picks kernels; with
# torch.compile the first steps also compile (nanoGPT's bench.py skips its first 10 of 20 steps).
DEFAULT_WARMUP_STEPS = 5
DEFAULT_TIMED_STEPS = 20


@dataclass(frozen=True)
class BenchSetup:
    """One configuration to time (units as in `TrainConfig`)."""

    model: ModelConfig
    micro_batch: int
    seq_len: int
    grad_accum: int = 1
    compile: bool = False
    precision: str = "auto"
    device: str = "auto"
    attention: str = "sdpa"
    recompute: str = "none"
    warmup_steps: int = DEFAULT_WARMUP_STEPS
    timed_steps: int = DEFAULT_TIMED_STEPS
    seed: int = 1337
    # LoRA, as `TrainConfig`'s lora_* (rank 0: every weight trains); with a rank the trainer freezes the base and
    # its model FLOPs per token are the LoRA step's (`train.lora.lora_model_flops_per_token`), which bench divides by
    lora_rank: int = 0
    lora_alpha: float | None = None
    lora_targets: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 1:
            raise UsageError(f"--warmup-steps must be a positive integer, got {self.warmup_steps!r}")
        if isinstance(self.timed_steps, bool) or not isinstance(self.timed_steps, int) or self.timed_steps < 1:
            raise UsageError(f"--steps must be a positive integer, got {self.timed_steps!r}")

    def train_config(self) -> TrainConfig:
        """The trainer settings this setup times (learning rate and schedule do not change the speed)."""
        return TrainConfig(model=self.model, micro_batch=self.micro_batch, seq_len=self.seq_len,
                           grad_accum=self.grad_accum, max_steps=self.warmup_steps + self.timed_steps,
                           warmup_steps=1, device=self.device, precision=self.precision, compile=self.compile,
                           attention=self.attention, recompute=self.recompute, seed=self.seed,
                           lora_rank=self.lora_rank, lora_alpha=self.lora_alpha, lora_targets=self.lora_targets)


def device_name(device: torch.device) -> str:
    """What the runtime calls the device: the CUDA name, or the CPU's processor string."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()}".strip()


def identify_gpu(device: torch.device, gpu: str | None = None, extra_csv=()) -> GpuSpec | None:
    """The GPU database row for this device: ``gpu`` when given, else the CUDA name; None if unknown."""
    if gpu is not None:
        return get_gpu(gpu, extra_csv)
    if device.type != "cuda":
        return None
    try:
        return get_gpu(torch.cuda.get_device_name(device), extra_csv)
    except UsageError:
        return None


def predicted_peak_bytes(cfg: TrainConfig, precision: str, device: torch.device, n_devices: int,
                         gpu: GpuSpec | None = None) -> float | None:
    """The memory estimator's allocated peak for this run (bytes; what ``torch.cuda.max_memory_allocated`` should
    show); None if the estimator is absent. ``gpu``: the CUDA device's database row when the caller knows it (a dry
    run priced for a GPU it does not have); else the device is identified by its CUDA name."""
    est = predicted_memory(cfg, precision, device, n_devices, gpu)
    return None if est is None else float(est.allocated_peak_bytes)


def predicted_memory(cfg: TrainConfig, precision: str, device: torch.device, n_devices: int,
                     gpu: GpuSpec | None = None):
    """The memory estimator's breakdown of this run (`memory.MemoryBreakdown`: ``allocated_peak_bytes``, and
    ``peak_bytes``, the device total with the CUDA context and the allocator's overhead, which `flopscalc memory`
    reports and which must fit the GPU); None if the estimator is absent. ``gpu`` as `predicted_peak_bytes`."""
    try:
        from ..memory import Device, TrainingSetup, estimate_memory
        from ..memory.precision import trainer_memory_precision
    except ImportError:
        return None
    spec = None if device.type != "cuda" else gpu or identify_gpu(device)  # its architecture sizes cuBLAS's workspace
    ts = TrainingSetup(micro_batch=cfg.micro_batch, seq_len=cfg.seq_len,
                       precision=trainer_memory_precision(precision),
                       recompute=cfg.recompute, flash=cfg.attention == "sdpa", grad_accum=cfg.grad_accum,
                       n_gpus=n_devices,
                       device=Device.cuda if device.type == "cuda" else Device.cpu,
                       gpu_architecture=spec.architecture if spec is not None else None)
    return estimate_memory(cfg.model, ts)


def out_of_memory(cfg: TrainConfig, precision: str, device: torch.device, n_devices: int, advice: bool = True) -> str:
    """One line for a run that ran out of device memory: what it was, what the estimator says, what to try."""
    have = ""
    if device.type == "cuda":
        have = f" ({format_bytes(torch.cuda.get_device_properties(device).total_memory)})"
    predicted = predicted_peak_bytes(cfg, precision, device, n_devices)
    said = f"; the memory estimator predicts {format_bytes(predicted)}" if predicted else ""
    smaller = (f"--micro-batch {cfg.micro_batch // 2} --grad-accum {2 * cfg.grad_accum} (same tokens per step), "
               if cfg.micro_batch > 1 else "")
    what = (f"out of memory on {device_name(device)}{have} at micro-batch {cfg.micro_batch} x {cfg.seq_len} tokens "
            f"of {cfg.model.name or 'the model'}{' (compiled)' if cfg.compile else ''}{said}")
    return f"{what}. Try {smaller}--recompute full, or see 'flopscalc memory --help'" if advice else what


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's refusal (a RuntimeError saying "can't allocate memory")."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc)
    # also what cuBLAS/cuDNN and the CUDA runtime raise when their own allocations fail
    return isinstance(exc, RuntimeError) and any(m in text for m in (
        "can't allocate memory", "CUDA error: out of memory", "CUBLAS_STATUS_ALLOC_FAILED",
        "CUDNN_STATUS_ALLOC_FAILED"))


def free_device_memory(device: torch.device) -> None:
    """Give cached blocks back after an out-of-memory error, so the next setup starts clean."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _warm_trainer(setup: BenchSetup, info: DistInfo, rounds: int = 1) -> Trainer:
    """A trainer for ``setup`` with its warm-up steps run (tokens for ``rounds`` x the timed steps)."""
    cfg = setup.train_config()
    if setup.compile:
        # start from a clean compiler cache: after an earlier setup, dynamo would recompile GPT.forward with a
        # symbolic (dynamic) batch size, a different graph from the static one `flopscalc train` compiles
        torch._dynamo.reset()
    n_steps = setup.warmup_steps + rounds * setup.timed_steps
    tokens = synthetic_tokens(n_steps * cfg.tokens_per_micro_batch * cfg.grad_accum * info.world_size + 1,
                              setup.model.vocab_size, setup.seed)
    trainer = Trainer(cfg, tokens, None, dist=info)
    for _ in range(setup.warmup_steps):
        trainer.train_step()
    trainer.synchronize()
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(trainer.device)
    return trainer


def _time_steps(trainer: Trainer, n_steps: int) -> tuple[float, float]:
    """Mean (wall, process CPU) seconds per optimizer step over ``n_steps`` steps run back to back between two
    synchronisations. The CPU time counts only while this process runs, so on a CPU device it leaves out the
    time other processes of a shared machine held the core (on a GPU it is the host's time and means little)."""
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n_steps):
        loss, _ = trainer.train_step()
    trainer.synchronize()
    elapsed_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    if not torch.isfinite(loss):
        raise UsageError("the benchmark's loss is not finite; try --precision fp32")
    return elapsed_s / n_steps, cpu_s / n_steps


def measure(setup: BenchSetup, peak_flop_per_s: float | None, dist: DistInfo | None = None) -> CalibrationPoint:
    """Time ``setup``; ``peak_flop_per_s`` is one device's dense peak for the precision used (or None)."""
    info = dist or DistInfo()
    trainer = _warm_trainer(setup, info)
    return _point(setup, trainer, (_time_steps(trainer, setup.timed_steps),), peak_flop_per_s, info)


def _point(setup: BenchSetup, trainer: Trainer, rounds: tuple[tuple[float, float], ...],
           peak_flop_per_s: float | None, info: DistInfo, own_memory: bool = True) -> CalibrationPoint:
    """The measured point of ``setup``: the median of the rounds' (wall, CPU) step times, and what follows."""
    cfg = setup.train_config()
    device = trainer.device
    round_s = tuple(w for w, _ in rounds)
    step_time_s = statistics.median(round_s)
    on_cpu = device.type == "cpu"
    cpu_rounds = tuple(c for _, c in rounds) if on_cpu and len(rounds) > 1 else ()
    tokens_per_s = cfg.tokens_per_micro_batch * cfg.grad_accum * info.world_size / step_time_s
    achieved = tokens_per_s * trainer.model_flops_per_token  # PaLM App. B: model FLOPs per second
    mfu = (model_flops_utilization(trainer.model_flops_per_token, tokens_per_s, info.world_size, peak_flop_per_s)
           if peak_flop_per_s else None)  # PaLM App. B
    # the allocator's peak is this setup's only when no other trainer was alive (not so when interleaved)
    peak_mem = float(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" and own_memory else None
    return CalibrationPoint(
        model=setup.model, n_params=count_params(setup.model).total, micro_batch=setup.micro_batch,
        seq_len=setup.seq_len, grad_accum=setup.grad_accum, n_devices=info.world_size,
        precision=peak_precision(trainer.precision, device), compiled=setup.compile, step_time_s=step_time_s,
        tokens_per_s=tokens_per_s, model_flops_per_token=trainer.model_flops_per_token,
        achieved_flop_per_s=achieved, peak_flop_per_s=peak_flop_per_s, mfu=mfu, peak_memory_bytes=peak_mem,
        predicted_memory_bytes=predicted_peak_bytes(cfg, trainer.precision, device, info.world_size),
        n_timed_steps=setup.timed_steps * len(round_s), round_step_times_s=round_s if len(round_s) > 1 else (),
        cpu_step_time_s=statistics.median(c for _, c in rounds) if on_cpu else None, round_cpu_times_s=cpu_rounds,
        attention=setup.attention, recompute=setup.recompute,
    )


# Side of the square matmul `flopscalc calibrate` times beside its sweep, per device type: large enough to run at
# the device's best GEMM rate (S. Bekman, ml-engineering, "Maximum Achievable Matmul FLOPS finder": GPUs reach
# theirs at 4k-20k; on one CPU core torch's fp32 matmul is flat from 256 to 1024 here, 104-109 GFLOP/s).
GEMM_PROBE_N = {"cpu": 1024, "cuda": 8192}
GEMM_PROBE_MATMULS = 3  # matmuls per timing


class GemmProbe:
    """Times a square n x n x n matmul on ``device`` in the trainer's precision: FLOP/s = 2 n^3 / time
    (process CPU time on a CPU, as the sweep; wall time between synchronisations on a GPU)."""

    def __init__(self, device: torch.device, precision: str):
        self.device, self.n = device, GEMM_PROBE_N.get(device.type, GEMM_PROBE_N["cuda"])
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        gen = torch.Generator(device="cpu").manual_seed(0)
        self.a = torch.randn(self.n, self.n, generator=gen).to(device=device, dtype=dtype)
        self.b = torch.randn(self.n, self.n, generator=gen).to(device=device, dtype=dtype)
        for _ in range(2):  # warm-up: library heuristics, page faults
            self.a @ self.b
        self._sync()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __call__(self) -> float:
        cpu = self.device.type == "cpu"
        t0 = time.process_time() if cpu else time.perf_counter()
        for _ in range(GEMM_PROBE_MATMULS):
            self.a @ self.b
        self._sync()
        elapsed = (time.process_time() if cpu else time.perf_counter()) - t0
        return GEMM_PROBE_MATMULS * 2 * self.n**3 / elapsed  # 2 m n k FLOPs per matmul


def measure_interleaved(setups: list[BenchSetup], peak_flop_per_s: float | None, rounds: int,
                        dist: DistInfo | None = None, probe=None) -> tuple[list[CalibrationPoint], list[float]]:
    """Time every setup in ``rounds`` interleaved rounds (each round times each setup once) and keep the medians.

    On a shared machine the load drifts over minutes; interleaving spreads that drift over every setup instead
    of charging it to whichever ran during a busy spell, and the median drops the rounds a burst hit. All
    trainers stay alive between rounds (meant for the small models a calibration sweep times). ``probe``: a
    callable timed once per round too (e.g. `GemmProbe`); its results are returned beside the points.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise UsageError(f"--rounds must be a positive integer, got {rounds!r}")
    info = dist or DistInfo()
    trainers = [_warm_trainer(s, info, rounds) for s in setups]
    times: list[list[tuple[float, float]]] = [[] for _ in setups]
    probed = []
    for _ in range(rounds):
        for i, (s, t) in enumerate(zip(setups, trainers)):
            times[i].append(_time_steps(t, s.timed_steps))
        if probe is not None:
            probed.append(probe())
    return [_point(s, t, tuple(ts), peak_flop_per_s, info, own_memory=len(setups) == 1)
            for s, t, ts in zip(setups, trainers, times)], probed


def resolve_peak(device_request: str, precision_request: str, gpu: str | None, peak_tflops: float | None,
                 extra_csv=(), info: DistInfo | None = None) -> tuple:
    """(device, GpuSpec or None, one device's peak FLOP/s or None, notes) for a run's device and precision."""
    device = pick_device(device_request, info or DistInfo())
    notes = []
    precision = peak_precision(resolve_precision(precision_request, device), device)
    spec = identify_gpu(device, gpu, extra_csv)
    if gpu is not None:  # the row is MFU's peak and a profile's gpu_key ('plan', 'step' match it): this device's only
        refuse_row_of_another_device(device.type, device_name(device), gpu, spec, extra_csv,
                                     peak_given=peak_tflops is not None)
    if peak_tflops is not None:
        if not (peak_tflops > 0 and math.isfinite(peak_tflops * TERA)):  # inf (or an overflow) made every MFU 0
            raise UsageError(f"--peak-tflops must be positive and finite (TFLOP/s), got {peak_tflops}; give "
                             "the datasheet's dense rate for the precision, or --gpu NAME to read it from the GPU "
                             "database")
        said = f"MFU against a stated peak of {peak_tflops} TFLOP/s ({precision})"
        if spec is not None:  # the row still names the device (a profile's gpu_key); its datasheet peak goes unused
            said += (f", not {spec.name}'s datasheet peak; {spec.name} is the GPU database row of the device "
                     "measured")
        notes.append(said)
        return device, spec, peak_tflops * TERA, notes
    if spec is None:
        how = ("name it with --gpu, or give --peak-tflops" if device.type == "cuda"
               else "give --peak-tflops for a stated peak")  # a CPU has no row: bench --gpu refuses one
        notes.append(f"{device_name(device)} is not in the GPU database: no MFU ({how})")
        return device, None, None, notes
    try:
        peak = spec.peak_flop_per_s(precision)
    except DomainError:  # e.g. a pre-Ampere row has no TF32 or BF16 rate
        notes.append(f"{spec.name} has no dense {precision} peak in the GPU database: no MFU (give "
                     "--peak-tflops)")
        return device, spec, None, notes
    notes.append(f"MFU against {spec.name}'s dense {precision} peak from the GPU database")
    return device, spec, peak, notes


def run_benchmarks(setups: list[BenchSetup], *, gpu: str | None = None, peak_tflops: float | None = None,
                   extra_csv=(), on_point=None, n_threads: int | None = None,
                   rounds: int | None = None, gemm_probe: bool = False) -> CalibrationProfile:
    """Measure every setup on this machine's device and gather them in one profile.

    ``n_threads``: torch's intra-op threads while timing (default on a CPU: ``config.DEFAULT_CPU_THREADS``; on a
    GPU torch's own default). The count torch used, and whether the machine was oversubscribed (load average
    above its cores) at the start, go into the profile's notes and fields; torch's previous setting is restored
    after. ``rounds``: time the setups in that many interleaved rounds and keep the medians
    (`measure_interleaved`); None times each setup once, in turn, skipping those that run out of memory.
    ``gemm_probe`` (with ``rounds``): also time a large matmul once per round (`GemmProbe`); the median goes into
    the profile's ``measured_gemm_flop_per_s``.
    """
    if not setups:
        raise UsageError("nothing to benchmark: give at least one micro-batch, sequence length and model")
    if dist_info_from_env().enabled:
        raise UsageError("bench and calibrate time one device in one process: run them without torchrun")
    if len({(s.device, s.precision) for s in setups}) > 1:
        raise UsageError("one profile is one device and precision: benchmark other settings separately")
    device, spec, peak, notes = resolve_peak(setups[0].device, setups[0].precision, gpu, peak_tflops, extra_csv)
    threads = choose_threads(n_threads, device.type)
    before = torch.get_num_threads()
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if threads is not None:
        torch.set_num_threads(threads.n_threads)
    try:
        probed = []
        if rounds is None:
            points = _measure_all(setups, device, peak, notes, on_point)
        else:
            probe = GemmProbe(device, resolve_precision(setups[0].precision, device)) if gemm_probe else None
            try:
                points, probed = measure_interleaved(setups, peak, rounds, probe=probe)
            except RuntimeError as exc:
                if not is_out_of_memory(exc):
                    raise
                raise DomainError(f"out of memory on {device_name(device)} with {len(setups)} setups alive at once "
                                  "(interleaved timing keeps every setup's trainer): time fewer or smaller models, or "
                                  "smaller micro-batches") from None
            notes.append(f"{rounds} interleaved rounds per setup; step time = median of the rounds"
                         + ("; CPU time = process CPU seconds, median of the rounds" if device.type == "cpu" else ""))
        used = torch.get_num_threads()  # what the timed steps ran with
    finally:
        torch.set_num_threads(before)
    if threads is not None:
        notes.append(threads.note(used))
    else:
        notes.append(f"CPU threads: torch used {used} intra-op threads (its default; the device is {device.type})")
    return CalibrationProfile(
        device_name=device_name(device), gpu_key=spec.key if spec else None, torch_version=torch.__version__,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), points=tuple(points),
        notes=tuple(notes), n_cpu_threads=used, load_avg_1min_start=load_start, n_cores=os.cpu_count(),
        host_memory_bytes=_host_memory_bytes() if device.type == "cpu" else None,
        measured_gemm_flop_per_s=statistics.median(probed) if probed else None,
        gemm_probe_n=GEMM_PROBE_N.get(device.type, GEMM_PROBE_N["cuda"]) if probed else None,
    )


def _host_memory_bytes() -> float | None:
    """Physical memory of this machine (bytes; POSIX sysconf), None where the platform does not say."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def _measure_all(setups: list[BenchSetup], device: torch.device, peak, notes: list[str], on_point) -> list:
    points = []
    for setup in setups:
        try:
            point = measure(setup, peak)
        except RuntimeError as exc:  # a sweep goes on past the setups that do not fit
            if not is_out_of_memory(exc):
                raise
            point = None
        if point is None:  # outside the except block, so the failed step's tensors can be freed
            free_device_memory(device)
            cfg = setup.train_config()
            notes.append(out_of_memory(cfg, resolve_precision(cfg.precision, device), device, 1, advice=False)
                         + ": skipped")
            continue
        points.append(point)
        if on_point is not None:
            on_point(point)
    if not points:
        raise DomainError("every setup ran out of memory: " + "; ".join(n for n in notes if "out of memory" in n))
    return points
