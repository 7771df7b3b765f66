"""`flopscalc plot ...`: frontier, isoflop, landscape, memory and calibration charts (issue 7).

Thin commands: parse, call ``flopscalc.plots`` (which calls the engines), save. matplotlib is imported
only when a command runs. ``--out FILE`` writes the image (format from the suffix: .png, .svg, .pdf) and
prints its path; ``--json`` prints the plotted numbers instead (with ``written_to`` when --out is given too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from ..flops import Recompute
from ..hardware import Precision
from ..memory.precision import MemoryPrecision
from ..memory.settings import Optimizer
from ..planner.budget import DEFAULT_PRECISION, DEFAULT_UTILIZATION
from ..plots._common import MAX_DPI, MIN_DPI, PNG_DPI
from .common import (
    GpuCsvOpt,
    JsonOpt,
    ListingGroup,
    OffloadOpt,
    OptimizerOpt,
    RecomputeOpt,
    SeqOpt,
    UtilizationOpt,
    ZeroOpt,
    check_optimizer_runs,
    check_zero_stage,
    given_on_command_line,
    refuse_empty,
    refuse_repeated,
    refuse_unused,
    storage_precision,
)
from .output import emit, write_stdout

plot_app = typer.Typer(cls=ListingGroup, help="Charts: compute-optimal frontier, IsoFLOP curves, loss landscape, memory, calibration.",
                       no_args_is_help=True)

OutOpt = Annotated[Path | None, typer.Option(
    "--out", help="Image file to write; the format follows the suffix: .png, .svg or .pdf.")]
LawOpt = Annotated[str | None, typer.Option(
    "--law", help="Scaling law with a loss formula (see 'flopscalc scaling laws'); default besiroglu2024.")]
ReplaceOpt = Annotated[bool, typer.Option(
    "--replace", help="Overwrite an existing file at --out (it is kept otherwise).")]
DpiOpt = Annotated[int, typer.Option(help="Resolution of PNG files (dots per inch).")]
BudgetsOpt = Annotated[list[str] | None, typer.Option(
    "--flops", help="Training budget to draw, e.g. 1e20; repeat for several. (FLOP)")]


# Resolution accepted for PNG files (dots per inch): the bounds plots._common.save_figure enforces.


def _check_out(ctx: typer.Context, out: Path | None, as_json: bool, dpi: int = PNG_DPI, replace: bool = False
               ) -> None:
    """Validate --out and --dpi before any work (rendering takes seconds): a known suffix in a folder that can be
    written, not over an existing file unless --replace, or --json alone; a resolution in range."""
    from ..atomic import check_writable_file, refuse_overwrite
    from ..plots import format_for

    if out is None and not as_json:
        raise UsageError("say where to write the chart with --out FILE (.png, .svg or .pdf), "
                         "or print its numbers with --json")
    if replace and out is None:
        raise UsageError("--replace says what to do with an existing file at --out: give it with --out FILE, or "
                         "drop --replace")
    if not MIN_DPI <= dpi <= MAX_DPI:
        raise UsageError(f"--dpi must be between {MIN_DPI} and {MAX_DPI} dots per inch, got {dpi}; e.g. --dpi 150")
    if out is not None:
        format_for(out)
        check_writable_file(out, "--out")
        refuse_overwrite({"--out": out}, replace, "image")
    if (out is None or format_for(out) != "png") and given_on_command_line(ctx, "dpi"):
        # SVG and PDF are vector files (every mark a path; the same bytes at any --dpi), and --json alone draws nothing
        raise UsageError("--dpi would be ignored: it sets the resolution of PNG files, and "
                         + ("--json alone writes no image" if out is None else f"{out.suffix} is a vector format")
                         + "; drop --dpi, or write a .png with --out")


def _finish(data: dict, draw, out: Path | None, as_json: bool, dpi: int) -> None:
    """Draw and save when --out is given; print the path, or the numbers with --json."""
    if out is not None:
        from ..plots import save_figure

        path = save_figure(draw(data), out, dpi)
        data = {**data, "written_to": str(path)}
        if not as_json:
            write_stdout(f"{path}\n")
    if as_json:
        emit(None, data, True)


def _count(text: str, option: str) -> float:
    from ..units import parse_count

    return parse_count(text, what=option)


@plot_app.command("frontier")
def frontier(
    ctx: typer.Context,
    out: OutOpt = None,
    replace: ReplaceOpt = False,
    dpi: DpiOpt = PNG_DPI,
    law: Annotated[list[str] | None, typer.Option(
        "--law", help="Scaling law to draw; repeat for several (the first places the presets and the optimum).")
    ] = None,
    c_min: Annotated[str, typer.Option("--c-min", help="Left end of the compute axis. (FLOP)")] = "1e17",
    c_max: Annotated[str, typer.Option("--c-max", help="Right end of the compute axis. (FLOP)")] = "1e26",
    flops: Annotated[str | None, typer.Option(
        "--flops", help="Your budget, drawn as a vertical line, e.g. 2.3e21. (FLOP)")] = None,
    gpu: Annotated[str | None, typer.Option(
        help="GPU whose memory shades the model sizes that fit; with --days it also sets the budget.")] = None,
    days: Annotated[float | None, typer.Option(help="Budget as time on --gpu instead of --flops. (days)")] = None,
    n_gpus: Annotated[int, typer.Option("--n-gpus", help="Number of GPUs (count).")] = 1,
    precision: Annotated[Precision | None, typer.Option(
        help="Arithmetic that sets the peak rate (dense; default bf16, fp16 on a card without BF16 such as V100 "
             "and T4, as plan does).")] = None,
    utilization: UtilizationOpt = DEFAULT_UTILIZATION,
    mfu: Annotated[float | None, typer.Option(
        help="Model FLOPs utilization while busy (0-1; default: what 'flopscalc plan' predicts for the same GPUs, "
             "days, --memory and --seq, its recommended run's).")] = None,
    seq: Annotated[int, typer.Option(
        help="Training sequence length for the memory region (and the plan whose MFU sets a --days budget). "
             "(tokens)")] = 1024,
    memory: Annotated[str | None, typer.Option(
        help="Memory per GPU instead of the database's, e.g. 10GiB; the plan behind a --days budget uses it too. "
             "(bytes)")] = None,
    published: Annotated[bool, typer.Option(
        "--published/--no-published", help="Mark the published training runs (data/published_runs.csv).")] = True,
    gpu_csv: GpuCsvOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compute-optimal parameters and tokens against compute, per law, with presets, famous runs and your budget."""
    _check_out(ctx, out, as_json, dpi, replace)
    if gpu is None:
        refuse_unused(ctx, "--gpu", ("n_gpus", "precision", "seq", "memory", "gpu_csv"),
                      "used only to shade the model sizes that fit on the GPU")
    if days is None:
        refuse_unused(ctx, "--days", ("utilization", "mfu"), "used only to turn time on the GPU into a FLOP budget")
    from ..hardware import get_gpu
    from ..planner.core import ComputeBudget
    from ..plots import draw_frontier, frontier_data
    from ..plots._common import short_gpu_name
    from ..plots.frontier import DEFAULT_FRONTIER_LAWS
    from ..units import SECONDS_PER_DAY, parse_bytes

    if flops is not None and days is not None:
        raise UsageError("give the budget once: --flops, or --days with --gpu, not both")
    if days is not None and gpu is None:
        raise UsageError("--days needs --gpu to turn time into FLOPs, e.g. --gpu 4070ti --days 365")
    spec = get_gpu(gpu, gpu_csv or ()) if gpu is not None else None
    note = None
    if spec is not None:  # fp16 on a card without BF16, with a note (plan's rule, hardware.training_precision)
        from ..hardware import training_precision

        precision, note = training_precision(spec, precision, DEFAULT_PRECISION)
    precision = precision or DEFAULT_PRECISION
    budget, label = (_count(flops, "--flops") if flops is not None else None), None
    capacity = parse_bytes(memory, what="--memory", unit_required=True, positive=True) if memory is not None else None
    request = None  # the plan question whose model FLOPs a --days budget is (its optimum is placed as plan's)
    if days is not None:
        from ..planner.core import PlanRequest, plan

        request = PlanRequest(spec, days * SECONDS_PER_DAY, n_gpus=n_gpus, precision=precision,
                              utilization=utilization, mfu=mfu, memory_bytes=capacity, seq_len=seq, explain=False)
        if mfu is None:  # the budget `plan` states for the same GPUs, days, memory and sequence: its recommended run's
            p = plan(request)
            b = p.budget
            # a stated efficiency is plan's constant (no per-operation price); else the step or layout model's
            how = f"MFU {b.mfu:.2g} " + ("as plan predicts" if p.stated_efficiency is None else
                                         "as plan assumes (no per-operation price for this GPU or precision)")
        else:
            b = ComputeBudget(spec, n_gpus, days * SECONDS_PER_DAY, precision, utilization, mfu)
            how = f"MFU {mfu:g}"
        budget = b.model_flops
        label = (f"{days:g} days, {n_gpus}× {short_gpu_name(spec.name)}"
                 + (f" at {precision.value}" if precision is not DEFAULT_PRECISION else "")
                 + f", {how}, busy {utilization:.0%}")
    for name in law or ():  # the laws' reader takes '' as the default
        refuse_empty(**{"--law": name})
    if law:  # one law under two names (an alias, another case) would be drawn twice
        from ..scaling.names import get_law

        refuse_repeated("--law", law, [get_law(name).name for name in law])
    data = frontier_data(law or DEFAULT_FRONTIER_LAWS, (_count(c_min, "--c-min"), _count(c_max, "--c-max")), budget,
                         budget_label=label, gpu=spec, n_gpus=n_gpus, seq_len=seq, precision=precision,
                         capacity_bytes=capacity, published=published, budget_request=request)
    _finish({**data, "notes": [note]} if note else data, draw_frontier, out, as_json, dpi)
    if note and not as_json:
        write_stdout(f"note: {note}\n")


@plot_app.command("isoflop")
def isoflop(
    ctx: typer.Context,
    out: OutOpt = None,
    replace: ReplaceOpt = False,
    dpi: DpiOpt = PNG_DPI,
    flops: BudgetsOpt = None,
    law: LawOpt = None,
    runs: Annotated[Path | None, typer.Option(
        help="Runs CSV (n_params, n_tokens or c_flops, loss) to overlay, grouped by FLOPs.")] = None,
    flops_tolerance: Annotated[float, typer.Option(
        "--flops-tolerance", help="Runs whose FLOPs differ by less than this share one curve. (fraction)")] = 0.10,
    as_json: JsonOpt = False,
) -> None:
    """Predicted loss against model size at fixed compute, minima marked; your runs overlaid."""
    _check_out(ctx, out, as_json, dpi, replace)
    if runs is None:
        refuse_unused(ctx, "--runs", ("flops_tolerance",), "used only to group your runs by FLOPs")
    from ..plots import draw_isoflop, isoflop_data

    budgets = [_count(f, "--flops") for f in flops] if flops else None
    refuse_repeated("--flops", flops or [], budgets or [])
    refuse_empty(**{"--law": law})  # the laws' reader takes '' as the default
    _finish(isoflop_data(budgets, law, runs, flops_tolerance), draw_isoflop, out, as_json, dpi)


@plot_app.command("landscape")
def landscape(
    ctx: typer.Context,
    out: OutOpt = None,
    replace: ReplaceOpt = False,
    dpi: DpiOpt = PNG_DPI,
    law: LawOpt = None,
    n_min: Annotated[str, typer.Option("--n-min", help="Smallest model drawn. (parameters)")] = "1e7",
    n_max: Annotated[str, typer.Option("--n-max", help="Largest model drawn. (parameters)")] = "1e12",
    d_min: Annotated[str, typer.Option("--d-min", help="Fewest training tokens drawn. (tokens)")] = "1e8",
    d_max: Annotated[str, typer.Option("--d-max", help="Most training tokens drawn. (tokens)")] = "1e14",
    flops: BudgetsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Contours of predicted loss over model size and tokens, with lines of equal compute and the optimal path."""
    _check_out(ctx, out, as_json, dpi, replace)
    from ..plots import draw_landscape, landscape_data

    refuse_empty(**{"--law": law})  # the laws' reader takes '' as the default
    budgets = [_count(f, "--flops") for f in flops] if flops else None
    refuse_repeated("--flops", flops or [], budgets or [])
    data = landscape_data(law, (_count(n_min, "--n-min"), _count(n_max, "--n-max")),
                          (_count(d_min, "--d-min"), _count(d_max, "--d-max")), budgets)
    _finish(data, draw_landscape, out, as_json, dpi)


@plot_app.command("memory")
def memory(
    ctx: typer.Context,
    out: OutOpt = None,
    replace: ReplaceOpt = False,
    dpi: DpiOpt = PNG_DPI,
    gpu: Annotated[str | None, typer.Option(help="GPU whose capacity is drawn, e.g. 4070ti.")] = None,
    model: Annotated[list[str] | None, typer.Option(
        help="Preset to draw; repeat for several (default: every GPT-2 preset).")] = None,
    params: Annotated[list[str] | None, typer.Option(
        help="Target parameter count, shaped by rule, e.g. 350M; repeat for several.")] = None,
    micro_batch: Annotated[list[int] | None, typer.Option(
        "--micro-batch", help="Sequences per GPU per forward pass; repeat for one bar each. (sequences)")] = None,
    seq: SeqOpt = None,
    precision: Annotated[MemoryPrecision | None, typer.Option(
        help="Storage precision (default: bf16-mixed, fp16-mixed on a card without BF16, as 'memory').")] = None,
    optimizer: OptimizerOpt = Optimizer.adamw,
    recompute: RecomputeOpt = Recompute.none,
    flash: Annotated[bool, typer.Option("--flash/--no-flash", help="Fused attention or spelled-out attention.")
                     ] = True,
    grad_accum: Annotated[int, typer.Option("--grad-accum", help="Micro-batches accumulated per step. (count)")] = 1,
    n_gpus: Annotated[int, typer.Option("--n-gpus", help="Data-parallel GPUs. (count)")] = 1,
    zero: ZeroOpt = 0,
    offload: OffloadOpt = False,
    gpu_csv: GpuCsvOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Stacked training-memory bars per component for several models or micro-batches, against the GPU."""
    _check_out(ctx, out, as_json, dpi, replace)
    if gpu is None:
        refuse_unused(ctx, "--gpu", ("gpu_csv",), "used only to look up the GPU whose capacity is drawn")
    from ..hardware import get_gpu
    from ..memory import TrainingSetup
    from ..memory.workspace import gpu_setup_fields
    from ..model import PRESETS, config_for_params, get_preset
    from ..plots import draw_memory, memory_data

    refuse_repeated("--model", model or [], [get_preset(m).name for m in (model or [])])
    counts = [_count(p, "--params") for p in (params or [])]
    refuse_repeated("--params", params or [], counts)
    refuse_repeated("--micro-batch", micro_batch or [], micro_batch or [])
    models: list = list(model or [])
    models += [config_for_params(n) for n in counts]
    spec = get_gpu(gpu, gpu_csv or ()) if gpu else None
    precision, note = storage_precision(precision, spec)  # the precision 'memory' reports for the same flags
    check_zero_stage(zero, n_gpus)
    check_optimizer_runs(optimizer, spec)  # bitsandbytes' 8-bit AdamW only where it runs
    setup = TrainingSetup(seq_len=seq, precision=precision, optimizer=optimizer, recompute=recompute, flash=flash,
                          grad_accum=grad_accum, n_gpus=n_gpus, zero_stage=zero, offload_optimizer=offload,
                          **(gpu_setup_fields(spec) if spec else {}))
    data = memory_data(models or list(PRESETS), spec, setup, micro_batch or None)
    notes = data.get("notes", []) + ([note] if note else [])  # memory_data's: the cuBLAS workspace without --gpu
    _finish({**data, "notes": notes} if notes else data, draw_memory, out, as_json, dpi)
    if not as_json:
        write_stdout("".join(f"note: {n}\n" for n in notes))


@plot_app.command("calibration")
def calibration(
    ctx: typer.Context,
    profile: Annotated[Path, typer.Argument(help="Calibration profile JSON from 'flopscalc calibrate'.")],
    out: OutOpt = None,
    replace: ReplaceOpt = False,
    dpi: DpiOpt = PNG_DPI,
    mfu: Annotated[float | None, typer.Option(
        help="MFU at which step times are predicted. (0-1; default the planner's 0.40)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Measured against predicted: step time, MFU by model size, and peak memory, from a calibration profile."""
    _check_out(ctx, out, as_json, dpi, replace)
    from ..calibration import load_profile
    from ..plots import calibration_data, draw_calibration

    _finish(calibration_data(load_profile(profile), mfu), draw_calibration, out, as_json, dpi)


def register(app: typer.Typer) -> None:
    """Add ``flopscalc plot ...`` to the top-level app."""
    app.add_typer(plot_app, name="plot")
