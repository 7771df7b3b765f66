"""Renderers for the step-time model: `StepEstimate` -> a rich table and a JSON-ready dict (seconds, fractions)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..memory.margin import PLAN_HEADROOM_WORDS, margin_note
from ..perf import CLASS_ORDER, StepEstimate
from ..units import format_bytes, format_rate, format_tokens_per_s
from .common import seq_label, seq_words

if TYPE_CHECKING:
    from ..perf.calibrate import CpuTime


def grad_reduce_dtype(setup) -> str:
    """The dtype the gradients cross the network in (`memory.settings.grad_wire_bytes_per_param`: 4 bytes fp32,
    2 bytes the weights' 16-bit dtype)."""
    from ..memory.precision import MATMUL_PRECISION
    from ..memory.settings import grad_wire_bytes_per_param

    return "fp32" if grad_wire_bytes_per_param(setup) == 4 else MATMUL_PRECISION[setup.precision].value


def _settings_line(e: StepEstimate, cpu: bool = False) -> str:
    """The run's settings in one line; ``cpu``: the device is a CPU profile's (one CPU process, as the table says)."""
    s = e.setup
    parts = [f"{e.model.name} ({e.model.family})", e.gpu.name, "1 process" if cpu else f"{s.n_gpus} GPU(s)",
             f"micro-batch {s.micro_batch}",
             seq_words(e.model, s.seq_len, e.seq_len), f"gradient accumulation {s.grad_accum}", s.precision.value,
             f"ZeRO stage {s.zero_stage}", f"recompute {s.recompute.value}",
             "flash attention" if s.flash else "math attention"]
    if s.offload_optimizer:
        parts.append("optimizer offloaded")
    if s.n_gpus > 1:
        parts.append(f"gradients reduced in {grad_reduce_dtype(s)}")
    return ", ".join(parts)


def step_table(e: StepEstimate, cpu_seconds: bool = False) -> Table:
    """Seconds per optimizer step by operation class, with each class's share (``cpu_seconds``: process CPU
    seconds, from a CPU profile fitted to them)."""
    secs = e.class_seconds
    title = ("Process CPU time of one optimizer step (one CPU process)" if cpu_seconds
             else "Time of one optimizer step (per GPU; all GPUs in lockstep)")
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    t.add_column("operation class")
    t.add_column("seconds", justify="right")
    t.add_column("share", justify="right")
    for c in CLASS_ORDER:
        t.add_row(c, f"{secs[c]:.4g}", f"{secs[c] / e.step_s:.1%}")
    t.add_row("step", f"{e.step_s:.4g}", "100.0%", style="bold")
    return t


def step_network(e: StepEstimate) -> tuple[float, str] | None:
    """(bytes/s per GPU per direction, source) of the network between nodes the step's data parallelism crosses
    (`perf.fabric.gpu_fabric`'s); None on one node."""
    from ..perf.fabric import GPUS_PER_NODE, network_bytes_per_s, network_source

    if e.setup.n_gpus <= GPUS_PER_NODE:
        return None
    if e.options.network_bytes_per_s is not None:  # a plan's --network-gbps, as perf.step priced it
        return e.options.network_bytes_per_s, "--network-gbps"
    return network_bytes_per_s(e.gpu), network_source(e.gpu)


def step_report(e: StepEstimate, cpu: CpuTime | None = None) -> Group:
    """The step's table and summary; ``cpu``: the step was priced from a CPU profile fitted to process CPU seconds
    (`perf.calibrate.cpu_time`), so its times are CPU seconds, said so, with the wall time they correspond to."""
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    if cpu is None:
        summary.add_row("tokens/s (all GPUs)", format_tokens_per_s(e.tokens_per_s))
        summary.add_row("tokens/s per GPU", format_tokens_per_s(e.tokens_per_s_per_gpu))
    else:
        summary.add_row("step time", f"{cpu.cpu_step_s * 1e3:.3g} ms of process CPU time (the profile's timing)"
                        + _wall_words(cpu))
        wall = ("" if cpu.wall_tokens_per_s is None else
                f"; about {format_tokens_per_s(cpu.wall_tokens_per_s)} per wall second")
        summary.add_row("tokens/s", f"{format_tokens_per_s(e.tokens_per_s)} per CPU second{wall}")
    summary.add_row("MFU", f"{e.mfu:.1%}  (model FLOPs, causal attention, no recomputation)")
    summary.add_row("HFU", f"{e.hfu:.1%}  (executed FLOPs: recomputation and flash backward included)")
    summary.add_row("peak used", f"{format_rate(e.peak_flop_per_s)} dense {e.precision.value}")
    summary.add_row("memory per GPU" if cpu is None else "memory (host)",
                    f"{format_bytes(e.peak_memory_bytes)} of {format_bytes(e.gpu.memory_bytes)}"
                    + ("" if e.fits else ": [bold red]does not fit[/]; 'flopscalc memory' with the same flags "
                       "ranks the fixes"))
    net = step_network(e)
    if net is not None:  # traffic leaves the node: the network it crosses, and where the figure comes from
        from ..perf.fabric import network_words

        summary.add_row("network between nodes", network_words(*net))
    note = Text(f"sustained fraction {e.options.sustained:g} (fitted, see docs/performance_model.md); "
                f"GEMM fraction {e.device.gemm_peak_fraction:g}; {e.device.source}", style="dim")
    near = _margin_note(e) if e.fits else None
    return Group(Text(_settings_line(e, cpu is not None)), step_table(e, cpu is not None), summary,
                 *((Text(f"note: {near}", style="yellow"),) if near else ()), note)


def _wall_words(cpu: CpuTime) -> str:
    if cpu.wall_step_s is None:
        return "; the profile has no wall times to compare"
    return (f"; about {cpu.wall_step_s * 1e3:.3g} ms wall (calibrate's setups ran {cpu.wall_per_cpu:.2f}x their CPU "
            "time in wall time, median)")


def _margin_note(e: StepEstimate) -> str | None:
    """`memory.margin.margin_note` of the step's memory: a fit closer to the edge than the measured error."""
    return margin_note(e.peak_memory_bytes, e.gpu.memory_bytes, e.setup.device,
                       how=f"'flopscalc memory' with the same flags and --headroom {PLAN_HEADROOM_WORDS}")


PER_OPERATION_MODEL = "per-operation"
LAYOUT_MODEL = "layout"


def engine_note(model: str, engine: str | None = None) -> str:
    """One line: which time model priced the step, and why the other one may give the same run another MFU.

    Both models price compute and the optimizer with the same per-operation roofline (`flopscalc.perf.step`). A
    layout 'flopscalc train' runs (TP, PP, CP, EP 1; DDP with ZeRO 0, FSDP with ZeRO 3) is priced by both alike, its
    gradient buckets, wire bytes and overlap included (tests/test_step_engine.py); a layout that needs Megatron-LM
    uses Megatron-LM's max(40M, 1M x ranks) parameters per bucket (fewer collectives, less ring latency) and, for TP
    or PP > 1, its optimizer step, gradient accumulation and fitted sustained fraction (`flopscalc.layout.time`). ``engine``: the layout's engine
    (`layout.spec.Engine` value, the JSON's "engine"), for the layout model's note; None says both cases.
    """
    from ..layout.spec import Engine
    from ..layout.stage_cost import MEGATRON_SUSTAINED_FRACTION
    from ..perf.collectives import (
        DDP_BUCKET_BYTES,
        MEGATRON_BUCKET_MIN_PARAMS,
        MEGATRON_BUCKET_PARAMS_PER_RANK,
    )

    ddp = f"PyTorch DDP's {DDP_BUCKET_BYTES / 2**20:g} MiB gradient buckets"
    megatron = (f"Megatron-LM's gradient buckets of max({MEGATRON_BUCKET_MIN_PARAMS / 1e6:g}M, "
                f"{MEGATRON_BUCKET_PARAMS_PER_RANK / 1e6:g}M x ranks) parameters, and for TP or PP > 1 Megatron-LM's "
                f"own optimizer step, gradient accumulation and sustained fraction {MEGATRON_SUSTAINED_FRACTION:g}")
    if model == PER_OPERATION_MODEL:
        return (f"priced by the per-operation step model with data parallelism as 'flopscalc train' runs it ({ddp}; "
                "at --zero 3 FSDP's one collective per block and pass); "
                f"--tp/--pp/--cp/--ep/--search switch to the layout model, which prices a layout that needs "
                f"Megatron-LM with {megatron}, so the same run can show another MFU there (a DDP layout, --tp 1 "
                "--pp 1, or FSDP layout, --zero 3, is priced alike)")
    if engine in (Engine.torchrun_ddp.value, Engine.torchrun_fsdp.value):
        kind, buckets = (("DDP", ddp) if engine == Engine.torchrun_ddp.value
                         else ("FSDP", ("16-bit gathers and reduce-scatters, one per block and pass, prefetched "
                                        "behind every micro-batch")))
        return (f"priced by the layout model; 'flopscalc train' runs this layout ({kind}), so its data parallelism is "
                f"priced as the per-operation model prices it ({buckets}): 'step' without layout options gives the "
                "same step")
    if engine is not None:  # a layout only Megatron-LM runs
        return (f"priced by the layout model, which uses {megatron}; without layout options 'step' uses the "
                f"per-operation model with {ddp} (more collectives, more ring latency exposed), so the same run can "
                "show another MFU there")
    return (f"priced by the layout model, which uses {megatron} for a layout that needs Megatron-LM; without "
            f"layout options 'step' uses the per-operation model with {ddp} (more collectives, more ring latency "
            "exposed), so the same run can show another MFU there")


# What prices the unaligned GEMMs aligned, by face: the step face's --compile (inductor pads the shapes), which the
# layout face refuses (each layout is priced with its engine's kernels: Megatron-LM's padded, DDP/FSDP's eager)
EAGER_REMEDY_STEP = "--compile prices them padded"
EAGER_REMEDY_LAYOUT = ("the layout model prices this layout as 'flopscalc train' runs it, eager; without layout "
                       "options --compile prices them padded")


def eager_note(e: StepEstimate, remedy: str = EAGER_REMEDY_STEP) -> str | None:
    """One line when ``e`` prices GEMMs at cuBLAS's unaligned kernel rate (`StepEstimate.unaligned_gemms`: eager
    PyTorch, a 16-bit dimension not a multiple of 8, e.g. GPT-2's vocabulary of 50,257), naming the first and its
    shape, then ``remedy``; None when it prices none. The step face and the layout face both say it from here."""
    unaligned = e.unaligned_gemms
    if not unaligned:
        return None
    first = unaligned[0].op
    m, n, k, _ = first.gemm_shape
    return (f"eager PyTorch: {len(unaligned)} GEMM kinds with a 16-bit dimension not a multiple of 8 (e.g. "
            f"{first.name}, {m} x {n} x {k}) priced at cuBLAS's unaligned kernel rate; {remedy}")


def step_dict(e: StepEstimate) -> dict:
    """Everything `flopscalc step --json` prints: seconds, tokens/s, MFU/HFU as fractions, per-class seconds."""
    net = step_network(e)
    return {
        "model": e.model.name,
        "step_model": PER_OPERATION_MODEL,
        "block": e.model.family,
        "gpu": e.gpu.key,
        "n_gpus": e.setup.n_gpus,
        "micro_batch": e.setup.micro_batch,
        "grad_accum": e.setup.grad_accum,
        "seq_len": e.seq_len,
        "seq_len_source": seq_label(e.model, e.setup.seq_len),
        "precision": e.setup.precision.value,
        "zero_stage": e.setup.zero_stage,
        "recompute": e.setup.recompute.value,
        "flash": e.setup.flash,
        "step_s": e.step_s,
        "tokens_per_step": e.tokens_per_step,
        "tokens_per_s": e.tokens_per_s,
        "tokens_per_s_per_gpu": e.tokens_per_s_per_gpu,
        "mfu": e.mfu,
        "hfu": e.hfu,
        "mfu_convention": "model FLOPs, attention over causal pairs, no recomputation (llm.c's 6N + 6LCT)",
        "peak_flop_per_s": e.peak_flop_per_s,
        "model_flops_per_token": e.model_flops_per_token,
        "hardware_flops_per_token": e.hardware_flops_per_token,
        "class_seconds": e.class_seconds,
        "peak_memory_bytes": e.peak_memory_bytes,
        "memory_bytes_per_gpu": e.gpu.memory_bytes,
        "fits": e.fits,
        "network_bytes_per_s_per_gpu": None if net is None else net[0],
        "network_source": None if net is None else net[1],
        "communication_s": e.comm.comm_s, "communication_bytes": e.comm.volume_bytes,
        "grad_reduce_dtype": grad_reduce_dtype(e.setup) if e.setup.n_gpus > 1 else None,
        "sustained_fraction": e.options.sustained,
        "gemm_peak_fraction": e.device.gemm_peak_fraction,
        "device_source": e.device.source,
    }
