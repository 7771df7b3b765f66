"""Error types shared by the engines and the faces.

The CLI maps `UsageError` to exit code 2 (the user typed something we cannot read)
and `DomainError` to exit code 1 (the input is well formed but the answer does not exist,
e.g. a GPU without an FP8 rate asked for FP8).
"""

from __future__ import annotations


class FlopscalcError(Exception):
    """Base class: the message is one line meant for a person."""


class UsageError(FlopscalcError, ValueError):
    """Malformed or contradictory input: what was wrong and what is accepted."""


class DomainError(FlopscalcError):
    """Well-formed input whose answer does not exist."""
