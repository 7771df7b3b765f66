"""What the step-time model needs to know about one accelerator beyond `GpuSpec`: SMs and efficiencies.

Per-GPU figures (SM count, measured GEMM fraction of peak) come from ``data/gpu_perf.csv``, keyed by the
``key`` of ``data/gpu_specs.csv``, each row with its source. The few efficiency factors that no per-GPU
measurement gives are constants per device class here, each with its source. Nothing is fitted to the
published runs the model is validated against (``docs/performance_model.md``).

References
----------
[1] S. Bekman, ml-engineering, compute/accelerator/README.md, "Maximum Achievable Matmul FLOPS comparison
    table" (BF16, v2): A100 SXM 86.9%, GH200 83.6%, A100 PCIe 81.1%, H100 SXM 80.3% of the dense peak.
[2] T. Dao 2023, "FlashAttention-2: Faster Attention with Better Parallelism and Work Partitioning",
    arXiv:2307.08691, abstract ("reaching 50-73% of the theoretical maximum FLOPs/s on A100") and sec. 4.1
    ("up to 335 TFLOPs/s" on H100 with the same implementation).
[2a] Ibid., sec. 4.1: the forward FLOPs are 4 seqlen^2 d heads (halved with a causal mask), the backward's
    2.5x the forward ("2 matmuls in the forward pass and 5 matmuls in the backward pass"); FlashAttention-2
    "is around 1.3-1.5x faster than FlashAttention in Triton in the forward pass and around 2x faster in the
    backward pass"; Fig. 7 ("Attention forward + backward speed on H100 GPU"): "up to 335 TFLOPs/s".
[3] NVIDIA/cccl pull request #9881, cub::DeviceTransform babelstream triad benchmark: 1.573 TB/s, nvbench
    "BWUtil" 87.8% of the device's peak DRAM bandwidth (2^28 elements of 16 bytes).
[4] S. Sun, "pegainfer (3): From Launch Overhead to CUDA Graph" (susun-blog.com, RTX 5070 Ti, CUDA 13.0,
    code github.com/xiaguan/cuda-kernel-launch-lab): submitting one kernel through the driver and runtime
    "takes about 4-6 us"; we take the middle, 5 us, as the floor of one kernel's time.
[5] pytorch/pytorch issue #100850 ("Poor torch.bmm performance on H100", szhengac, 2023-05-08/10): bf16 GEMM
    2048 x 8192 x 8192 (batch 1) on H100 SXM at 742.7 TFLOP/s with cuBLAS 12.0.2.224 and 720.3 TFLOP/s with
    cuBLAS 11.11.3.6: 0.751 and 0.728 of the 989.4 TFLOP/s dense peak.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

from ..errors import DomainError, UsageError
from ..hardware import GpuSpec, Precision
from ..units import TERA

# GEMM fraction of the dense peak for a GPU without its own measurement: the lowest NVIDIA figure of [1]
# (H100 SXM, 80.3%), so an unmeasured part is not credited with more than the measured ones reach.
DEFAULT_GEMM_PEAK_FRACTION = 0.803
# A measured GEMM rate may pass the datasheet's: the datasheet peak is at the rated boost clock and GeForce boards
# run above it (RTX 5090: 236.5 of 209.5 TFLOP/s, 1.129, data/gpu_perf.csv). The bound only catches nonsense (our
# judgement: no published matmul reaches 1.25x its datasheet peak).
MAX_GEMM_PEAK_FRACTION = 1.25
# A run's GEMMs are priced at the measurement of the cuBLAS nearest its own: (first, last CUDA version covered,
# data/gpu_perf.csv column). [5] timed one bf16 GEMM on H100 with cuBLAS 11.11.3.6 (CUDA 11.8's) and 12.0.2
# (CUDA 12.0's): every 11.x takes the first (the oldest cuBLAS measured), 12.0-12.1 the second (CUDA 12.1 ships
# cuBLAS 12.1, nearer 12.0.2 than the MAMF table's torch 2.7.0+cu126 of [1]); any later CUDA, or none stated, the
# GPU's `gemm_peak_fraction` ([1]). A version without its minor ("11") means any release of that major: it takes a
# column only where the column covers the whole major ("11": the CUDA 11 column; "12", whose 12.2 and later take
# the GPU's fraction, none).
CUDA_GEMM_COLUMNS = (
    ((11, 0), (11, 99), "gemm_peak_fraction_cuda11"),
    ((12, 0), (12, 1), "gemm_peak_fraction_cuda12_0_12_1"),
)
# Achievable share of the datasheet DRAM bandwidth for a streaming kernel ([3]: 87.8%).
MEM_BANDWIDTH_FRACTION = 0.878
# Fused attention kernels, fraction of the dense peak, by architecture. Ampere and earlier: [2]'s range
# 50-73% on A100; its figures show the backward pass slower than the forward, so the forward takes the top
# (0.73) and the backward the bottom (0.50) of the range.
FLASH_FWD_FRACTION_AMPERE = 0.73
FLASH_BWD_FRACTION_AMPERE = 0.50
# FLOPs of the fused backward over the forward in [2a]'s convention (5 matmuls against 2).
FLASH_BWD_FLOPS_PER_FWD = 2.5
# Hopper running FlashAttention-2 (no wgmma): 335 of 989.4 TFLOP/s for forward + backward together ([2a] Fig. 7;
# until 2026-11 this was read as the forward alone, pricing H100 attention a third too slow). The backward/forward
# rate ratio is A100's (0.50 / 0.73, a derived figure); the forward is the rate at which the pair, at 2.5
# backward FLOPs per forward FLOP, averages 335: fwd = 335/989.4 x (1 + 2.5 x 0.73/0.50) / 3.5 = 0.450.
FLASH_PAIR_FRACTION_HOPPER = 335 / 989.4
FLASH_FWD_FRACTION_HOPPER = FLASH_PAIR_FRACTION_HOPPER * (
    1 + FLASH_BWD_FLOPS_PER_FWD * FLASH_FWD_FRACTION_AMPERE / FLASH_BWD_FRACTION_AMPERE) / (1 + FLASH_BWD_FLOPS_PER_FWD)
FLASH_BWD_FRACTION_HOPPER = FLASH_FWD_FRACTION_HOPPER * FLASH_BWD_FRACTION_AMPERE / FLASH_FWD_FRACTION_AMPERE
# FlashAttention in Triton (``flash_attn_triton.py``, what llm-foundry's ``attn_impl: triton`` runs) against
# FlashAttention-2 on the same GPU ([2a] sec. 4.1): the forward 1.3-1.5x slower (we take the middle, 1.4), the
# backward 2x slower. Measured on A100; used on every GPU (no Triton figure for other parts was found).
TRITON_FWD_SLOWDOWN = 1.4
TRITON_BWD_SLOWDOWN = 2.0
HOPPER_LIKE = ("Hopper", "Blackwell")
# Shortest time one kernel takes, launch and drain included ([4]); it matters only for small models.
KERNEL_MIN_S = 5e-6


@dataclass(frozen=True)
class DevicePerf:
    """Efficiency figures of one GPU for the step-time model (fractions in [0, 1], the GEMM one up to
    `MAX_GEMM_PEAK_FRACTION`; seconds)."""

    key: str
    n_sm: int | None  # streaming multiprocessors (CUs on AMD); None: no wave quantization modelled
    gemm_peak_fraction: float  # best GEMM rate over the dense peak ([1] or the default)
    mem_bandwidth_fraction: float  # achievable over datasheet DRAM bandwidth ([3])
    flash_fwd_fraction: float  # fused attention forward over the dense peak ([2])
    flash_bwd_fraction: float  # fused attention backward over the dense peak ([2])
    kernel_min_s: float  # floor of one kernel's time ([4])
    source: str  # where the per-GPU figures come from
    # cuBLAS-style output tiles and waves (gemm.py); False on a CPU, whose BLAS blocks by cache (perf/calibrate.py)
    tile_quantization: bool = True
    # rate of a 16-bit GEMM with a misaligned operand (`gemm.misaligned`) over the dense 16-bit peak, where
    # data/gpu_perf.csv has a measured ``misaligned_gemm_tflops``; None: not modelled (priced as aligned)
    misaligned_gemm_fraction: float | None = None
    # achieved share of the network between nodes where a run's own network states one (a published row's,
    # `perf.validation.row_device`); None: `perf.fabric.NETWORK_BUS_EFFICIENCY`
    network_bus_efficiency: float | None = None

    def __post_init__(self) -> None:
        for name in ("mem_bandwidth_fraction", "flash_fwd_fraction", "flash_bwd_fraction"):
            v = getattr(self, name)
            if not 0 < v <= 1:
                raise UsageError(f"{name.replace('_', ' ')} must be in (0, 1], got {v!r}")
        if not 0 < self.gemm_peak_fraction <= MAX_GEMM_PEAK_FRACTION:
            raise UsageError(f"GEMM peak fraction must be in (0, {MAX_GEMM_PEAK_FRACTION:g}] of the datasheet rate, got "
                             f"{self.gemm_peak_fraction!r}")
        bad = self.misaligned_gemm_fraction
        if bad is not None and not 0 < bad <= MAX_GEMM_PEAK_FRACTION:
            raise UsageError(f"misaligned GEMM fraction must be in (0, {MAX_GEMM_PEAK_FRACTION:g}] of the datasheet "
                             f"rate, got {bad!r}")
        if self.network_bus_efficiency is not None and not 0 < self.network_bus_efficiency <= 1:
            raise UsageError(f"network bus efficiency must be in (0, 1], got {self.network_bus_efficiency!r}")
        if self.n_sm is not None and self.n_sm < 1:
            raise UsageError(f"SM count must be a positive whole number, got {self.n_sm!r}")


def _csv_text() -> tuple[str, str]:
    packaged = Path(__file__).resolve().parents[1] / "data" / "gpu_perf.csv"  # not importlib.resources: slow
    if packaged.is_file():  # installed wheel: force-included into the package
        return packaged.read_text(encoding="utf-8"), "gpu_perf.csv"
    repo = Path(__file__).resolve().parents[2] / "data" / "gpu_perf.csv"
    return repo.read_text(encoding="utf-8"), str(repo)


@functools.lru_cache(maxsize=1)
def perf_rows() -> dict[str, dict[str, str]]:
    """Rows of ``data/gpu_perf.csv`` by GPU key, read once."""
    text, where = _csv_text()
    rows = {}
    for row in csv.DictReader(text.splitlines()):
        key = row["key"].strip().lower()
        if key in rows:
            raise UsageError(f"{where}: key {key!r} repeats")
        rows[key] = row
    return rows


def gemm_peak_fraction_for_cuda(gpu: GpuSpec, cuda: str) -> float | None:
    """The best GEMM fraction of ``gpu``'s dense peak with the cuBLAS of CUDA ``cuda`` ("11.8", "12.1"), where
    ``data/gpu_perf.csv`` has a measurement of the cuBLAS nearest it (`CUDA_GEMM_COLUMNS`, [5]).

    cuBLAS gained Hopper kernels from CUDA 11.8 through 12.x, so a run stated to use an older CUDA is priced at the
    measurement on its own cuBLAS's neighbour, not at the current one. None (the GPU's default fraction applies) for
    an unstated ``cuda`` (""), a version no column covers (a major alone, "12", where its minors span columns), or
    a GPU without that figure.
    """
    text = cuda.strip()
    if not text:
        return None
    major, _, minor = text.partition(".")
    if not (major.isdigit() and (minor.split(".")[0].isdigit() if minor else True)):
        raise UsageError(f"CUDA version must read MAJOR.MINOR (e.g. 12.1), got {cuda!r}")
    if minor:
        lowest = highest = (int(major), int(minor.split(".")[0]))
    else:  # "11": any 11.x, up to the last minor `CUDA_GEMM_COLUMNS` can name
        lowest, highest = (int(major), 0), (int(major), 99)
    row = perf_rows().get(gpu.key, {})
    for first, last, column in CUDA_GEMM_COLUMNS:
        if first <= lowest and highest <= last:  # every release the version may mean is in the column's range
            value = (row.get(column) or "").strip()
            return float(value) if value else None
    return None


@functools.lru_cache(maxsize=256)  # a pure function of the row (gpu_perf.csv is read once); a plan asks per setup
def device_perf(gpu: GpuSpec) -> DevicePerf:
    """The step-time model's figures for ``gpu``: its row of gpu_perf.csv, else the class defaults."""
    if gpu.architecture.upper().startswith("TPU"):
        raise DomainError(f"{gpu.name}: the step-time model prices GPU kernels (cuBLAS tiles, SMs, FlashAttention); "
                          "it has no sourced figures for TPUs; pick a GPU from 'flopscalc gpus'")
    row = perf_rows().get(gpu.key, {})
    n_sm = int(row["n_sm"]) if (row.get("n_sm") or "").strip() else None
    gemm = float(row["gemm_peak_fraction"]) if (row.get("gemm_peak_fraction") or "").strip() else None
    hopper = gpu.architecture in HOPPER_LIKE
    misaligned = (row.get("misaligned_gemm_tflops") or "").strip()
    source = row.get("source") or "no gpu_perf.csv row: default fractions, no wave quantization"
    if gemm is None:
        source += f"; GEMM fraction: default {DEFAULT_GEMM_PEAK_FRACTION} (lowest NVIDIA MAMF of [1])"
    return DevicePerf(
        key=gpu.key,
        n_sm=n_sm,
        gemm_peak_fraction=gemm if gemm is not None else DEFAULT_GEMM_PEAK_FRACTION,
        mem_bandwidth_fraction=MEM_BANDWIDTH_FRACTION,
        flash_fwd_fraction=FLASH_FWD_FRACTION_HOPPER if hopper else FLASH_FWD_FRACTION_AMPERE,
        flash_bwd_fraction=FLASH_BWD_FRACTION_HOPPER if hopper else FLASH_BWD_FRACTION_AMPERE,
        kernel_min_s=KERNEL_MIN_S,
        source=source,
        misaligned_gemm_fraction=(float(misaligned) * TERA / gpu.peak_flop_per_s(Precision.bf16) if misaligned
                                  else None),
    )
