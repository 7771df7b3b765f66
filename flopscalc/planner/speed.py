"""Which model prices the planner's setups, one per plan: the per-operation step-time model by default, or a
constant hardware efficiency when one is stated.

- ``per-operation`` (default): every setup the search tries is timed by `perf.step.estimate_step` (the model
  behind `flopscalc step`, docs/performance_model.md), so MFU and HFU are its predictions, per option.
- ``calibrated``: a `--calibration` profile with fitted device factors, measured on the plan's GPU: the same
  model with the fitted rates (`perf.calibrate.calibrated_step`).
- ``stated``: `--mfu`: FLOPs / (peak x efficiency) plus exposed communication and offload
  (`planner.options.throughput`); ``default constant``: the same at `budget.DEFAULT_MFU`, for a precision the
  per-operation model does not price (tf32, fp16 with fp16 accumulate, fp8) or a GPU row without the memory
  bandwidth its memory-bound kernels need.
- ``profile MFU``: a profile without fitted factors, or one borrowed from another device: its measured MFU per
  model size (`CalibrationProfile.mfu_for`), a constant efficiency again.

Priced steps are kept (`_priced`): a plan asks for the same (model, setup) again when the budget passes re-centre
the shapes, when it relaxes a constraint, and when the batch grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..errors import DomainError, UsageError
from ..hardware import GpuSpec, Precision
from ..memory import TrainingSetup
from ..model import ModelConfig
from ..perf.fabric import GPUS_PER_NODE

PER_OPERATION = "per-operation"
CALIBRATED = "calibrated"
STATED = "stated"
DEFAULT_CONSTANT = "default constant"  # no --mfu, and a precision or GPU row the per-operation model cannot price
PROFILE_MFU = "profile MFU"
LAYOUT = "layout search"  # beyond one node: the layout engine prices layouts (`planner.layout`)
# Classes of `perf.step.CLASS_ORDER` the GPUs compute in (the rest is exposed communication and offload).
COMPUTE_CLASSES = ("gemm", "attention", "memory-bound", "optimizer")


def per_op_precisions() -> tuple[Precision, ...]:
    """Plan precisions the per-operation model prices at their own peak: those whose memory policy's matmuls
    run at that precision (`perf.step.MATMUL_PRECISION`); tf32, fp16 with fp16 accumulate and fp8 are not."""
    from ..memory.precision import MATMUL_PRECISION
    from .options import MEMORY_PRECISION

    return tuple(p for p in Precision if p in MEMORY_PRECISION and MATMUL_PRECISION[MEMORY_PRECISION[p]] is p)


@dataclass(frozen=True, eq=False)  # hashed by identity: one per plan, the key of `_priced`
class TimeModel:
    """The one time model of a plan (see the module docstring)."""

    kind: str
    efficiency: float | None = None  # the stated constant (``stated``)
    profile: object = None  # CalibrationProfile (``calibrated`` and ``profile MFU``)
    # the network per GPU between nodes its data-parallel steps cross (raw bytes/s; the plan's cluster,
    # `layout.data_parallel_time_model`); None: the GPU generation's (`perf.fabric.network_bytes_per_s`)
    network_bytes_per_s: float | None = None

    @property
    def constant(self) -> bool:
        """Whether setups are priced at a constant hardware efficiency (no per-operation prediction)."""
        return self.kind in (STATED, DEFAULT_CONSTANT, PROFILE_MFU)


def time_model_for(gpu: GpuSpec, precision: Precision, mfu: float | None, calibration) -> TimeModel:
    """The plan's time model from its options (see the module docstring)."""
    from .budget import DEFAULT_MFU

    if mfu is not None:
        return TimeModel(STATED, mfu)
    if calibration is not None:
        if calibration.device_factors is not None and calibration.measured_on(gpu.key):
            return TimeModel(CALIBRATED, profile=calibration)
        return TimeModel(PROFILE_MFU, profile=calibration)
    if Precision(precision) not in per_op_precisions() or gpu.memory_bandwidth_bytes_per_s is None:
        return TimeModel(DEFAULT_CONSTANT, DEFAULT_MFU)
    try:
        from ..perf.device import device_perf

        device_perf(gpu)  # TPUs: the per-operation model has no sourced kernel figures for them
    except DomainError:
        return TimeModel(DEFAULT_CONSTANT, DEFAULT_MFU)
    return TimeModel(PER_OPERATION)


# Precisions the layout engine prices: its matmuls run at the 16-bit peak (`perf.step.MATMUL_PRECISION`), so a
# plan read at another peak (fp32, tf32, fp8) keeps the data-parallel setup search.
LAYOUT_PRECISIONS = (Precision.bf16, Precision.fp16)


def uses_layout_search(n_gpus: int, precision: Precision, mfu, calibration, layout_search: bool | None) -> bool:
    """Whether the plan prices layouts with the layout engine (when, and why: `planner.layout`'s docstring); refuses
    contradictions."""
    if layout_search is None:
        return (n_gpus > GPUS_PER_NODE and mfu is None and calibration is None
                and Precision(precision) in LAYOUT_PRECISIONS)
    if not layout_search:
        return False
    if n_gpus == 1:
        raise UsageError("--layout-search splits a step over several GPUs; one GPU has one layout: drop it or give "
                         "--n-gpus")
    if mfu is not None or calibration is not None:
        raise UsageError(f"{'--mfu' if mfu is not None else '--calibration'} states a constant efficiency, which "
                         "prices data-parallel setups; --layout-search prices every layout with the per-operation "
                         "model: drop one of them")
    if Precision(precision) not in LAYOUT_PRECISIONS:
        raise UsageError(f"the layout search prices bf16 or fp16 matmuls, not {Precision(precision).value}: use "
                         "--precision bf16 (or fp16), or --no-layout-search")
    return True


def layouts_inside_node(n_gpus: int, precision: Precision, mfu, calibration, layout_search: bool | None) -> bool:
    """Whether a plan on 2 to `GPUS_PER_NODE` GPUs that does not search layouts for every model (no
    ``--layout-search``) weighs them for the models where they may pay (`planner.node.layouts_may_pay`: an MoE,
    where expert parallelism may; a sequence context parallelism splits) and for a model no data-parallel setup fits:
    by default, where the layout engine could price the plan beyond a node (no ``--mfu``, no ``--calibration``, a
    bf16 or fp16 plan); never with ``--no-layout-search``."""
    return (layout_search is None and 1 < n_gpus <= GPUS_PER_NODE
            and uses_layout_search(GPUS_PER_NODE + 1, precision, mfu, calibration, None))


def layouts_kept_off_by(n_gpus: int, precision: Precision, mfu, calibration, layout_search: bool | None) -> str | None:
    """Inside one node (2 to `GPUS_PER_NODE` GPUs, a bf16 or fp16 plan), the option that kept the layouts of these
    GPUs out of the plan (``--no-layout-search``, ``--mfu``, ``--calibration``), for the no-fit message to name;
    None where the plan weighs them or no option kept them out."""
    if not 1 < n_gpus <= GPUS_PER_NODE or Precision(precision) not in LAYOUT_PRECISIONS or layout_search:
        return None
    return option_keeping_layouts_off(mfu, calibration, layout_search)


def option_keeping_layouts_off(mfu, calibration, layout_search: bool | None) -> str | None:
    """The user's option that keeps the layout engine out of a plan (``--no-layout-search``, else a stated ``--mfu``,
    else a ``--calibration`` profile: `uses_layout_search`'s rules), for a message to name; None if none does."""
    return ("--no-layout-search" if layout_search is False else "--mfu" if mfu is not None else
            "--calibration" if calibration is not None else None)


@lru_cache(maxsize=8192)
def _priced(cfg: ModelConfig, setup: TrainingSetup, gpu: GpuSpec, tm: TimeModel):
    """The step estimate of ``setup`` under ``tm`` (`estimate_step` or `calibrated_step`), kept."""
    from ..perf.op_kinds import StepOptions

    options = StepOptions(network_bytes_per_s=tm.network_bytes_per_s)  # the cluster's network beyond a node
    if tm.kind == CALIBRATED:
        from ..perf.calibrate import calibrated_step

        return calibrated_step(cfg, setup, tm.profile, gpu, options)
    from ..perf.step import estimate_step

    return estimate_step(cfg, setup, gpu, options)


def step_throughput(cfg: ModelConfig, setup: TrainingSetup, tokens_per_step: int, gpu: GpuSpec,
                    precision: Precision, tm: TimeModel):
    """`planner.options.Throughput` of ``setup`` with the step time of the per-operation model (``tm`` per-operation
    or calibrated): compute = GEMM + attention + memory-bound + optimizer; communication and offload as the
    model prices them, so ``step_s`` is `StepEstimate.step_s` exactly. FLOPs per token are the plan's (its FLOP
    convention, `flops.training_flops_per_token`), so MFU and HFU agree with the plan's model FLOPs."""
    from .options import Throughput, _training_flops, flash_recompute

    est = _priced(cfg, setup, gpu, tm)
    cls = est.class_seconds
    compute_s = sum(cls[c] for c in COMPUTE_CLASSES)  # the order of StepEstimate.step_s's sum
    flops = _training_flops(cfg, setup.seq_len, setup.recompute)
    peak = gpu.peak_flop_per_s(precision)
    hw_eff = tokens_per_step * flops.hardware_flops_per_token / (setup.n_gpus * peak * compute_s)
    return Throughput(compute_s, est.comm, tokens_per_step, flops.model_flops_per_token,
                      flops.hardware_flops_per_token, hw_eff, est.offload, setup.n_gpus, peak,
                      flash_recompute(flops, setup.flash))


def price_setup(cfg: ModelConfig, setup: TrainingSetup, tokens_per_step: int, gpu: GpuSpec, precision: Precision,
          tm: TimeModel, efficiency: float | None = None):
    """The step of ``setup`` under the plan's time model: per-operation (or calibrated), or at ``efficiency``
    (the stated one, or the profile's for this model) for a constant-efficiency model."""
    from .options import throughput

    if tm.constant:
        return throughput(cfg, setup, tokens_per_step, gpu, precision,
                          tm.efficiency if efficiency is None else efficiency)
    return step_throughput(cfg, setup, tokens_per_step, gpu, precision, tm)


# The per-operation model's accuracy on published runs it was not fitted to (docs/performance_model.md,
# "Held-out result": 138 rows with a stated setup, llm-foundry's A100-40GB table included; 0.032 before the MosaicML
# H100 rows were priced on the cuBLAS of their own image, CUDA 12.1, 2026-11-29).
HELD_OUT_MEDIAN_ERROR = 0.035
HELD_OUT_WORST_ERROR = 0.284
HELD_OUT_ROWS = 138
# The same on single consumer cards (docs/performance_model.md, "Consumer GPUs, held out": nanoGPT on an RTX 3080 and
# a 4090, one GPT-2 124M script on an RTX 5090, RTX 6000 Ada, L40S and RTX A6000; the rows with a stated setup); a plan
# on a consumer card quotes these, not the A100/H100 ones.
CONSUMER_HELD_OUT_MEDIAN_ERROR = 0.155
# worst: the RTX 6000 Ada row, +32.6% (the worst was the RTX 5090's -37.5% before gpu_perf.csv gave the 5090 its
# measured GEMM rate)
CONSUMER_HELD_OUT_WORST_ERROR = 0.326
CONSUMER_HELD_OUT_ROWS = 8


def held_out_error(gpu: GpuSpec | None) -> tuple[float, float, str]:
    """(median, worst, which runs) of the per-operation model's held-out error for the kind of GPU planned."""
    if gpu is not None and gpu.segment == "consumer":
        return (CONSUMER_HELD_OUT_MEDIAN_ERROR, CONSUMER_HELD_OUT_WORST_ERROR,
                f"{CONSUMER_HELD_OUT_ROWS} published single-GPU runs on GeForce and workstation cards")
    return HELD_OUT_MEDIAN_ERROR, HELD_OUT_WORST_ERROR, f"{HELD_OUT_ROWS} published runs"


def time_model_words(tm: TimeModel, gpu: GpuSpec | None = None) -> str:
    """Which model priced the plan's setups, with its source, for the assumptions and ``mfu_source``."""
    if tm.kind == PER_OPERATION:
        median, worst, runs = held_out_error(gpu)
        return ("predicted per option by the per-operation step-time model (flopscalc step; held-out error on "
                f"{runs}: median {median:.1%}, worst {worst:.1%}, docs/performance_model.md)")
    p = tm.profile
    if tm.kind == CALIBRATED:
        return (f"predicted per option by the per-operation step-time model with the device factors fitted by "
                f"'flopscalc calibrate' (profile: {p.device_name}, {p.created[:10]}, torch {p.torch_version})")
    if tm.kind == PROFILE_MFU:
        return (f"measured: calibration profile ({p.device_name}, {p.created[:10]}, torch {p.torch_version}), "
                "interpolated per model size (the profile has no fitted device factors)")
    if tm.kind == DEFAULT_CONSTANT:
        return ("default: Llama 3 405B 38-43% (Dubey et al. 2024, Table 4), PaLM 46.2% (Chowdhery et al. 2022, "
                "Table 3); the per-operation model prices bf16, fp16 and fp32 matmuls on GPUs (not TPUs) with a "
                "memory bandwidth in the database")
    return "given"  # --mfu: the constant the user stated (the JSON's time_model says "stated")
