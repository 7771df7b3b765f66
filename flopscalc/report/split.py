"""A table too wide for the terminal, split into parts (`flopscalc gpus`, `flopscalc models`).

Both split the same way: the columns in order, greedily, each part as many as the width holds whole after the
column that leads every part (the GPU's key, the preset's name), and the parts printed one under another with a
blank line between. Each caller says what a part needs (its own box and padding), this module where the cuts fall.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from rich.console import Group, RenderableType

C = TypeVar("C")


def split_columns(columns: Sequence[C], need: Callable[[list[C]], int], width: int | None) -> list[list[C]]:
    """``columns`` in order, in runs: a column starts a new run when ``need`` of the run with it added (the
    characters a part with those columns and the leading one takes) passes ``width`` (None: no limit, one run). A
    column too wide even alone still gets a run of its own."""
    groups: list[list[C]] = [[]]
    for col in columns:
        if groups[-1] and width is not None and need([*groups[-1], col]) > width:
            groups.append([])
        groups[-1].append(col)
    return groups


def stacked(parts: Sequence[RenderableType]) -> Group:
    """``parts`` one under another, a blank line between each two."""
    from rich.console import Group
    from rich.text import Text

    spaced: list[RenderableType] = []
    for part in parts:
        spaced += [Text(""), part] if spaced else [part]
    return Group(*spaced)
