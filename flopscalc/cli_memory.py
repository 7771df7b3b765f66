"""`flopscalc memory`: training-memory breakdown, fit and largest micro-batch (issue 3)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
