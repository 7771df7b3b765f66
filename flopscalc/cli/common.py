"""Pieces shared by the command modules: common options and the checks on them that no engine makes. The bounds on
whole-number options are in `bounds.py`, standard output (`emit`, the console, the progress bar) in `output.py`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .bounds import (
    GRAD_ACCUM_TYPE,
    MICRO_BATCH_TYPE,
    N_EMBD_TYPE,
    N_EXPERT_TYPE,
    N_HEAD_TYPE,
    N_KV_HEAD_TYPE,
    N_LAYER_TYPE,
    SEQ_TYPE,
    VOCAB_TYPE,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
GpuCsvOpt = Annotated[
    list[Path] | None,
    typer.Option("--gpu-csv", help="Extra GPU CSV (same columns as data/gpu_specs.csv) that adds or overrides rows."),
]
# ---- the model's architecture (issue 12), shared by flops, memory and step; None = as the named model has it
ModelConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="A Hugging Face config.json, read offline (model_type gpt2, gpt_neox, llama, mistral, mixtral, "
    "qwen2, qwen2_moe, gemma, olmo, olmo2, phi3). Shape and architecture options given with it override the "
    "file's values, and the model's name lists each override.")]
NLayerOpt = Annotated[int | None, typer.Option("--n-layer", click_type=N_LAYER_TYPE, help="Explicit shape: layers.")]
NHeadOpt = Annotated[int | None, typer.Option(
    "--n-head", click_type=N_HEAD_TYPE, help="Explicit shape: attention heads.")]
NEmbdOpt = Annotated[int | None, typer.Option("--n-embd", click_type=N_EMBD_TYPE, help="Explicit shape: width.")]
VocabOpt = Annotated[int | None, typer.Option(
    "--vocab", click_type=VOCAB_TYPE, help="Vocabulary size (tokens; GPT-2: 50257).")]
KvHeadOpt = Annotated[int | None, typer.Option(
    "--n-kv-head", click_type=N_KV_HEAD_TYPE,
    help="Key/value heads: as many as --n-head is multi-head, 1 multi-query, between grouped-query.")]
FfnOpt = Annotated[int | None, typer.Option(
    "--ffn", click_type=N_EMBD_TYPE,
    help="MLP hidden width d_ff (units; GPT-2: 4 x width); with --experts the width of each expert.")]
BiasOpt = Annotated[bool | None, typer.Option("--bias/--no-bias", help="Biases in every linear and LayerNorm.")]
TieOpt = Annotated[bool | None, typer.Option("--tie/--untie", help="LM head tied to the token embedding or not.")]
ExpertsOpt = Annotated[int | None, typer.Option(
    "--experts", click_type=N_EXPERT_TYPE,
    help="Routed experts per MLP (mixture of experts; 0 = dense). Needs --top-k.")]
TopKOpt = Annotated[int | None, typer.Option(
    "--top-k", click_type=N_EXPERT_TYPE, help="Experts each token is routed to.")]
SharedExpertsOpt = Annotated[int | None, typer.Option(
    "--shared-experts", click_type=N_EXPERT_TYPE, help="Experts every token uses besides its routed ones (count).")]
# ---- the model and the training setup, shared by flops, memory, step, infer, plan, scaling hparams, plot, train
PresetOpt = Annotated[str | None, typer.Option(
    "--model", help="Preset: gpt2 ... gpt2-xl, llama-3.1-8b, mixtral-8x7b, pythia-1b, ... ('flopscalc models').")]
ParamsOpt = Annotated[str | None, typer.Option(
    "--params", help="Target parameter count, e.g. 350M; shaped by rule.")]
SeqOpt = Annotated[int | None, typer.Option(
    "--seq", click_type=SEQ_TYPE,
    help="Training sequence length (tokens; default: the model's pretraining length where its source states one, "
         "else its context).")]
MicroBatchOpt = Annotated[int, typer.Option(
    "--micro-batch", click_type=MICRO_BATCH_TYPE, help="Sequences per GPU per forward pass.")]
GradAccumOpt = Annotated[int, typer.Option(
    "--grad-accum", click_type=GRAD_ACCUM_TYPE, help="Micro-batches accumulated per step.")]
NGpusOpt = Annotated[int, typer.Option("--n-gpus", help="Data-parallel GPUs (count).")]
ZeroOpt = Annotated[int, typer.Option("--zero", help="ZeRO stage 0-3 (FSDP full sharding = 3).")]
OffloadOpt = Annotated[bool, typer.Option("--offload", help="Offload optimizer state to CPU (ZeRO-Offload).")]
FusedLossOpt = Annotated[bool, typer.Option(
    "--fused-loss", help="One kernel for cross-entropy on the 16-bit logits (flash-attn's, llm-foundry's default; "
                         "llm.c): no fp32 log-probabilities. Default: PyTorch's F.cross_entropy.")]
ReduceDtypeOpt = Annotated[str | None, typer.Option(
    "--reduce-dtype", help="dtype gradients cross the network in under bf16-/fp16-mixed with ZeRO 1-3: fp32, or the "
                           "weights' 16-bit dtype (bf16 or fp16). Default: fp32 at ZeRO 3 (FSDP as 'flopscalc train' "
                           "and torchtitan run it), 16-bit at ZeRO 1-2 (DeepSpeed).")]
UtilizationOpt = Annotated[float, typer.Option(
    "--utilization", help="Duty cycle: share of wall-clock time the GPUs are busy training. (0-1)")]


def _gpu_opt(examples: str):
    """The --gpu option, with the example names a command's users most likely have."""
    return Annotated[str, typer.Option("--gpu", help=f"GPU name, forgiving spelling: {examples}.")]


GpuOpt = _gpu_opt("4070ti, 'RTX 4090', h100")  # memory, finetune
PlanGpuOpt = _gpu_opt("4070ti, 'RTX 4090', h100, a100-80gb")  # plan
ServerGpuOpt = _gpu_opt("a100-80gb, h100, 4090")  # step, infer


def __getattr__(name: str):
    """Options typed by an engine's enum, built on first use (PEP 562) and kept, so that commands without them
    (gpus, models, runs, scaling) do not import the model, FLOPs and memory engines at start-up."""
    if name == "MlpOpt":
        from ..model.config import Mlp

        option = Annotated[Mlp | None, typer.Option(
            "--mlp", help="MLP kind: gelu (2 matrices, GPT-2) or swiglu / geglu (3 matrices, Llama / Gemma).")]
    elif name == "NormOpt":
        from ..model.config import Norm

        option = Annotated[Norm | None, typer.Option(
            "--norm", help="Normalisation: layernorm (GPT-2), rmsnorm (Llama), layernorm_plain (no gain or bias, OLMo).")]
    elif name == "PosOpt":
        from ..model.config import Position

        option = Annotated[Position | None, typer.Option(
            "--pos", help="Position scheme: learned (a table; --seq at most the context), rope, alibi or none.")]
    elif name == "RecomputeOpt":
        from ..flops import Recompute

        option = Annotated[Recompute, typer.Option("--recompute", help="Activation recomputation.")]
    elif name == "OptimizerOpt":
        from ..memory.settings import Optimizer

        option = Annotated[Optimizer, typer.Option("--optimizer", help="Optimizer whose state sits beside the weights.")]
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = option  # one declaration, shared by every command that imports it
    return option


def arch_options(vocab=None, n_kv_head=None, ffn=None, mlp=None, norm=None, pos=None, bias=None, tie=None,
                 experts=None, top_k=None, shared_experts=None) -> dict:
    """The architecture options as `flopscalc.model.with_architecture` names them (None = not given)."""
    return {"vocab": vocab, "n_kv_head": n_kv_head, "ffn": ffn, "mlp": mlp, "norm": norm, "pos": pos, "bias": bias,
            "tie": tie, "experts": experts, "top_k": top_k, "shared_experts": shared_experts}


def model_from_options(model, params, n_layer, n_head, n_embd, config, vocab=None, n_kv_head=None, ffn=None, mlp=None,
                       norm=None, pos=None, bias=None, tie=None, experts=None, top_k=None, shared_experts=None):
    """The `ModelConfig` the shape options of `flops`, `memory` and `step` describe (`flopscalc.model.resolve_model`):
    a preset, ``--params`` (a count such as 1.5B), explicit shape flags or a config.json, then the architecture
    options on top."""
    from ..model import resolve_model
    from ..units import parse_count

    n_params = parse_count(params, what="--params", kind="params") if params is not None else None
    return resolve_model(model, n_params=n_params,
                         n_layer=n_layer, n_head=n_head, n_embd=n_embd, config_file=config,
                         arch=arch_options(vocab, n_kv_head, ffn, mlp, norm, pos, bias, tie, experts, top_k,
                                           shared_experts))


def refuse_together(**given: bool) -> None:
    """UsageError when two or more of the named options are given together (``--csv`` and ``--json``...)."""
    from ..errors import UsageError

    names = [name for name, on in given.items() if on]
    if len(names) > 1:
        raise UsageError(f"{' and '.join(names)} cannot be used together; choose one output")


def parser_exception(name: str) -> type[Exception]:
    """One of the parser's exception classes by name: typer's vendored click (typer 0.26 on), else click itself
    (pyproject allows typer 0.19, which imports click and has no typer._click)."""
    try:
        from typer._click import exceptions
    except ImportError:  # typer before it vendored click
        from click import exceptions
    return getattr(exceptions, name)


class ListingGroup(typer.core.TyperGroup):
    """typer's group whose unknown-command error lists the commands when typer has no near match to suggest:
    "No such command 'allocate'; the commands are laws, optimal, ... (flopscalc scaling --help)"."""

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except parser_exception("UsageError") as e:
            if e.message.startswith("No such command") and "Did you mean" not in e.message:
                names = ", ".join(self.list_commands(ctx))
                e.message = f"{e.message.rstrip('.')}; the commands are {names} ({ctx.command_path} --help)"
            raise


def check_seq(seq: int | list[int] | None) -> None:
    """UsageError for a --seq below 1 (one value, or each of a repeated option's): where a command falls back to the
    model's default with ``seq or default``, 0 would otherwise become that default without a word."""
    from ..errors import UsageError

    for value in seq if isinstance(seq, (list, tuple)) else [seq]:
        if value is not None and value < 1:
            raise UsageError(f"--seq must be a positive whole number of tokens, got {value}; e.g. --seq 1024")


def parse_inference_tokens(text: str | None) -> float | None:
    """--inference-tokens as a count (None when not given); UsageError for a value that is not a positive number of
    tokens, worded the same by every command that takes it (`plan`, `scaling optimal`): 0 served tokens is the
    compute-optimal model, which leaving the option out already gives."""
    from ..errors import UsageError
    from ..units import parse_count

    if text is None:
        return None
    t = parse_count(text, what="--inference-tokens", kind="tokens")
    if not t > 0:
        raise UsageError(f"--inference-tokens must be a positive number of tokens, e.g. 2T, got {text}"
                         "; leave it out for the compute-optimal model alone")
    return t


def refuse_empty(**given: str | None) -> None:
    """UsageError for a text option given as '' (``--family ''``): where the engine reads '' as "the default",
    an empty value would otherwise be dropped silently. Keys are the option names, as in `refuse_together`."""
    from ..errors import UsageError

    for name, value in given.items():
        if value is not None and not value.strip():
            raise UsageError(f"{name} is empty; give a value (see --help) or leave {name} out for its default")


# What each ZeRO stage partitions: stage 1 the optimizer state, 2 adds the gradients, 3 the parameters
ZERO_SHARDS = {1: "the optimizer state", 2: "the optimizer state and gradients",  # Rajbhandari et al. 2020, sec. 5
               3: "the optimizer state, gradients and weights"}


def check_zero_stage(zero_stage: int, n_gpus: int) -> None:
    """Refuse ``--zero 1-3`` on one GPU: ZeRO partitions the model states across the data-parallel ranks
    (Rajbhandari et al. 2020, sec. 5), so over one rank it shards nothing; the estimate would only move because
    stages 1-3 are priced in DeepSpeed's mixed-precision layout (16-bit weights, fp32 master copy) rather than
    PyTorch AMP's, which is not what the option asks for. The planner searches stage 0 on one GPU for the same
    reason (`planner.setups`). An out-of-range stage is refused first, so its message does not suggest more GPUs
    that would not help."""
    from ..errors import UsageError

    if zero_stage not in (0, 1, 2, 3):  # the stages of Rajbhandari et al. 2020, sec. 5 (as TrainingSetup checks)
        raise UsageError(f"ZeRO stage must be 0, 1, 2 or 3, got {zero_stage} "
                         "(FSDP FULL_SHARD is stage 3, SHARD_GRAD_OP stage 2)")
    if zero_stage > 0 and n_gpus == 1:
        sharded = ZERO_SHARDS[zero_stage]
        raise UsageError(f"--zero {zero_stage} shards {sharded} across GPUs; with --n-gpus 1 there is no other GPU to "
                         f"shard {'it' if zero_stage == 1 else 'them'} across: drop --zero, or give --n-gpus 2 or more "
                         "(--offload moves the optimizer state off one GPU)")


def reduce_fp32_option(given: str | None, precision, zero_stage: int, n_gpus: int) -> bool | None:
    """``TrainingSetup.reduce_fp32`` from ``--reduce-dtype``: None when not given; refused where the choice is not
    used (no mixed precision, or no ZeRO stage: the gradients then cross the network in their own dtype; one GPU:
    none cross it) and where the 16-bit dtype named is not the weights' (the 16-bit reduction is in the dtype
    autocast computes them in)."""
    from ..errors import UsageError

    if given is None:
        return None
    word = given.strip().lower()
    if word not in ("fp32", "bf16", "fp16"):
        raise UsageError(f"--reduce-dtype {given!r} is not a reduction dtype; use fp32, bf16 or fp16")
    from ..memory.precision import MATMUL_PRECISION
    from ..memory.settings import reduce_dtype_used

    if not reduce_dtype_used(precision, zero_stage):
        raise UsageError(f"--reduce-dtype chooses how ZeRO 1-3 reduces the gradients of mixed precision; at "
                         f"--precision {precision.value} with --zero {zero_stage} they cross the network in their own "
                         "dtype, so it would be ignored: drop it, or add --zero 1-3 under bf16-mixed or fp16-mixed")
    if n_gpus < 2:
        raise UsageError(f"--reduce-dtype chooses the dtype gradients cross the network in; with --n-gpus {n_gpus} "
                         "none cross it, so it would be ignored: drop it, or give --n-gpus 2 or more")
    if word == "fp32":
        return True
    half = MATMUL_PRECISION[precision].value  # the weights' 16-bit dtype: bf16-mixed -> bf16
    if word != half:
        raise UsageError(f"--reduce-dtype {word} under --precision {precision.value}: a 16-bit reduction is in the "
                         f"weights' 16-bit dtype, {half}; use --reduce-dtype {half} or fp32")
    return False


def storage_precision(given, gpu, *, needs_rate: bool = False) -> tuple:
    """`memory.precision.storage_precision`: the precision given, or the one plan would pick on ``gpu``, with a note
    (imported on first use: start-up)."""
    from ..memory.precision import storage_precision as pick

    return pick(given, gpu, needs_rate=needs_rate)


def conflicting_options(command, argv: list[str]) -> str | None:
    """The first option given twice with different values, or both halves of a flag pair, or a repeatable option
    given the same value twice; None when there is none.

    The parser keeps the last of ``--days 1 --days 2`` and of ``--causal --dense`` without a word, and keeps both of
    ``--flops 1e20 --flops 1e20`` (one curve drawn twice, one setup timed twice); flopscalc refuses all three instead
    (one line, exit 2); `refuse_repeated` catches two spellings of one value once they are read. Walks ``argv`` down the command tree as the parser does; options it
    does not know are left to the parser's own error.
    """
    seen: dict[str, tuple[str, object]] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            break
        if token.startswith("--"):
            name, has_inline, inline = token.partition("=")
            option = next((p for p in getattr(command, "params", ()) if name in (*getattr(p, "opts", ()),
                                                                                 *getattr(p, "secondary_opts", ()))),
                          None)
            if option is not None and not getattr(option, "multiple", False) and not getattr(option, "count", False):
                if getattr(option, "is_flag", False):
                    value: object = name in option.opts
                else:
                    value = inline if has_inline else (argv[i + 1] if i + 1 < len(argv) else None)
                    i += 0 if has_inline else 1
                earlier = seen.get(option.name)
                if earlier is not None and earlier[1] != value:
                    if isinstance(value, bool):
                        return f"{earlier[0]} and {name} contradict each other; give one of them"
                    return f"{name} is given twice ({earlier[1]} and {value}); give it once"
                seen[option.name] = (name, value)
            elif option is not None and getattr(option, "multiple", False):  # a repeatable option's value
                value = inline if has_inline else (argv[i + 1] if i + 1 < len(argv) else None)
                i += 0 if has_inline else 1
                if value is not None:
                    key = ("repeat", option.name, value.strip())
                    if key in seen:
                        return f"{name} {value.strip()} is given twice; give each value once"
                    seen[key] = (name, value)
            elif option is not None and not getattr(option, "is_flag", False) and not has_inline:
                i += 1
        elif not token.startswith("-") and token in getattr(command, "commands", {}):
            command, seen = command.commands[token], {}
        i += 1
    return None


def refuse_repeated(option: str, given: list, values: list) -> None:
    """UsageError when two values of a repeatable ``option`` are one value read two ways (``--flops 1e20 --flops
    100e18``, ``--model gpt2 --model small``): ``given`` as typed, ``values`` as read (same order)."""
    from ..errors import UsageError

    first: dict = {}
    for typed, value in zip(given, values):
        if value in first:
            raise UsageError(f"{option} {first[value]} and {option} {typed} name the same value; give each value once")
        first[value] = typed


def given_on_command_line(ctx: typer.Context, *names: str) -> list[str]:
    """The options among ``names`` (parameter names) that the user typed, as they are spelled (``--n-gpus``)."""
    params = {p.name: p for p in ctx.command.params}
    return [params[n].opts[0] for n in names
            if getattr(ctx.get_parameter_source(n), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")]


def refuse_unused(ctx: typer.Context, needs: str, names: tuple[str, ...], why: str) -> None:
    """UsageError when any option in ``names`` was typed although ``needs`` (another option) was not given."""
    from ..errors import UsageError

    unused = given_on_command_line(ctx, *names)
    if unused:
        raise UsageError(f"{' and '.join(unused)} would be ignored without {needs} ({why}); add {needs} or drop "
                         f"{'them' if len(unused) > 1 else 'it'}")


def check_optimizer_runs(optimizer, spec) -> None:
    """Refuse ``--optimizer`` (a `memory.settings.Optimizer`) on ``spec`` (a `hardware.GpuSpec`, or None: no GPU
    named) where bitsandbytes, which provides it, does not run (`memory.workspace.runs_bitsandbytes_optimizers`),
    with finetune's line (`finetune.backends.bitsandbytes_refusal`)."""
    from ..memory.workspace import BITSANDBYTES_OPTIMIZERS, runs_bitsandbytes_optimizers

    if spec is None or optimizer not in BITSANDBYTES_OPTIMIZERS or runs_bitsandbytes_optimizers(spec):
        return
    from ..finetune.adapters import Method
    from ..finetune.backends import check_bitsandbytes

    check_bitsandbytes(Method.full, optimizer, False, spec)
