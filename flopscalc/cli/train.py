"""`flopscalc train`, `train prepare`: the reference trainer's faces (issue 5); `bench` and `calibrate`, which time
it, are in cli/bench.py and share the trainer options defined here.

torch is imported only inside these commands (``python -c "import flopscalc.cli"`` stays light); without it
they say how to install the ``train`` extra and exit 1.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..atomic import lands_on
from ..errors import DomainError, UsageError
from ..flops import Recompute

# torch-free, and every command here imports it when it runs: its defaults cost start-up nothing
from ..train.config import DEFAULT_MAX_STEPS, DEFAULT_WARMUP_STEPS
from .bounds import (
    BLOCK_SIZE_TYPE,
    EVAL_BATCHES_TYPE,
    MICRO_BATCH_TYPE,
    SEED_TYPE,
    STEP_INTERVAL_TYPE,
    VOCAB_TYPE,
)
from .common import (
    BiasOpt,
    FfnOpt,
    GpuCsvOpt,
    GradAccumOpt,
    JsonOpt,
    KvHeadOpt,
    ListingGroup,
    MlpOpt,
    ModelConfigOpt,
    NEmbdOpt,
    NHeadOpt,
    NLayerOpt,
    NormOpt,
    PosOpt,
    RecomputeOpt,
    TieOpt,
    arch_options,
    check_seq,
    given_on_command_line,
    refuse_unused,
)
from .output import emit

TORCH_MISSING = "this command needs PyTorch: install the train extra: pip install 'flopscalc[train]'"

train_app = typer.Typer(cls=ListingGroup, help=("Train the reference model (GPT-2 or a dense Llama-style block) on token "
                                  "files (or synthetic tokens); 'prepare' makes them."),
                        invoke_without_command=True)


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class TrainPrecision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


class Parallel(str, Enum):
    ddp = "ddp"
    fsdp = "fsdp"


class Tokenizer(str, Enum):
    byte = "byte"
    gpt2 = "gpt2"


class TokenFormat(str, Enum):
    llmc = "llmc"
    raw = "raw"


def require_torch():
    """Import torch or fail with one line saying how to install it (exit 1)."""
    try:
        import torch
    except ImportError:
        raise DomainError(TORCH_MISSING) from None
    return torch


def _model(model, n_layer, n_head, n_embd, block_size, vocab_size, config=None, arch=None):
    from ..model import resolve_model, with_fields_named

    if model is None and config is None and n_layer is None and n_head is None and n_embd is None:
        model = "gpt2"  # the default model; --mlp, --norm, ... change its block as they change a named one
    cfg = resolve_model(model, n_layer=n_layer, n_head=n_head, n_embd=n_embd, config_file=config, arch=arch,
                        ways=("model", "config", "shape"))  # no --params
    return with_fields_named(cfg, block_size=block_size, vocab_size=vocab_size)


ModelOpt = Annotated[str | None, typer.Option(
    help="Preset (default gpt2): any dense one 'flopscalc models' lists, e.g. gpt2-medium, llama-3.1-8b, pythia-160m.")]
BlockOpt = Annotated[int | None, typer.Option("--block-size", click_type=BLOCK_SIZE_TYPE, help="Context length of the model (tokens).")]
VocabOpt = Annotated[int | None, typer.Option(
    "--vocab-size", click_type=VOCAB_TYPE, help="Vocabulary size (default: the data's meta.json, else the preset's).")]
DeviceOpt = Annotated[Device, typer.Option(help="Where to run: auto picks CUDA when present.")]
PrecisionOpt = Annotated[TrainPrecision, typer.Option(
    help="Matmul precision: auto is bf16 autocast on CUDA (TF32 for the rest), fp32 on CPU.")]
GpuOpt = Annotated[str | None, typer.Option(help="GPU database row whose peak MFU is measured against, e.g. h100.")]
LoraRankOpt = Annotated[int, typer.Option(
    "--lora-rank", help="LoRA rank r: freeze the model and train rank-r adapters on --lora-targets (0: train every "
    "weight; docs/trainer.md).")]
LoraAlphaOpt = Annotated[float | None, typer.Option(
    "--lora-alpha", help="LoRA's alpha: the adapters' output is scaled by alpha / r (default: r, a scale of 1).")]
LoraTargetsOpt = Annotated[str | None, typer.Option(
    "--lora-targets", help="Linears that get adapters: all-linear (default) or a comma list of q, k, v, o, gate, up, "
    "down.")]
PeakOpt = Annotated[float | None, typer.Option(
    "--peak-tflops", help="Peak rate of one device to compute MFU against, for devices not in the database (TFLOP/s).")]
TrainThreadsOpt = Annotated[int | None, typer.Option(
    help="torch intra-op threads per process (default on a CPU: 1, as 'calibrate' and 'bench' time, so a CPU "
         "profile predicts this run; on a GPU torch's own).")]


@train_app.callback()
def train(
    ctx: typer.Context,
    data: Annotated[Path | None, typer.Option(
        help="Folder with train.bin and val.bin (nanoGPT) or *_train.bin / *_val.bin (llm.c).")] = None,
    synthetic: Annotated[bool, typer.Option(help="Train on random tokens instead of --data (for timing).")] = False,
    model: ModelOpt = None, n_layer: NLayerOpt = None, n_head: NHeadOpt = None, n_embd: NEmbdOpt = None,
    block_size: BlockOpt = None, vocab_size: VocabOpt = None, config: ModelConfigOpt = None,
    n_kv_head: KvHeadOpt = None, ffn: FfnOpt = None, mlp: MlpOpt = None, norm: NormOpt = None, pos: PosOpt = None,
    bias: BiasOpt = None, tie: TieOpt = None,
    micro_batch: Annotated[int, typer.Option(
        "--micro-batch", click_type=MICRO_BATCH_TYPE, help="Sequences per device per forward pass.")] = 8,
    seq: Annotated[int | None, typer.Option(help="Tokens per sequence (default: the model's pretraining length where "
                                                "its source states one, else its block size).")] = None,
    grad_accum: GradAccumOpt = 1,
    steps: Annotated[int, typer.Option(help="Optimizer steps of the whole run.")] = DEFAULT_MAX_STEPS,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 6e-4,
    min_lr_ratio: Annotated[float, typer.Option(help="Floor of the cosine schedule as a fraction of the peak.")] = 0.1,
    warmup_steps: Annotated[int, typer.Option(help="Linear warm-up length (steps).")] = DEFAULT_WARMUP_STEPS,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay on matrices.")] = 0.1,
    grad_clip: Annotated[float, typer.Option(help="Clip the global gradient norm at this value (0: off).")] = 1.0,
    eval_interval: Annotated[int, typer.Option(
        click_type=STEP_INTERVAL_TYPE, help="Steps between validation passes (0: only at the end).")] = 250,
    eval_batches: Annotated[int, typer.Option(
        click_type=EVAL_BATCHES_TYPE, help="Micro-batches per validation pass.")] = 20,
    checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint file written at the end and on Ctrl-C.")] = None,
    checkpoint_interval: Annotated[int, typer.Option(
        click_type=STEP_INTERVAL_TYPE, help="Steps between checkpoints (0: end and Ctrl-C only).")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue exactly from --checkpoint (the same --steps, --lr, "
                                                "--micro-batch, ... it was trained with).")] = False,
    new_schedule: Annotated[bool, typer.Option(
        "--new-schedule", help="With --resume: follow this run's --steps, --lr, --warmup-steps and --min-lr-ratio "
        "from the checkpoint's step on (e.g. to train longer); the learning rate changes there (docs/trainer.md).")
    ] = False,
    log: Annotated[Path | None, typer.Option(
        "--metrics-log", help="Metrics log, one JSON object per step (JSON Lines); plot it with pandas.")] = None,
    seed: Annotated[int, typer.Option(click_type=SEED_TYPE, help="Random seed.")] = 1337,
    device: DeviceOpt = Device.auto,
    precision: PrecisionOpt = TrainPrecision.auto,
    compile: Annotated[bool, typer.Option("--compile/--no-compile", help="Wrap the model in torch.compile.")] = False,
    recompute: RecomputeOpt = Recompute.none,
    parallel: Annotated[Parallel, typer.Option(help="Under torchrun: ddp, or fsdp for models one GPU cannot hold.")]
    = Parallel.ddp,
    gpu: GpuOpt = None, peak_tflops: PeakOpt = None, gpu_csv: GpuCsvOpt = None,
    from_plan: Annotated[Path | None, typer.Option(
        "--from-plan", help="A plan from 'flopscalc plan --json': its model, batch, steps, learning rate, schedule and "
        "optimizer settings (docs/trainer.md); --micro-batch and --grad-accum override it, by name.")] = None,
    allow_substitute: Annotated[bool, typer.Option(
        "--allow-substitute", help="With --from-plan: run the nearest setup the trainer can where it cannot run the "
        "plan's (offload, ZeRO-1/2, 8-bit AdamW, fp16, more GPUs than processes), listing each change.")] = False,
    max_steps: Annotated[int | None, typer.Option(
        "--max-steps", help="With --from-plan: stop after this many steps of the plan's schedule (0: write the "
        "settings and stop).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="With --from-plan: folder for settings.json (what runs, what changed) and metrics.jsonl.")] = None,
    lora_rank: LoraRankOpt = 0, lora_alpha: LoraAlphaOpt = None, lora_targets: LoraTargetsOpt = None,
    threads: TrainThreadsOpt = None,
    as_json: JsonOpt = False,
):
    """Train the reference model, GPT-2 or any dense block (AdamW, warm-up + cosine, clipping, validation); Ctrl-C
    saves and stops."""
    if ctx.invoked_subcommand is not None:
        typed = given_on_command_line(ctx, *(p.name for p in ctx.command.params))
        if typed:
            raise UsageError(f"{' and '.join(typed)} {'are options' if len(typed) > 1 else 'is an option'} of "
                             f"'train' itself; 'train {ctx.invoked_subcommand}' would ignore "
                             f"{'them' if len(typed) > 1 else 'it'} (see 'flopscalc train {ctx.invoked_subcommand} -h')")
        return None
    if gpu is not None and peak_tflops is not None:  # a run's --gpu row gives MFU's peak and nothing else
        raise UsageError("--gpu and --peak-tflops both set the peak MFU is measured against; give --gpu NAME for its "
                         "datasheet peak, or --peak-tflops for a stated one, not both")
    if (data is None) == (not synthetic):
        raise UsageError("give the training data once: --data FOLDER (see 'flopscalc train prepare') or --synthetic")
    from ..train.config import check_threads

    check_threads(threads)  # bench's bound (1 to the usable cores), before torch is imported
    if from_plan is not None:
        if new_schedule:
            raise UsageError("a plan run follows the plan's schedule; --new-schedule would be ignored with "
                             "--from-plan: drop it (--max-steps stops a plan run early, --resume continues it)")
        lora = given_on_command_line(ctx, "lora_rank", "lora_alpha", "lora_targets")
        if lora:
            raise UsageError(f"a plan trains every weight; {', '.join(lora)} would be ignored with --from-plan: "
                             "drop it, or give the model and LoRA options without --from-plan")
        return _train_from_plan(ctx)
    refuse_unused(ctx, "--from-plan", ("allow_substitute", "max_steps", "out"), "options of a plan run")
    from ..atomic import check_writable_file, refuse_same_file

    refuse_same_file({"--checkpoint": checkpoint, "--metrics-log": log}, {"--config": config, "--gpu-csv": gpu_csv})

    if checkpoint_interval and checkpoint is None:
        raise UsageError("--checkpoint-interval says how often to write --checkpoint FILE: give the file too")
    if checkpoint is not None and not resume:
        check_writable_file(checkpoint, "checkpoint")
    if log is not None:
        check_writable_file(log, "metrics log")
    refuse_existing_outputs(resume, checkpoint, log)
    check_seq(seq)  # 'seq or the default' below would read 0 as the default
    from ..model import default_train_seq
    from ..train.config import TrainConfig, warmup_for_run

    warmup_steps, warmup_note = warmup_for_run(warmup_steps, steps, bool(given_on_command_line(ctx, "warmup_steps")))
    cfg_model = _model(model, n_layer, n_head, n_embd, block_size, None, config,
                       arch_options(n_kv_head=n_kv_head, ffn=ffn, mlp=mlp, norm=norm, pos=pos, bias=bias, tie=tie))
    config_args = {
        "micro_batch": micro_batch, "grad_accum": grad_accum, "max_steps": steps, "learning_rate": lr,
        "min_lr_ratio": min_lr_ratio, "warmup_steps": warmup_steps, "weight_decay": weight_decay,
        "grad_clip": grad_clip, "eval_interval": eval_interval, "eval_batches": eval_batches,
        "checkpoint_interval": checkpoint_interval, "seed": seed, "device": device.value,
        "precision": precision.value, "compile": compile, "recompute": recompute.value, "parallel": parallel.value,
        "lora_rank": lora_rank, "lora_alpha": lora_alpha, "lora_targets": lora_targets,
    }
    # reject pre-torch
    checked = TrainConfig(model=cfg_model, seq_len=seq or default_train_seq(cfg_model), **config_args)
    require_torch()
    refuse_parallel_alone(ctx)
    from ..train.render import train_summary
    from ..train.run import TrainRequest, model_with_vocab, run_training

    cfg_model = model_with_vocab(cfg_model, str(data) if data else None, vocab_size)
    config = TrainConfig(model=cfg_model, seq_len=seq or default_train_seq(cfg_model), **config_args)
    if checked.lora_rank:
        from ..train.distributed import dist_info_from_env

        if dist_info_from_env().is_main:  # under torchrun, once
            sys.stderr.write(f"flopscalc: {_lora_line(config)}\n")
    summary = run_training(TrainRequest(
        config=config, data_dir=str(data) if data else None, checkpoint=str(checkpoint) if checkpoint else None,
        resume=resume, new_schedule=new_schedule, metrics_log=str(log) if log else None, gpu=gpu,
        peak_tflops=peak_tflops,
        gpu_csv=tuple(gpu_csv or ()), progress=not as_json, n_threads=threads))
    if summary.pop("is_main"):
        report = train_summary(summary)
        if warmup_note is not None:
            from rich.console import Group
            from rich.text import Text

            summary["notes"] = [*summary.get("notes", ()), warmup_note]
            report = Group(report, Text(f"note: {warmup_note}"))
        emit(report, summary, as_json)
    if summary["interrupted"]:
        where = f"; checkpoint saved to {summary['checkpoint']}" if summary["checkpoint"] else ""
        sys.stderr.write(f"flopscalc: interrupted at step {summary['steps_done']}{where}\n")
        return 130
    return None


def refuse_parallel_alone(ctx: typer.Context) -> None:
    """UsageError when --parallel is given to one process: DDP and FSDP wrap the model only under torchrun with
    2 or more processes (`train.distributed.wrap_model`), so one process would train unwrapped and say nothing."""
    from ..train.distributed import dist_info_from_env

    world = dist_info_from_env().world_size
    if given_on_command_line(ctx, "parallel") and world < 2:
        mode = getattr(ctx.params["parallel"], "value", ctx.params["parallel"])
        where = f"WORLD_SIZE {world}" if "WORLD_SIZE" in os.environ else "not under torchrun"
        raise UsageError(f"--parallel {mode} runs only under torchrun with 2 or more processes, and this run is one "
                         f"process ({where}): launch "
                         f"'torchrun --nproc_per_node N -m flopscalc train ... --parallel {mode}', or drop --parallel "
                         "to train in one process")


# What --from-plan sets, so these options would contradict it (--micro-batch and --grad-accum are overrides).
PLAN_SETS = ("model", "n_layer", "n_head", "n_embd", "block_size", "vocab_size", "config", "seq", "steps", "lr",
             "min_lr_ratio", "warmup_steps", "weight_decay", "grad_clip", "precision", "recompute", "parallel",
             "n_kv_head", "ffn", "mlp", "norm", "pos", "bias", "tie")


def _train_from_plan(ctx: typer.Context):
    """`train --from-plan FILE`: the plan's settings (flopscalc.train.from_plan), the overrides named, then the run."""
    from dataclasses import replace

    from ..atomic import check_writable_file
    from ..train.from_plan import plan_run, read_plan

    o = ctx.params
    typed = given_on_command_line(ctx, *PLAN_SETS)
    if typed:
        raise UsageError(f"--from-plan sets {', '.join(typed)} from the plan; drop {'them' if len(typed) > 1 else 'it'}"
                         " (overrides: --micro-batch, --grad-accum, --max-steps, --device)")
    if o["out"] is not None and o["log"] is not None:
        raise UsageError("--out FOLDER writes metrics.jsonl itself; give --out or --metrics-log, not both")
    if o["max_steps"] is not None and o["max_steps"] < 0:
        raise UsageError(f"--max-steps must be a whole number >= 0, got {o['max_steps']}")
    if o["checkpoint_interval"] and o["checkpoint"] is None:
        raise UsageError("--checkpoint-interval says how often to write --checkpoint FILE: give the file too")
    if o["checkpoint"] is not None and not o["resume"]:
        check_writable_file(o["checkpoint"], "checkpoint")
    plan = read_plan(o["from_plan"])
    torch = require_torch()
    from ..train.distributed import dist_info_from_env
    from ..train.render import train_summary
    from ..train.run import TrainRequest, model_with_vocab, run_training

    world = dist_info_from_env().world_size
    overrides = dict(zip(("micro_batch", "grad_accum"), (o["micro_batch"], o["grad_accum"])))
    given = {name: overrides[name] for name in overrides if given_on_command_line(ctx, name)}
    pr = plan_run(plan, str(o["from_plan"]), device=getattr(o["device"], "value", o["device"]), cuda_available=torch.cuda.is_available(),
                  world_size=world, allow_substitute=o["allow_substitute"], eval_interval=o["eval_interval"],
                  eval_batches=o["eval_batches"], checkpoint_interval=o["checkpoint_interval"], seed=o["seed"],
                  compile=o["compile"], **given)
    if o["max_steps"] is not None and o["max_steps"] > pr.config.max_steps:
        raise UsageError(f"--max-steps {o['max_steps']} is past the plan's {pr.config.max_steps} steps; drop it to "
                         "run the whole plan")
    data = str(o["data"]) if o["data"] else None
    model = model_with_vocab(pr.config.model, data, None)
    if model != pr.config.model:
        pr = replace(pr, config=replace(pr.config, model=model), changes=pr.changes + (
            f"vocabulary {pr.config.model.vocab_size:,} -> {model.vocab_size:,} from the data's meta.json",))
    log = o["log"]
    if o["out"] is not None:
        log = Path(o["out"]) / "metrics.jsonl"
        check_writable_file(log, "metrics log")
    elif log is not None:
        check_writable_file(log, "metrics log")
    settings = Path(o["out"]) / "settings.json" if o["out"] is not None else None
    refuse_existing_outputs(o["resume"], o["checkpoint"], log, "--metrics-log" if settings is None else "the metrics log",
                            settings)
    from ..atomic import refuse_same_file

    refuse_same_file({"--checkpoint": o["checkpoint"], "--metrics-log" if o["out"] is None else "--out": log,
                      "--out (settings.json)": settings},
                     {"--from-plan": o["from_plan"], "--gpu-csv": o["gpu_csv"]})
    for change in pr.changes:
        sys.stderr.write(f"flopscalc: from the plan: {change}\n")
    summary = run_training(TrainRequest(
        config=pr.config, data_dir=data, checkpoint=str(o["checkpoint"]) if o["checkpoint"] else None,
        resume=o["resume"], metrics_log=str(log) if log else None, gpu=o["gpu"], peak_tflops=o["peak_tflops"],
        gpu_csv=tuple(o["gpu_csv"] or ()), progress=not o["as_json"], stop_after=o["max_steps"],
        settings=pr.settings(world), settings_path=str(Path(o["out"]) / "settings.json") if o["out"] else None,
        n_threads=o["threads"]))
    if summary.pop("is_main"):
        emit(train_summary(summary), summary, o["as_json"])
    if summary["interrupted"]:
        where = f"; checkpoint saved to {summary['checkpoint']}" if summary["checkpoint"] else ""
        sys.stderr.write(f"flopscalc: interrupted at step {summary['steps_done']}{where}\n")
        return 130
    return None


@train_app.command("prepare")
def prepare(
    out: Annotated[Path, typer.Argument(help="Folder to write train.bin, val.bin and meta.json into.")],
    text: Annotated[Path | None, typer.Option(help="UTF-8 text file to tokenise.")] = None,
    pydoc: Annotated[bool, typer.Option(help="Use the CPython documentation strings every Python ships.")] = False,
    tokenizer: Annotated[Tokenizer, typer.Option(
        help="byte: UTF-8 bytes (vocab 256, needs nothing); gpt2: GPT-2 BPE via tiktoken, files present locally.")]
    = Tokenizer.byte,
    val_fraction: Annotated[float, typer.Option(help="Share of the tokens kept for validation, from the end (0-1).")]
    = 0.1,
    fmt: Annotated[TokenFormat, typer.Option("--format", help="llmc: llm.c header + uint16; raw: nanoGPT uint16.")]
    = TokenFormat.llmc,
    replace: Annotated[bool, typer.Option(
        "--replace", help="Overwrite train.bin, val.bin and meta.json already in the folder (kept otherwise).")]
    = False,
    as_json: JsonOpt = False,
) -> None:
    """Tokenise a text file (or Python's own docs) into train/val token files; no torch needed."""
    from ..train.data import check_prepare_outputs, pydoc_text
    from ..train.data import prepare as prepare_tokens
    from ..train.render import prepare_table

    if (text is None) == (not pydoc):
        raise UsageError("give the text once: --text FILE or --pydoc")
    if text is not None:  # the input first, then the outputs, all before anything is tokenised or written
        from ..textfile import read_text

        body, source = read_text(text, "text file"), str(text)
    else:
        body, source = pydoc_text(), "pydoc_data.topics"
    for path in check_prepare_outputs(out, replace) if text is not None else ():
        if lands_on(path) == lands_on(text) or (path.exists() and path.samefile(text)):
            raise UsageError(f"--text {text} is the {path.name} that prepare writes in {out}: it would replace your "
                             "text; give another folder, or move the text out of it")
    p = prepare_tokens(body, out, tokenizer=tokenizer.value, val_fraction=val_fraction, fmt=fmt.value, source=source,
                       replace=replace)
    data = {"train": str(p.train_path), "val": str(p.val_path), "meta": str(p.meta_path), "tokenizer": p.tokenizer,
            "vocab_size": p.vocab_size, "n_train_tokens": p.n_train_tokens, "n_val_tokens": p.n_val_tokens}
    emit(prepare_table(data), data, as_json)


def refuse_existing_outputs(resume: bool, checkpoint: Path | None, log: Path | None, log_label: str = "--metrics-log",
                            settings: Path | None = None) -> None:
    """UsageError, before any work, when a fresh run would replace or truncate a file that already exists.

    A fresh run writes its checkpoint (and a plan run its ``settings.json``) over the file and opens its metrics log
    for writing (truncating it); only a run that continues (``--resume``) reads the checkpoint and appends to the log.
    Nothing the user made is lost, so an existing file is refused, named (``log_label``: the option, or "the metrics
    log" when ``--out`` placed it), with the two ways on: ``--resume`` or another path. A path is looked up as the
    writer will reach it once it has made the missing folders (`atomic.lands_on`).
    """
    if resume:
        return
    for what, path, verb in (("--checkpoint", checkpoint, "replace"), (log_label, log, "truncate"),
                             ("the settings file", settings, "replace")):
        if path is not None and lands_on(path).exists():
            raise UsageError(f"{what} {path} already exists and a fresh run would {verb} it; give --resume to continue "
                             f"from --checkpoint, or another path (or remove the file if it is yours to lose)")


def _lora_line(cfg) -> str:
    """What a LoRA run trains: the adapters' count (finetune.adapters.count_adapters, equal to the module's
    trainable parameters: tests/test_train_lora.py) and the frozen base."""
    from ..finetune.adapters import count_adapters
    from ..model import count_params

    n = count_adapters(cfg.model, cfg.lora_target_names, cfg.lora_rank, 0).n_params
    return (f"LoRA rank {cfg.lora_rank}, alpha {cfg.lora_scale_alpha:g} on {','.join(cfg.lora_target_names)}: "
            f"{n:,} trainable parameters; the base's {count_params(cfg.model).total:,} are frozen")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.add_typer(train_app, name="train")
