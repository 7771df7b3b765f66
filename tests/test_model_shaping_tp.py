"""Shapes a cluster can split (issue 13): a plan that searches layouts shapes head counts tensor parallelism can divide.

Megatron-LM splits the attention heads (and a grouped-query model's key/value heads) evenly over the TP ranks; every
model of Narayanan et al. 2021, Table 1 (24 ... 160 heads) and Llama 3 (arXiv:2407.21783, Table 3) has a multiple of
8 heads, the TP degree of one 8-GPU node. The references here: that divisibility, and the shaping rule in its plainest
form (every depth and every allowed head count counted, the smallest key taken) on the coarser grid.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from flopscalc.model import PRESETS, config_for_params, count_params, with_architecture
from flopscalc.model.shaping import (
    FAMILIES,
    MAX_SHAPE_HEADS,
    MAX_SHAPE_LAYERS,
    SHAPE_PARAM_TOLERANCE,
    TP_HEAD_MULTIPLE,
)
from flopscalc.planner.family import shape_family

NODE_TP = 8  # GPUs per H100/A100 HGX node (NVIDIA DGX H100 user guide): the largest TP group a plan searches
# Sizes the planner's candidates span on 1,024 to 16,384 H100s for 30 days (options around 100B-700B optima), and
# the 1,024- and 16,384-GPU plans' own optima (101B and 302B, whose shapes had 127 and 183 heads).
PLAN_SIZES = [1.3e9, 2.7e10, 101.1e9, 301.9e9, 430e9, 750e9, 2e12]


def _tp_splits(n_head: int, n_kv: int, tp: int) -> bool:
    """Megatron-LM's rule: TP divides the heads, and the KV heads divide evenly or are replicated (TP a multiple)."""
    return n_head % tp == 0 and (n_kv % tp == 0 or tp % n_kv == 0)


def _full_grid_rule(n_params: float, family: str, base, step: int) -> tuple[int, int]:
    """(n_layer, n_head) of the shaping rule over depths 1..MAX_SHAPE_LAYERS and heads step, 2 step, ...: at each
    depth the widths just below and above the target; within 2% of it the width/depth ratio closest (in log) to the
    family's wins, else the closest count; ties to the lower width, then the shallower depth."""
    fam = FAMILIES[family]
    heads = np.arange(1, MAX_SHAPE_HEADS + 1) * step
    c1 = np.array([count_params(fam.shape(base, 1, int(h), fam.head_dim)).total for h in heads], dtype=float)
    c2 = np.array([count_params(fam.shape(base, 2, int(h), fam.head_dim)).total for h in heads], dtype=float)
    best = None
    for n_layer in range(1, MAX_SHAPE_LAYERS + 1):
        row = c1 + (n_layer - 1) * (c2 - c1)
        lo = min(max(int(np.searchsorted(row, n_params, side="right")), 1), MAX_SHAPE_HEADS - 1)
        for p, j in enumerate((lo, lo + 1)):
            err = abs(math.log(row[j - 1] / n_params))
            shape = abs(math.log(heads[j - 1] * fam.head_dim / n_layer / fam.aspect_ratio))
            key = (0.0, shape, p, n_layer) if err <= math.log1p(SHAPE_PARAM_TOLERANCE) else (1.0, err, p, n_layer)
            if best is None or key < best[0]:
                best = (key, (n_layer, int(heads[j - 1])))
    return best[1]


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("n_params", PLAN_SIZES)
def test_layout_plans_shape_heads_an_8_gpu_tensor_parallel_group_splits(family, n_params):
    cfg = shape_family(family, 1024, tensor_parallel=True).shape(n_params)
    assert _tp_splits(cfg.n_head, cfg.kv_heads, NODE_TP), (cfg.n_layer, cfg.n_head, cfg.kv_heads)


def test_a_grouped_query_gpt2_base_keeps_its_kv_heads_and_tp_8_splits_them():
    # (a plan refuses --n-kv-head 4 on the GPT-2 family: gpt2-xl's 25 heads; `flopscalc flops --params` shapes one)
    base = with_architecture(PRESETS["gpt2"], n_kv_head=4)
    for n in PLAN_SIZES:
        cfg = config_for_params(n, base=base, head_multiple=TP_HEAD_MULTIPLE)
        assert cfg.kv_heads == 4 and _tp_splits(cfg.n_head, cfg.kv_heads, NODE_TP)


@pytest.mark.parametrize("n_params", [301.9e9, 101.1e9, 3.3e9])
def test_the_coarser_grid_shape_is_the_full_grid_rule_with_heads_in_eights(n_params):
    sf = shape_family("gpt2", 1024, tensor_parallel=True)
    cfg = sf.shape(n_params)
    assert (cfg.n_layer, cfg.n_head) == _full_grid_rule(n_params, "gpt2", sf.base, NODE_TP)


@pytest.mark.parametrize("n_params", [301.9e9, 101.1e9])
def test_one_node_plans_shape_as_before_on_every_head_count(n_params):
    # the optima of the 16,384- and 1,024-GPU plans: the unrestricted rule picks 183 and 127 heads there
    sf = shape_family("gpt2", 1024)
    cfg = sf.shape(n_params)
    assert (cfg.n_layer, cfg.n_head) == _full_grid_rule(n_params, "gpt2", sf.base, 1)
    assert cfg.n_head % NODE_TP != 0  # the restriction is what moves these two, not a different rule
