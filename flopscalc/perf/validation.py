"""Predicted against measured throughput for published runs whose setup is fully known.

``data/published_throughput.csv`` holds one row per run (shape, GPUs, micro-batch, accumulation, precision,
sharding, recomputation, measured tokens/s per GPU) with its source; `validate` runs the step-time model on
each row, with no per-run tuning, and beside it the prediction of a constant MFU of 0.4 (the planner's old
default). The table and its errors are in ``docs/performance_model.md``.

Rows whose ``group`` is ``consumer`` (single GeForce or workstation-class GPUs: nanoGPT on an RTX 3080 and 4090, one
GPT-2 124M script on an RTX 5090, RTX 6000 Ada, L40S and RTX A6000) are a held-out group of their own:
`published_rows` (the headline validation, and the error the planner quotes) leaves them out and `consumer_rows` returns
them, so their errors are reported beside the headline's, never mixed into it. Any other
``group`` value (``a100-40gb``: llm-foundry's A100-40GB table) only labels rows for reporting: they are in the
headline. The same tables' rows on 16-128 GPUs are in a file of their own (`multinode_rows`), never in the headline;
`validate_multinode` reports the rows whose network is stated (A100) apart from those priced on an assumed one (H100).
"""

from __future__ import annotations

import csv
import functools
import statistics
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from ..hardware import get_gpu
from ..memory.settings import LossKernel, TrainingSetup
from ..model import ModelConfig, count_params, get_preset
from .device import DevicePerf, device_perf, gemm_peak_fraction_for_cuda
from .op_kinds import AttentionKernel, OptimizerKernel, StepOptions
from .step import MATMUL_PRECISION, StepEstimate, constant_mfu_tokens_per_s_per_gpu, estimate_step

CONSTANT_MFU = 0.4  # the planner's stated constant before the step-time model (issue 11)
CONSUMER_GROUP = "consumer"  # data/published_throughput.csv column `group`: held out and reported apart
REPEATS_CSV = "published_throughput_repeats.csv"  # the same MosaicML setups measured again (`repeat_rows`)
MULTINODE_CSV = "published_throughput_multinode.csv"  # llm-foundry's rows on 16-128 GPUs (`multinode_rows`)


@dataclass(frozen=True)
class ThroughputCheck:
    run: str
    gpu: str
    n_params: int  # exact count of the row's shape
    n_params_reported: int | None
    measured_tokens_per_s_per_gpu: float
    predicted_tokens_per_s_per_gpu: float
    constant_mfu_tokens_per_s_per_gpu: float
    predicted_mfu: float
    reported_mfu: float | None
    setup_stated: bool = True  # False: the source leaves part of the layout unstated (the row's notes say what)

    @property
    def error(self) -> float:
        """Relative error of the prediction: predicted / measured - 1."""
        return self.predicted_tokens_per_s_per_gpu / self.measured_tokens_per_s_per_gpu - 1

    @property
    def constant_error(self) -> float:
        return self.constant_mfu_tokens_per_s_per_gpu / self.measured_tokens_per_s_per_gpu - 1


def _csv_text(name: str = "published_throughput.csv") -> str:
    packaged = resources.files("flopscalc") / "data" / name
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parents[2] / "data" / name).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def _all_rows() -> tuple[dict[str, str], ...]:
    return tuple(csv.DictReader(_csv_text().splitlines()))


def _group(row: dict[str, str]) -> str:
    return (row.get("group") or "").strip()


def published_rows() -> tuple[dict[str, str], ...]:
    """The rows of the headline validation: every row but the consumer-GPU group (`consumer_rows`)."""
    return tuple(r for r in _all_rows() if _group(r) != CONSUMER_GROUP)


def consumer_rows() -> tuple[dict[str, str], ...]:
    """The held-out consumer-GPU rows (single GeForce and workstation-class cards), reported apart from the headline."""
    return tuple(r for r in _all_rows() if _group(r) == CONSUMER_GROUP)


@functools.lru_cache(maxsize=1)
def repeat_rows() -> tuple[dict[str, str], ...]:
    """Published re-measurements of MosaicML setups, in the columns of ``published_throughput.csv``.

    ``data/published_throughput_repeats.csv``: the A100-80GB sweep MosaicML published before llm-foundry's tables
    (mosaicml/examples, bf16 / FSDP PURE) and the H100 runs llm-foundry measured three times (amp_bf16 / PURE; the
    median run). ``twin_of`` names the row of the headline table with the identical setup (shape, GPUs, sequence,
    micro-batch, accumulation, recomputation), or is empty. Not in the headline: a diagnostic of how far a published
    row is from its own repeat (docs/performance_model.md, "Where the model is weakest").
    """
    return tuple(csv.DictReader(_csv_text(REPEATS_CSV).splitlines()))


def validate_repeats() -> list[ThroughputCheck]:
    """The re-measured rows through the model, with no per-run tuning (the model as for the headline)."""
    return [check_row(r) for r in repeat_rows()]


@functools.lru_cache(maxsize=1)
def multinode_rows() -> tuple[dict[str, str], ...]:
    """llm-foundry's benchmark rows on 16-128 GPUs (2-16 nodes), in the columns of ``published_throughput.csv``.

    ``data/published_throughput_multinode.csv``: the multi-node rows of the tables 'A100 80GB / A100 40GB with 1600
    Gbps node-node interconnect (RoCE)' (mosaicml/llm-foundry scripts/train/benchmarking/README.md, commit 061f2c7)
    and of its table 'H100 80GB BF16' (16-64 GPUs, commit c90b9b3), each with the stack of the table's 8-GPU row
    named in ``stack_of``. The A100 rows carry their network's achieved share in ``network_efficiency``
    (`row_device`); the H100 table states no network, so its rows are ``setup_stated = partial``, priced on the
    model's default network. Not in the headline (`published_rows`): reported apart (docs/performance_model.md,
    "Multi-node rows, reported apart").
    """
    return tuple(csv.DictReader(_csv_text(MULTINODE_CSV).splitlines()))


def validate_multinode(setup_stated: str = "full") -> list[ThroughputCheck]:
    """The multi-node rows whose ``setup_stated`` is ``setup_stated`` through the model, with no per-run tuning.

    ``"full"`` (the default): the A100 rows, network stated; ``"partial"``: the H100 rows, network assumed. The two
    are reported apart, never pooled.
    """
    if setup_stated not in ("full", "partial"):
        raise ValueError(f"setup_stated must be 'full' or 'partial', got {setup_stated!r}")
    return [check_row(r) for r in multinode_rows() if (r.get("setup_stated") or "full").strip() == setup_stated]


# The CSV's `reduce_dtype`: the dtype gradients cross the network in under ZeRO 1-3 ('' = the tools' default,
# `TrainingSetup.fp32_reduce`).
_REDUCE_FP32 = {"fp32": True, "bf16": False, "": None}


def row_config(row: dict[str, str]) -> tuple[ModelConfig, TrainingSetup, StepOptions]:
    """The model, setup and implementation options a row describes.

    A row names a preset (``preset``: Llama-style and other families, `flopscalc.model.ALL_PRESETS`) or gives a
    GPT-2-layout shape (n_layer, n_head, n_embd, vocab_size, bias; learned positions of the run's length).
    """
    seq = int(row["seq_len"])
    if (row.get("preset") or "").strip():
        cfg = get_preset(row["preset"]).with_(name=row["run"])
    else:
        cfg = ModelConfig(n_layer=int(row["n_layer"]), n_head=int(row["n_head"]), n_embd=int(row["n_embd"]),
                          block_size=seq, vocab_size=int(row["vocab_size"]), bias=row["bias"] == "true",
                          name=row["run"])
    dropout = (row.get("dropout") or "").strip() == "true"
    loss = LossKernel((row.get("loss_impl") or "flash-attn").strip())  # which fused loss ('' = flash-attn's)
    setup = TrainingSetup(micro_batch=int(row["micro_batch"]), seq_len=seq, precision=row["precision"],
                          recompute=row["recompute"], flash=row["flash"] == "true",
                          grad_accum=int(row["grad_accum"]), n_gpus=int(row["n_gpus"]),
                          zero_stage=int(row["zero_stage"]), dropout=dropout, fused_loss=row["fused_loss"] == "true",
                          loss_kernel=loss, low_precision_norm=(row.get("low_precision_norm") or "").strip() == "true",
                          reduce_fp32=_REDUCE_FP32[(row.get("reduce_dtype") or "").strip()])
    kernel = AttentionKernel((row.get("attn_impl") or "flash2").strip())
    optimizer = OptimizerKernel((row.get("optimizer_impl") or "fused").strip())
    # a compiled run's inductor pads misaligned GEMM shapes (`perf.gemm` [5]); an eager one runs them as they are
    padded = (row.get("torch_compile") or "").strip() == "true"
    return cfg, setup, StepOptions(attention_kernel=kernel, metric_ce_passes=int(row.get("metric_ce_passes") or 0),
                                   optimizer_kernel=optimizer, gemm_shape_padding=padded)


def row_device(row: dict[str, str], gpu) -> DevicePerf:
    """The device figures for ``row``: ``gpu``'s, with the GEMM fraction measured on the cuBLAS nearest the row's
    ``cuda`` where ``data/gpu_perf.csv`` has one (`device.gemm_peak_fraction_for_cuda`), and the achieved share of
    the network between nodes where the row's ``network_efficiency`` states one (the multi-node rows' RoCE,
    `multinode_rows`)."""
    dev = device_perf(gpu)
    cuda = (row.get("cuda") or "").strip()
    fraction = gemm_peak_fraction_for_cuda(gpu, cuda)
    if fraction is not None:
        dev = replace(dev, gemm_peak_fraction=fraction, source=dev.source + f"; CUDA {cuda}: GEMM fraction {fraction}")
    network = (row.get("network_efficiency") or "").strip()
    if network:
        dev = replace(dev, network_bus_efficiency=float(network),
                      source=dev.source + f"; network between nodes at {network} of its bandwidth (the row's)")
    return dev


def row_estimate(row: dict[str, str], sustained_fraction: float | None = None) -> StepEstimate:
    """``row`` through the step-time model (`row_config`, `row_device`); ``sustained_fraction`` replaces the fitted
    GEMM fraction (1.0: the unfitted roofline)."""
    cfg, setup, options = row_config(row)
    if sustained_fraction is not None:
        options = replace(options, sustained_fraction=sustained_fraction)
    gpu = get_gpu(row["gpu"])
    return estimate_step(cfg, setup, gpu, options, device=row_device(row, gpu))


def check_row(row: dict[str, str]) -> ThroughputCheck:
    est = row_estimate(row)
    cfg, setup, gpu = est.model, est.setup, est.gpu
    const = constant_mfu_tokens_per_s_per_gpu(cfg, setup.seq_len, gpu, MATMUL_PRECISION[setup.precision],
                                              CONSTANT_MFU)
    return ThroughputCheck(
        run=row["run"], gpu=gpu.key, n_params=count_params(cfg).total,
        n_params_reported=int(row["n_params_reported"]) if row["n_params_reported"] else None,
        measured_tokens_per_s_per_gpu=float(row["measured_tokens_per_s_per_gpu"]),
        predicted_tokens_per_s_per_gpu=est.tokens_per_s_per_gpu,
        constant_mfu_tokens_per_s_per_gpu=const, predicted_mfu=est.mfu,
        reported_mfu=float(row["reported_mfu"]) if row["reported_mfu"] else None,
        setup_stated=(row.get("setup_stated") or "full").strip() == "full",
    )


def validate() -> list[ThroughputCheck]:
    """Every row of the headline validation through the model."""
    return [check_row(r) for r in published_rows()]


def validate_consumer() -> list[ThroughputCheck]:
    """The consumer-GPU rows through the model (all held out: none is in the fit subset)."""
    return [check_row(r) for r in consumer_rows()]


def in_fit_subset(run: str) -> bool:
    """The rows `op_kinds.SUSTAINED_FRACTION` is fitted on: MosaicML's A100-80GB rows at sequence 2048."""
    return run.startswith("mpt-") and "-a100-s2048-" in run


def measured_over_predicted(row: dict[str, str], sustained_fraction: float) -> float:
    """Measured over predicted tokens/s of ``row`` with the GEMMs at ``sustained_fraction``."""
    return float(row["measured_tokens_per_s_per_gpu"]) / row_estimate(row, sustained_fraction).tokens_per_s_per_gpu


def fit_sustained_fraction(rows, *, tol: float = 1e-4) -> float:
    """The GEMM sustained fraction at which the median of measured / predicted tokens/s over ``rows`` is 1.

    Bisection on (0, 1]: the median ratio falls as the fraction rises (slower GEMMs predict fewer tokens/s).
    """
    rows = list(rows)
    lo, hi = 0.05, 1.0
    if statistics.median(measured_over_predicted(r, hi) for r in rows) >= 1:
        return hi  # even the unfitted roofline is not optimistic
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if statistics.median(measured_over_predicted(r, mid) for r in rows) > 1:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def summary(checks: list[ThroughputCheck]) -> dict[str, float]:
    """Median and worst absolute relative error of the model and of the constant MFU."""
    errs = [abs(c.error) for c in checks]
    const = [abs(c.constant_error) for c in checks]
    return {"n_runs": len(checks), "median_abs_error": statistics.median(errs), "max_abs_error": max(errs),
            "constant_median_abs_error": statistics.median(const), "constant_max_abs_error": max(const)}


# CPU-side cost of one eager PyTorch op (Python, autograd recording, the ATen dispatcher, cudaLaunchKernel):
# "~5-25 us of CPU-side work per op" (J. Lin, "From PyTorch op to kernel launch", GPU kernel serving lesson 18,
# jiahuanglin.xyz). The upper end: a run found GPU-bound at it is GPU-bound anywhere in the range.
HOST_DISPATCH_S_PER_KERNEL = 25e-6


def host_dispatch_margin(row: dict[str, str]) -> float:
    """Measured step time of ``row`` over the time the host needs to dispatch its kernels (diagnostic, not a term).

    Eager PyTorch queues kernels asynchronously, so a step is host-bound only when the dispatch of its ops takes
    longer than the GPU runs them; above 1 the GPU sets the pace. The kernel count is the model's (`Op.kernels`
    x `Op.count`), which leaves out autograd's and FSDP's bookkeeping ops: a margin of m tolerates m-fold more.
    """
    est = row_estimate(row)
    kernels = sum(p.op.count * p.op.kernels for p in est.ops)
    measured_step_s = est.tokens_per_step_per_gpu / float(row["measured_tokens_per_s_per_gpu"])
    return measured_step_s / (kernels * HOST_DISPATCH_S_PER_KERNEL)


def time_attribution(gpu_key: str) -> dict[str, float]:
    """Diagnostic, not part of the model: measured step time of the MosaicML rows on ``gpu_key`` as a weighted
    sum of the unfitted model's GEMM, attention, memory-bound (optimizer included) and FSDP communication times.

    Least squares on relative error (each row weighted by 1 / measured time), no intercept, all rows of that GPU
    in sample. A coefficient of 1 means that class costs what the roofline prices (for communication: as if none
    of it were hidden); docs/performance_model.md reads the result.
    """
    import numpy as np

    x, y = [], []
    for row in published_rows():
        if not row["run"].startswith("mpt-") or get_gpu(row["gpu"]).key != gpu_key:
            continue
        est = row_estimate(row, sustained_fraction=1.0)
        cs = est.class_seconds
        x.append([cs["gemm"], cs["attention"], cs["memory-bound"] + cs["optimizer"], est.comm.comm_s])
        y.append(est.tokens_per_step_per_gpu / float(row["measured_tokens_per_s_per_gpu"]))
    a, b = np.array(x), np.array(y)
    coef = np.linalg.lstsq(a / b[:, None], np.ones_like(b), rcond=None)[0]
    return dict(zip(("gemm", "attention", "memory-bound", "communication"), (float(c) for c in coef)))
