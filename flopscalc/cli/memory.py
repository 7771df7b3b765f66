"""`flopscalc memory`: training-memory breakdown, fit and largest micro-batch (issue 3)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..flops import Recompute
from ..memory.precision import MemoryPrecision
from ..memory.settings import DEFAULT_ALLOCATOR_OVERHEAD_FRACTION, Optimizer
from .bounds import GRAD_ACCUM_TYPE, MICRO_BATCH_TYPE
from .common import (
    BiasOpt,
    ExpertsOpt,
    FfnOpt,
    FusedLossOpt,
    GpuCsvOpt,
    GpuOpt,
    JsonOpt,
    KvHeadOpt,
    MlpOpt,
    ModelConfigOpt,
    NEmbdOpt,
    NGpusOpt,
    NHeadOpt,
    NLayerOpt,
    NormOpt,
    OffloadOpt,
    OptimizerOpt,
    ParamsOpt,
    PosOpt,
    PresetOpt,
    RecomputeOpt,
    SeqOpt,
    SharedExpertsOpt,
    TieOpt,
    TopKOpt,
    VocabOpt,
    ZeroOpt,
    check_optimizer_runs,
    check_zero_stage,
    model_from_options,
    storage_precision,
)
from .output import emit, with_notes


def memory(
    gpu: GpuOpt,
    model: PresetOpt = None,
    params: ParamsOpt = None,
    n_layer: NLayerOpt = None,
    n_head: NHeadOpt = None,
    n_embd: NEmbdOpt = None,
    config: ModelConfigOpt = None,
    vocab: VocabOpt = None, n_kv_head: KvHeadOpt = None, ffn: FfnOpt = None, mlp: MlpOpt = None,
    norm: NormOpt = None, pos: PosOpt = None, bias: BiasOpt = None, tie: TieOpt = None,
    experts: ExpertsOpt = None, top_k: TopKOpt = None, shared_experts: SharedExpertsOpt = None,
    micro_batch: Annotated[int, typer.Option(
        "--micro-batch", click_type=MICRO_BATCH_TYPE, help="Sequences per GPU per forward pass (sequences).")] = 1,
    seq: SeqOpt = None,
    precision: Annotated[MemoryPrecision | None, typer.Option(
        help="Storage precision: fp32, bf16/fp16 autocast with fp32 master weights, or pure bf16 (default: "
             "bf16-mixed, fp16-mixed on a card without BF16 such as V100 and T4).")
    ] = None,
    optimizer: OptimizerOpt = Optimizer.adamw,
    recompute: RecomputeOpt = Recompute.none,
    flash: Annotated[bool, typer.Option("--flash/--no-flash",
                                        help="Fused attention (no T x T scores saved) or spelled-out attention.")
                     ] = True,
    grad_accum: Annotated[int, typer.Option(
        "--grad-accum", click_type=GRAD_ACCUM_TYPE,
        help="Micro-batches accumulated per step; above 1 gradients stay allocated (count).")] = 1,
    n_gpus: NGpusOpt = 1,
    zero: ZeroOpt = 0,
    offload: OffloadOpt = False,
    cuda_context: Annotated[str | None, typer.Option(
        "--cuda-context", help="Memory the CUDA context takes outside PyTorch's allocator, e.g. 512MiB (bytes; "
                               "default 512MiB).")
    ] = None,
    allocator_overhead: Annotated[float | None, typer.Option(
        "--allocator-overhead", help="Caching-allocator overhead as a fraction of allocated memory (0-1; default "
                                     f"{DEFAULT_ALLOCATOR_OVERHEAD_FRACTION:g}).")
    ] = None,
    headroom: Annotated[float, typer.Option(help="Share of GPU memory to keep free when judging fit (0-1).")
                        ] = 0.0,
    dropout: Annotated[bool, typer.Option(
        "--dropout", help="Dropout layers on: their masks are saved for backward (Korthikanti et al. 2022, eq. 1).")
    ] = False,
    fused_loss: FusedLossOpt = False,
    gpu_csv: GpuCsvOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Training memory per GPU: what fills it, whether it fits, the largest micro-batch, what would make it fit."""
    from ..hardware import get_gpu
    from ..memory import TrainingSetup, answer
    from ..memory.workspace import gpu_setup_fields, no_cuda_runtime_note, runs_cuda
    from ..report.memory import memory_dict, memory_report
    from ..units import parse_bytes

    cfg = model_from_options(model, params, n_layer, n_head, n_embd, config, vocab, n_kv_head, ffn, mlp, norm, pos,
                             bias, tie, experts, top_k, shared_experts)
    spec = get_gpu(gpu, gpu_csv or ())
    precision, note = storage_precision(precision, spec)
    check_zero_stage(zero, n_gpus)
    check_optimizer_runs(optimizer, spec)  # bitsandbytes' 8-bit AdamW only where it runs
    if not runs_cuda(spec) and (cuda_context is not None or allocator_overhead is not None):
        from ..errors import UsageError

        given = " and ".join(f for f, v in (("--cuda-context", cuda_context), ("--allocator-overhead",
                                                                              allocator_overhead)) if v is not None)
        raise UsageError(f"{given} describe{'s' if ' and ' not in given else ''} PyTorch's CUDA runtime, which "
                         f"{spec.name} does not run (no CUDA context or caching allocator is counted there): drop "
                         f"{given}, or pick a CUDA GPU")
    cuda_context = "512MiB" if cuda_context is None else cuda_context
    allocator_overhead = DEFAULT_ALLOCATOR_OVERHEAD_FRACTION if allocator_overhead is None else allocator_overhead
    context_bytes = parse_bytes(cuda_context, what="--cuda-context", unit_required=True)
    if not 0 <= context_bytes <= spec.memory_bytes:  # echo what was typed, not the bytes it became
        from ..errors import UsageError
        from ..units import format_bytes

        raise UsageError(f"--cuda-context {cuda_context.strip()} is out of range: the CUDA context takes from 0 up to "
                         f"the GPU's whole memory ({spec.name}: {format_bytes(spec.memory_bytes)}); give a size such "
                         "as 512MiB")
    setup = TrainingSetup(micro_batch=micro_batch, seq_len=seq, precision=precision, optimizer=optimizer,
                          recompute=recompute, flash=flash, grad_accum=grad_accum, n_gpus=n_gpus, zero_stage=zero,
                          offload_optimizer=offload,
                          cuda_context_bytes=context_bytes,
                          allocator_overhead_fraction=allocator_overhead, dropout=dropout,
                          fused_loss=fused_loss, **gpu_setup_fields(spec))
    result = answer(cfg, setup, spec, headroom)
    emit(*with_notes(memory_report(result), memory_dict(result), [note, no_cuda_runtime_note(spec)]), as_json)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.command("memory")(memory)
