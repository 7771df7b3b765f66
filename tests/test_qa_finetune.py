"""`flopscalc finetune` on inputs a user really gives."""

from __future__ import annotations

import pytest

from flopscalc.cli import run
from flopscalc.errors import UsageError
from flopscalc.finetune.adapters import count_adapters
from flopscalc.model import get_preset

LLAMA = "llama-3.1-8b"  # width 4096, 8 KV heads of 128: k_proj and v_proj are 4096 -> 1024


def test_rank_above_the_narrowest_targeted_projection_is_refused(capsys):
    # was: rank 100000 accepted, "262.1B trainable" adapters for an 8.0B model. B A has rank at most
    # min(d_in, d_out) (Hu et al. 2021, sec. 4.1), so r > 1024 on k_proj only adds parameters.
    code = run(["finetune", "--model", LLAMA, "--gpu", "4070ti", "--dataset-tokens", "10M", "--method", "qlora",
                "--rank", "100000"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "at most 1024" in err


def test_full_rank_is_the_limit_and_is_exact():
    cfg = get_preset(LLAMA)
    # at r = min(d_in, d_out) = 1024, k and v adapters hold r (d_in + d_out) = 1024 x 5120 parameters each per layer
    assert count_adapters(cfg, ("k", "v"), 1024, 0).n_params == cfg.n_layer * 2 * 1024 * (4096 + 1024)
    with pytest.raises(UsageError, match="1024"):
        count_adapters(cfg, ("k", "v"), 1025, 0)
    # q and o are 4096 -> 4096: rank 4096 is still a (full-rank) LoRA
    assert count_adapters(cfg, ("q", "o"), 4096, 0).n_params == cfg.n_layer * 2 * 4096 * 8192
