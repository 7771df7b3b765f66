"""CLI wiring of the architecture options and --config (issue 12): exit codes, one-line errors, each option moves a
computed number by what its definition says, and the full-size Llama 3.1 8B file against FlopCounterMode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli, cli_json

ROOT = Path(__file__).resolve().parents[1]
LLAMA = str(ROOT / "data" / "configs" / "llama-3.1-8b.json")


def test_llama_file_prints_the_published_count_and_equals_flop_counter_at_full_size(capsys):
    # issue 12's done-when: 8,030,261,248 parameters; the FLOPs per token equal FlopCounterMode on the full-size
    # transformers Llama 3.1 8B (meta device: shapes only) at a short sequence, exactly
    d = cli_json(capsys, "flops", "--config", LLAMA, "--tokens", "15T", "--seq", "128")
    assert d["model"]["n_params"] == 8_030_261_248
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(
            transformers.AutoConfig.for_model(**json.loads(Path(LLAMA).read_text())))
        idx = torch.zeros(1, 128, dtype=torch.long)
    counter = FlopCounterMode(display=False)
    with counter:
        model(input_ids=idx, labels=idx).loss.backward()
    assert d["per_token"]["model_flops"] * 128 == counter.get_total_flops()
    assert d["per_run"]["model_flops"] == d["per_token"]["model_flops"] * 15e12
    text = cli(capsys, "flops", "--config", LLAMA, "--tokens", "15T")[1]
    assert "8,030,261,248 parameters" in text


def test_memory_takes_the_same_file_and_a_rope_model_takes_a_longer_sequence(capsys):
    d = cli_json(capsys, "memory", "--gpu", "h100", "--config", LLAMA, "--seq", "8192")
    assert d["n_params"] == 8_030_261_248
    # Pythia's context is 2048; with fused attention every saved tensor is proportional to the sequence except
    # the fp32 loss scalar (4 bytes), so twice the sequence saves twice the bytes less 4
    act = {s: cli_json(capsys, "memory", "--gpu", "h100", "--model", "pythia-160m", "--seq", s)["components_bytes"]
           ["activations"] for s in ("2048", "4096")}
    assert act["4096"] == 2 * act["2048"] - 4
    code, _, err = cli(capsys, "memory", "--gpu", "h100", "--model", "gpt2", "--seq", "2048")
    assert code == 2 and "learned position table" in err


SHAPE = ["flops", "--tokens", "1B", "--n-layer", "2", "--n-head", "8", "--n-embd", "512", "--seq", "256"]
L, H, D, V, T = 2, 8, 512, 50257, 256


def _fwd(d, key):
    return d["forward_flops_per_token"][key]


def test_each_architecture_option_moves_its_own_number(capsys):
    base = cli_json(capsys, *SHAPE)
    n0 = base["model"]["n_params"]
    # vocabulary: the tied embedding/head matrix grows by (V' - V) d; the logits by 2 (V' - V) d
    v = cli_json(capsys, *SHAPE, "--vocab", "32000")
    assert n0 - v["model"]["n_params"] == (V - 32000) * D and _fwd(base, "lm_head") - _fwd(v, "lm_head") == 2 * (V - 32000) * D
    # untied head: one more V x d matrix (Press & Wolf 2017 tie them)
    assert cli_json(capsys, *SHAPE, "--untie")["model"]["n_params"] - n0 == V * D
    # multi-query: K and V shrink from 8 heads to 1 (Shazeer 2019): 2 x 7/8 of d^2 per layer, weights and biases
    mqa = cli_json(capsys, *SHAPE, "--n-kv-head", "1")
    assert n0 - mqa["model"]["n_params"] == L * 2 * (D - D // H) * (D + 1)
    assert _fwd(mqa, "attn_scores") == _fwd(base, "attn_scores")  # every query head still scores every key
    # SwiGLU at the same width: three d x f matrices instead of two (Shazeer 2020, eq. 6)
    sw = cli_json(capsys, *SHAPE, "--mlp", "swiglu")
    assert _fwd(sw, "mlp") == 1.5 * _fwd(base, "mlp")
    # --ffn sets d_ff: the MLP's FLOPs scale with it
    assert _fwd(cli_json(capsys, *SHAPE, "--ffn", "1024"), "mlp") == _fwd(base, "mlp") / 2
    # RMSNorm has a gain and no bias: (2 L + 1) d fewer parameters than a biased LayerNorm
    assert n0 - cli_json(capsys, *SHAPE, "--norm", "rmsnorm")["model"]["n_params"] == (2 * L + 1) * D
    # RoPE has no table: the 1024 x d learned positions go
    assert n0 - cli_json(capsys, *SHAPE, "--pos", "rope")["model"]["n_params"] == 1024 * D
    # no biases: QKV 3d + proj d + MLP 4d + d, and LayerNorm biases (2 L + 1) d
    assert n0 - cli_json(capsys, *SHAPE, "--no-bias")["model"]["n_params"] == L * 9 * D + (2 * L + 1) * D


def test_experts_multiply_total_but_top_k_sets_the_flops(capsys):
    moe = ["--experts", "8", "--top-k", "2"]
    dense = cli_json(capsys, *SHAPE)
    d = cli_json(capsys, *SHAPE, *moe)
    assert _fwd(d, "mlp") == 2 * _fwd(dense, "mlp")  # two experts run per token
    assert _fwd(d, "router") == 2 * L * D * 8  # the d -> 8 router ([Mixtral] sec. 2.1)
    shared = cli_json(capsys, *SHAPE, *moe, "--shared-experts", "1")
    assert _fwd(shared, "mlp") == 3 * _fwd(dense, "mlp")
    models = {m["name"]: m for m in cli_json(capsys, "models")["models"]}
    assert models["mixtral-8x7b"]["n_params_active"] < models["mixtral-8x7b"]["n_params"]
    assert models["llama-3.1-8b"]["n_params_active"] == models["llama-3.1-8b"]["n_params"] == 8_030_261_248
    assert {"gpt2", "llama-2-7b", "llama-3.1-405b", "qwen2.5-72b", "olmo-2-7b", "pythia-12b"} <= set(models)


@pytest.mark.parametrize("argv,code,words", [
    (["--config", str(ROOT / "pyproject.toml")], 2, "not valid JSON"),
    (["--config", "nope.json"], 2, "does not exist"),
    (["--config", LLAMA, "--model", "gpt2"], 2, "one way"),
    (["--model", "gpt2", "--top-k", "2"], 2, "add --experts N"),
    (["--model", "gpt2", "--experts", "4"], 2, "--experts 4 needs --top-k"),
    (["--model", "gpt2", "--n-kv-head", "5"], 2, "not a multiple of 5 key/value heads"),
    (["--model", "gpt2", "--bias", "--no-bias"], 2, "contradict"),
    (["--params", "1B", "--ffn", "4096"], 2, "--ffn fixes the MLP width"),
    (["--model", "gpt2", "--mlp", "relu"], 2, "relu"),
])
def test_bad_architecture_input_is_one_line(capsys, argv, code, words):
    got, _, err = cli(capsys, "flops", "--tokens", "1B", *argv)
    assert got == code and words in err and err.count("\n") == 1, err


def test_unknown_model_type_names_the_field(capsys, tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"model_type": "bert", "hidden_size": 768}))
    code, _, err = cli(capsys, "memory", "--gpu", "h100", "--config", str(p))
    assert code == 2 and "model_type 'bert' is not supported" in err


def test_config_flags_override_the_file_and_say_so(capsys):
    d = cli_json(capsys, "flops", "--config", LLAMA, "--tokens", "1B", "--n-layer", "2", "--seq", "128")
    assert d["model"]["n_layer"] == 2 and "n_layer=2" in d["model"]["name"]


def test_step_prices_the_llama_block(capsys):
    code, out, err = cli(capsys, "step", "--gpu", "h100", "--model", "llama-3.1-8b", "--seq", "4096")
    assert code == 0, err
    assert "swiglu" in out  # the settings line names the block it priced


def test_cli_start_up_imports_neither_transformers_nor_torch():
    probe = "import sys, flopscalc.cli; print(any(m in sys.modules for m in ('transformers', 'torch')))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_memory_dropout_adds_the_residual_and_embedding_masks(capsys):
    # fused attention regenerates its mask; each block keeps two 1-byte residual masks and the embedding one
    # (Korthikanti et al. 2022, eq. 1's 2 s b h per layer, plus s b h)
    argv = ["memory", "--gpu", "h100", "--model", "gpt2", "--seq", "1024", "--micro-batch", "2"]
    off = cli_json(capsys, *argv)["components_bytes"]["activations"]
    on = cli_json(capsys, *argv, "--dropout")["components_bytes"]["activations"]
    s, b, h, layers = 1024, 2, 768, 12
    assert on - off == layers * 2 * s * b * h + s * b * h


def test_ffn_sets_the_expert_width_of_a_moe_file(capsys):
    # Qwen1.5-MoE: every layer is experts of moe_intermediate_size 1408; --ffn 2816 doubles their matmuls
    qwen = str(ROOT / "data" / "configs" / "qwen1.5-moe-a2.7b.json")
    base = cli_json(capsys, "flops", "--config", qwen, "--tokens", "1B", "--seq", "128")
    wide = cli_json(capsys, "flops", "--config", qwen, "--tokens", "1B", "--seq", "128", "--ffn", "2816")
    shared = 2 * 24 * 3 * 2048 * 5632 + 2 * 24 * 2048  # the shared expert and its gate do not change
    assert _fwd(wide, "mlp") - shared == 2 * (_fwd(base, "mlp") - shared)


def test_no_bias_removes_the_qkv_biases_a_file_has(capsys):
    # Qwen2.5 7B has biases on Q, K, V only (H h_d + 2 K h_d = 3584 + 2 x 512 per layer, 28 layers)
    qwen = str(ROOT / "data" / "configs" / "qwen2.5-7b.json")
    base = cli_json(capsys, "flops", "--config", qwen, "--tokens", "1B", "--seq", "128")["model"]["n_params"]
    off = cli_json(capsys, "flops", "--config", qwen, "--tokens", "1B", "--seq", "128", "--no-bias")["model"]
    assert base - off["n_params"] == 28 * (3584 + 2 * 512)
