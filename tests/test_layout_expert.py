"""Expert parallelism with fewer local experts than top-k: Mixtral 8x7B (top-2 of 8 experts, Jiang et al. 2024
sec. 2.1) with EP = 8, one expert per GPU, is a real layout (GShard, Lepikhin et al. 2020 sec. 2.2: experts sharded
over devices, tokens dispatched by all-to-all); each GPU's expert receives 2 x its tokens' rows."""

from __future__ import annotations

import pytest

from flopscalc.flops import training_flops_per_token
from flopscalc.hardware import get_gpu
from flopscalc.layout import Layout, cluster_for, layout_time
from flopscalc.layout.search import search_layouts
from flopscalc.layout.stage_cost import per_rank_model
from flopscalc.model import count_params, get_preset

MIXTRAL = get_preset("mixtral-8x7b")
CLUSTER = cluster_for(get_gpu("h100"), 64)


def test_one_expert_per_gpu_keeps_every_tokens_top_k_expert_flops():
    """The rank's FLOPs per token equal the whole model's (TP 1: every token still goes through top-2 experts, on
    whichever GPUs hold them) except the router, which the rank model sizes to its local experts: 6 h (E - E/ep) L
    FLOPs per token less (forward 2, backward 4 per weight), 0.007% here."""
    rank = per_rank_model(MIXTRAL, 1, MIXTRAL.n_layer, ep=8)
    assert rank.n_expert == 1 and rank.top_k == 2
    whole = training_flops_per_token(MIXTRAL, 4096).model_flops_per_token
    router_left_out = 6 * MIXTRAL.n_embd * (8 - 1) * MIXTRAL.n_layer
    assert training_flops_per_token(rank, 4096).model_flops_per_token == whole - router_left_out


def test_one_expert_per_gpu_holds_one_expert_per_layer():
    """Parameters fall by the experts moved off the GPU: from 4 local experts (EP 2) to 1 (EP 8) is 3 of them, three
    quarters of what EP 1 -> EP 2 removes (4 of them), router columns included."""
    params = {ep: count_params(per_rank_model(MIXTRAL, 1, MIXTRAL.n_layer, ep=ep)).total for ep in (1, 2, 8)}
    assert params[2] - params[8] == pytest.approx(3 / 4 * (params[1] - params[2]), rel=1e-12)


@pytest.mark.parametrize("ep", [1, 2, 4, 8])
def test_expert_parallel_compute_is_the_same_rows_on_fewer_experts(ep):
    """Uniform routing: each GPU computes tokens x top_k expert rows whatever EP is; only the all-to-all grows."""
    base = layout_time(MIXTRAL, Layout(dp=64, n_micro=1, zero_stage=1), CLUSTER, 4096)
    lt = layout_time(MIXTRAL, Layout(dp=64, ep=ep, n_micro=1, zero_stage=1), CLUSTER, 4096)
    assert lt.compute_s == pytest.approx(base.compute_s, rel=0.01)
    assert (lt.ep_comm_s > 0) == (ep > 1)


def test_the_search_prices_one_expert_per_gpu():
    res = search_layouts(MIXTRAL, CLUSTER, 4096, 64, top=50)
    assert 8 in {r.layout.ep for r in res.ranked}
