"""`report.split.split_columns`, which `flopscalc gpus` and `flopscalc models` both split a wide table with: its
invariants (order kept, every part fits unless one column alone cannot, no part could have held the next column),
checked on random column widths against a box like gpus' (a space per column and a border)."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from flopscalc.report.split import split_columns


def _need(widths: list[int]):
    return lambda group: 2 + sum(widths[i] + 1 for i in group)


@given(st.lists(st.integers(1, 30), min_size=1, max_size=15), st.integers(5, 80))
def test_parts_keep_order_fit_and_are_as_full_as_the_width_allows(widths, width):
    need = _need(widths)
    groups = split_columns(range(len(widths)), need, width)
    assert [i for g in groups for i in g] == list(range(len(widths)))
    assert all(g for g in groups)
    for g in groups:
        assert len(g) == 1 or need(g) <= width  # a column wider than the width alone is its own part
    for g, following in pairwise(groups):
        assert need([*g, following[0]]) > width  # greedy: the next part's first column did not fit


@given(st.lists(st.integers(1, 30), max_size=15))
def test_no_width_is_one_part(widths):
    groups = split_columns(range(len(widths)), _need(widths), None)
    assert groups == [list(range(len(widths)))]
