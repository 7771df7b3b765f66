"""`flopscalc finetune`: does full, LoRA or QLoRA fine-tuning fit this GPU, how long it takes, and what would fit (issue 15)."""

from __future__ import annotations

import math
from typing import Annotated

import typer

from ..finetune.adapters import Method, Quant
from ..memory.settings import Optimizer
from .bounds import GRAD_ACCUM_TYPE, MICRO_BATCH_TYPE, SEQ_TYPE
from .common import GpuCsvOpt, GpuOpt, JsonOpt, ModelConfigOpt
from .output import emit


def finetune(
    gpu: GpuOpt,
    dataset_tokens: Annotated[str, typer.Option(
        "--dataset-tokens", help="Tokens in the dataset, without padding, e.g. 50M (tokens).")],
    model: Annotated[str | None, typer.Option(
        help="Preset: llama-3.1-8b, mistral-7b, qwen2.5-7b, ... ('flopscalc models').")] = None,
    config: ModelConfigOpt = None,
    method: Annotated[Method | None, typer.Option(
        help="full (every weight), lora (frozen 16-bit base + adapters) or qlora (frozen 4-bit base + adapters). "
        "Default: the first of full, lora, qlora that fits with the other options as given (qlora when none does, "
        "with its fixes); "
        "--rank/--targets leave full out, --quant/--double-quant mean qlora.")
    ] = None,
    rank: Annotated[int | None, typer.Option(help="LoRA rank r (default 16); LoRA and QLoRA only.")] = None,
    targets: Annotated[str | None, typer.Option(
        help="Linears that get adapters: all-linear, or a comma list of q,k,v,o,gate,up,down (default all-linear).")
    ] = None,
    quant: Annotated[Quant | None, typer.Option(
        help="QLoRA base-weight format: nf4 (4-bit NormalFloat) or int8 (LLM.int8); default nf4.")] = None,
    double_quant: Annotated[bool | None, typer.Option(
        "--double-quant/--no-double-quant", help="Quantize NF4's block constants too (QLoRA; default on).")] = None,
    epochs: Annotated[float, typer.Option(help="Passes over the dataset.")] = 1.0,
    seq: Annotated[int, typer.Option(click_type=SEQ_TYPE, help="Tokens per sequence (tokens; default 512).")] = 512,
    micro_batch: Annotated[int, typer.Option(
        "--micro-batch", click_type=MICRO_BATCH_TYPE, help="Sequences per forward pass (sequences).")] = 1,
    grad_accum: Annotated[int, typer.Option(
        "--grad-accum", click_type=GRAD_ACCUM_TYPE,
        help="Micro-batches accumulated per optimizer step (count): the optimizer update, and a paged optimizer's "
        "paging, run once per step.")] = 1,
    packing: Annotated[bool, typer.Option(
        "--packing", help="Pack examples end to end into full sequences (no padding).")] = False,
    mean_sequence_tokens: Annotated[str | None, typer.Option(
        "--mean-sequence-tokens",
        help="Padded sequences: your examples' mean length (tokens); padding is 1 - mean / --seq.")] = None,
    optimizer: Annotated[str, typer.Option(
        help="Optimizer of the trainable parameters: adamw or adamw8bit.")] = "adamw",
    paged: Annotated[bool, typer.Option(
        "--paged", help="Paged optimizer: its state may spill to CPU memory (QLoRA sec. 3).")] = False,
    bf16_adapters: Annotated[bool, typer.Option(
        "--bf16-adapters", help="QLoRA's own recipe (qlora.py): adapters, and with QLoRA the embedding and LM head, "
        "in bf16; default: peft's fp32 adapters.")] = False,
    checkpointing: Annotated[bool, typer.Option(
        "--checkpointing/--no-checkpointing", help="Gradient checkpointing, one checkpoint per layer.")] = True,
    efficiency: Annotated[float | None, typer.Option(
        help="Stated fraction of the 16-bit peak (constant time model); default: per-operation model.")] = None,
    headroom: Annotated[float, typer.Option(help="Share of GPU memory to keep free (0-1).")] = 0.0,
    gpu_csv: GpuCsvOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tuning plan: whether full / LoRA / QLoRA fits, the breakdown, the largest batch and sequence, the time."""
    from rich.console import Group
    from rich.text import Text

    from ..errors import UsageError
    from ..finetune.adapters import TARGETS, parse_targets
    from ..finetune.backends import bitsandbytes_refusal, check_bitsandbytes
    from ..finetune.memory import DEFAULT_RANK, FinetuneSetup
    from ..finetune.plan import METHOD_ORDER, plan_finetune, with_method
    from ..hardware import Precision, get_gpu
    from ..model import resolve_model
    from ..report.finetune import finetune_dict, finetune_report
    from ..units import COUNT_BOUNDS, MAX_N_TOKENS, parse_count

    auto = method is None
    if auto:  # first plan at the lightest method the options allow; the cheapest that fits is chosen below
        method = Method.qlora
    if method is Method.full and (rank is not None or targets is not None):
        raise UsageError("--rank and --targets describe LoRA adapters; full fine-tuning trains every weight: drop "
                         "them or pick --method lora / qlora")
    if method is not Method.qlora and (quant is not None or double_quant is not None):
        raise UsageError("--quant and --double-quant describe QLoRA's frozen weights; use --method qlora or drop them")
    if quant is Quant.int8 and double_quant is not None:  # QLoRA sec. 3: double quantization is of NF4's constants
        raise UsageError("--double-quant / --no-double-quant quantize NF4's block constants; int8 (LLM.int8) has one "
                         "fp32 scale per row and none to quantize: drop it, or use --quant nf4")
    choices = (Optimizer.adamw.value, Optimizer.adamw8bit.value)
    if optimizer not in choices:
        import difflib

        typed = optimizer.strip().lower()
        near = [c for c in choices if c.startswith(typed)] if typed else []  # 'adam' -> adamw, 'adamw8' -> adamw8bit
        near = near or difflib.get_close_matches(typed, choices, n=1, cutoff=0.6)
        raise UsageError(f"--optimizer {optimizer!r} is not one of {', '.join(choices)}"
                         + (f"; did you mean --optimizer {near[0]}?" if near else ""))
    if model is None and config is None:
        raise UsageError("name the model: --model PRESET or --config config.json (e.g. data/configs/llama-3.1-8b.json)")
    cfg = resolve_model(model, config_file=config, ways=("model", "config"))
    setup = FinetuneSetup(
        method=method, rank=DEFAULT_RANK if rank is None else rank,
        targets=parse_targets(targets) if targets is not None else TARGETS,
        quant=quant or Quant.nf4, double_quant=quant is not Quant.int8 if double_quant is None else double_quant,
        micro_batch=micro_batch, seq_len=seq, grad_accum=grad_accum, optimizer=optimizer, paged=paged,
        bf16_adapters=bf16_adapters,
        recompute="full" if checkpointing else "none")
    mean = (parse_count(mean_sequence_tokens, what="--mean-sequence-tokens", kind="tokens")
            if mean_sequence_tokens is not None else None)
    spec = get_gpu(gpu, gpu_csv or ())
    if bf16_adapters and Precision.bf16 not in spec.available_precisions():
        raise UsageError(f"--bf16-adapters is qlora.py's bf16 recipe, and {spec.name} has no bf16 rate in the GPU "
                         "database (the plan runs fp16 there): drop --bf16-adapters")

    n_dataset_tokens = parse_count(dataset_tokens, what="--dataset-tokens", kind="tokens")
    n_processed = n_dataset_tokens * epochs  # a bad --epochs (<= 0, nan, inf) is the engine's one line
    if math.isfinite(epochs) and epochs > 0 and not n_processed <= MAX_N_TOKENS:  # the bound --dataset-tokens has
        n_epochs, processed, limit = (f"{x:.3g}".replace("e+", "e") for x in (epochs, n_processed, MAX_N_TOKENS))
        processed = processed if math.isfinite(n_processed) else "more than 1e308"  # past a float
        raise UsageError(f"--dataset-tokens {dataset_tokens} x --epochs {n_epochs} is {processed} tokens processed, "
                         f"too many: at most {limit} tokens ({COUNT_BOUNDS['tokens'][2]}); give fewer --epochs or a "
                         "smaller --dataset-tokens")

    # the options that ask for QLoRA, as typed: a refusal names them (--quant alone implies QLoRA)
    qlora_flags = tuple(f for f in ("--method qlora" if not auto and method is Method.qlora else "",
                                    f"--quant {quant.value}" if quant is not None else "",
                                    ("--double-quant" if double_quant else "--no-double-quant")
                                    if double_quant is not None else "") if f)
    if setup.method is Method.qlora and qlora_flags:
        check_bitsandbytes(setup.method, setup.optimizer, setup.paged, spec, qlora_flags)

    def planned(s: FinetuneSetup):
        return plan_finetune(cfg, s, spec, n_dataset_tokens=n_dataset_tokens,
                             n_epochs=epochs, packing=packing, mean_sequence_tokens=mean,
                             efficiency=efficiency, headroom=headroom)

    # full > lora > qlora in memory, so the first that fits among those the options allow is the answer
    allowed = ((Method.qlora,) if quant is not None or double_quant is not None else
               (Method.lora, Method.qlora) if rank is not None or targets is not None else METHOD_ORDER)
    if auto and len(allowed) > 1 and bitsandbytes_refusal(Method.qlora, Optimizer.adamw, False, spec):
        allowed = tuple(m for m in allowed if m is not Method.qlora)  # no bitsandbytes there: QLoRA cannot run
        setup = with_method(setup, allowed[-1])
    try:
        plan = planned(setup)
    except UsageError:
        if not (auto and Method.full in allowed):
            raise
        allowed = (Method.full,)  # adapters are not modelled for this block (e.g. GPT-2's fused layers)
        plan = planned(with_method(setup, Method.full))
    if auto:
        choice = plan.cheapest_method
        if choice is not None and choice not in allowed:
            choice = allowed[0]
        if choice is not None and choice is not setup.method:
            plan = planned(with_method(setup, choice))
    note = None
    if auto:
        considered = ", ".join(m.value for m in allowed)
        skipped = {t.method: t.skipped for t in plan.method_trials if t.skipped is not None}
        removed = skipped.get(Method.qlora) if Method.qlora not in allowed and Method.lora in allowed else None
        note = (f"method {plan.setup.method.value}: " + (
            "adapters are not modelled for this block, so full fine-tuning" if allowed == (Method.full,) else
            f"the first of {considered} that fits with these settings" if plan.fits else
            f"none of {considered} fits with these settings, so the plan shows the lightest, "
            f"{plan.setup.method.value}, and what would make it fit")
            + (f" (qlora: {removed})" if removed else "") + " (--method to ask for one)")
    data = finetune_dict(plan) | {"method_chosen_automatically": auto}
    emit(finetune_report(plan) if note is None else Group(Text(note), finetune_report(plan)), data, as_json)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.command("finetune")(finetune)
