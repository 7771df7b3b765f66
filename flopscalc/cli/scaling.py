"""`flopscalc scaling ...`: built-in laws, compute-optimal allocation, fitting (issue 4).

Thin commands: parse, call the engines in ``flopscalc.scaling``, render with ``report.scaling``.
Engines (numpy, scipy for fitting) are imported inside each command, never at module import.
"""

from __future__ import annotations

import math
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from ..scaling.resampling import MIN_PERCENTILE_RESAMPLES as MIN_RESAMPLES
from .bounds import BOOTSTRAP_TYPE, MAX_BOOTSTRAP
from .common import (
    JsonOpt,
    ListingGroup,
    NEmbdOpt,
    NHeadOpt,
    NLayerOpt,
    ParamsOpt,
    SeqOpt,
    check_seq,
    given_on_command_line,
    parse_inference_tokens,
    refuse_empty,
    refuse_unused,
)
from .output import StderrProgress, emit, write_stdout

scaling_app = typer.Typer(cls=ListingGroup, help="Scaling laws: list them, allocate a FLOP budget, predict loss, fit your runs.",
                          no_args_is_help=True)

LawOpt = Annotated[str | None, typer.Option(
    "--law", help="Scaling law by name (built-in or saved with 'scaling fit --save'); default besiroglu2024.")]
UniqueOpt = Annotated[str | None, typer.Option(
    "--unique-tokens", help="Unique tokens available, e.g. 25B: repeats data per Muennighoff et al. 2023 (tokens).")]


class Approach(str, Enum):
    one = "1"
    two = "2"
    three = "3"


class Grid(str, Enum):
    paper = "paper"
    small = "small"


def _law(name: str | None):
    from ..scaling.io import resolve_law

    refuse_empty(**{"--law": name})  # resolve_law reads '' as the default law
    return resolve_law(name)


def _dc_law(name: str | None):
    """The law for a data-constrained question: the named one, or the default as `plan --dataset-tokens` uses it."""
    law = _law(name)
    if law.repetition is None:
        raise UsageError(f"--unique-tokens needs a law with a data-repetition form; {law.name} has none "
                         "(use --law besiroglu2024, chinchilla or muennighoff2023, or leave --law out)")
    return law


@scaling_app.command("laws")
def laws(
    name: Annotated[str | None, typer.Argument(help="Show one law in full (constants, intervals, source).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the built-in and saved scaling laws with their constants and sources."""
    from ..report.scaling import law_detail, law_dict, laws_table
    from ..scaling.io import read_saved_laws
    from ..scaling.laws import BUILTIN_LAWS

    if name is not None:
        law = _law(name)
        emit(law_detail(law), law_dict(law), as_json)
        return
    saved, problems = read_saved_laws()  # a bad file is a warning: the readable laws are still listed
    for line in problems:
        sys.stderr.write(f"flopscalc: warning: {line}\n")
    all_laws = list(BUILTIN_LAWS.values()) + saved
    data = {"laws": [law_dict(x) for x in all_laws]}
    emit(laws_table(all_laws), {**data, "warnings": problems} if problems else data, as_json)


@scaling_app.command("optimal")
def optimal(
    flops: Annotated[str, typer.Option(help="Training budget, e.g. 1e21 or 2.5e20 (FLOP).")],
    law: LawOpt = None,
    unique_tokens: UniqueOpt = None,
    inference_tokens: Annotated[str | None, typer.Option(
        "--inference-tokens", help="Tokens the model will serve over its life (prompt + output), e.g. 2T: adds the "
        "model of the same loss with the fewest training + inference FLOPs (Sardana et al. 2024).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compute-optimal parameters and tokens for a FLOP budget, and the loss the law predicts."""
    from ..report.scaling import allocation_dict, allocation_report
    from ..scaling.allocate import optimal as optimal_alloc
    from ..scaling.allocate import optimal_data_constrained
    from ..units import parse_count

    c = parse_count(flops, what="--flops", kind="flops")
    if inference_tokens is not None:
        from rich.console import Group

        from ..report.scaling import inference_dict, inference_report
        from ..scaling.inference import inference_optimal_for_budget

        if unique_tokens is not None:
            raise UsageError("--inference-tokens and --unique-tokens cannot be combined (the inference-aware "
                             "optimum has no data-constrained form); drop one of them")
        sl = _law(law)
        t = parse_inference_tokens(inference_tokens)  # worded as plan refuses it
        ia = inference_optimal_for_budget(sl, c, t)
        a = optimal_alloc(sl, c)
        emit(Group(allocation_report(a, sl), inference_report(ia)),
             {**allocation_dict(a, sl), "inference_aware": inference_dict(ia)}, as_json)
        return
    if unique_tokens is not None:
        sl = _dc_law(law)
        a = optimal_data_constrained(sl, c, parse_count(unique_tokens, what="--unique-tokens", kind="tokens"))
        emit(allocation_report(a, sl, "Data-constrained optimal allocation"), allocation_dict(a, sl), as_json)
        return
    sl = _law(law)
    a = optimal_alloc(sl, c)
    emit(allocation_report(a, sl), allocation_dict(a, sl), as_json)


@scaling_app.command("budget")
def budget(
    loss: Annotated[float | None, typer.Option(help="Target loss to reach compute-optimally (nats/token).")] = None,
    params: Annotated[str | None, typer.Option(help="Model size to train compute-optimally, e.g. 1.4B.")] = None,
    law: LawOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The inverse: the FLOP budget (and tokens) for a target loss, or for a model size at its optimum."""
    from ..report.scaling import allocation_dict, allocation_report
    from ..scaling.allocate import flops_for_loss, flops_for_params
    from ..units import parse_count

    if (loss is None) == (params is None):
        raise UsageError("give exactly one of --loss (e.g. 2.2) or --params (e.g. 1.4B)")
    sl = _law(law)
    a = (flops_for_loss(sl, loss) if loss is not None
         else flops_for_params(sl, parse_count(params, what="--params", kind="params")))
    emit(allocation_report(a, sl, "Budget"), allocation_dict(a, sl), as_json)


@scaling_app.command("loss")
def loss(
    params: Annotated[str, typer.Option(help="Parameters N, e.g. 1.5B (count as the law does; see 'laws').")],
    tokens: Annotated[str, typer.Option(help="Training tokens D, repeats included, e.g. 10B.")],
    law: LawOpt = None,
    unique_tokens: UniqueOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Loss a law predicts for N parameters trained on D tokens."""
    from ..report.scaling import loss_dict, loss_report
    from ..scaling.allocate import predict_loss
    from ..units import parse_count

    n, d = parse_count(params, what="--params", kind="params"), parse_count(tokens, what="--tokens", kind="tokens")
    if unique_tokens is not None:  # predict_loss refuses a non-positive N, D or U
        sl = _dc_law(law)
        u = parse_count(unique_tokens, what="--unique-tokens", kind="tokens")
        prediction = predict_loss(sl, n, d, u)  # the planner's engine too: plan and loss agree
    else:
        sl = _law(law)
        prediction = predict_loss(sl, n, d)
    emit(loss_report(sl, prediction), loss_dict(sl, prediction), as_json)


@scaling_app.command("fit")
def fit(
    ctx: typer.Context,
    runs_csv: Annotated[Path, typer.Argument(help="CSV of runs: n_params, n_tokens (or c_flops), loss.")],
    approach: Annotated[Approach, typer.Option(help="Chinchilla approach: 1 envelope, 2 IsoFLOP, 3 parametric.")]
    = Approach.three,
    bootstrap: Annotated[int, typer.Option(
        click_type=BOOTSTRAP_TYPE, help=f"Bootstrap resamples for 95% percentile intervals (0: none; {MIN_RESAMPLES} "
        f"or more for intervals to trust, fewer warns; at most {MAX_BOOTSTRAP:,}).")] = 0,
    seed: Annotated[int, typer.Option(help="Random seed of the bootstrap.")] = 0,
    grid: Annotated[Grid, typer.Option(help="Approach 3 starts: the paper's 4,500 or a quick 32.")] = Grid.paper,
    exclude_highest_loss: Annotated[int, typer.Option(
        "--exclude-highest-loss", help="Drop this many highest-loss runs first (Besiroglu et al. drop 5).")] = 0,
    save: Annotated[str | None, typer.Option(help="Save the fitted law under this name for --law NAME.")] = None,
    replace: Annotated[bool, typer.Option(
        "--replace", help="With --save: overwrite a saved law of the same name (it is kept otherwise).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Fit a scaling law to your runs, with bootstrap intervals and diagnostics."""
    from ..report.scaling import fit3_dict, fit3_report, power_fit_dict, power_fit_report
    from ..scaling.io import LAW_NAME_RE, read_runs, save_law, saved_law_path

    if bootstrap < 0:
        raise UsageError(f"--bootstrap must be 0 or more, got {bootstrap}")
    if replace and save is None:
        raise UsageError("--replace says what to do with an existing saved law: give it with --save NAME")
    approach3_only = given_on_command_line(ctx, "grid", "exclude_highest_loss") if approach is not Approach.three else []
    if approach3_only:
        raise UsageError(f"approach {approach.value} would ignore {' and '.join(approach3_only)} (only approach 3's "
                         f"parametric fit uses {'them' if len(approach3_only) > 1 else 'it'}); drop "
                         f"{'them' if len(approach3_only) > 1 else 'it'} or use --approach 3")
    if bootstrap == 0:
        refuse_unused(ctx, "--bootstrap N", ("seed",), "used only to draw the bootstrap resamples")
    else:
        from ..scaling.runs import seeded_rng

        seeded_rng(seed)  # a bad seed is refused before the fit, not after it
    if save is not None:  # law names are not case-sensitive: saved (and looked up) in lower case
        from ..scaling.io import fold_law_name

        given, save = save, fold_law_name(save) if LAW_NAME_RE.match(save) else save
    replaced = save is not None and saved_law_path(save, replace=replace).exists()  # name checked before the fit
    runs = read_runs(runs_csv)
    source = f"fitted by flopscalc: approach {approach.value} on {runs_csv.name} ({len(runs)} runs)"
    if approach is Approach.three:
        from ..scaling.fit import bootstrap_approach3, fit_approach3, law_from_fit

        with StderrProgress("fitting: starts converged") as callback:
            res = fit_approach3(runs, grid=grid.value, exclude_highest_loss=exclude_highest_loss, callback=callback)
        with StderrProgress("bootstrap resamples", enabled=bootstrap > 0) as callback:
            boot = bootstrap_approach3(runs, res, n_samples=bootstrap, seed=seed, callback=callback) if bootstrap else None
        renderable, data = fit3_report(res, boot), fit3_dict(res, boot)
        fitted = law_from_fit(res, save, source, boot, runs=runs) if save is not None else None
    else:
        from ..scaling.fit_power import fit_approach1, fit_approach2, law_from_power_fit

        fn = fit_approach1 if approach is Approach.one else fit_approach2
        with StderrProgress("bootstrap resamples", enabled=bootstrap > 0) as callback:
            res = fn(runs, n_bootstrap=bootstrap, seed=seed, callback=callback)
        renderable, data = power_fit_report(res), power_fit_dict(res)
        fitted = law_from_power_fit(res, save, source) if save is not None else None
    if fitted is not None:
        data["saved_to"], data["replaced"] = str(save_law(fitted, replace=replace)), replaced
    emit(renderable, data, as_json)
    if fitted is not None and not as_json:
        verb = "replaced the saved law" if replaced else "saved as"
        folded = " (law names are not case-sensitive)" if given != save else ""
        write_stdout(f"{verb} {save!r}{folded}: {data['saved_to']} (use --law {save})\n")


class ScheduleChoice(str, Enum):
    cosine = "cosine"
    multistep = "multistep"


@scaling_app.command("hparams")
def hparams(
    tokens: Annotated[str, typer.Option(help="Training tokens D, e.g. 2.5B (tokens).")],
    model: Annotated[str | None, typer.Option(help="Preset, e.g. gpt2 or gpt2-xl.")] = None,
    params: ParamsOpt = None,
    n_layer: NLayerOpt = None,
    n_head: NHeadOpt = None,
    n_embd: NEmbdOpt = None,
    seq: SeqOpt = None,
    loss: Annotated[float | None, typer.Option(
        help="Predicted final loss (nats/token): caps the batch at the critical batch size (Kaplan et al. 2020).")
    ] = None,
    schedule: Annotated[ScheduleChoice, typer.Option(
        help="Decay after warm-up: cosine to 10% (what 'flopscalc train' runs) or DeepSeek's multi-step.")
    ] = ScheduleChoice.cosine,
    as_json: JsonOpt = False,
) -> None:
    """Batch size and peak learning rate from DeepSeek LLM's laws, with warm-up and schedule, for a model and tokens."""
    from ..model import resolve_model, seq_source
    from ..report.scaling import hparams_dict, hparams_report
    from ..scaling.hyperparams import recommend_hyperparameters
    from ..units import parse_count

    n_params = parse_count(params, what="--params", kind="params") if params is not None else None
    cfg = resolve_model(model, n_params=n_params,
                        n_layer=n_layer, n_head=n_head, n_embd=n_embd, ways=("model", "params", "shape"))
    d = parse_count(tokens, what="--tokens", kind="tokens")
    if not d > 0:
        raise UsageError(f"--tokens must be positive, e.g. 2.5B, got {tokens}")
    check_seq(seq)
    if loss is not None and not loss > 0:
        raise UsageError(f"--loss must be a positive number of nats per token, e.g. 3.3, got {loss}")
    if loss is not None and not loss < math.log(cfg.vocab_size):  # as 'scaling budget' and 'plan --target-loss'
        raise UsageError(f"--loss {loss:g} is not below a uniform guess over {cfg.name}'s vocabulary (ln "
                         f"{cfg.vocab_size} = {math.log(cfg.vocab_size):.2f} nats/token): no trained model ends "
                         f"there; give the loss you predict, below {math.log(cfg.vocab_size):.2f}, e.g. 3.3")
    src = seq_source(cfg, seq)  # --seq, else the model's default (`model.default_train_seq`), and where it came from
    if cfg.seq_limited_by_context and src.seq_len > cfg.block_size:  # as memory/step/flops/plan refuse it
        raise UsageError(f"sequence length {src.seq_len} is longer than the model's context ({cfg.block_size} "
                         f"tokens, its learned position table); pass --seq {cfg.block_size} or less")
    h = recommend_hyperparameters(cfg.n_layer, cfg.n_embd, src.seq_len, d, loss_nats=loss, schedule=schedule.value)
    emit(hparams_report(h, cfg.name, src.note), {"model": cfg.name, **hparams_dict(h), "seq_len_source": src.label},
         as_json)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.add_typer(scaling_app, name="scaling")
