"""Pieces shared by the command modules: common options, the JSON-or-table emitter, the stderr progress bar."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

# ---- upper bounds on whole-number options: sanity bounds, not physics, far beyond any model or run made, that keep
# every product the engines form (bytes, FLOPs, steps) finite and printable. A value past one is refused in one line
# (`AtMost`); each names what it is measured against.
# Sequences per GPU per forward pass: ~500x the whole global batch of Llama 3 405B, 2,048 sequences of 8,192 tokens
# (16M tokens; Llama 3 Herd of Models, Dubey et al. 2024, sec. 3.4.1).
MAX_MICRO_BATCH = 1_000_000
# Micro-batches accumulated per step: the same global batch taken one sequence at a time is 2,048 micro-batches.
MAX_GRAD_ACCUM = 1_000_000
# Layers: 100x DeepNet's 1,000 (Wang et al. 2022, "DeepNet: Scaling Transformers to 1,000 Layers"), the deepest
# published transformer.
MAX_N_LAYER = 100_000
# Attention heads (query or key/value): ~800x Llama 3 405B's 128 (Dubey et al. 2024, Table 3).
MAX_N_HEAD = 100_000
# Width and MLP width: ~40x the 25,600 width of Megatron-LM's 1T model (Narayanan et al. 2021, Table 1); d_ff
# (4x that, 102,400) is within it too.
MAX_N_EMBD = 1_000_000
# Vocabulary: ~400x the 256k-token vocabulary of Gemma (Gemma Team 2024, sec. 2), the largest of a released model.
MAX_VOCAB = 100_000_000
# Tokens per sequence (--seq, --context): 10x the 10M-token context of Llama 4 Scout (Meta AI, "The Llama 4 herd",
# 2025-04-05), the longest of a released model (the same source as `perf.inference.formats.MAX_GEN_TOKENS`).
MAX_SEQ_TOKENS = 100_000_000
# Experts per MLP: ~10x the 1,048,576 of PEER (He 2024, "Mixture of A Million Experts").
MAX_N_EXPERT = 10_000_000
# Random seed: numpy's global generator takes 0 to 2**32 - 1 ("Seed must be between 0 and 2**32 - 1", numpy
# `np.random.seed`, a 32-bit unsigned integer); torch.manual_seed takes a wider 64-bit range, so numpy's binds.
MAX_SEED = 2**32 - 1
# Steps between validation passes or checkpoints: ~1,000x the ~1M optimizer steps of Llama 3 405B's pretraining
# (15.6T tokens at up to 16M tokens per step; Dubey et al. 2024, sec. 3.4.1).
MAX_STEP_INTERVAL = 1_000_000_000
# Micro-batches per validation pass: as many as one step may accumulate (`MAX_GRAD_ACCUM`).
MAX_EVAL_BATCHES = MAX_GRAD_ACCUM


def _click_types():
    """The parser's types module: typer's vendored click (typer 0.26 on), else click (as `parser_exception`)."""
    try:
        from typer._click import types
    except ImportError:  # typer before it vendored click
        from click import types
    return types


class AtMost(_click_types().IntParamType):
    """A whole-number option with an upper bound: past ``at_most`` a one-line UsageError that says the bound, what it
    is measured against and what to do (``--micro-batch 99999999999999999999999`` printed a peak of
    84088640213012692598784 GiB and exited 0). Lower bounds stay with the engines, which say them per option, except
    ``at_least`` for a model's shape, whose engine check speaks in field names ("model n_layer must be a positive
    integer") that no option of the command line has."""

    def __init__(self, at_most: int, unit: str, reason: str, at_least: int | None = None) -> None:
        self.at_most, self.unit, self.reason, self.at_least = at_most, unit, reason, at_least

    def convert(self, value, param, ctx):
        n = super().convert(value, param, ctx)
        return self.check(n, value, param.opts[0] if param is not None and param.opts else "the value")

    def check(self, n: int, value: object, option: str) -> int:
        """``n`` (read from ``value`` as the user wrote it) if it is within the bounds; the one-line UsageError
        otherwise. Options read by their own parser (``infer --context 8k``) call it with the number they read."""
        if n > self.at_most:
            from ..errors import UsageError

            raise UsageError(f"{option} {value} is too large: at most {self.at_most:,} {self.unit} ({self.reason}); "
                             f"give a smaller {option}")
        if self.at_least is not None and n < self.at_least:
            from ..errors import UsageError

            raise UsageError(f"{option} {value} is too small: give {option} from {self.at_least} to "
                             f"{self.at_most:,} {self.unit}")
        return n


MICRO_BATCH_TYPE = AtMost(MAX_MICRO_BATCH, "sequences", "about 500x Llama 3 405B's whole global batch")
GRAD_ACCUM_TYPE = AtMost(MAX_GRAD_ACCUM, "micro-batches", "about 500x Llama 3 405B's global batch, one sequence each")
N_LAYER_TYPE = AtMost(MAX_N_LAYER, "layers", "100x the deepest published transformer, DeepNet's 1,000", at_least=1)
N_HEAD_TYPE = AtMost(MAX_N_HEAD, "heads", "about 800x Llama 3 405B's 128", at_least=1)
# --n-kv-head's lower bound is the model's (`option_words.kv_head_words`: which counts divide the heads)
N_KV_HEAD_TYPE = AtMost(MAX_N_HEAD, "heads", "about 800x Llama 3 405B's 128")
N_EMBD_TYPE = AtMost(MAX_N_EMBD, "units", "about 40x the widest published model, Megatron-LM 1T's 25,600", at_least=1)
VOCAB_TYPE = AtMost(MAX_VOCAB, "tokens", "about 400x Gemma's 256k", at_least=1)
SEQ_TYPE = AtMost(MAX_SEQ_TOKENS, "tokens", "10x the longest released context, Llama 4 Scout's 10M")
# a model's context length: the same bound as a sequence, and at least one position
BLOCK_SIZE_TYPE = AtMost(MAX_SEQ_TOKENS, "tokens", "10x the longest released context, Llama 4 Scout's 10M", at_least=1)
SEED_TYPE = AtMost(MAX_SEED, "(2**32 - 1)", "numpy's seed range, a 32-bit unsigned integer", at_least=0)
STEP_INTERVAL_TYPE = AtMost(MAX_STEP_INTERVAL, "steps", "about 1,000x Llama 3 405B's ~1M optimizer steps")
EVAL_BATCHES_TYPE = AtMost(MAX_EVAL_BATCHES, "micro-batches", "as many as --grad-accum allows one step")
N_EXPERT_TYPE = AtMost(MAX_N_EXPERT, "experts", "about 10x PEER's million experts")

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


# Narrowest layout for piped output: the width rich itself falls back to without a terminal.
PIPED_MIN_WIDTH = 80
# Width at which a renderable is measured for its natural (unwrapped) width; wider than any real table.
MEASURE_WIDTH = 100_000
# How reports are printed: lines as long as the layout makes them (no soft wrap); no ":name:" emoji codes (no report
# writes one, and looking for them costs rich a regular expression per cell and a 3,600-entry table at import);
# no automatic highlighting of numbers and quotes in plain strings (reports style what they mean to).
CONSOLE_SETTINGS = {"soft_wrap": False, "emoji": False, "highlight": False}


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


def refuse_empty(**given: str | None) -> None:
    """UsageError for a text option given as '' (``--family ''``): where the engine reads '' as "the default",
    an empty value would otherwise be dropped silently. Keys are the option names, as in `refuse_together`."""
    from ..errors import UsageError

    for name, value in given.items():
        if value is not None and not value.strip():
            raise UsageError(f"{name} is empty; give a value (see --help) or leave {name} out for its default")


def stdout_console(renderable=None):
    """A rich Console for stdout: the terminal's width on a terminal; piped, a layout that never cuts a cell.

    Piped (stdout not a terminal) and with no COLUMNS in the environment, the width is the renderable's natural
    width (at least `PIPED_MIN_WIDTH`), so tables print whole instead of wrapping at 80 columns and ending cells
    in '…'. Table columns fold instead of cutting in any case when piped, so a COLUMNS set narrower wraps a long
    word onto the next line rather than dropping its end; a column that never wraps (numbers) still ends a cut cell
    in '…' (`_fold_tables`).
    """
    from rich.console import Console

    console = Console(**CONSOLE_SETTINGS)
    if console.is_terminal or renderable is None:
        return console
    _fold_tables(renderable)
    if "COLUMNS" in os.environ:  # the caller chose a width: honour it
        return console
    natural = Console(width=MEASURE_WIDTH, **CONSOLE_SETTINGS).measure(renderable).maximum
    return Console(width=max(PIPED_MIN_WIDTH, natural), **CONSOLE_SETTINGS)


def stdout_width() -> int | None:
    """The columns `stdout_console` lays a report out in: the terminal's, or COLUMNS when set; None when piped
    without COLUMNS (a report then prints at its natural width)."""
    from rich.console import Console

    console = Console(**CONSOLE_SETTINGS)
    return console.width if console.is_terminal or "COLUMNS" in os.environ else None


def _fold_tables(renderable) -> None:
    """Set every wrapping table column in ``renderable`` (a Group, a Table, nested) to fold long words, never cut
    them. A column that never wraps (no_wrap: numbers) keeps its '…': folding cannot apply there, and a cut would be
    silent ('0.4' printed for 0.46)."""
    from rich.console import Group
    from rich.table import Table

    if isinstance(renderable, Table):
        for column in renderable.columns:
            if not column.no_wrap:
                column.overflow = "fold"
    elif isinstance(renderable, Group):
        for part in renderable.renderables:
            _fold_tables(part)


def check_zero_stage(zero_stage: int, n_gpus: int) -> None:
    """Refuse ``--zero 1-3`` on one GPU: ZeRO partitions the model states across the data-parallel ranks
    (Rajbhandari et al. 2020, sec. 5), so over one rank it shards nothing; the estimate would only move because
    stages 1-3 are priced in DeepSpeed's mixed-precision layout (16-bit weights, fp32 master copy) rather than
    PyTorch AMP's, which is not what the option asks for. The planner searches stage 0 on one GPU for the same
    reason (`planner.setups`)."""
    from ..errors import UsageError

    if zero_stage > 0 and n_gpus == 1:
        raise UsageError(f"--zero {zero_stage} shards weights, gradients and optimizer state across GPUs; with --n-gpus "
                         "1 there is no other GPU to shard them across: drop --zero, or give --n-gpus 2 or more "
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
    from ..memory.settings import MATMUL_PRECISION, reduce_dtype_used

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
    """`memory.settings.storage_precision`: the precision given, or the one plan would pick on ``gpu``, with a note
    (imported on first use: start-up)."""
    from ..memory.settings import storage_precision as pick

    return pick(given, gpu, needs_rate=needs_rate)


def with_notes(renderable, data: dict, notes) -> tuple:
    """(renderable, data) with ``notes`` (a sequence of lines, None skipped) printed after the report and listed
    under "notes" in the JSON."""
    from rich.console import Group
    from rich.text import Text

    notes = [n for n in notes if n]
    if not notes:
        return renderable, data
    return Group(renderable, *(Text(f"note: {n}") for n in notes)), {**data, "notes": notes}


def emit(renderable, data: dict, as_json: bool) -> None:
    """Print ``renderable``, or ``data`` as JSON; a stdout that cannot take it (a full disk: ENOSPC, an I/O error) is
    a `DomainError` of one line. A closed pipe (`BrokenPipeError`) is left to `cli.run`."""
    _refuse_closed_stdout()
    try:
        if as_json:
            from ..jsonsafe import dumps  # here: the tables need no JSON encoder (start-up, issue 18)

            # inf/nan as null (RFC 8259 has no Infinity); a report whose value is infinite says why beside it
            sys.stdout.write(dumps(data, indent=2, default=str) + "\n")
        else:
            from ..report.plain import plain_tables

            console = stdout_console(renderable)
            console.print(plain_tables(renderable, console))  # tables drawn faster when no colour is printed
        sys.stdout.flush()  # a write that fails fails here, not in the interpreter's flush at exit
    except BrokenPipeError:
        raise
    except OSError as e:
        raise _stdout_failed(e) from None


def write_stdout(text: str) -> None:
    """Write ``text`` to stdout as it is (`plan --csv`, the path a plot was saved to), failing as `emit` does: one
    line, not a traceback, when stdout cannot take it."""
    _refuse_closed_stdout()
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        raise _stdout_failed(e) from None


def _stdout_failed(e: OSError) -> Exception:
    """The `DomainError` for a stdout that cannot be written, with stdout dropped (`_drop_stdout`)."""
    _drop_stdout()
    from ..errors import DomainError

    return DomainError(f"cannot write the output to standard output: {e.strerror or e}; free space where it goes, "
                       "or send it elsewhere (> FILE)")


def _refuse_closed_stdout() -> None:
    """`DomainError` (`cli.STDOUT_CLOSED`) when the process started with standard output closed (sys.stdout None)."""
    if sys.stdout is None:
        from ..errors import DomainError
        from . import STDOUT_CLOSED

        raise DomainError(STDOUT_CLOSED)


def _drop_stdout() -> None:
    """Point the process's stdout at the null device, so the bytes still buffered for it are not written again (and
    do not fail again, with a traceback) when the interpreter flushes stdout at exit. Nothing to do for a stdout
    without a file descriptor (a test's capture)."""
    import io

    try:
        fd = sys.stdout.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, io.UnsupportedOperation):
        return
    os.dup2(null, fd)
    os.close(null)


class StderrProgress:
    """A rich progress bar on stderr as a ``callback(done, total)`` context; None when stderr is not a terminal.

    ``with StderrProgress("fitting", enabled) as callback: work(callback=callback)``. The bar is transient: it
    is gone when the work ends, so stdout and a log of stderr hold only results.
    """

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.label = label
        self.enabled = bool(enabled)
        self.bar = None

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.console import Console

        console = Console(stderr=True)
        if not console.is_terminal:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=console, transient=True)
        self.bar.start()
        task = self.bar.add_task(self.label, total=None)

        def callback(done: int, total: int, label: str | None = None) -> None:
            self.bar.update(task, completed=done, total=total, **({"description": label} if label else {}))

        return callback

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


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
