"""Pieces shared by the command modules: common options and the JSON-or-table emitter."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
GpuCsvOpt = Annotated[
    Optional[list[Path]],
    typer.Option("--gpu-csv", help="Extra GPU CSV (same columns as data/gpu_specs.csv) that adds or overrides rows."),
]


def emit(renderable, data: dict, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    from rich.console import Console

    Console(soft_wrap=False).print(renderable)
