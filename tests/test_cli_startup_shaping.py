"""The shaping rule's fast search (issue 18: the planner's start-up) gives the answer of the exhaustive rule.

`config_for_params` counts only the widths a target can reach and leaves out depths that cannot win. The reference
here is the rule in its plainest form: every (depth, head count) shape of the grid counted from 1- and 2-layer
models, each depth's row bisected, and the smallest (off-target, shape or count error) key taken in depth order,
lower head count first. Exact equality is asserted: same shape or the same refusal.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopscalc.errors import DomainError
from flopscalc.model import PRESETS, config_for_params, count_params, with_architecture
from flopscalc.model.shaping import (
    FAMILIES,
    MAX_SHAPE_HEADS,
    MAX_SHAPE_LAYERS,
    SHAPE_GIVE_UP,
    SHAPE_PARAM_TOLERANCE,
)

BASES = {
    "gpt2": PRESETS["gpt2"],
    "gpt2 grouped-query 4": with_architecture(PRESETS["gpt2"], n_kv_head=4),  # kv heads vary with the head count
    "gpt2 swiglu 32k vocab": with_architecture(PRESETS["gpt2"], mlp="swiglu", vocab=32000),
    "gpt2 8 experts": with_architecture(PRESETS["gpt2"], experts=8, top_k=2),
}


@functools.cache
def _grid_counts(base, head_dim: int, count: str, family: str):
    fam = FAMILIES[family]

    def counted(n_layer: int, n_head: int) -> int:
        pc = count_params(fam.shape(base, n_layer, n_head, head_dim))
        return pc.total if count == "total" else pc.non_embedding

    heads = range(fam.head_step, (MAX_SHAPE_HEADS + 1) * fam.head_step, fam.head_step)
    return (np.array([counted(1, h) for h in heads], dtype=np.float64),
            np.array([counted(2, h) for h in heads], dtype=np.float64))


def exhaustive(n_params: float, *, aspect_ratio=None, count="total", base=None, family="gpt2"):
    """(n_layer, n_head) of the full-grid rule, or None where it refuses (beyond SHAPE_GIVE_UP)."""
    fam = FAMILIES[family]
    base = base or fam.base
    aspect_ratio = fam.aspect_ratio if aspect_ratio is None else aspect_ratio
    c1, c2 = _grid_counts(base, fam.head_dim, count, family)
    layers = np.arange(1, MAX_SHAPE_LAYERS + 1)
    grid = c1[None, :] + (layers[:, None] - 1) * (c2 - c1)[None, :]
    lo = np.clip([np.searchsorted(row, n_params, side="right") for row in grid], 1, MAX_SHAPE_HEADS - 1)
    best = None
    for heads in (lo, lo + 1):
        counts = grid[layers - 1, heads - 1]
        err = np.abs(np.log(counts / n_params))
        shape = np.abs(np.log(heads * fam.head_step * fam.head_dim / layers / aspect_ratio))
        within = err <= math.log1p(SHAPE_PARAM_TOLERANCE)
        keys = [((0.0, s) if w else (1.0, e), i) for i, (s, e, w) in enumerate(zip(shape, err, within))]
        key, i = min(keys)  # the smallest key, first in depth order
        if best is None or key < best[0]:
            best = (key, (int(layers[i]), int(heads[i]) * fam.head_step), float(counts[i]))
    _, shape_, reached = best
    return None if abs(math.log(reached / n_params)) > math.log1p(SHAPE_GIVE_UP) else shape_


def _fast(n_params: float, **kwargs):
    try:
        cfg = config_for_params(n_params, **kwargs)
    except DomainError:
        return None
    return cfg.n_layer, cfg.n_head


@settings(max_examples=150, deadline=None)
@given(log_n=st.floats(4.0, 13.5), base=st.sampled_from(sorted(BASES)), count=st.sampled_from(["total",
       "non_embedding"]), aspect_ratio=st.sampled_from([None, 16.0, 64.0, 250.0]))
def test_fast_rule_is_the_exhaustive_rule_for_gpt2_family_bases(log_n, base, count, aspect_ratio):
    n = 10.0 ** log_n
    kwargs = {"base": BASES[base], "count": count, "aspect_ratio": aspect_ratio}
    assert _fast(n, **kwargs) == exhaustive(n, **kwargs)


@settings(max_examples=60, deadline=None)
@given(log_n=st.floats(8.0, 13.7), count=st.sampled_from(["total", "non_embedding"]))
def test_fast_rule_is_the_exhaustive_rule_for_the_llama_family(log_n, count):
    n = 10.0 ** log_n
    assert _fast(n, family="llama", count=count) == exhaustive(n, family="llama", count=count)


@pytest.mark.parametrize("n_params", [124e6, 350e6, 662021799.5, 1.06e10, 7e9, 70e9, 1e4, 4e13])
def test_fast_rule_is_the_exhaustive_rule_at_the_sizes_plans_ask_for(n_params):
    assert _fast(n_params) == exhaustive(n_params)
