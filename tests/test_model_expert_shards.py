"""A rank's share of a mixture of experts (issue 13): `ModelConfig.expert_shards` lets top_k exceed the local experts
(GShard, arXiv:2006.16668, sec. 2.2: under expert parallelism each rank's experts take the top_k x tokens rows of
the group), while a whole model still refuses top_k > n_expert, from the library and from the CLI."""

from __future__ import annotations

import pytest

from flopscalc.cli import run
from flopscalc.errors import UsageError
from flopscalc.layout.stage_cost import per_rank_model
from flopscalc.model import ModelConfig, get_preset

MIXTRAL = get_preset("mixtral-8x7b")  # 8 experts, top-2 (Jiang et al. 2024, sec. 2.1)


def test_a_whole_model_refuses_top_k_above_its_experts():
    with pytest.raises(UsageError, match="top_k must be between 1 and n_expert"):
        MIXTRAL.with_(top_k=9)


def test_a_shard_takes_top_k_up_to_the_experts_of_all_shards():
    shard = MIXTRAL.with_(n_expert=1, expert_shards=8)  # one expert per GPU, Mixtral's top-2 kept
    assert (shard.n_expert, shard.top_k, shard.expert_shards) == (1, 2, 8)
    with pytest.raises(UsageError, match="top_k must be between 1 and the 8 experts of 8 shards"):
        MIXTRAL.with_(n_expert=1, expert_shards=8, top_k=9)


@pytest.mark.parametrize("bad", [0, -1])
def test_expert_shards_is_a_positive_count(bad):
    with pytest.raises(UsageError, match="expert_shards"):
        MIXTRAL.with_(expert_shards=bad)


def test_a_dense_model_has_no_expert_shards():
    with pytest.raises(UsageError, match="expert_shards describe a mixture of experts"):
        ModelConfig(n_layer=2, n_head=2, n_embd=64, expert_shards=2)


def test_the_rank_model_is_valid_as_built_with_the_models_top_k():
    """No field is set behind the validation's back: the rank model equals one constructed afresh from its fields."""
    rank = per_rank_model(MIXTRAL, 1, MIXTRAL.n_layer, ep=8)
    assert (rank.n_expert, rank.top_k, rank.expert_shards) == (1, 2, 8)
    assert rank == rank.with_() and hash(rank) == hash(rank.with_())


@pytest.mark.parametrize("command", ["flops", "memory", "step"])
def test_the_cli_refuses_top_k_above_the_experts(capsys, command):
    extra = {"flops": ["--tokens", "1e9"], "memory": ["--gpu", "h100"], "step": ["--gpu", "h100"]}[command]
    argv = [command, "--model", "mixtral-8x7b", "--top-k", "9", *extra]
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert "--top-k 9 is not between 1 and 8" in err and "Traceback" not in err
