"""`flops` prints beside each convention the formula its number comes from (review r3, stop 17).

Narayanan et al. 2021 eq. 3 without recomputation, 72 l h^2 (1 + s/6h + V/12lh) per token, counts GPT-2's block. For
Llama-3-8B (l 32, h 4096, s 8192, V 128,256) it gives 5.47e10 FLOP/token, while the row shows the exact matmul count
(5.79e10, SwiGLU's 3 matrices of 14,336 and GQA's 8 KV heads): the row must say which it printed.
"""

from __future__ import annotations

import json

import pytest

from flopscalc.cli import run

LLAMA3_8B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
             "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
             "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192,
             "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "silu", "tie_word_embeddings": False}


def _megatron_eq3_no_recompute(l, h, s, v):
    return 72 * l * h**2 * (1 + s / (6 * h) + v / (12 * l * h))  # Narayanan et al. 2021 eq. 3, without the recompute


def _conventions(capsys, *args):
    assert run(["flops", *args, "--json"]) == 0
    return {c["key"]: c for c in json.loads(capsys.readouterr().out)["conventions"]}


def test_a_llama_block_says_the_megatron_row_is_not_the_formula(capsys, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(LLAMA3_8B))
    conv = _conventions(capsys, "--config", str(path), "--tokens", "1B", "--seq", "8192")
    row = conv["megatron-model"]
    formula_value = _megatron_eq3_no_recompute(32, 4096, 8192, 128256)
    assert abs(row["flops_per_token"] / formula_value - 1) > 0.03  # the number is not the formula's ...
    assert "assumes GPT-2's block" in row["formula"] and "exact" in row["formula"]  # ... and the row says so
    assert "recomputed forward" in conv["megatron"]["formula"]


@pytest.mark.parametrize("preset, l, h", [("gpt2-xl", 48, 1600), ("gpt2", 12, 768)])
def test_a_gpt2_block_prints_the_formula_it_evaluates(capsys, preset, l, h):
    conv = _conventions(capsys, "--model", preset, "--tokens", "1B", "--seq", "1024")
    row = conv["megatron-model"]
    assert row["formula"].startswith("72 l h^2")
    # GPT-2's vocabulary 50,257, dense attention: the printed formula gives the printed number
    assert row["flops_per_token"] == pytest.approx(_megatron_eq3_no_recompute(l, h, 1024, 50257), rel=1e-9)
