"""`flopscalc bench` and `calibrate`: time the reference trainer's steps, and fit a calibration profile from them
(issue 5). Their model, device and precision options are the `train` command's own, from cli/train.py.

torch is imported only inside these commands (``python -c "import flopscalc.cli"`` stays light); without it
they say how to install the ``train`` extra and exit 1.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..atomic import refuse_overwrite
from ..errors import UsageError
from ..flops import Recompute
from .common import (
    BiasOpt,
    FfnOpt,
    GpuCsvOpt,
    JsonOpt,
    KvHeadOpt,
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
    refuse_repeated,
)
from .output import emit
from .train import (
    BlockOpt,
    Device,
    DeviceOpt,
    LoraAlphaOpt,
    LoraRankOpt,
    LoraTargetsOpt,
    PeakOpt,
    PrecisionOpt,
    TrainPrecision,
    VocabOpt,
    _model,
    require_torch,
)


class CompileMode(str, Enum):
    off = "off"
    on = "on"
    both = "both"


SweepGpuOpt = Annotated[str | None, typer.Option(
    "--gpu", help="GPU database row of the device timed, e.g. h100 (default: the CUDA device's name): the device the "
    "profile describes, and the peak MFU is measured against unless --peak-tflops states another.")]


def refuse_existing_profile(out: Path | None, replace: bool) -> None:
    """UsageError, before any timing, when --out names a profile that exists and --replace is not given (a
    profile is minutes of measurement on a device: nothing the user made is lost, as saved laws need --replace)."""
    if replace and out is None:
        raise UsageError("--replace says what to do with an existing profile at --out: give it with --out FILE")
    refuse_overwrite({"--out": out}, replace, "profile")


def _bench(model, n_layer, n_head, n_embd, block_size, vocab_size, micro_batch, seq, grad_accum, compile_mode,
           precision, device, recompute, warmup_steps, steps, gpu, peak_tflops, gpu_csv, out, as_json, threads=None,
           config=None, lora=(0, None, None), arch=None, replace=False):
    from ..train.config import check_threads

    check_threads(threads)  # before the models are built and torch is imported
    cfgs = [_model(m, None, None, None, block_size, vocab_size, arch=arch) for m in (model or [])]
    refuse_repeated("--model", model or [], cfgs)
    refuse_repeated("--micro-batch", micro_batch or [], micro_batch or [])
    refuse_repeated("--seq", seq or [], seq or [])
    if any(v is not None for v in (n_layer, n_head, n_embd, config)) or not cfgs:
        cfgs.append(_model(None, n_layer, n_head, n_embd, block_size, vocab_size, config, arch))
    compiles = {"off": [False], "on": [True], "both": [False, True]}[compile_mode.value]
    check_seq(seq)  # 's or the default' below would read 0 as the default
    lora_on = lora[0] or lora[1] is not None or lora[2] is not None
    if out is not None and lora_on:
        raise UsageError("a calibration profile describes pre-training steps ('plan' and 'step' read it); LoRA "
                         "steps are timed without --out: drop --out or the --lora-* options")
    if out is not None:  # before minutes of benchmarking, not after
        from ..atomic import check_writable_file, refuse_same_file

        check_writable_file(out, "calibration profile")
        refuse_same_file({"--out": out}, {"--config": config, "--gpu-csv": gpu_csv})
    refuse_existing_profile(out, replace)
    require_torch()
    from ..calibration import save_profile
    from ..model import default_train_seq
    from ..train.bench import BenchSetup, run_benchmarks
    from ..train.render import profile_table

    setups = [BenchSetup(model=c, micro_batch=b, seq_len=s or default_train_seq(c), grad_accum=grad_accum, compile=k,
                         precision=precision.value, device=device.value, recompute=recompute.value,
                         warmup_steps=warmup_steps, timed_steps=steps, lora_rank=lora[0], lora_alpha=lora[1],
                         lora_targets=lora[2])
              for c in cfgs for b in (micro_batch or [8]) for s in (seq or [None]) for k in compiles]
    if lora_on:  # LoRA steps; the model's label says so in the table
        from dataclasses import replace

        setups = [replace(s, model=s.model.with_(name=f"{s.model.name or 'model'} LoRA r{s.lora_rank}"))
                  for s in setups]
    for s in setups:
        s.train_config()  # validate every setup before timing any
    profile = run_benchmarks(setups, gpu=gpu, peak_tflops=peak_tflops, extra_csv=tuple(gpu_csv or ()),
                             n_threads=threads)
    data = profile.to_dict()
    if out is not None:
        data["written_to"] = str(save_profile(profile, out))
    emit(profile_table(profile), data, as_json)


def _calibrate(model, n_layer, n_head, n_embd, block_size, vocab_size, micro_batch, seq, grad_accum, compile_mode,
               precision, device, recompute, warmup_steps, steps, gpu, peak_tflops, gpu_csv, out, as_json, threads,
               config, rounds, arch=None, replace=False):
    """`calibrate`: time the sweep interleaved (the built-in CPU sweep when no model is named), fit the step-time
    model's device factors (`flopscalc.train.calibrate.run_calibration`), write the profile."""
    if compile_mode is not CompileMode.off:
        raise UsageError("calibrate fits the step-time model of eager PyTorch kernels: drop --compile "
                         "(time compiled runs with 'bench')")
    from ..atomic import check_writable_file, refuse_same_file
    from ..train.config import check_threads

    check_threads(threads)  # before minutes of benchmarking, and before torch is imported
    check_seq(seq)  # 's or the default' below would read 0 as the default
    check_writable_file(out, "calibration profile")  # before minutes of benchmarking, not after
    refuse_same_file({"--out": out}, {"--config": config, "--gpu-csv": gpu_csv})
    refuse_existing_profile(out, replace)
    builtin = not model and all(v is None for v in (n_layer, n_head, n_embd, config))
    fixed = [f"--{n.replace('_', '-')}" for n, v in (("block_size", block_size), ("vocab_size", vocab_size),
                                                      ("micro_batch", micro_batch), ("seq", seq)) if v]
    fixed += ["--grad-accum"] * (grad_accum != 1) + ["--recompute"] * (recompute is not Recompute.none)
    fixed += ["--precision bf16"] * (precision is TrainPrecision.bf16)
    fixed += [f"--{k.replace('_', '-')}" for k, v in (arch or {}).items() if v is not None]
    if builtin and fixed:
        raise UsageError(f"the built-in CPU sweep fixes its shapes and settings, so {', '.join(fixed)} would be "
                         "ignored; name the models to time (--model, or --n-layer/--n-head/--n-embd) to set them")
    require_torch()
    from rich.console import Group
    from rich.text import Text

    from ..calibration import save_profile
    from ..model import default_train_seq
    from ..train.bench import BenchSetup
    from ..train.calibrate import cpu_sweep, run_calibration
    from ..train.distributed import DistInfo, pick_device
    from ..train.render import profile_table

    if builtin:
        if pick_device(device.value, DistInfo()).type != "cpu":
            raise UsageError("the built-in calibration sweep is sized for a CPU; on a GPU name the models to time "
                             "(--model, repeatable; 5 setups or more for a fit)")
        setups = cpu_sweep(warmup_steps=warmup_steps, timed_steps=steps)
    else:
        cfgs = [_model(m, None, None, None, block_size, vocab_size, arch=arch) for m in (model or [])]
        # as bench: one model or setting named twice would be timed twice and count twice toward MIN_POINTS
        refuse_repeated("--model", model or [], cfgs)
        refuse_repeated("--micro-batch", micro_batch or [], micro_batch or [])
        refuse_repeated("--seq", seq or [], seq or [])
        if any(v is not None for v in (n_layer, n_head, n_embd, config)):
            cfgs.append(_model(None, n_layer, n_head, n_embd, block_size, vocab_size, config, arch))
        setups = [BenchSetup(model=c, micro_batch=b, seq_len=s or default_train_seq(c), grad_accum=grad_accum,
                             precision=precision.value, device=device.value, recompute=recompute.value,
                             warmup_steps=warmup_steps, timed_steps=steps)
                  for c in cfgs for b in (micro_batch or [8]) for s in (seq or [None])]
    for s in setups:
        s.train_config()  # validate every setup before timing any
    profile = run_calibration(setups, gpu=gpu, peak_tflops=peak_tflops, extra_csv=tuple(gpu_csv or ()),
                              n_threads=threads, rounds=rounds)
    data = profile.to_dict()
    data["written_to"] = str(save_profile(profile, out))
    emit(Group(profile_table(profile), Text(_factors_line(profile))), data, as_json)


def _factors_line(profile) -> str:
    """One line naming the fitted device factors (or why there are none) under the calibrate table."""
    from ..units import format_rate

    f = profile.device_factors
    if f is None:
        return "no device factors fitted (see the notes above)"
    peak = " (no datasheet peak: this is the CPU's peak)" if profile.gpu_key is None else ""
    return (f"fitted for the step-time model ({f.timing} seconds): GEMM {format_rate(f.gemm_flop_per_s)} {f.gemm_source}"
            f"{peak}, memory bandwidth {f.memory_bytes_per_s / 1e9:.1f} GB/s, operator floor "
            f"{f.kernel_min_s * 1e6:.1f} us, attention at {f.attention_fraction:.2f} of the GEMM rate; fit residual "
            f"{f.rms_rel_error:.1%} rms, {f.max_rel_error:.1%} worst over {f.n_points} setups. Use: flopscalc step "
            f"--calibration FILE")


# Options shared by `bench` and `calibrate` (the same sweep; calibrate must write a profile).
SweepModelsOpt = Annotated[list[str] | None, typer.Option(help="Preset(s) to time; repeat to sweep model size.")]
SweepMicroBatchOpt = Annotated[list[int] | None, typer.Option(
    "--micro-batch", help="Sequences per forward pass; repeat to sweep (default 8).")]
SweepSeqOpt = Annotated[list[int] | None, typer.Option(
    help="Tokens per sequence; repeat to sweep (default: the model's pretraining length, else its block size).")]
BenchAccumOpt = Annotated[int, typer.Option("--grad-accum", help="Micro-batches per optimizer step.")]
CompileOpt = Annotated[CompileMode, typer.Option(help="torch.compile: off, on, or both (a sweep).")]
WarmupOpt = Annotated[int, typer.Option(help="Untimed steps before timing.")]
TimedStepsOpt = Annotated[int, typer.Option(help="Timed optimizer steps per setup.")]
ReplaceProfileOpt = Annotated[bool, typer.Option(
    "--replace", help="Overwrite an existing profile at --out (it is kept otherwise).")]
ThreadsOpt = Annotated[int | None, typer.Option(
    help="torch intra-op threads while timing (default on a CPU: 1, reproducible on a shared machine).")]


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    def bench(
        model: SweepModelsOpt = None,
        n_layer: NLayerOpt = None, n_head: NHeadOpt = None, n_embd: NEmbdOpt = None,
        block_size: BlockOpt = None, vocab_size: VocabOpt = None, config: ModelConfigOpt = None,
        n_kv_head: KvHeadOpt = None, ffn: FfnOpt = None, mlp: MlpOpt = None, norm: NormOpt = None,
        pos: PosOpt = None, bias: BiasOpt = None, tie: TieOpt = None,
        micro_batch: SweepMicroBatchOpt = None, seq: SweepSeqOpt = None, grad_accum: BenchAccumOpt = 1,
        compile: CompileOpt = CompileMode.off,
        precision: PrecisionOpt = TrainPrecision.auto, device: DeviceOpt = Device.auto,
        recompute: RecomputeOpt = Recompute.none, warmup_steps: WarmupOpt = 5, steps: TimedStepsOpt = 20,
        gpu: SweepGpuOpt = None, peak_tflops: PeakOpt = None, gpu_csv: GpuCsvOpt = None,
        out: Annotated[Path | None, typer.Option(help="Also write the calibration profile JSON here.")] = None,
        replace: ReplaceProfileOpt = False,
        threads: ThreadsOpt = None,
        lora_rank: LoraRankOpt = 0, lora_alpha: LoraAlphaOpt = None, lora_targets: LoraTargetsOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Time training steps (after warm-up, device-synchronised): tokens/s, achieved FLOP/s, MFU, memory."""
        _bench(model, n_layer, n_head, n_embd, block_size, vocab_size, micro_batch, seq, grad_accum, compile,
               precision, device, recompute, warmup_steps, steps, gpu, peak_tflops, gpu_csv, out, as_json, threads,
               config, (lora_rank, lora_alpha, lora_targets),
               arch_options(n_kv_head=n_kv_head, ffn=ffn, mlp=mlp, norm=norm, pos=pos, bias=bias, tie=tie),
               replace=replace)

    def calibrate(
        out: Annotated[Path, typer.Option(help="Calibration profile JSON to write (for 'plan --calibration').")],
        model: SweepModelsOpt = None,
        n_layer: NLayerOpt = None, n_head: NHeadOpt = None, n_embd: NEmbdOpt = None,
        block_size: BlockOpt = None, vocab_size: VocabOpt = None, config: ModelConfigOpt = None,
        n_kv_head: KvHeadOpt = None, ffn: FfnOpt = None, mlp: MlpOpt = None, norm: NormOpt = None,
        pos: PosOpt = None, bias: BiasOpt = None, tie: TieOpt = None,
        micro_batch: SweepMicroBatchOpt = None, seq: SweepSeqOpt = None, grad_accum: BenchAccumOpt = 1,
        compile: Annotated[CompileMode, typer.Option(
            help="Only off is accepted: calibrate fits the step-time model of eager PyTorch kernels; time "
                 "compiled runs with 'bench --compile on'.")] = CompileMode.off,
        precision: PrecisionOpt = TrainPrecision.auto, device: DeviceOpt = Device.auto,
        recompute: RecomputeOpt = Recompute.none, warmup_steps: WarmupOpt = 5,
        steps: Annotated[int, typer.Option(help="Timed optimizer steps per setup in each round.")] = 4,
        gpu: SweepGpuOpt = None, peak_tflops: PeakOpt = None, gpu_csv: GpuCsvOpt = None,
        replace: ReplaceProfileOpt = False,
        threads: ThreadsOpt = None,
        rounds: Annotated[int, typer.Option(
            help="Interleaved timing rounds (each times every setup once); the median counts, as a shared "
                 "machine's load drifts.")] = 5,
        lora_rank: Annotated[int, typer.Option(
            "--lora-rank", help="Only 0 is accepted (--lora-alpha and --lora-targets are refused too): calibrate "
            "fits the pre-training step model, which does not price LoRA; time LoRA steps with 'bench --lora-rank "
            "R'.")] = 0,
        lora_alpha: Annotated[float | None, typer.Option(
            "--lora-alpha", help="Refused: calibrate does not time LoRA (see --lora-rank).")] = None,
        lora_targets: Annotated[str | None, typer.Option(
            "--lora-targets", help="Refused: calibrate does not time LoRA (see --lora-rank).")] = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Time a sweep (on a CPU by default 7 small shapes), fit the step-time model's device factors and write
        the profile that 'step --calibration' and 'plan --calibration' read."""
        if lora_rank or lora_alpha is not None or lora_targets is not None:
            raise UsageError("calibrate fits the step-time model of pre-training steps, which does not price LoRA's "
                             "adapters and frozen weights (flopscalc.finetune prices them from FLOPs); time LoRA "
                             "steps with 'flopscalc bench --lora-rank R'")
        _calibrate(model, n_layer, n_head, n_embd, block_size, vocab_size, micro_batch, seq, grad_accum, compile,
                   precision, device, recompute, warmup_steps, steps, gpu, peak_tflops, gpu_csv, out, as_json,
                   threads, config, rounds,
                   arch_options(n_kv_head=n_kv_head, ffn=ffn, mlp=mlp, norm=norm, pos=pos, bias=bias, tie=tie),
                   replace=replace)

    app.command("bench")(bench)
    app.command("calibrate")(calibrate)
