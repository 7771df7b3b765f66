"""Command-line face: parse options, call the engines and the planner, render. No arithmetic here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .budget import DEFAULT_MFU, DEFAULT_PRECISION, DEFAULT_UTILIZATION
from .cli_common import (
    BiasOpt,
    ExpertsOpt,
    FfnOpt,
    GpuCsvOpt,
    JsonOpt,
    KvHeadOpt,
    MlpOpt,
    ModelConfigOpt,
    NormOpt,
    PosOpt,
    SharedExpertsOpt,
    TieOpt,
    TopKOpt,
    VocabOpt,
    arch_options,
    conflicting_options,
    emit,
    refuse_together,
)
from .errors import DomainError, FlopscalcError, UsageError
from .flops import Recompute
from .hardware import Precision

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    name="flopscalc",
    help="Compute-budget planner and FLOPs calculator for training GPT-style language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings=HELP_OPTIONS,  # subcommands inherit it: `flopscalc plan -h` works too
)
gpus_app = typer.Typer(help="The GPU database: list every GPU, or show one with its sources.",
                       invoke_without_command=True)
app.add_typer(gpus_app, name="gpus")


def _version() -> str:
    """The installed distribution's version (importlib.metadata), else the package's own."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flopscalc")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from . import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"flopscalc {_version()}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Compute-budget planner and FLOPs calculator for training GPT-style language models."""


def _duration_s(days: float | None, hours: float | None, duration: str | None) -> float:
    from .units import SECONDS_PER_DAY, SECONDS_PER_HOUR, check_duration, parse_duration

    given = [(n, v) for n, v in (("--days", days), ("--hours", hours), ("--duration", duration)) if v is not None]
    if not given:
        raise UsageError("say how long the GPUs are yours (--days, --hours or --duration, e.g. --days 365), "
                         "or give --flops or --budget-usd instead")
    if len(given) > 1:
        raise UsageError(f"give the training time once, not with {' and '.join(n for n, _ in given)}")
    name, value = given[0]
    if name == "--duration":
        seconds = parse_duration(value, what="--duration")
        check_duration(seconds / SECONDS_PER_DAY, what="--duration", unit="days", seconds_per_unit=SECONDS_PER_DAY,
                       given=repr(value))
        return seconds
    if name == "--days":
        return check_duration(value, what="--days", unit="days", seconds_per_unit=SECONDS_PER_DAY)
    return check_duration(value, what="--hours", unit="hours", seconds_per_unit=SECONDS_PER_HOUR)


@app.command()
def plan(
    gpu: Annotated[str, typer.Option(help="GPU name, forgiving spelling: 4070ti, 'RTX 4090', h100, a100-80gb.")],
    days: Annotated[Optional[float], typer.Option(help="Wall-clock time the GPUs are yours (days).")] = None,
    hours: Annotated[Optional[float], typer.Option(help="Wall-clock time the GPUs are yours (hours).")] = None,
    duration: Annotated[Optional[str], typer.Option(help="Wall-clock time with a unit, e.g. 2w, 36h, 1y.")] = None,
    flops_budget: Annotated[Optional[str], typer.Option(
        "--flops", help="A model-FLOP budget instead of a time, e.g. 1e21. (FLOP)")] = None,
    budget_usd: Annotated[Optional[str], typer.Option(
        "--budget-usd", help="A money budget instead of a time; needs --usd-per-gpu-hour. (USD)")] = None,
    usd_per_gpu_hour: Annotated[Optional[float], typer.Option(
        "--usd-per-gpu-hour", help="Cloud price of one GPU for one hour. (USD)")] = None,
    usd_per_kwh: Annotated[Optional[float], typer.Option(
        "--usd-per-kwh", help="Electricity price, for the energy cost line. (USD/kWh)")] = None,
    n_gpus: Annotated[int, typer.Option("--n-gpus", help="Number of GPUs (data parallel, ZeRO when needed).")] = 1,
    precision: Annotated[Optional[Precision], typer.Option(
        help=f"Arithmetic that sets the peak rate (dense). (default {DEFAULT_PRECISION.value}; fp16 mixed precision "
             "on GPUs without BF16, e.g. V100, T4)")] = None,
    utilization: Annotated[float, typer.Option(
        help="Duty cycle: share of wall-clock time the GPUs are busy training. (0-1)")] = DEFAULT_UTILIZATION,
    mfu: Annotated[Optional[float], typer.Option(
        help="Hardware efficiency: the MFU (model FLOP/s over peak, while busy) of a step without recomputation; "
             "recomputation, communication and offload lower each option's MFU, and the plan prints MFU and HFU. "
             f"(0-1; default {DEFAULT_MFU})"
    )] = None,
    calibration: Annotated[Optional[Path], typer.Option(
        help="Calibration profile from 'flopscalc calibrate': measured MFU replaces --mfu.")] = None,
    calibration_any_device: Annotated[bool, typer.Option(
        "--calibration-any-device", help="Apply a --calibration profile measured on another device than --gpu "
        "(refused otherwise); the plan warns that its MFU is borrowed.")] = False,
    law: Annotated[Optional[str], typer.Option(
        help="Scaling law for the optimum and the predicted loss (see 'flopscalc scaling laws').")] = None,
    dataset_tokens: Annotated[Optional[str], typer.Option(
        "--dataset-tokens", help="Unique tokens you have; more training tokens repeat them, e.g. 10B. (tokens)")] = None,
    max_days: Annotated[Optional[float], typer.Option(
        "--max-days", help="Training must finish within this wall-clock time. (days)")] = None,
    memory: Annotated[Optional[str], typer.Option(
        help="Memory per GPU to plan for instead of the database's, e.g. 10GiB. (bytes)")] = None,
    seq: Annotated[Optional[int], typer.Option(help="Training sequence length. (tokens; default 1024)")] = None,
    model: Annotated[Optional[str], typer.Option(
        help="Plan this model only (preset, e.g. gpt2-xl): its setup, time and cost.")] = None,
    params: Annotated[Optional[str], typer.Option(
        help="Plan a model of about this many parameters only, shaped by rule, e.g. 350M.")] = None,
    tokens: Annotated[Optional[str], typer.Option(
        help="With --model or --params: train on exactly this many tokens; no budget needed. (tokens)")] = None,
    target_loss: Annotated[Optional[float], typer.Option(
        "--target-loss", help="Find the fastest run whose predicted loss reaches this. (nats/token)")] = None,
    inference_tokens: Annotated[Optional[str], typer.Option(
        "--inference-tokens", help="Tokens the model will serve over its life, e.g. 1T: plan the model that "
        "minimises training plus inference FLOPs (Sardana et al. 2024). (tokens)")] = None,
    gpu_csv: GpuCsvOpt = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print every option as CSV rows instead of tables.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The best training run for a budget: model, tokens, setup that fits, time, loss, energy and cost."""
    from . import planner
    from .hardware import get_gpu, training_precision
    from .report_plan import plan_csv, plan_dict, plan_report
    from .units import SECONDS_PER_DAY, check_duration, parse_bytes, parse_count, parse_usd

    refuse_together(**{"--csv": as_csv, "--json": as_json})
    if seq is not None and seq < 1:
        raise UsageError(f"--seq must be a positive whole number of tokens, got {seq}; e.g. --seq 1024")
    budgets = [name for name, v in (("--days", days), ("--hours", hours), ("--duration", duration),
                                    ("--flops", flops_budget), ("--budget-usd", budget_usd)) if v is not None]
    if target_loss is not None and budgets:
        raise UsageError(f"--target-loss finds how long the run takes, so {' and '.join(budgets)} would be ignored: "
                         "drop it (use --max-days to cap the time)")
    max_wall_clock_s = (check_duration(max_days, what="--max-days", unit="days", seconds_per_unit=SECONDS_PER_DAY)
                        if max_days is not None else None)
    spec = get_gpu(gpu, gpu_csv or ())
    precision, precision_note = training_precision(spec, precision, DEFAULT_PRECISION)  # fp16 without BF16
    times = [v for v in (days, hours, duration) if v is not None]
    no_budget = tokens is not None or target_loss is not None
    seconds = (_duration_s(days, hours, duration)
               if times or (flops_budget is None and budget_usd is None and not no_budget) else None)
    cfg = None
    if model is not None or params is not None:
        from .model import resolve_model

        cfg = resolve_model(model, n_params=parse_count(params, what="--params") if params is not None else None)
    profile = None
    if calibration is not None:
        from .calibration import load_profile

        profile = load_profile(calibration)
    p = planner.plan(
        spec, seconds, flops=parse_count(flops_budget, what="--flops") if flops_budget is not None else None,
        budget_usd=parse_usd(budget_usd, what="--budget-usd") if budget_usd is not None else None,
        usd_per_gpu_hour=usd_per_gpu_hour, usd_per_kwh=usd_per_kwh, n_gpus=n_gpus, precision=precision,
        utilization=utilization, mfu=mfu, calibration=profile, law=law,
        dataset_tokens=parse_count(dataset_tokens, what="--dataset-tokens") if dataset_tokens is not None else None,
        max_wall_clock_s=max_wall_clock_s,
        memory_bytes=parse_bytes(memory, what="--memory") if memory is not None else None, seq_len=seq,
        model=cfg, n_tokens=parse_count(tokens, what="--tokens") if tokens is not None else None,
        target_loss=target_loss, calibration_any_device=calibration_any_device,
        inference_tokens=(parse_count(inference_tokens, what="--inference-tokens")
                          if inference_tokens is not None else None),
    )
    if precision_note:  # the plan says why it runs at fp16
        from dataclasses import replace

        p = replace(p, warnings=(precision_note, *p.warnings))
    if as_csv:
        sys.stdout.write(plan_csv(p))
        return
    emit(plan_report(p), plan_dict(p), as_json)


@app.command()
def flops(
    tokens: Annotated[str, typer.Option(help="Training tokens, e.g. 300B, 10B, 2.5e10.")],
    model: Annotated[Optional[str], typer.Option(
        help="Preset: gpt2 ... gpt2-xl, llama-3.1-8b, mixtral-8x7b, pythia-1b, ... ('flopscalc models').")] = None,
    params: Annotated[Optional[str], typer.Option(help="Target parameter count, e.g. 350M; shaped by rule.")] = None,
    n_layer: Annotated[Optional[int], typer.Option("--n-layer", help="Explicit shape: layers.")] = None,
    n_head: Annotated[Optional[int], typer.Option("--n-head", help="Explicit shape: attention heads.")] = None,
    n_embd: Annotated[Optional[int], typer.Option("--n-embd", help="Explicit shape: width.")] = None,
    config: ModelConfigOpt = None,
    vocab: VocabOpt = None, n_kv_head: KvHeadOpt = None, ffn: FfnOpt = None, mlp: MlpOpt = None,
    norm: NormOpt = None, pos: PosOpt = None, bias: BiasOpt = None, tie: TieOpt = None,
    experts: ExpertsOpt = None, top_k: TopKOpt = None, shared_experts: SharedExpertsOpt = None,
    seq: Annotated[Optional[int], typer.Option(help="Sequence length (tokens; default: context).")] = None,
    micro_batch: Annotated[int, typer.Option("--micro-batch", help="Sequences per GPU per forward pass.")] = 1,
    grad_accum: Annotated[int, typer.Option("--grad-accum", help="Micro-batches accumulated per step.")] = 1,
    n_gpus: Annotated[int, typer.Option("--n-gpus", help="Data-parallel GPUs.")] = 1,
    recompute: Annotated[Recompute, typer.Option(help="Activation recomputation.")] = Recompute.none,
    causal: Annotated[bool, typer.Option(
        "--causal/--dense", help="Count only unmasked query-key pairs (--causal) or the full T x T (--dense).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """FLOPs of training a model on N tokens: per component, per token/step/run, in every convention."""
    from .flops import summarize
    from .model import resolve_model
    from .report import flops_dict, flops_report
    from .units import parse_count

    cfg = resolve_model(model, n_params=parse_count(params, what="--params") if params is not None else None,
                        n_layer=n_layer, n_head=n_head, n_embd=n_embd, config_file=config,
                        arch=arch_options(vocab, n_kv_head, ffn, mlp, norm, pos, bias, tie, experts, top_k,
                                          shared_experts))
    s = summarize(cfg, parse_count(tokens, what="--tokens"), seq_len=seq, micro_batch=micro_batch,
                  grad_accum=grad_accum, n_gpus=n_gpus, recompute=recompute, causal=causal)
    emit(flops_report(s), flops_dict(s), as_json)


@app.command()
def models(as_json: JsonOpt = False) -> None:
    """The model presets with their exact total and active parameter counts and sources."""
    from .model import ALL_PRESETS
    from .report_models import models_dict, models_table

    emit(models_table(ALL_PRESETS), models_dict(ALL_PRESETS), as_json)


@gpus_app.callback()
def gpus(ctx: typer.Context, gpu_csv: GpuCsvOpt = None, as_json: JsonOpt = False) -> None:
    """List every GPU in the database (dense peak rates, memory, power, price)."""
    if ctx.invoked_subcommand is not None:  # `gpus --json show X` means `gpus show X --json`
        ctx.obj = {"gpu_csv": gpu_csv or (), "as_json": as_json}
        return
    from .hardware import load_database
    from .report import gpu_dict, gpu_table

    db = load_database(gpu_csv or ())
    emit(gpu_table(db), {"gpus": [gpu_dict(g) for g in db]}, as_json)


@gpus_app.command("show")
def gpus_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="GPU name, e.g. 4070ti.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one GPU: every figure, its source and notes."""
    from .hardware import get_gpu
    from .report import gpu_detail, gpu_dict

    spec = get_gpu(name, (ctx.obj or {}).get("gpu_csv", ()))
    emit(gpu_detail(spec), gpu_dict(spec), as_json or (ctx.obj or {}).get("as_json", False))


def _register_command_modules() -> None:
    # each engine's commands live in their own face module; they import their engines lazily
    from . import cli_infer, cli_memory, cli_plot, cli_runs, cli_scaling, cli_step, cli_train

    for module in (cli_memory, cli_scaling, cli_plot, cli_train, cli_runs, cli_step, cli_infer):
        module.register(app)


_register_command_modules()


def _parser_errors() -> type[Exception]:
    """The parser's usage-error base class: typer's own since typer vendored click (0.2x), click's before."""
    if hasattr(typer, "TyperException"):
        return typer.TyperException
    import click

    return click.ClickException


_PARSER_ERRORS = _parser_errors()


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code: 0 ok, 1 domain error, 2 usage error (one line on stderr)."""
    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else list(argv)
    if not {"-h", "--help"} & set(args):
        conflict = conflicting_options(command, args)
        if conflict is not None:
            return _fail(conflict, 2)
    try:
        result = command.main(args=argv, prog_name="flopscalc", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except UsageError as e:
        return _fail(str(e), 2)
    except DomainError as e:
        return _fail(str(e), 1)
    except FlopscalcError as e:  # pragma: no cover - every error is one of the two above
        return _fail(str(e), 1)
    except _PARSER_ERRORS as e:  # the parser's own usage errors (unknown option, bad choice, ...)
        message = " ".join(e.format_message().split()) or "say which command to run; they are listed above"
        return _fail(message, getattr(e, "exit_code", 2))
    except typer.Abort:
        return _fail("aborted", 130)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        return 1


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"flopscalc: error: {message}\n")
    return code


def main() -> None:
    sys.exit(run())
