"""`flopscalc step`: predicted time of one training step, tokens/s, MFU and HFU (issue 11)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..flops import Recompute
from ..memory.precision import MEMORY_PRECISION, MemoryPrecision
from ..memory.settings import Optimizer
from ..perf.op_kinds import (  # the command imports the step model anyway (cli loads it lazily)
    MOE_STEP_TIME_NOTE,
    SUSTAINED_FRACTION,
)
from .bounds import MICRO_BATCH_TYPE
from .common import (
    BiasOpt,
    ExpertsOpt,
    FfnOpt,
    FusedLossOpt,
    GpuCsvOpt,
    GradAccumOpt,
    JsonOpt,
    KvHeadOpt,
    MicroBatchOpt,
    MlpOpt,
    ModelConfigOpt,
    NEmbdOpt,
    NGpusOpt,
    NHeadOpt,
    NLayerOpt,
    NormOpt,
    ParamsOpt,
    PosOpt,
    PresetOpt,
    RecomputeOpt,
    ReduceDtypeOpt,
    SeqOpt,
    ServerGpuOpt,
    SharedExpertsOpt,
    TieOpt,
    TopKOpt,
    VocabOpt,
    ZeroOpt,
    check_optimizer_runs,
    check_zero_stage,
    given_on_command_line,
    model_from_options,
    reduce_fp32_option,
    storage_precision,
)
from .output import emit, with_notes, with_warnings

CPU_NAMES = ("cpu", "host")


def step(
    ctx: typer.Context,
    gpu: ServerGpuOpt,
    model: PresetOpt = None,
    params: ParamsOpt = None,
    n_layer: NLayerOpt = None,
    n_head: NHeadOpt = None,
    n_embd: NEmbdOpt = None,
    config: ModelConfigOpt = None,
    vocab: VocabOpt = None, n_kv_head: KvHeadOpt = None, ffn: FfnOpt = None, mlp: MlpOpt = None,
    norm: NormOpt = None, pos: PosOpt = None, bias: BiasOpt = None, tie: TieOpt = None,
    experts: ExpertsOpt = None, top_k: TopKOpt = None, shared_experts: SharedExpertsOpt = None,
    micro_batch: MicroBatchOpt = 1,
    grad_accum: GradAccumOpt = 1,
    seq: SeqOpt = None,
    n_gpus: NGpusOpt = 1,
    zero: ZeroOpt = 0,
    recompute: RecomputeOpt = Recompute.none,
    precision: Annotated[MemoryPrecision | None, typer.Option(
        help="Storage precision; 16-bit modes run the matmuls on the tensor cores in that format (default: "
             "bf16-mixed, fp16-mixed on a card without BF16 such as V100 and T4).")
    ] = None,
    optimizer: Annotated[Optimizer, typer.Option(help="Optimizer whose update the step runs.")] = Optimizer.adamw,
    flash: Annotated[bool, typer.Option("--flash/--no-flash",
                                        help="Fused attention kernel or the spelled-out (math) path.")] = True,
    offload: Annotated[bool, typer.Option("--offload", help="Optimizer on the CPU (ZeRO-Offload).")] = False,
    fused_loss: FusedLossOpt = False,
    reduce_dtype: ReduceDtypeOpt = None,
    dropout: Annotated[bool, typer.Option("--dropout", help="Dropout on (adds its memory-bound kernels).")] = False,
    compiled: Annotated[bool, typer.Option(
        "--compile/--no-compile", help="torch.compile: GEMM shapes padded to multiples of 8 (inductor's pad_mm) and "
                                       "the norm, residual add and cast fused; default eager PyTorch.")] = False,
    sustained: Annotated[float | None, typer.Option(
        help=f"Share of their priced rate the GEMMs sustain in a real loop (0-1; default: the fitted {SUSTAINED_FRACTION:g}; "
             "1: unfitted).")
    ] = None,
    gpu_csv: GpuCsvOpt = None,
    calibration: Annotated[str | None, typer.Option(
        help="Profile from 'flopscalc calibrate' on this device: its fitted device factors replace the sourced "
             "ones (with --gpu cpu: the CPU it was measured on).")] = None,
    tp: Annotated[int | None, typer.Option("--tp", help="Tensor-parallel GPUs (inside a node; divides the heads).")
                  ] = None,
    pp: Annotated[int | None, typer.Option("--pp", help="Pipeline stages (1F1B schedule).")] = None,
    interleave: Annotated[int | None, typer.Option(
        "--interleave", help="Model chunks per pipeline stage (interleaved 1F1B; needs --pp > 1).")] = None,
    cp: Annotated[int | None, typer.Option("--cp", help="Context-parallel GPUs splitting the sequence.")] = None,
    ep: Annotated[int | None, typer.Option("--ep", help="Expert-parallel GPUs sharding a mixture of experts.")] = None,
    sequence_parallel: Annotated[bool, typer.Option(
        "--sequence-parallel", help="Split norms and dropouts over the tensor-parallel GPUs (needs --tp > 1).")
    ] = False,
    search: Annotated[bool, typer.Option(
        "--search", help="Rank every TP/PP/interleave/DP/ZeRO/CP/EP/micro-batch/recompute layout of --n-gpus "
                         "that fits, by time per token; it chooses --zero and --recompute itself (refused with it), "
                         "and --micro-batch x --grad-accum x --n-gpus only sets the global batch when --global-batch "
                         "is not given.")] = False,
    global_batch: Annotated[int | None, typer.Option(
        "--global-batch", click_type=MICRO_BATCH_TYPE,
        help="With --search: sequences per optimizer step (default: --n-gpus x --micro-batch x --grad-accum).")
    ] = None,
    network_gbps: Annotated[float | None, typer.Option(
        "--network-gbps", help="Network between nodes per GPU, Gb/s (default by GPU generation: A100 200, else 400); "
                               "beyond one node of 8 GPUs only.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Predicted time of one optimizer step by operation class, tokens/s, MFU and HFU."""
    from ..errors import DomainError, UsageError
    from ..hardware import Precision, get_gpu
    from ..memory import TrainingSetup
    from ..memory.workspace import gpu_setup_fields, no_cuda_runtime_note
    from ..model.sequence import default_train_seq, past_context, past_context_warning
    from ..perf import StepOptions, estimate_step
    from ..report.step import (
        LAYOUT_MODEL,
        PER_OPERATION_MODEL,
        eager_note,
        engine_note,
        step_dict,
        step_report,
    )

    if gpu.strip().lower() in CPU_NAMES and calibration is None:
        raise DomainError("the step-time model has no sourced per-operation efficiencies for CPUs; pick a GPU "
                          "from 'flopscalc gpus', or calibrate this CPU: 'flopscalc calibrate --out cpu.json', then "
                          "--calibration cpu.json")
    if gpu.strip().lower() in CPU_NAMES and gpu_csv:
        from ..errors import UsageError

        raise UsageError(f"--gpu-csv adds GPU rows, and --gpu {gpu.strip()} looks up none (the CPU's figures come from "
                         "the --calibration profile), so it would be ignored: drop it, or name a GPU")
    cfg = model_from_options(model, params, n_layer, n_head, n_embd, config, vocab, n_kv_head, ffn, mlp, norm, pos,
                             bias, tie, experts, top_k, shared_experts)
    spec = None if gpu.strip().lower() in CPU_NAMES else get_gpu(gpu, gpu_csv or ())
    layout = search or sequence_parallel or any(x is not None for x in (tp, pp, interleave, cp, ep, global_batch,
                                                                        network_gbps))
    if search:  # what the search chooses itself would be ignored unseen: refused, as --tp/--pp are (report.layout)
        chosen = given_on_command_line(ctx, "zero", "recompute")
        if chosen:
            raise UsageError(f"--search chooses {' and '.join(chosen)} itself (ZeRO 0/1/3 and the lightest "
                             f"recomputation that fits, per layout); drop {'them' if len(chosen) > 1 else 'it'} or drop --search")
        batch_parts = given_on_command_line(ctx, "micro_batch", "grad_accum") if global_batch is not None else []
        if batch_parts:
            raise UsageError(f"--global-batch sets the sequences per step and --search chooses the micro-batch, so "
                             f"{' and '.join(batch_parts)} would be ignored; drop {'them' if len(batch_parts) > 1 else 'it'}, or drop --global-batch to "
                             "size the batch as --n-gpus x --micro-batch x --grad-accum")
    profile = None
    if calibration is not None and not layout:  # (the layout model refuses a profile below)
        from ..calibration import load_profile

        profile = load_profile(calibration)
        if precision is None and profile.device_factors is not None:  # the precision the profile was fitted in:
            # 'calibrate' on a CPU fits fp32 (a profile without factors, from 'bench', is refused by calibrated_step)
            precision = MEMORY_PRECISION[Precision(profile.device_factors.precision)]
    precision, note = storage_precision(precision, spec, needs_rate=True)
    check_zero_stage(zero, n_gpus)
    check_optimizer_runs(optimizer, spec)  # bitsandbytes' 8-bit AdamW only where it runs
    setup = TrainingSetup(micro_batch=micro_batch, seq_len=seq, precision=precision, optimizer=optimizer,
                          recompute=recompute, flash=flash, grad_accum=grad_accum, n_gpus=n_gpus, zero_stage=zero,
                          offload_optimizer=offload, dropout=dropout, fused_loss=fused_loss,
                          reduce_fp32=reduce_fp32_option(reduce_dtype, precision, zero, n_gpus),
                          **(gpu_setup_fields(spec) if spec is not None else {}))  # cuBLAS's workspace, runtime
    runtime = no_cuda_runtime_note(spec) if spec is not None else None
    seq_used = default_train_seq(cfg) if seq is None else seq
    past = past_context_warning(seq_used, cfg.block_size) if past_context(cfg, seq_used) else None
    # the fused loss and dropout come with the setup; torch.compile pads GEMM shapes (perf.op_kinds StepOptions)
    options = StepOptions(sustained_fraction=sustained or 0.0, gemm_shape_padding=compiled)
    if sustained is not None and not 0 < sustained <= 1:
        from ..errors import UsageError

        raise UsageError(f"--sustained must be in (0, 1], got {sustained}; 1 gives the unfitted roofline sum")
    if layout and compiled:
        from ..errors import UsageError

        raise UsageError("--compile is not modelled with a parallel layout (--tp/--pp/--interleave/--cp/--ep/"
                         "--sequence-parallel/--search/--global-batch/--network-gbps): the layout model prices each "
                         "engine's own kernels; drop --compile or the layout options")
    if layout:  # a parallel layout (issue 13): flopscalc/layout, rendered by report.layout
        from ..report.layout import layout_step

        if reduce_dtype is not None:
            from ..errors import UsageError

            raise UsageError("--reduce-dtype is not modelled with layout options (--tp/--pp/--cp/--ep/--search): the "
                             "layout model reduces as the layout's engine does (Megatron-LM's fp32 main gradients); "
                             "drop one of the two")

        layout = layout_step(cfg, setup, spec or get_gpu(gpu, gpu_csv or ()), tp=tp, pp=pp, interleave=interleave,
                             cp=cp, ep=ep, sequence_parallel=sequence_parallel, search=search,
                             global_batch=global_batch, network_gbps=network_gbps, sustained=sustained,
                             fused_loss=fused_loss, dropout=dropout, calibration=calibration)
        rendered, data, eager = layout
        moe = MOE_STEP_TIME_NOTE if cfg.is_moe else None  # the same line as plan's warning
        notes = [note, engine_note(LAYOUT_MODEL, data.get("engine")) if n_gpus > 1 else None, eager, moe, runtime]
        emit(*with_warnings(*with_notes(rendered, {**data, "step_model": LAYOUT_MODEL}, notes), [past]), as_json)
        return
    cpu = None
    if profile is not None:  # the fitted factors of the device it was measured on (perf/calibrate.py)
        from ..perf.calibrate import calibrated_step, cpu_time

        est = calibrated_step(cfg, setup, profile, spec, options)
        cpu = cpu_time(profile, est)  # a CPU profile fitted to process CPU seconds: its times are CPU seconds
    else:
        est = estimate_step(cfg, setup, spec, options)
    # on one GPU the two models price the same step; a profile's fitted factors have no layout twin
    engine = engine_note(PER_OPERATION_MODEL) if profile is None and n_gpus > 1 else None
    eager = eager_note(est)  # None when nothing is priced at the unaligned rate (--compile pads the shapes)
    same = ("--compile changes nothing the model prices at fp32 (no 16-bit GEMM to pad, the residual stream fp32 "
            "either way)" if compiled and setup.precision is MemoryPrecision.fp32 else None)
    data = {**step_dict(est), "compiled": compiled}
    if cpu is not None:  # what the seconds are, and the wall time they ran to while the profile was measured
        data.update(timing="process CPU", wall_per_cpu=cpu.wall_per_cpu, wall_step_s=cpu.wall_step_s,
                    wall_tokens_per_s=cpu.wall_tokens_per_s)
    moe = MOE_STEP_TIME_NOTE if cfg.is_moe else None  # the same line as plan's warning
    emit(*with_warnings(*with_notes(step_report(est, cpu), data, [note, engine, eager, same, moe, runtime]), [past]),
         as_json)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.command("step")(step)
