"""config.json and input findings of review r10 (#6-#9) and r13 #4, each against an independent reference.

- `memory`'s no-fit advice named ZeRO-3 where activations, which ZeRO does not shard, were the excess (Qwen2.5-7B at
  its 131,072-token context): every count and sequence the advice names is checked by running `memory` with it.
- A refused model type whose head width differs from width / heads (Gemma 2) was sent down the options route, which
  counts a different model than transformers builds (on the meta device).
- GPT-2's ``add_cross_attention`` was dropped without a word; every boolean field of each supported config class is
  flipped here and must either count as transformers builds it or be refused.
- A UTF-32 file was called UTF-16 (its BOM begins with UTF-16-LE's); the suggested iconv command must convert it.
- A null required field was taken as absent; transformers refuses it ("expected int, got NoneType"): each int field
  nulled must be refused by both or accepted by both with the same count.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import cli_json, refused

from flopscalc.errors import UsageError
from flopscalc.hf_config import READERS, config_from_hf, read_hf_config
from flopscalc.model import ModelConfig, count_params

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"
QWEN_7B = CONFIGS / "qwen2.5-7b.json"


def hf_numel(hf, data: dict) -> int:
    """Parameters of the module transformers builds from ``data`` on the meta device."""
    import torch

    cfg = hf.AutoConfig.for_model(**data)
    with torch.device("meta"):
        model = hf.AutoModelForCausalLM.from_config(cfg)
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------ r10 #6: memory's advice names what would fit

LIGHTEST = ("--precision", "bf16-pure", "--recompute", "full", "--offload")  # the changes the advice names


def _reason(capsys, *argv) -> str:
    out = cli_json(capsys, "memory", *argv)
    assert not out["fits"] and not out["fixes"]
    return out["no_fix_reason"]


@pytest.mark.parametrize("gpus", [(), ("--n-gpus", "8", "--zero", "3")], ids=["1gpu", "8gpus-zero3"])
def test_activations_at_the_configs_context_get_a_seq_not_zero(capsys, gpus):
    reason = _reason(capsys, "--config", str(QWEN_7B), "--gpu", "h100", *gpus)
    assert "precision bf16-mixed -> bf16-pure, recompute none -> full, optimizer offload to CPU" in reason
    # ZeRO does not help: on 8 or 16,384 GPUs with ZeRO-3 the lightest setup still does not fit
    for n in ("8", "16384"):
        assert not cli_json(capsys, "memory", "--config", str(QWEN_7B), "--gpu", "h100", "--n-gpus", n, "--zero",
                            "3", *LIGHTEST)["fits"]
    assert "would shard" not in reason and "ZeRO-3 / FSDP over" not in reason
    assert "ZeRO-3 / FSDP would not fit it on any number of GPUs" in reason
    # the --seq it names fits with those changes, and the doubled one does not (it names the longest, up to 8192)
    m = re.search(r"131072 is the model's context .*e\.g\. --seq (\d+) \(([\d.]+) GiB with those changes\)", reason)
    assert m, reason
    seq = int(m.group(1))
    at = cli_json(capsys, "memory", "--config", str(QWEN_7B), "--gpu", "h100", *gpus, *LIGHTEST, "--seq", str(seq))
    assert at["fits"] and f"{at['peak_bytes'] / 2**30:.1f}" == m.group(2)
    assert seq == 8192  # plan's ceiling (`model.sequence.HINT_SEQ_MAX`): 16384 would not be named even if it fit


def test_zero_is_named_with_the_fewest_gpus_when_model_states_are_the_excess(capsys):
    reason = _reason(capsys, "--model", "llama-3.1-70b", "--gpu", "h100")
    assert "recompute none -> full, optimizer offload to CPU" in reason
    m = re.search(r"ZeRO-3 / FSDP over (\d+) GPUs would shard them enough to fit", reason)
    assert m, reason
    n = int(m.group(1))
    light = ("--recompute", "full", "--offload", "--zero", "3")
    assert cli_json(capsys, "memory", "--model", "llama-3.1-70b", "--gpu", "h100", "--n-gpus", str(n), *light)["fits"]
    assert not cli_json(capsys, "memory", "--model", "llama-3.1-70b", "--gpu", "h100", "--n-gpus", str(n // 2),
                        *light)["fits"]


def test_a_given_seq_that_cannot_fit_gets_no_seq_and_no_zero(capsys):
    """Llama 3.1 8B at --seq 100000 on a 12 GiB card: its 29.9 GiB of model states alone exceed the card at one GPU
    (no sequence helps), and activations exceed it on any number (ZeRO does not help)."""
    reason = _reason(capsys, "--model", "llama-3.1-8b", "--gpu", "4070ti", "--seq", "100000")
    assert "--seq" not in reason and "would shard" not in reason
    assert not cli_json(capsys, "memory", "--model", "llama-3.1-8b", "--gpu", "4070ti", "--seq", "1", *LIGHTEST)["fits"]


# ------------------------------------------------------------------ r10 #7: no options route for Gemma 2

GEMMA_2_9B = {"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "attention_bias": False,
              "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "head_dim": 256,
              "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 3584,
              "intermediate_size": 14336, "max_position_embeddings": 8192, "num_attention_heads": 16,
              "num_hidden_layers": 42, "num_key_value_heads": 8, "query_pre_attn_scalar": 256,
              "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "sliding_window": 4096, "vocab_size": 256000,
              "pad_token_id": 0}  # the reviewer's gemma-2-9b config.json (r10), the fields transformers reads


def test_gemma2_is_refused_without_the_options_route_that_counts_another_model(hf, capsys, tmp_path):
    # what the options route could describe at best counts 2.5% short of transformers' module
    options_route = ModelConfig(n_layer=42, n_head=16, n_embd=3584, n_kv_head=8, ffn_dim=14336, mlp="geglu",
                                norm="rmsnorm", position="rope", bias=False, tie_embeddings=True, vocab_size=256000,
                                block_size=8192)
    assert hf_numel(hf, GEMMA_2_9B) == 9_241_705_984 != count_params(options_route).total == 9_010_193_920
    path = tmp_path / "gemma-2-9b.json"
    path.write_text(json.dumps(GEMMA_2_9B))
    line = refused(capsys, "flops", "--config", str(path), "--tokens", "1T")
    assert "--n-layer" not in line and "architecture options cannot describe it" in line
    assert "head_dim 256" in line and "post_feedforward_layernorm" in line


def test_an_unknown_type_with_the_plain_head_width_keeps_the_options_route():
    with pytest.raises(UsageError, match="describe the model with --n-layer/--n-head/--n-embd"):
        config_from_hf({"model_type": "somenew", "hidden_size": 64, "num_attention_heads": 4, "head_dim": 16})
    with pytest.raises(UsageError, match=r"head_dim 32\) is not hidden_size / num_attention_heads \(64 / 4\)"):
        config_from_hf({"model_type": "somenew", "hidden_size": 64, "num_attention_heads": 4, "head_dim": 32})


# ------------------------------------------------------------------ r10 #8: no size-changing field dropped

GPT2 = {"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "n_ctx": 1024, "n_embd": 768, "n_head": 12, "n_layer": 12, "n_positions": 1024, "vocab_size": 50257}


def test_gpt2_cross_attention_is_refused(hf):
    data = {**GPT2, "add_cross_attention": True}
    assert hf_numel(hf, data) == 152_806_656 != count_params(config_from_hf(GPT2)).total == 124_439_808
    with pytest.raises(UsageError, match=r"config.json: field 'add_cross_attention' is true: cross-attention"):
        config_from_hf(data)


# A small config of each supported type (the probe below flips each field of its transformers config class)
_DECODER = {"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_size": 64,
            "intermediate_size": 128, "max_position_embeddings": 128, "vocab_size": 100}
SMALL = {
    "gpt2": {"n_layer": 2, "n_head": 4, "n_embd": 64, "n_positions": 128, "vocab_size": 100},
    "gpt_neox": {k: v for k, v in _DECODER.items() if k != "num_key_value_heads"} | {"intermediate_size": 256},
    **{t: dict(_DECODER) for t in ("llama", "mistral", "qwen2", "olmo", "olmo2")},
    "gemma": {**_DECODER, "head_dim": 16},
    "phi3": {**_DECODER, "pad_token_id": None},
    "mixtral": {**_DECODER, "num_local_experts": 4, "num_experts_per_tok": 2},
    "qwen2_moe": {**_DECODER, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
                  "shared_expert_intermediate_size": 64},
}
assert set(SMALL) == set(READERS)


def _ours(data: dict) -> int | None:
    try:
        return count_params(config_from_hf(dict(data))).total
    except UsageError:
        return None


def _theirs(hf, data: dict) -> int | None:
    from huggingface_hub.errors import StrictDataclassError

    try:
        return hf_numel(hf, data)
    except (StrictDataclassError, TypeError, ValueError, AssertionError):  # transformers refuses the config (a
        return None  # strict dataclass field) or cannot build the module (nn.Embedding of None rows)


@pytest.mark.parametrize("model_type", sorted(SMALL))
def test_every_boolean_field_counts_as_transformers_builds_or_is_refused(hf, model_type):
    """Each boolean field of the type's config class (transformers 5.24), flipped: our count equals the module's,
    or the reader refuses the file. Before the fix GPT-2's add_cross_attention added 33,536 parameters unseen."""
    base = {"model_type": model_type, **SMALL[model_type]}
    assert _ours(base) == hf_numel(hf, base)
    defaults = hf.AutoConfig.for_model(model_type).to_dict()
    flipped = [k for k, v in defaults.items() if isinstance(v, bool) and k not in ("return_dict",)]
    assert flipped
    for key in flipped:
        data = {**base, key: not base.get(key, defaults[key])}
        ours, theirs = _ours(data), _theirs(hf, data)
        assert ours is None or ours == theirs, (key, ours, theirs)


# ------------------------------------------------------------------ r10 #9: UTF-32 is named as UTF-32


@pytest.mark.parametrize("codec", ["utf-32-le", "utf-32-be"])
def test_utf32_is_named_and_the_iconv_it_suggests_converts_it(capsys, tmp_path, codec):
    import codecs

    bom = codecs.BOM_UTF32_LE if codec.endswith("le") else codecs.BOM_UTF32_BE
    path = tmp_path / "gpt2.json"
    path.write_bytes(bom + json.dumps(GPT2, indent=2).encode(codec))
    line = refused(capsys, "flops", "--config", str(path), "--tokens", "1T")
    assert f"model config {path} is UTF-32 text; expected UTF-8" in line
    m = re.search(r"convert it: (iconv -f UTF-32 -t UTF-8 \S+ > \S+)$", line)
    assert m, line
    if shutil.which("iconv") is None:
        pytest.skip("no iconv on this machine to run the suggested command")
    subprocess.run(m.group(1), shell=True, check=True)
    converted = tmp_path / "gpt2.utf8.json"
    assert count_params(read_hf_config(converted)).total == count_params(config_from_hf(GPT2)).total


# ------------------------------------------------------------------ r13 #4: a null required field is refused

# Fields whose null the reviewer found read as absent (r13 #4): refused, like a missing field, naming file and field
REQUIRED = {
    "gpt2": ["n_layer", "n_head", "n_embd", "n_positions", "vocab_size"],
    "llama": ["num_hidden_layers", "num_attention_heads", "hidden_size", "intermediate_size",
              "max_position_embeddings", "vocab_size"],
    "mixtral": ["num_local_experts"],
}
_OPTIONAL = ("num_key_value_heads", "head_dim", "sliding_window", "n_inner", "num_local_experts",
             "num_experts_per_tok", "max_window_layers", "original_max_position_embeddings")


def _nulled(model_type: str) -> list[str]:
    return sorted((set(SMALL[model_type]) | set(_OPTIONAL)) - {"pad_token_id"})


@pytest.mark.parametrize("model_type,key", [(t, k) for t in sorted(SMALL) for k in _nulled(t)])
def test_a_null_field_counts_as_transformers_reads_it_or_is_refused(hf, model_type, key):
    """transformers 5.24's strict config dataclasses refuse null for an int field ("Field 'intermediate_size'
    expected int, got NoneType") and keep it where the type allows None (Llama's num_key_value_heads: all heads;
    GPT-2's n_inner: 4 d; sliding_window: full attention, though MistralConfig's default is 4096). Where transformers
    takes the null, ours must count what it builds; where it refuses, ours refuses (file and field named) or reads
    the null as the absent field, counting what transformers builds without it (head_dim: hidden_size / heads)."""
    base = {"model_type": model_type, **SMALL[model_type]}
    data = {**base, key: None}
    theirs = _theirs(hf, data)
    try:
        ours = count_params(config_from_hf(data, "x.json")).total
    except UsageError as e:
        assert theirs is None, (key, theirs)
        assert str(e).startswith(f"x.json: field '{key}' is null; give a positive integer")
        return
    if theirs is None:
        theirs = _theirs(hf, {k: v for k, v in base.items() if k != key})
    assert ours == theirs
    assert key not in REQUIRED.get(model_type, ())


@pytest.mark.parametrize("model_type", ["mistral", "mixtral", "qwen2", "qwen2_moe", "gemma"])
def test_an_absent_field_takes_the_config_class_default(hf, model_type):
    """num_key_value_heads (and Gemma's head_dim) left out take the class's default, not all heads: MistralConfig 8,
    Qwen2Config 32, GemmaConfig 16 heads of 256 (before, each was read as all heads of hidden_size / heads)."""
    base = {"model_type": model_type, **SMALL[model_type], "num_attention_heads": 32, "hidden_size": 256}
    for data in ({k: v for k, v in base.items() if k != "num_key_value_heads"},
                 {k: v for k, v in base.items() if k != "head_dim"}):
        assert count_params(config_from_hf(data)).total == hf_numel(hf, data)


def test_the_reviewers_null_intermediate_size_is_refused_by_the_cli(capsys, tmp_path):
    data = json.loads((CONFIGS / "llama-3.1-8b.json").read_text())
    path = tmp_path / "x.json"
    path.write_text(json.dumps({**data, "intermediate_size": None}))
    line = refused(capsys, "flops", "--config", str(path), "--tokens", "1T")
    assert f"{path}: field 'intermediate_size' is null" in line

