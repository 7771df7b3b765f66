"""The plan's HFU counts FlashAttention's backward recomputation of the scores (issue 11, item 1: "HFU = hardware
FLOPs (recomputation, flash backward included)"), as `flopscalc step` does: on a run without activation
recomputation HFU exceeds MFU by exactly the forward's Q K^T FLOPs, counted here by hand (Dao 2023, FlashAttention-2,
Alg. 2: the backward recomputes S = Q K^T)."""

from __future__ import annotations

import json

import pytest

from flopscalc.cli import run


def _plan(capsys, *argv):
    assert run(["plan", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _scores_flops_per_token(model: dict, seq: int) -> float:
    # Q K^T in the plan's (dense) convention: each token's query heads score all T keys, one MAC per element
    return 2.0 * model["n_layer"] * seq * model["n_head"] * model["head_dim"]


@pytest.mark.parametrize("argv", [("--gpu", "4070ti", "--days", "365"),
                                  ("--gpu", "h100", "--n-gpus", "64", "--days", "30")])
def test_hfu_exceeds_mfu_by_the_scores_flash_recomputes(capsys, argv):
    d = _plan(capsys, *argv)
    runs = [d["recommended"], *d["options"]]
    checked = 0
    for r in runs:
        if "setup" not in r:  # an option that fits no setup
            continue
        setup, speed = r["setup"], r["speed"]
        if setup["recompute"] != "none" or not setup["flash"]:
            continue
        extra = _scores_flops_per_token(r["model"], setup["seq_len"]) / speed["model_flops_per_token"]
        assert speed["hfu"] / speed["mfu"] - 1 == pytest.approx(extra, rel=1e-9), r["model"]["n_params"]
        checked += 1
    assert checked >= 2
