"""`flopscalc scaling ...`: built-in laws, compute-optimal allocation, fitting (issue 4)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""
