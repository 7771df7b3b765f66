"""The planner for modern architectures (issue 12): `plan --family llama` shapes Llama 3 models whose counts equal
the transformers module's numel, `plan --config` plans exactly the file's model at the FLOPs `flops --config`
counts, a mixture of experts is given to the law by its active parameters, and contradictions are one line."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from conftest import cli, cli_json

from flopscalc.cli import run

ROOT = Path(__file__).resolve().parents[1]
LLAMA = str(ROOT / "data" / "configs" / "llama-3.1-8b.json")
QWEN_MOE = str(ROOT / "data" / "configs" / "qwen1.5-moe-a2.7b.json")
H100_8_30D = ("--gpu", "h100", "--n-gpus", "8", "--days", "30")
LLAMA_PRESETS = {"llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b"}


@pytest.fixture(scope="module")
def llama_plan():
    """`plan --family llama --gpu h100 --n-gpus 8 --days 30 --json` (issue 12's done-when), run once."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run(["plan", "--family", "llama", *H100_8_30D, "--json"])
    assert code == 0
    return json.loads(out.getvalue())


def hf_llama_numel(m: dict) -> int:
    """sum(p.numel()) of transformers' LlamaForCausalLM of the plan's shape, built on the meta device."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(
        hidden_size=m["n_embd"], num_hidden_layers=m["n_layer"], num_attention_heads=m["n_head"],
        num_key_value_heads=m["n_kv_head"], intermediate_size=m["n_inner"], vocab_size=m["vocab_size"],
        head_dim=m["head_dim"], tie_word_embeddings=m["tie_embeddings"], attention_bias=False, mlp_bias=False)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(cfg)
    return sum(p.numel() for p in model.parameters())


def test_family_llama_recommends_a_llama_shaped_model_whose_count_is_the_transformers_numel(llama_plan):
    rec = llama_plan["recommended"]
    m = rec["model"]
    # Llama 3's block: SwiGLU, RMSNorm, RoPE, 8 key/value heads, heads of 128, untied head, no biases
    # (Llama Team 2024, Table 3; the released config.json)
    assert (m["mlp"], m["norm"], m["position"], m["n_kv_head"], m["head_dim"]) == ("swiglu", "rmsnorm", "rope", 8, 128)
    assert m["tie_embeddings"] is False and m["bias"] is False and m["vocab_size"] == 128_256
    assert rec["n_params"] == hf_llama_numel(m)
    assert llama_plan["family"] == "llama"


def test_every_shaped_llama_option_counts_as_transformers_does(llama_plan):
    shaped = [o for o in llama_plan["options"] if o["model"]["name"] not in LLAMA_PRESETS]
    assert len(shaped) >= 5
    for o in shaped:
        assert o["n_params"] == hf_llama_numel(o["model"]), o["model"]


def test_family_llama_weighs_the_llama_presets_not_gpt2s(llama_plan):
    names = {o["model"]["name"] for o in llama_plan["options"]}
    assert LLAMA_PRESETS <= names
    assert not any(n.startswith("gpt2") for n in names)
    assert {c["model"] for c in llama_plan["candidates"]} == LLAMA_PRESETS
    # the published 8B is weighed at its published count (Llama Team 2024: 8.03B)
    eight = next(o for o in llama_plan["options"] if o["model"]["name"] == "llama-3.1-8b")
    assert eight["n_params"] == 8_030_261_248
    assert any(a["name"] == "model family" for a in llama_plan["assumptions"])


def test_default_family_is_still_gpt2(capsys):
    d = cli_json(capsys, "plan", *H100_8_30D)
    assert d["family"] == "gpt2"
    assert d["recommended"]["model"]["family"] == "GPT-2 block"
    assert {"gpt2", "gpt2-xl"} <= {c["model"] for c in d["candidates"]}


def test_config_plans_that_exact_model_at_the_flops_the_flops_command_counts(capsys):
    # --seq: a config.json states only the context (131,072 here), which a plan of a config defaults to
    p = cli_json(capsys, "plan", "--config", LLAMA, "--seq", "8192", *H100_8_30D)
    assert len(p["options"]) == 1
    rec = p["recommended"]
    assert rec["n_params"] == 8_030_261_248
    f = cli_json(capsys, "flops", "--config", LLAMA, "--tokens", "1", "--seq", str(rec["setup"]["seq_len"]))
    per_token = f["per_token"]["model_flops"]
    assert rec["speed"]["model_flops_per_token"] == per_token
    # tokens = achieved model FLOP/s (peak x GPUs x duty cycle x the run's MFU) x time / FLOPs per token
    assert rec["n_tokens"] == pytest.approx(p["achieved_flop_per_s"] * p["duration_s"] / per_token, rel=1e-12)
    assert rec["train_time_s"] == pytest.approx(rec["n_tokens"] * per_token / p["achieved_flop_per_s"], rel=1e-12)
    assert p["family"] == "llama" and {c["model"] for c in p["candidates"]} == LLAMA_PRESETS


def test_moe_is_given_to_the_law_by_its_active_parameters(capsys):
    p = cli_json(capsys, "plan", "--config", QWEN_MOE, "--gpu", "h100", "--n-gpus", "8", "--tokens", "100B")
    rec = p["recommended"]
    active, total = rec["model"]["n_params_active"], rec["model"]["n_params"]
    assert active < total / 4  # Qwen1.5-MoE-A2.7B: 2.7B active of 14.3B
    law = cli_json(capsys, "scaling", "loss", "--params", str(active), "--tokens", "100B")
    assert rec["loss"] == pytest.approx(law["loss"], rel=1e-12)
    at_total = cli_json(capsys, "scaling", "loss", "--params", str(total), "--tokens", "100B")
    assert not math.isclose(rec["loss"], at_total["loss"], rel_tol=1e-3)
    said = [a for a in p["assumptions"] if "mixture of experts" in a["name"]]
    assert said and "active" in said[0]["value"] and "not validated" in said[0]["source"]
    assert any("not validated for MoE" in w for w in p["warnings"])


def test_params_with_family_shapes_that_size_in_the_family(capsys):
    p = cli_json(capsys, "plan", "--family", "llama", "--params", "3B", "--gpu", "h100", "--days", "1")
    m = p["recommended"]["model"]
    assert (m["mlp"], m["n_kv_head"], m["head_dim"]) == ("swiglu", 8, 128)
    assert p["recommended"]["n_params"] == pytest.approx(3e9, rel=0.02)
    assert p["recommended"]["n_params"] == hf_llama_numel(m)


def test_small_llama_budget_skips_unshapeable_sizes_with_a_note(capsys):
    # optimum ~100M: below ~300M the 128k vocabulary leaves no Llama 3 shape; those sizes are skipped, said once
    code, out, err = cli(capsys, "plan", "--family", "llama", "--gpu", "4070ti", "--hours", "12", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert all(o["n_params"] > 250e6 for o in d["options"])
    assert any("were skipped: no llama-shaped model that small" in w for w in d["warnings"])


@pytest.mark.parametrize("argv, words", [
    (("--family", "llama", "--model", "gpt2"), "--model fixes the model"),
    (("--family", "llama", "--config", LLAMA), "--config fixes the model"),
    (("--config", LLAMA, "--model", "gpt2"), "name the model one way"),
    (("--config", LLAMA, "--params", "1B"), "name the model one way"),
    (("--family", "falcon",), "unknown model family"),
    (("--family", "llama", "--n-kv-head", "4"), "key/value heads"),
    (("--ffn", "4096",), "--ffn fixes the MLP width"),
    (("--experts", "8", "--top-k", "2"), "active count"),
])
def test_contradictions_are_refused_in_one_line(capsys, argv, words):
    code, out, err = cli(capsys, "plan", *H100_8_30D, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and words in err, err


def test_the_text_report_names_the_family_its_presets_and_the_block(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = cli(capsys, "plan", "--family", "llama", *H100_8_30D)
    assert code == 0, err
    assert "Options around the optimum, and the Llama 3 presets" in out
    assert "What the budget buys each Llama 3 preset" in out
    assert "GPT-2" not in out and "gpt2" not in out
    # the recommended width's query heads depend on the time model; the family keeps Llama 3's 8 KV heads
    # (Dubey et al. 2024, Table 3) and its block
    assert re.search(r"\(GQA \d+/8, swiglu, rmsnorm, rope\)", out), out
    code, out, err = cli(capsys, "plan", "--model", "mixtral-8x7b", "--gpu", "h100", "--n-gpus", "64", "--days", "30")
    assert code == 0, err
    assert "12.9B active;" in out  # Jiang et al. 2024 sec. 2.1: "13B active parameters"
    assert "preset" not in out.split("Options around the optimum")[1].split("\n")[0]  # no family's presets


def test_architecture_options_change_the_shaped_family_and_its_presets(capsys):
    p = cli_json(capsys, "plan", "--family", "llama", "--vocab", "32000", *H100_8_30D)
    assert {o["model"]["vocab_size"] for o in p["options"]} == {32000}
    assert {c["model"] for c in p["candidates"]} == {f"{n} (vocab=32000)" for n in LLAMA_PRESETS}
    for o in p["options"][:3]:
        assert o["n_params"] == hf_llama_numel(o["model"])


def test_config_with_an_override_plans_the_overridden_model(capsys):
    # GPT-2 small's file with an untied head: transformers' GPT2LMHeadModel then holds its own 50257 x 768 head
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    gpt2 = str(ROOT / "data" / "configs" / "gpt2.json")
    p = cli_json(capsys, "plan", "--config", gpt2, "--untie", "--gpu", "h100", "--days", "1")
    with torch.device("meta"):
        hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
            **json.loads(Path(gpt2).read_text()) | {"tie_word_embeddings": False}))
    assert p["recommended"]["n_params"] == sum(t.numel() for t in hf.parameters())
    assert p["recommended"]["model"]["tie_embeddings"] is False
