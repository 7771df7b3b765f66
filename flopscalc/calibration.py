"""Calibration profiles: MFU, step time, throughput and peak memory measured by the reference trainer.

`flopscalc bench` / `flopscalc calibrate` (``flopscalc.train.bench``) measure; `flopscalc calibrate` also fits
the step-time model's device factors to the measured step times (``flopscalc.perf.calibrate``) and stores them
here as `DeviceFactors`, so `step`/`plan --calibration` predict any model on that device. This module only
holds the result, writes it as versioned JSON and reads it back (version 1 files, without factors, too),
without importing torch or scipy. MFU is achieved model FLOP/s over the dense peak of
the precision actually used (Chowdhery et al. 2022, "PaLM", App. B); model FLOPs come from
``flopscalc.flops.training_flops_per_token`` (matmul FLOPs, no recomputation).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from .atomic import write_text_atomic
from .errors import DomainError, UsageError
from .model import ModelConfig

SCHEMA = "flopscalc.calibration"
# Version 1 throughout: the fitted device factors and the timing conditions are optional fields, absent from
# older files (read as None) and skipped by older readers (they take the fields they know), so no bump is needed.
SCHEMA_VERSION = 1
# A profile is trusted for models within this factor of its measured sizes. mfu_for holds the MFU constant
# beyond them (no extrapolation), while measured MFU moves with model size on one GPU: 0.448 at 125M, 0.599 at
# 1.3B, 0.642 at 6.7B (MosaicML llm-foundry benchmark tables, A100-80GB, seq 2048; data/published_throughput.csv),
# i.e. ~1.3x over a 10x span. Beyond 4x either way the held value can be off by more than ~15%; the planner warns.
PROFILE_SIZE_FACTOR = 4.0


@dataclass(frozen=True)
class CalibrationPoint:
    """One measured setup: a model shape, a batch layout and what the trainer achieved on it.

    Units: ``step_time_s`` seconds per optimizer step; ``tokens_per_s`` tokens per second on all
    ranks together; ``model_flops_per_token`` FLOP / token (forward + backward matmuls);
    ``achieved_flop_per_s`` FLOP/s over all ranks; ``peak_flop_per_s`` dense peak of one device for
    the precision used (None when the device has no known peak); ``mfu`` fraction in [0, 1] or None;
    ``peak_memory_bytes`` per device (None where it cannot be measured, e.g. on CPU);
    ``predicted_memory_bytes`` the memory estimator's prediction (None when none was available).
    """

    model: ModelConfig
    n_params: int
    micro_batch: int
    seq_len: int
    grad_accum: int
    n_devices: int
    precision: str
    compiled: bool
    step_time_s: float
    tokens_per_s: float
    model_flops_per_token: float
    achieved_flop_per_s: float
    peak_flop_per_s: float | None
    mfu: float | None
    peak_memory_bytes: float | None = None
    predicted_memory_bytes: float | None = None
    n_timed_steps: int = 0
    # step time of each interleaved round (s); step_time_s is their median (empty: one timing, version 1 files)
    round_step_times_s: tuple[float, ...] = ()
    # process CPU seconds per step on a CPU device (median over rounds; None on a GPU and in version 1 files):
    # with one torch thread it leaves out the time other processes held the core on a shared machine
    cpu_step_time_s: float | None = None
    round_cpu_times_s: tuple[float, ...] = ()
    attention: str = "sdpa"  # the trainer's attention path: "sdpa" (fused) or "math"
    recompute: str = "none"  # activation recomputation: none, selective, full

    def __post_init__(self) -> None:
        for name in ("micro_batch", "seq_len", "grad_accum", "n_devices", "n_params"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"calibration point {name} must be a positive integer, got {value!r}")
        for name in ("step_time_s", "tokens_per_s", "model_flops_per_token", "achieved_flop_per_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise UsageError(f"calibration point {name} must be a positive number, got {value!r}")
        if self.mfu is not None and not (0 < self.mfu):
            raise UsageError(f"calibration point mfu must be positive, got {self.mfu!r}")


@dataclass(frozen=True)
class DeviceFactors:
    """The step-time model's device figures fitted to the measured step times (``flopscalc.perf.calibrate``).

    ``gemm_flop_per_s`` GEMM rate reached (FLOP/s; on a CPU, which has no datasheet peak, this IS the peak);
    ``memory_bytes_per_s`` bandwidth memory-bound kernels reach (bytes/s); ``kernel_min_s`` shortest time of one
    operator (s); ``attention_fraction`` fused attention rate over the GEMM rate; ``precision`` the matmul
    precision fitted ('fp32', 'bf16', ...); ``n_points`` setups fitted; ``rms_rel_error``/``max_rel_error``
    the fit's residuals (predicted / measured - 1, fractions); ``datasheet_*`` the device's datasheet figures
    (None on a CPU); ``timing`` which measured seconds were fitted.
    """

    gemm_flop_per_s: float
    memory_bytes_per_s: float
    kernel_min_s: float
    attention_fraction: float
    precision: str
    n_points: int
    rms_rel_error: float
    max_rel_error: float
    datasheet_peak_flop_per_s: float | None = None
    datasheet_bandwidth_bytes_per_s: float | None = None
    timing: str = "wall"  # what was fitted: "wall" seconds per step, or "process CPU" seconds (CPU devices)
    gemm_source: str = "fitted"  # "measured": held at the profile's timed matmul; "fitted" with the other three

    def __post_init__(self) -> None:
        for name in ("gemm_flop_per_s", "memory_bytes_per_s", "kernel_min_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise UsageError(f"device factor {name} must be a positive number, got {v!r}")
        if not (isinstance(self.attention_fraction, (int, float)) and 0 < self.attention_fraction <= 1):
            raise UsageError(f"device factor attention_fraction must be in (0, 1], got {self.attention_fraction!r}")
        from .hardware import Precision

        names = [p.value for p in Precision]
        if self.precision not in names:  # step and plan price the matmuls at this precision's rate
            raise UsageError(f"device factor precision must be one of {', '.join(names)}, got {self.precision!r}")


def is_cpu_name(device_name: str) -> bool:
    """Whether a profile's ``device_name`` is a CPU's: the word 'CPU' in it, as `train.bench.device_name` writes
    one ('CPU x86_64'); no GPU the runtime names (torch.cuda.get_device_name) has it."""
    return re.search(r"\bcpu\b", device_name, re.IGNORECASE) is not None


@dataclass(frozen=True)
class CalibrationProfile:
    """Measurements on one device kind, with what is needed to trust them later.

    ``gpu_key`` is the GPU database row the device was mapped to (None for a device not in the
    database, e.g. a CPU); ``device_name`` what the runtime calls it; ``created`` an ISO-8601 date.
    """

    device_name: str
    gpu_key: str | None
    torch_version: str
    created: str
    points: tuple[CalibrationPoint, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)
    device_factors: DeviceFactors | None = None  # fitted by 'calibrate'; None from 'bench' and version 1 files
    n_cpu_threads: int | None = None  # torch intra-op threads while timing
    load_avg_1min_start: float | None = None  # the machine's 1-minute load average when timing began
    n_cores: int | None = None  # logical cores of the machine (the load above is out of these)
    host_memory_bytes: float | None = None  # the host's physical memory (what a CPU device holds)
    # a square matmul timed beside the sweep in the trainer's precision (median over the rounds; FLOP/s) and its n
    measured_gemm_flop_per_s: float | None = None
    gemm_probe_n: int | None = None

    def __post_init__(self) -> None:
        if self.gpu_key is not None and not isinstance(self.gpu_key, str):
            raise UsageError(f"gpu_key must be a GPU database key (a string) or null, got {self.gpu_key!r}")
        if self.gpu_key is not None and is_cpu_name(self.device_name):  # 'calibrate --gpu' on a CPU wrote these
            raise UsageError(f"measured on a CPU ({self.device_name}) but its gpu_key names the GPU {self.gpu_key}: "
                             "its times are the CPU's (and its factors were fitted within that GPU's datasheet), so "
                             "it would price that GPU at CPU speed; re-run 'flopscalc calibrate' on the CPU without "
                             "--gpu (then 'step --gpu cpu --calibration FILE'), or on the GPU itself")
        if not self.points:
            raise UsageError("a calibration profile needs at least one measured point")

    @property
    def device(self) -> str:
        """The device in words: its GPU database key when it has one, else what the runtime called it."""
        return self.gpu_key or self.device_name

    def n_params_range(self) -> tuple[int, int]:
        """Smallest and largest model measured with an MFU (parameters); the whole profile when none has one."""
        sizes = [p.n_params for p in (self.mfu_points() or self.points)]
        return min(sizes), max(sizes)

    def size_outside(self, n_params: float, factor: float = PROFILE_SIZE_FACTOR) -> float:
        """How many times ``n_params`` lies outside the profiled sizes (1 inside; e.g. 15: 15x the largest)."""
        lo, hi = self.n_params_range()
        return max(1.0, n_params / hi, lo / n_params)

    def measured_on(self, gpu_key: str) -> bool:
        """Whether the profile was measured on the GPU database row ``gpu_key`` (a CPU or unknown device never)."""
        return self.gpu_key is not None and self.gpu_key == gpu_key

    def mfu_points(self) -> list[CalibrationPoint]:
        """Points that have an MFU (their device had a known peak)."""
        return [p for p in self.points if p.mfu is not None]

    def mfu_for(self, n_params: float, micro_batch: float | None = None, seq_len: int | None = None) -> float:
        """Measured MFU interpolated to a model of ``n_params`` parameters and a micro-batch (fraction).

        Points at the measured sequence length nearest ``seq_len`` (default: the longest) are used; where
        several share a model size and micro-batch (e.g. compile off and on) the best MFU counts. Linear
        interpolation in log(parameters) within each measured micro-batch, then in log(micro-batch)
        between them; outside the measured range the nearest measurement is used (no extrapolation).
        ``micro_batch=None`` takes the largest measured one (the best setting).
        """
        pts = self.mfu_points()
        if not pts:
            raise DomainError(
                f"calibration profile for {self.device_name} has no MFU (no peak rate was known); "
                "re-run calibrate with --gpu or --peak-tflops"
            )
        seqs = sorted({p.seq_len for p in pts})
        seq = seqs[-1] if seq_len is None else min(seqs, key=lambda s: (abs(math.log(s / seq_len)), -s))
        best: dict[tuple[int, int], float] = {}
        for p in pts:
            if p.seq_len == seq:
                key = (p.micro_batch, p.n_params)
                best[key] = max(best.get(key, 0.0), p.mfu)
        batches = sorted({b for b, _ in best})
        mb = batches[-1] if micro_batch is None else micro_batch
        per_batch = []
        for b in batches:
            row = sorted((math.log(n), m) for (bb, n), m in best.items() if bb == b)
            xs, ys = [x for x, _ in row], [y for _, y in row]
            per_batch.append(float(np.interp(math.log(n_params), xs, ys)))  # np.interp clamps at the ends
        return float(np.interp(math.log(mb), [math.log(b) for b in batches], per_batch))

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **asdict(self)}


def _point_from_dict(d: dict, where: str) -> CalibrationPoint:
    if not isinstance(d, dict):
        raise UsageError(f"{where}: each point must be an object")
    names = {f.name for f in fields(CalibrationPoint)}
    optional = {f.name for f in fields(CalibrationPoint) if f.default is not MISSING}
    missing = sorted(n for n in names - set(d) if n not in optional)
    if missing:
        raise UsageError(f"{where}: missing {', '.join(missing)}")
    model = d["model"]
    if not isinstance(model, dict):
        raise UsageError(f"{where}: model must be an object of ModelConfig fields")
    _refuse_unknown(model, ModelConfig, f"{where}: unknown model field(s)")
    values = {k: d[k] for k in names if k in d}
    for name in ("round_step_times_s", "round_cpu_times_s"):
        if name in values:
            values[name] = tuple(float(t) for t in values[name])
    return CalibrationPoint(**{**values, "model": ModelConfig(**model)})


def _refuse_unknown(d: dict, cls: type, what: str) -> None:
    """UsageError ``what`` and the keys of ``d`` that are not fields of the dataclass ``cls``."""
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    if unknown:
        raise UsageError(f"{what} {', '.join(unknown)}")


def _factors_from_dict(d, where: str) -> DeviceFactors | None:
    if d is None:
        return None
    if not isinstance(d, dict):
        raise UsageError(f"{where}: device_factors must be an object")
    _refuse_unknown(d, DeviceFactors, f"{where}: unknown device factor(s)")
    return DeviceFactors(**d)


def profile_from_dict(data: dict, where: str = "calibration profile") -> CalibrationProfile:
    """Build a profile from its JSON object; UsageError naming ``where`` on anything malformed."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise UsageError(f"{where} is not a flopscalc calibration profile (no \"schema\": \"{SCHEMA}\")")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise UsageError(f"{where} has schema version {version!r}; this flopscalc reads version "
                         f"{SCHEMA_VERSION}: re-run 'flopscalc calibrate'")
    try:
        points = data["points"]
        if not isinstance(points, list):
            raise UsageError(f"{where}: points must be a list")
        return CalibrationProfile(
            device_name=str(data["device_name"]), gpu_key=data.get("gpu_key"),
            torch_version=str(data["torch_version"]), created=str(data["created"]),
            points=tuple(_point_from_dict(p, f"{where}, point {i}") for i, p in enumerate(points)),
            notes=tuple(str(n) for n in data.get("notes", ())),
            device_factors=_factors_from_dict(data.get("device_factors"), where),
            n_cpu_threads=data.get("n_cpu_threads"), load_avg_1min_start=data.get("load_avg_1min_start"),
            n_cores=data.get("n_cores"), host_memory_bytes=data.get("host_memory_bytes"),
            measured_gemm_flop_per_s=data.get("measured_gemm_flop_per_s"), gemm_probe_n=data.get("gemm_probe_n"),
        )
    except KeyError as e:
        raise UsageError(f"{where}: missing field {e.args[0]!r}") from None
    except UsageError as e:  # before ValueError, which UsageError is
        msg = str(e)
        raise UsageError(msg if msg.startswith(where) else f"{where}: {msg}") from None
    except (TypeError, ValueError) as e:  # ValueError: float() of a non-numeric round time
        raise UsageError(f"{where}: malformed field ({e})") from None


def load_profile(path: str | Path) -> CalibrationProfile:
    """Read a calibration profile JSON file; one-line errors name the file."""
    from .textfile import parse_json, read_text

    path = Path(path)
    text = read_text(path, "calibration profile", "; create one with 'flopscalc calibrate'")
    try:
        data = parse_json(text, str(path), "calibration profile")
    except json.JSONDecodeError as e:
        raise UsageError(f"calibration profile {path} is not valid JSON (line {e.lineno}: {e.msg})") from None
    return profile_from_dict(data, str(path))


def save_profile(profile: CalibrationProfile, path: str | Path) -> Path:
    """Write ``profile`` as JSON atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    text = json.dumps(profile.to_dict(), indent=2) + "\n"
    write_text_atomic(path, text)
    return path
