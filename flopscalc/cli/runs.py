"""`flopscalc runs`: published training runs, their predicted and reported wall clock."""

from __future__ import annotations

import typer

from .common import JsonOpt
from .output import emit


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""

    @app.command("runs")
    def runs(as_json: JsonOpt = False) -> None:
        """Published runs (llm.c, OPT, BLOOM, PaLM, Llama...): wall clock predicted vs reported."""
        from ..report.runs import runs_dict, runs_table
        from ..runs import compare, published_runs

        comparisons = [compare(r) for r in published_runs() if r.available_bases]
        emit(runs_table(comparisons), runs_dict(comparisons), as_json)
