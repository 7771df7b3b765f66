"""`Assumption`: a modelling choice, its value and its source, as every engine reports it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Assumption:
    """A modelling choice with its value and where it comes from."""

    name: str
    value: str
    source: str
