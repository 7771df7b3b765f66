"""Fit the step-time model's few device factors to measured step times, and predict with them (issue 11, item 4).

`flopscalc calibrate` times the reference trainer on a few small shapes and micro-batches; this module fits
the factors of `DevicePerf` that no datasheet gives for the device at hand, by least squares on the relative
error of the predicted step times (`estimate_step` with ``sustained_fraction`` 1: the fitted rates already are
what a training loop sustains), so that one profile predicts any model on that device:

- ``gemm_flop_per_s``: the GEMM rate (FLOP/s). `flopscalc calibrate` measures it directly (a large matmul timed
  beside the sweep) and holds it while the other three are fitted; without that measurement it is fitted too.
  A CPU has no datasheet peak in the database, so there this rate IS the peak (MFU on a CPU is measured
  against it, not against a datasheet). Why held: docs/performance_model.md, "Calibration".
- ``memory_bytes_per_s``: the bandwidth memory-bound kernels reach (bytes/s); on a CPU, with small models,
  caches serve much of the traffic, so it can exceed DRAM bandwidth.
- ``kernel_min_s``: the shortest time one operator takes (s); on a CPU it is PyTorch's per-operator dispatch,
  which dominates small models.
- ``attention_fraction``: the fused attention kernel's rate over the GEMM rate.

Every predicted time is the same `estimate_step` the GPU model uses, with these figures in place of the
sourced ones; on a CPU the GEMM tile and wave quantization of cuBLAS is switched off (CPU BLAS blocks by cache,
not by output tiles of 128-256 per SM).

References
----------
[1] Williams, Waterman & Patterson 2009, "Roofline", CACM 52(4): time = max(FLOPs / rate, bytes / bandwidth).
[2] SciPy ``scipy.optimize.least_squares`` (trust-region reflective with bounds; Branch, Coleman & Li 1999).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..calibration import CalibrationPoint, CalibrationProfile, DeviceFactors, is_cpu_name
from ..errors import DomainError, UsageError
from ..flops import Recompute
from ..hardware import GpuSpec, Precision
from ..memory.precision import trainer_memory_precision
from ..memory.settings import Device, TrainingSetup
from ..model import ModelConfig
from .device import MAX_GEMM_PEAK_FRACTION, DevicePerf, device_perf
from .op_kinds import StepOptions
from .step import MATMUL_PRECISION, StepEstimate, estimate_step

CPU_KEY = "cpu"
# Search box of the fit (log-uniform starts inside it): wide enough for one CPU core (~1e9 FLOP/s) to a
# datacenter GPU (~1e15), DRAM of a laptop to HBM3e plus on-chip caches, and operator costs of 1 us to 10 ms.
GEMM_FLOP_PER_S_BOUNDS = (1e8, 5e15)
MEMORY_BYTES_PER_S_BOUNDS = (1e8, 5e13)
KERNEL_MIN_S_BOUNDS = (1e-7, 1e-2)
ATTENTION_FRACTION_BOUNDS = (1e-3, 1.0)
# Starts of the fit: the roofline's max() makes the objective piecewise smooth, so a few starts across the box
# guard against a local minimum (every start's optimum is kept; the best wins).
N_STARTS = 6
# Fewest measured points for four factors: one more than the unknowns, so the fit has a residual to report.
MIN_POINTS = 5


@dataclass(frozen=True)
class MeasuredStep:
    """One measured setup: the model, the setup as the step-time model reads it, and the median step time (s)."""

    model: ModelConfig
    setup: TrainingSetup
    step_s: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.step_s) and self.step_s > 0):
            raise UsageError(f"a measured step time must be a positive number of seconds, got {self.step_s!r}")


def cpu_spec(factors: DeviceFactors, name: str = "CPU", memory_bytes: float = math.inf) -> GpuSpec:
    """A device row for a CPU whose rates were fitted: the fitted GEMM rate stands as its dense peak."""
    rate = factors.gemm_flop_per_s
    return GpuSpec(
        key=CPU_KEY, name=name, aliases=(), vendor="", segment="cpu", architecture="CPU", release_year=None,
        memory_bytes=memory_bytes, memory_type="host", memory_bandwidth_bytes_per_s=factors.memory_bytes_per_s,
        fp32_flop_per_s=rate, tf32_flop_per_s=None, bf16_flop_per_s=rate, fp16_flop_per_s=rate,
        fp16_acc16_flop_per_s=None, fp8_flop_per_s=None, board_power_w=None, launch_price_usd=None,
        interconnect="", interconnect_bytes_per_s=None,
        source="fitted by 'flopscalc calibrate': no datasheet peak; the GEMM rate the trainer reached is the peak",
        notes="", origin="calibration profile",
    )


def device_from_factors(factors: DeviceFactors, gpu: GpuSpec | None = None) -> tuple[GpuSpec, DevicePerf]:
    """(device row, DevicePerf) that price a step with the fitted ``factors``.

    On a GPU of the database the fitted rates become fractions of its datasheet peak and bandwidth (tile and
    wave quantization stay on); on a CPU (``gpu`` None) the fitted rates are the device's rates.
    """
    if gpu is None:
        return cpu_spec(factors), DevicePerf(
            key=CPU_KEY, n_sm=None, gemm_peak_fraction=1.0, mem_bandwidth_fraction=1.0,
            flash_fwd_fraction=factors.attention_fraction, flash_bwd_fraction=factors.attention_fraction,
            kernel_min_s=factors.kernel_min_s, source="fitted by 'flopscalc calibrate' (CPU: fitted rates)",
            tile_quantization=False,
        )
    peak = gpu.peak_flop_per_s(factors.precision)
    if gpu.memory_bandwidth_bytes_per_s is None:
        raise DomainError(f"{gpu.name} has no memory bandwidth in the GPU database to scale the fitted one by")
    gemm = min(MAX_GEMM_PEAK_FRACTION, factors.gemm_flop_per_s / peak)  # a board may run past its rated clock
    base = device_perf(gpu)
    return gpu, replace(
        base, gemm_peak_fraction=gemm,
        mem_bandwidth_fraction=min(1.0, factors.memory_bytes_per_s / gpu.memory_bandwidth_bytes_per_s),
        flash_fwd_fraction=min(1.0, gemm * factors.attention_fraction),
        flash_bwd_fraction=min(1.0, gemm * factors.attention_fraction),
        kernel_min_s=factors.kernel_min_s, source="fitted by 'flopscalc calibrate'",
    )


def _predict(points: Sequence[MeasuredStep], factors: DeviceFactors, gpu: GpuSpec | None) -> list[float]:
    spec, dev = device_from_factors(factors, gpu)
    options = StepOptions(sustained_fraction=1.0)  # the fitted rates are sustained rates
    return [estimate_step(p.model, p.setup, spec, options, device=dev).step_s for p in points]


def _factors(x, precision: str, n_points: int, peak, bandwidth) -> DeviceFactors:
    return DeviceFactors(gemm_flop_per_s=math.exp(x[0]), memory_bytes_per_s=math.exp(x[1]),
                         kernel_min_s=math.exp(x[2]), attention_fraction=math.exp(x[3]), precision=precision,
                         n_points=n_points, rms_rel_error=0.0, max_rel_error=0.0,
                         datasheet_peak_flop_per_s=peak, datasheet_bandwidth_bytes_per_s=bandwidth)


def matmul_precision(setup: TrainingSetup) -> str:
    """The peak precision the step-time model prices ``setup``'s matmuls at ('fp32', 'bf16', 'fp16')."""
    return Precision(MATMUL_PRECISION[setup.precision]).value


def fit_device_factors(points: Sequence[MeasuredStep], gpu: GpuSpec | None = None,
                       gemm_flop_per_s: float | None = None) -> DeviceFactors:
    """Least-squares fit of the device factors to measured step times ([2]); residual log(predicted/measured).

    ``gpu``: the database row of the device measured (its datasheet figures are recorded beside the fitted
    ones); None for a CPU. ``gemm_flop_per_s``: a GEMM rate measured directly (`flopscalc calibrate` times a
    large matmul beside the sweep); when given it is held and the other three factors are fitted, else all four
    are. Raises UsageError for fewer than `MIN_POINTS` points or mixed precisions.
    """
    from scipy.optimize import least_squares  # only the fit needs scipy

    if len(points) < MIN_POINTS:
        raise UsageError(f"fitting the 4 device factors needs at least {MIN_POINTS} measured setups, got "
                         f"{len(points)}; sweep more shapes or micro-batches")
    precisions = {matmul_precision(p.setup) for p in points}
    if len(precisions) != 1:
        raise UsageError(f"one fit is one matmul precision; the points mix {sorted(precisions)}")
    precision = precisions.pop()
    peak = gpu.peak_flop_per_s(precision) if gpu is not None else None
    bandwidth = gpu.memory_bandwidth_bytes_per_s if gpu is not None else None
    measured = [p.step_s for p in points]
    bounds = [GEMM_FLOP_PER_S_BOUNDS, MEMORY_BYTES_PER_S_BOUNDS, KERNEL_MIN_S_BOUNDS, ATTENTION_FRACTION_BOUNDS]
    lo = [math.log(b[0]) for b in bounds]
    hi = [math.log(b[1]) for b in bounds]
    if peak is not None:  # a GPU cannot beat its datasheet: the box stops there
        hi[0] = min(hi[0], math.log(peak))
        hi[1] = min(hi[1], math.log(bandwidth)) if bandwidth else hi[1]
    free = [0, 1, 2, 3]
    if gemm_flop_per_s is not None:
        if not (math.isfinite(gemm_flop_per_s) and gemm_flop_per_s > 0):
            raise UsageError(f"a measured GEMM rate must be a positive FLOP/s, got {gemm_flop_per_s!r}")
        free = [1, 2, 3]
    held = math.log(gemm_flop_per_s) if gemm_flop_per_s is not None else 0.0

    def full(y):
        return [held, *y] if len(free) == 3 else list(y)

    def residuals(y):
        pred = _predict(points, _factors(full(y), precision, len(points), peak, bandwidth), gpu)
        return [math.log(p / m) for p, m in zip(pred, measured)]

    best = None
    for i in range(N_STARTS):  # starts spread across the box (deterministic), the best optimum wins
        u = (i + 0.5) / N_STARTS
        x0 = [lo[j] + (hi[j] - lo[j]) * ((u + 0.37 * j) % 1.0) for j in range(4)]
        x0[3] = hi[3] + (lo[3] - hi[3]) * 0.1 * (i % 3)  # attention: near the GEMM rate first
        res = least_squares(residuals, [x0[j] for j in free], bounds=([lo[j] for j in free], [hi[j] for j in free]),
                            x_scale=1.0, diff_step=1e-3)
        if best is None or res.cost < best.cost:
            best = res
    rel = [math.exp(r) - 1 for r in best.fun]
    fitted = _factors(full(best.x), precision, len(points), peak, bandwidth)
    if gemm_flop_per_s is not None:  # the held rate exactly, not exp(log(rate))
        fitted = replace(fitted, gemm_flop_per_s=float(gemm_flop_per_s))
    return replace(fitted,
                   rms_rel_error=math.sqrt(sum(r * r for r in rel) / len(rel)), max_rel_error=max(abs(r) for r in rel),
                   gemm_source="fitted" if gemm_flop_per_s is None else "measured")


def measured_steps(profile: CalibrationProfile) -> list[MeasuredStep]:
    """The profile's points as the step-time model reads them: the setup and the median step time (s).

    On a CPU the process CPU time per step is used where it was measured: with one torch thread it is the time
    the step kept the core busy, without the time other processes of a shared machine held it.
    """
    on_cpu = profile.gpu_key is None and is_cpu_name(profile.device_name)
    cpu_time = uses_cpu_time(profile)
    out = []
    for p in profile.points:
        if p.n_devices != 1:
            raise UsageError("a fit prices one device: the profile has a point on several devices")
        setup = point_setup(p, Device.cpu if on_cpu else Device.cuda)
        out.append(MeasuredStep(p.model, setup, p.cpu_step_time_s if cpu_time else p.step_time_s))
    return out


def point_setup(point: CalibrationPoint, device: Device = Device.cuda) -> TrainingSetup:
    """The setup the reference trainer ran for a measured ``point``, as the step-time model reads it.

    Micro-batch, sequence, accumulation, data-parallel devices, precision (the trainer's autocast policy),
    recomputation and attention path (``sdpa``: the fused kernel) come from the point; the rest are the trainer's
    fixed choices, which are `TrainingSetup`'s defaults (AdamW, no ZeRO, no dropout, PyTorch's cross-entropy).
    One function for the fit and for the benchmarks' measured-against-predicted tables (benchmarks/bench_trainer.py,
    benchmarks/bench_perf_own_gpu.py).
    """
    return TrainingSetup(
        micro_batch=point.micro_batch, seq_len=point.seq_len, grad_accum=point.grad_accum,
        precision=trainer_memory_precision(point.precision), n_gpus=point.n_devices,
        recompute=Recompute(point.recompute), flash=point.attention == "sdpa", device=device)


def point_options(point: CalibrationPoint) -> StepOptions:
    """The step-time model's options for a measured ``point``: a compiled run's GEMMs are shape-padded (inductor's
    ``pad_mm``, on by default: `StepOptions.gemm_shape_padding`), an eager run's are not."""
    return StepOptions(gemm_shape_padding=point.compiled)


def point_estimate(point: CalibrationPoint, gpu: GpuSpec) -> StepEstimate:
    """The raw model's step for a measured ``point`` on ``gpu``'s database row: `estimate_step` with no calibration,
    for the setup the trainer ran (`point_setup`, on CUDA) and its kernels (`point_options`), as `flopscalc step`
    prices those flags. The one pricing of the benchmarks' measured-against-predicted tables
    (benchmarks/bench_trainer.py, benchmarks/bench_perf_own_gpu.py)."""
    return estimate_step(point.model, point_setup(point), gpu, point_options(point))


def uses_cpu_time(profile: CalibrationProfile) -> bool:
    """Whether the fit reads process CPU seconds (a CPU device with every point's CPU time measured)."""
    return profile.gpu_key is None and all(p.cpu_step_time_s for p in profile.points)


def fit_profile(profile: CalibrationProfile, gpu: GpuSpec | None = None, *,
                hold_measured_gemm: bool = True) -> CalibrationProfile:
    """``profile`` with its device factors fitted to its own points (`fit_device_factors`).

    The profile's directly measured GEMM rate, when it has one, is held (``hold_measured_gemm``): fitted
    together, the GEMM rate and the attention fraction trade off against each other and the per-operator floor
    (several near-equal optima), and the fitted rate lands above what a large matmul reaches; holding the
    measured one carries better to larger models (benchmarks/results/calibration_cpu.json has both).
    """
    if profile.gpu_key is not None and (gpu is None or gpu.key != profile.gpu_key):
        raise UsageError(f"the profile was measured on {profile.gpu_key}: pass that GPU's row to fit it")
    if any(p.compiled for p in profile.points):
        raise UsageError("the step-time model prices eager PyTorch kernels: calibrate with --compile off")
    gemm = profile.measured_gemm_flop_per_s if hold_measured_gemm else None
    factors = fit_device_factors(measured_steps(profile), gpu, gemm)
    return replace(profile, device_factors=replace(factors, timing="process CPU" if uses_cpu_time(profile) else "wall"))


def calibrated_step(cfg: ModelConfig, setup: TrainingSetup, profile: CalibrationProfile, gpu: GpuSpec | None = None,
                    options: StepOptions | None = None) -> StepEstimate:
    """Predict one optimizer step of ``cfg`` with ``setup`` on the device ``profile`` was measured on.

    ``gpu``: the database row of that device (None for a CPU profile); a profile measured on another device is
    refused, as are options that contradict the fit (a sustained fraction other than 1).
    """
    factors = profile.device_factors
    if factors is None:
        raise UsageError(f"calibration profile for {profile.device} has no fitted device factors: {_why_none(profile)}")
    if gpu is not None and not profile.measured_on(gpu.key):
        raise UsageError(f"calibration profile was measured on {profile.device}, not {gpu.key}; calibrate on "
                         f"{gpu.key} or drop --calibration")
    if gpu is None and profile.gpu_key is not None:
        raise UsageError(f"calibration profile was measured on {profile.gpu_key}; name that GPU")
    if gpu is None and not is_cpu_name(profile.device_name):
        raise UsageError(f"calibration profile was measured on {profile.device_name}, which is not in the GPU "
                         "database: add its row with --gpu-csv and calibrate again with --gpu NAME")
    if matmul_precision(setup) != factors.precision:
        hint = " (--precision fp32)" if factors.precision == "fp32" else ""
        raise UsageError(f"calibration profile fitted {factors.precision} matmuls; this setup runs "
                         f"{matmul_precision(setup)}: run {factors.precision}{hint}, or calibrate in that precision")
    if options is not None and options.sustained_fraction not in (0.0, 1.0):
        raise UsageError("a calibrated prediction already uses sustained rates; drop --sustained")
    spec, dev = device_from_factors(factors, gpu)
    if gpu is None:
        if setup.n_gpus != 1 or setup.zero_stage or setup.offload_optimizer:
            raise UsageError("a CPU profile prices one CPU process: drop --n-gpus, --zero and --offload")
        spec = cpu_spec(factors, name=profile.device_name, memory_bytes=profile.host_memory_bytes or math.inf)
        setup = replace(setup, device=Device.cpu)
    opts = replace(options or StepOptions(), sustained_fraction=1.0)
    return estimate_step(cfg, setup, spec, opts, device=dev)


def _why_none(profile: CalibrationProfile) -> str:
    """Why a profile has no device factors, and what to run instead (for `calibrated_step`'s refusal)."""
    if len(profile.points) < MIN_POINTS:
        return (f"it timed {len(profile.points)} setup(s) and the fit of 4 factors needs {MIN_POINTS} or more; re-run "
                f"'flopscalc calibrate' with the built-in CPU sweep (no model named) or {MIN_POINTS} or more setups "
                "(repeat --model, --micro-batch or --seq)")
    if profile.measured_gemm_flop_per_s is None:  # 'calibrate' always probes the GEMM rate; 'bench' never does
        return ("it was written by 'bench', which times without fitting (or by an older flopscalc); run 'flopscalc "
                "calibrate' for a profile")
    return "it was written by an older flopscalc; re-run 'flopscalc calibrate'"


@dataclass(frozen=True)
class CpuTime:
    """How a step priced from a CPU profile fitted to process CPU seconds reads (``DeviceFactors.timing``).

    ``cpu_step_s`` the prediction, process CPU seconds per step; ``wall_per_cpu`` the median, over the profile's
    setups, of the measured wall step time over the CPU step time (None when the profile has no pair): with one
    torch thread the CPU time leaves out the time other processes held the core, which the wall time includes.
    """

    cpu_step_s: float
    tokens_per_step: int
    wall_per_cpu: float | None

    @property
    def wall_step_s(self) -> float | None:
        """The wall seconds the predicted CPU seconds ran to while the profile was measured (None: unknown)."""
        return None if self.wall_per_cpu is None else self.cpu_step_s * self.wall_per_cpu

    @property
    def wall_tokens_per_s(self) -> float | None:
        """Tokens per wall second at `wall_step_s` (None: unknown)."""
        return None if self.wall_step_s is None else self.tokens_per_step / self.wall_step_s


def cpu_time(profile: CalibrationProfile, est: StepEstimate) -> CpuTime | None:
    """`CpuTime` of ``est`` priced from ``profile`` when its factors were fitted to process CPU seconds, else None."""
    if profile.device_factors is None or profile.device_factors.timing != "process CPU":
        return None
    ratios = [p.step_time_s / p.cpu_step_time_s for p in profile.points if p.cpu_step_time_s]
    return CpuTime(est.step_s, est.tokens_per_step, statistics.median(ratios) if ratios else None)


__all__ = [
    "CPU_KEY",
    "CpuTime",
    "MeasuredStep",
    "calibrated_step",
    "cpu_spec",
    "cpu_time",
    "device_from_factors",
    "fit_device_factors",
    "fit_profile",
    "matmul_precision",
    "measured_steps",
    "point_setup",
]
