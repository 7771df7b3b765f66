"""`flopscalc models` and `flopscalc gpus`: the model presets and the GPU database (see `cli.COMMANDS`).

Kept apart from the engines: each command imports what it shows only when it runs.
"""

# No `from __future__ import annotations` here: typer reads the options from the signature, and string annotations
# would be compiled and evaluated again on every run (start-up, issue 18; see cli/plan.py).

from typing import Annotated

import typer

from .common import GpuCsvOpt, JsonOpt, ListingGroup
from .output import emit, stdout_width

gpus_app = typer.Typer(cls=ListingGroup, help="The GPU database: list every GPU, or show one with its sources.",
                       invoke_without_command=True)


def models(as_json: JsonOpt = False) -> None:
    """The model presets with their exact total and active parameter counts and sources."""
    from ..model import ALL_PRESETS
    from ..report.models import models_dict, models_table

    emit(models_table(ALL_PRESETS, None if as_json else stdout_width()), models_dict(ALL_PRESETS), as_json)


@gpus_app.callback()
def gpus(ctx: typer.Context, gpu_csv: GpuCsvOpt = None, as_json: JsonOpt = False) -> None:
    """List every GPU in the database (dense peak rates, memory, power, price)."""
    if ctx.invoked_subcommand is not None:  # `gpus --json show X` means `gpus show X --json`
        ctx.obj = {"gpu_csv": gpu_csv or (), "as_json": as_json}
        return
    from ..hardware import load_database
    from ..report.gpus import gpu_dict, gpu_table

    db = load_database(gpu_csv or ())
    emit(gpu_table(db, None if as_json else stdout_width()), {"gpus": [gpu_dict(g) for g in db]}, as_json)


@gpus_app.command("show")
def gpus_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="GPU name, e.g. 4070ti; a family name (a100, h100) is the one variant "
                                              "whose row lists it as an alias, and the other variants are named.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one GPU: every figure, its source and notes (a family name says which variant it chose)."""
    from rich.console import Group
    from rich.text import Text

    from ..hardware import load_database
    from ..report.gpus import family_line, gpu_detail, gpu_dict

    db = load_database((ctx.obj or {}).get("gpu_csv", ()))
    spec = db.get(name)
    variants = db.family_variants(name)
    line = family_line(name, spec, variants)
    data = gpu_dict(spec)
    if line is not None:  # a family name: which variant it chose, and the others
        data["resolved_from"] = {"name": name, "other_variants": list(variants), "note": line}
    emit(gpu_detail(spec) if line is None else Group(Text(line), gpu_detail(spec)), data,
         as_json or (ctx.obj or {}).get("as_json", False))



def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
    app.command("models")(models)
    app.add_typer(gpus_app, name="gpus")
