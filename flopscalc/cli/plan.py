"""`flopscalc plan`: the best training run for a budget (imported only when `plan` runs; see `cli.COMMANDS`)."""

# No `from __future__ import annotations` here: typer reads the options from the signature, and string annotations
# would be compiled and evaluated again on every run (about 2.5 ms for plan's options; start-up, issue 18).

from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from ..hardware import Precision
from ..planner.budget import DEFAULT_MFU, DEFAULT_PRECISION, DEFAULT_UTILIZATION
from .bounds import SEQ_TYPE
from .common import (
    BiasOpt,
    ExpertsOpt,
    FfnOpt,
    GpuCsvOpt,
    JsonOpt,
    KvHeadOpt,
    MlpOpt,
    ModelConfigOpt,
    NormOpt,
    PlanGpuOpt,
    PosOpt,
    SharedExpertsOpt,
    TieOpt,
    TopKOpt,
    UtilizationOpt,
    VocabOpt,
    arch_options,
    check_seq,
    parse_inference_tokens,
    refuse_empty,
    refuse_together,
)
from .output import emit, with_notes, write_stdout


def _duration_s(days: float | None, hours: float | None, duration: str | None) -> float:
    from ..units import SECONDS_PER_DAY, SECONDS_PER_HOUR, check_duration, parse_duration

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



def plan(
    gpu: PlanGpuOpt,
    days: Annotated[float | None, typer.Option(help="Wall-clock time the GPUs are yours (days).")] = None,
    hours: Annotated[float | None, typer.Option(help="Wall-clock time the GPUs are yours (hours).")] = None,
    duration: Annotated[str | None, typer.Option(help="Wall-clock time with a unit, e.g. 2w, 36h, 1y.")] = None,
    flops_budget: Annotated[str | None, typer.Option(
        "--flops", help="A model-FLOP budget instead of a time, e.g. 1e21. (FLOP)")] = None,
    budget_usd: Annotated[str | None, typer.Option(
        "--budget-usd", help="A money budget instead of a time; needs --usd-per-gpu-hour. (USD)")] = None,
    usd_per_gpu_hour: Annotated[float | None, typer.Option(
        "--usd-per-gpu-hour", help="Cloud price of one GPU for one hour. (USD)")] = None,
    usd_per_kwh: Annotated[float | None, typer.Option(
        "--usd-per-kwh", help="Electricity price, for the energy cost line. (USD/kWh)")] = None,
    n_gpus: Annotated[int, typer.Option("--n-gpus", help="Number of GPUs (data parallel, ZeRO when needed).")] = 1,
    precision: Annotated[Precision | None, typer.Option(
        help=f"Arithmetic that sets the peak rate (dense). (default {DEFAULT_PRECISION.value}; fp16 mixed precision "
             "on GPUs without BF16, e.g. V100, T4)")] = None,
    utilization: UtilizationOpt = DEFAULT_UTILIZATION,
    mfu: Annotated[float | None, typer.Option(
        help="Price every option at this constant hardware efficiency (the MFU, model FLOP/s over peak while busy, "
             "of a step without recomputation) instead of the per-operation step-time model (as 'flopscalc step'), "
             "which predicts each option's MFU; recomputation, communication and offload lower it. (0-1; default: "
             f"the per-operation model; {DEFAULT_MFU} where it cannot price: tf32, fp8, no memory bandwidth)"
    )] = None,
    calibration: Annotated[Path | None, typer.Option(
        help="Calibration profile from 'flopscalc calibrate' on this GPU: its fitted device factors price every "
             "option with the per-operation model (a profile without them: its measured MFU per size).")] = None,
    calibration_any_device: Annotated[bool, typer.Option(
        "--calibration-any-device", help="Apply a --calibration profile measured on another device than --gpu "
        "(refused otherwise); the plan warns that its MFU is borrowed.")] = False,
    law: Annotated[str | None, typer.Option(
        help="Scaling law for the optimum and the predicted loss (see 'flopscalc scaling laws').")] = None,
    dataset_tokens: Annotated[str | None, typer.Option(
        "--dataset-tokens", help="Unique tokens you have; more training tokens repeat them, e.g. 10B. (tokens)")] = None,
    max_days: Annotated[float | None, typer.Option(
        "--max-days", help="Training must finish within this wall-clock time. (days)")] = None,
    memory: Annotated[str | None, typer.Option(
        help="Memory per GPU to plan for instead of the database's, e.g. 10GiB. (bytes)")] = None,
    seq: Annotated[int | None, typer.Option(
        click_type=SEQ_TYPE, help="Training sequence length. (tokens; default: a --model's pretraining length, else "
                                  "its context; 1024 for the models the plan shapes)")] = None,
    model: Annotated[str | None, typer.Option(
        help="Plan this model only (preset, e.g. gpt2-xl): its setup, time and cost.")] = None,
    params: Annotated[str | None, typer.Option(
        help="Plan a model of about this many parameters only, shaped by rule, e.g. 350M.")] = None,
    family: Annotated[str | None, typer.Option(
        help="Shape the models the plan tries in this family: gpt2 (default; heads of 64, GELU) or llama (Llama 3: "
             "heads of 128, 8 KV heads, SwiGLU, RMSNorm, RoPE, vocabulary 128,256); its presets are weighed beside "
             "them. With --params: that size in this family.")] = None,
    config: ModelConfigOpt = None,
    vocab: VocabOpt = None, n_kv_head: KvHeadOpt = None, ffn: FfnOpt = None, mlp: MlpOpt = None,
    norm: NormOpt = None, pos: PosOpt = None, bias: BiasOpt = None, tie: TieOpt = None,
    experts: ExpertsOpt = None, top_k: TopKOpt = None, shared_experts: SharedExpertsOpt = None,
    tokens: Annotated[str | None, typer.Option(
        help="With --model or --params: train on exactly this many tokens; no budget needed. (tokens)")] = None,
    target_loss: Annotated[float | None, typer.Option(
        "--target-loss", help="Find the fastest run whose predicted loss reaches this. (nats/token)")] = None,
    inference_tokens: Annotated[str | None, typer.Option(
        "--inference-tokens", help="Tokens the model will serve over its life, e.g. 1T: plan the model that "
        "minimises training plus inference FLOPs (Sardana et al. 2024). (tokens)")] = None,
    gpu_csv: GpuCsvOpt = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print every option as CSV rows instead of tables.")] = False,
    as_json: JsonOpt = False,
    network_gbps: Annotated[float | None, typer.Option(
        "--network-gbps", help="Network between nodes per GPU, Gb/s, for the layout search beyond one node and the "
        "data-parallel setups weighed beside it (default by GPU generation: A100 200, else 400; as 'flopscalc step "
        "--network-gbps'); 0.1 to 100000, beyond one node of 8 GPUs only.")
    ] = None,
    layout_search: Annotated[bool | None, typer.Option(
        "--layout-search/--no-layout-search", help="Give each model the fastest parallel layout (TP, PP, CP, EP, "
        "ZeRO, micro-batch, recompute) priced by the per-operation model, or only data-parallel setups (priced by "
        "the same model, or --mfu). (default: on beyond one node of 8 GPUs, and on 2-8 GPUs for an MoE, a sequence "
        "from 8192 tokens or a model no data-parallel setup fits, unless --mfu or --calibration is given)")] = None,
) -> None:
    """The best training run for a budget: model, tokens, setup that fits, time, loss, energy and cost."""
    from .. import planner
    from ..hardware import get_gpu, training_precision
    from ..report.plan import plan_report
    from ..report.plan_data import plan_csv, plan_dict
    from ..units import SECONDS_PER_DAY, check_duration, parse_bytes, parse_count, parse_usd

    refuse_together(**{"--csv": as_csv, "--json": as_json})
    refuse_empty(**{"--family": family, "--law": law})
    check_seq(seq)
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
    arch = arch_options(vocab, n_kv_head, ffn, mlp, norm, pos, bias, tie, experts, top_k, shared_experts)
    cfg = None
    if model is not None or params is not None or config is not None:
        if family is not None and (model is not None or config is not None):
            raise UsageError(f"{'--model' if model is not None else '--config'} fixes the model, whose family is its "
                             "own, and --family chooses how the plan shapes the models it tries: drop one of them")
        n_params = parse_count(params, what="--params", kind="params") if params is not None else None
        if family is not None:  # --params --family: that size, shaped by the family's rule
            from ..planner.family import shaped_model

            cfg = shaped_model(n_params, family, seq, arch)
        else:
            from ..model import resolve_model

            cfg = resolve_model(model, n_params=n_params, config_file=config, arch=arch, ways=("model", "config", "params"))
    profile = None
    if calibration is not None:
        from ..calibration import load_profile

        profile = load_profile(calibration)
    from ..planner.request import PlanRequest
    from ..scaling.names import resolve_law

    request = PlanRequest(
        spec, seconds,
        flops=parse_count(flops_budget, what="--flops", kind="flops") if flops_budget is not None else None,
        budget_usd=parse_usd(budget_usd, what="--budget-usd") if budget_usd is not None else None,
        usd_per_gpu_hour=usd_per_gpu_hour, usd_per_kwh=usd_per_kwh, n_gpus=n_gpus, precision=precision,
        utilization=utilization, mfu=mfu, calibration=profile, law=resolve_law(law),  # built-in or saved (a file)
        dataset_tokens=(parse_count(dataset_tokens, what="--dataset-tokens", kind="tokens")
                        if dataset_tokens is not None else None),
        max_wall_clock_s=max_wall_clock_s,
        memory_bytes=parse_bytes(memory, what="--memory", unit_required=True, positive=True) if memory is not None else None,
        seq_len=seq,
        model=cfg, shaped=params is not None and model is None and config is None,
        n_tokens=parse_count(tokens, what="--tokens", kind="tokens") if tokens is not None else None,
        target_loss=target_loss, calibration_any_device=calibration_any_device,
        inference_tokens=parse_inference_tokens(inference_tokens),
        family=family if cfg is None else None, arch=arch if cfg is None else None,  # a fixed model has them
        layout_search=layout_search, network_gbps=network_gbps,
    )
    p = planner.plan(request)
    if precision_note:  # the plan says why it runs at fp16
        from dataclasses import replace

        p = replace(p, warnings=(precision_note, *p.warnings))
    if as_csv:
        write_stdout(plan_csv(p))
        return
    from ..memory.workspace import no_cuda_runtime_note

    emit(*with_notes(plan_report(p), plan_dict(p), [no_cuda_runtime_note(p.budget.gpu)]), as_json)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.command("plan")(plan)
