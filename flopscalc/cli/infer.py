"""`flopscalc infer`: prefill and decode time, KV cache, what fits, tokens/s and cost of serving a model (issue 16)."""

from __future__ import annotations

from typing import Annotated

import typer

from .bounds import MICRO_BATCH_TYPE
from .common import (
    BiasOpt,
    ExpertsOpt,
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
    PresetOpt,
    ServerGpuOpt,
    SharedExpertsOpt,
    TieOpt,
    TopKOpt,
    VocabOpt,
    arch_options,
)
from .output import emit, with_notes

CPU_NAMES = ("cpu", "host")
# Tokens generated per sequence when --gen is not given: the shortest output length of TensorRT-LLM's
# performance tables (docs/source/performance.md: outputs of 128 and 2048 tokens), a short chat answer.
DEFAULT_GEN_TOKENS = 128
# The engine's formats (perf/inference.py WeightFormat, KvFormat), spelled here so that start-up does not import
# the performance model; the command checks a value against the engine's enum before using it.
WEIGHT_CHOICES = ("bf16", "fp16", "fp8", "int8", "int4")
KV_CHOICES = ("bf16", "fp16", "fp8", "int8")
# Contexts written with a k suffix count in units of 1024 tokens, as model cards do ("8K context" is 8192
# positions: Llama 3 8B config.json max_position_embeddings 8192; Mistral 7B's "32k" is 32768).
CONTEXT_K = 1024


def parse_context(text: str) -> int:
    """Tokens from ``8192``, ``8k`` (8 x 1024, `CONTEXT_K`) or ``32K``; UsageError otherwise."""
    from ..errors import UsageError

    s = str(text).strip().lower().replace("_", "").replace(",", "")
    digits = s.removesuffix("k")
    if not digits.isdigit() or int(digits) < 1:
        raise UsageError(f"cannot read --context {text!r}: give a whole number of tokens, at least 1, or a number "
                         "with k (units of 1024 tokens), e.g. 4096 or 8k")
    from .bounds import SEQ_TYPE

    return SEQ_TYPE.check(int(digits) * (CONTEXT_K if s.endswith("k") else 1), text, "--context")


def _choice(enum, value: str, option: str):
    """``value`` as a member of ``enum``; UsageError naming the accepted values otherwise."""
    from ..errors import UsageError

    try:
        return enum(value.strip().lower())
    except ValueError:
        raise UsageError(f"{option} {value!r} is not accepted; choose one of "
                         f"{', '.join(m.value for m in enum)}") from None


def infer(
    gpu: ServerGpuOpt,
    context: Annotated[str, typer.Option(
        help="Prompt tokens per sequence: a whole number or k units of 1024 (8k = 8192).")],
    model: PresetOpt = None,
    n_layer: NLayerOpt = None,
    n_head: NHeadOpt = None,
    n_embd: NEmbdOpt = None,
    config: ModelConfigOpt = None,
    vocab: VocabOpt = None, n_kv_head: KvHeadOpt = None, ffn: FfnOpt = None, mlp: MlpOpt = None,
    norm: NormOpt = None, pos: PosOpt = None, bias: BiasOpt = None, tie: TieOpt = None,
    experts: ExpertsOpt = None, top_k: TopKOpt = None, shared_experts: SharedExpertsOpt = None,
    batch: Annotated[int, typer.Option(click_type=MICRO_BATCH_TYPE, help="Sequences served together (count).")] = 1,
    gen: Annotated[int, typer.Option(
        help=f"Tokens generated per sequence (count; default {DEFAULT_GEN_TOKENS}); the first comes from the prefill.")
    ] = DEFAULT_GEN_TOKENS,
    weights: Annotated[str | None, typer.Option(
        help="Storage of the linear weights: bf16, fp16, fp8 (FP8 GEMMs), int8 or int4 (weight-only); default bf16, "
             "fp16 on a card without BF16 such as V100 and T4.")
    ] = None,
    kv: Annotated[str | None, typer.Option(
        help="Storage of the KV cache: bf16, fp16, fp8 or int8 (default: 16-bit, as the activations).")] = None,
    int4_group: Annotated[int | None, typer.Option(
        "--int4-group", help="Inputs per scale and zero of int4 weights (count; default 128).")] = None,
    usd_per_gpu_hour: Annotated[float | None, typer.Option(
        "--usd-per-gpu-hour", help="Price of the GPU for one hour, for the cost per million tokens. (USD)")] = None,
    gpu_csv: GpuCsvOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Prefill and decode time, tokens/s, KV cache and memory, the largest batch and context, and cost per token."""
    from ..errors import DomainError, UsageError
    from ..hardware import PRECISION_HELP, get_gpu
    from ..memory.workspace import no_cuda_runtime_note, runs_cuda
    from ..model import resolve_model
    from ..perf.inference import (
        COMPUTE_PRECISION,
        DEFAULT_INT4_GROUP,
        InferenceSetup,
        KvFormat,
        WeightFormat,
        estimate_inference,
    )
    from ..report.infer import infer_dict, infer_report

    if gpu.strip().lower() in CPU_NAMES:
        raise DomainError("the inference model has no sourced per-operation efficiencies for CPUs; "
                          "pick a GPU from 'flopscalc gpus'")
    spec = get_gpu(gpu, gpu_csv or ())
    have = spec.available_precisions()
    note = None
    if weights is None:  # bf16, or fp16 where the card has no BF16 rate (as plan's training precision falls back)
        weights = WeightFormat.bf16 if COMPUTE_PRECISION[WeightFormat.bf16] in have else WeightFormat.fp16
        if weights is not WeightFormat.bf16:
            note = f"{spec.name} has no bf16 rate in the GPU database, so the weights are fp16; choose with --weights"
    else:
        weights = _choice(WeightFormat, weights, "--weights")
    if COMPUTE_PRECISION[weights] not in have:
        usable = [w.value for w in WeightFormat if COMPUTE_PRECISION[w] in have]
        raise DomainError(f"{spec.name} has no {PRECISION_HELP[COMPUTE_PRECISION[weights]]} rate in the GPU database "
                          f"for --weights {weights.value}'s GEMMs; accepted on this card: {', '.join(usable) or 'none'}")
    kv = _choice(KvFormat, kv, "--kv") if kv is not None else None
    if int4_group is not None and weights is not WeightFormat.int4:
        raise UsageError(f"--int4-group applies to int4 weights only (got --weights {weights.value}); "
                         "add --weights int4 or drop --int4-group")
    cfg = resolve_model(model, n_layer=n_layer, n_head=n_head, n_embd=n_embd, config_file=config,
                        ways=("model", "config", "shape"),  # no --params
                        arch=arch_options(vocab, n_kv_head, ffn, mlp, norm, pos, bias, tie, experts, top_k,
                                          shared_experts))
    setup = InferenceSetup(batch=batch, context=parse_context(context), gen=gen, weights=weights, kv=kv,
                           int4_group=DEFAULT_INT4_GROUP if int4_group is None else int4_group, usd_per_gpu_hour=usd_per_gpu_hour,
                           cuda_runtime=runs_cuda(spec))  # memory/step/finetune's rule (memory.workspace)
    est = estimate_inference(cfg, setup, spec)
    emit(*with_notes(infer_report(est), infer_dict(est), [note, no_cuda_runtime_note(spec)]), as_json)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.command("infer")(infer)
