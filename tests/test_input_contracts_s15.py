"""Input contracts the s15 abuse pass found open, each checked against what the user asked for.

1. A model name resolves to the product it names: Llama 3 is not Llama 3.1 (same shapes, contexts of 8,192 and
   131,072 tokens); a name that would pick one product among several is refused with the presets it may mean.
"""

from __future__ import annotations

import re

import pytest

from flopscalc.errors import UsageError
from flopscalc.hf_config import config_from_hf
from flopscalc.model import ALL_PRESETS, PRESET_ALIASES, PRESETS, count_params, get_preset

from conftest import cli, cli_json

# ------------------------------------------------------------------ 1. model names

# The published config.json of Meta's Llama 3 (April 2024) base models, the fields that fix the module
# (huggingface.co/meta-llama/Meta-Llama-3-8B and Meta-Llama-3-70B, config.json): no rope_scaling, an 8,192-token
# context, RoPE base 500000. Llama 3.1's files differ in max_position_embeddings (131072) and a "llama3" rope_scaling.
_LLAMA3_COMMON = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
                  "attention_bias": False, "mlp_bias": False, "max_position_embeddings": 8192,
                  "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_scaling": None, "rope_theta": 500000.0,
                  "tie_word_embeddings": False, "vocab_size": 128256}
META_LLAMA3 = {
    "llama-3-8b": {**_LLAMA3_COMMON, "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
                   "num_hidden_layers": 32},
    "llama-3-70b": {**_LLAMA3_COMMON, "hidden_size": 8192, "intermediate_size": 28672, "num_attention_heads": 64,
                    "num_hidden_layers": 80},
}
_SHAPE_FIELDS = ("n_layer", "n_head", "n_embd", "kv_heads", "n_inner", "vocab_size", "block_size", "rope_theta",
                 "norm_eps", "train_seq", "position", "mlp", "norm", "tie_embeddings", "bias")


@pytest.mark.parametrize("name", list(META_LLAMA3))
def test_llama_3_presets_are_the_published_llama_3_files(name):
    published = config_from_hf(META_LLAMA3[name])
    preset = get_preset(name)
    assert {f: getattr(preset, f) for f in _SHAPE_FIELDS} == {f: getattr(published, f) for f in _SHAPE_FIELDS}
    assert preset.block_size == 8192 and preset.train_seq is None  # trained at its whole context (model card)
    three_one = get_preset(name.replace("llama-3-", "llama-3.1-"))
    assert three_one.block_size == 131072 and three_one.train_seq == 8192  # the other release


@pytest.mark.parametrize("name", list(META_LLAMA3))
def test_llama_3_counts_equal_the_transformers_module_of_the_published_file(hf, name):
    import torch

    cfg = hf.AutoConfig.for_model(**{k: v for k, v in META_LLAMA3[name].items() if k != "architectures"})
    with torch.device("meta"):
        model = hf.LlamaForCausalLM(cfg)
    assert count_params(get_preset(name)).total == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("spelling,preset", [("llama-3-8b", "llama-3-8b"), ("llama3-8b", "llama-3-8b"),
                                             ("Llama_3_8B", "llama-3-8b"), ("llama3-70b", "llama-3-70b"),
                                             ("llama3.1-8b", "llama-3.1-8b"), ("llama3.1-70b", "llama-3.1-70b")])
def test_a_llama_spelling_names_its_own_release(spelling, preset):
    assert get_preset(spelling) is ALL_PRESETS[preset]


def _version_and_size(name: str) -> list[str]:
    return re.findall(r"\d+(?:\.\d+)?", name.replace("x", " "))


def test_no_alias_of_a_published_family_changes_the_release_or_size():
    # an alias may respell a name (llama3-8b for llama-3-8b); its numbers (release, size) must be the target's.
    # GPT-2's size names (small, 124m, xl) are the one family whose aliases are sizes by design (tests/test_model.py)
    for alias, target in PRESET_ALIASES.items():
        if target in PRESETS:
            continue
        assert _version_and_size(alias) == _version_and_size(target), (alias, target)


@pytest.mark.parametrize("name,meant", [("mixtral", "mixtral-8x7b"), ("mistral", "mistral-7b"),
                                        ("qwen2.5-7b-instruct", "qwen2.5-7b")])
def test_a_name_of_several_products_is_refused_with_the_preset_it_may_mean(capsys, name, meant):
    with pytest.raises(UsageError) as err:
        get_preset(name)
    assert meant in str(err.value) and "--config" in str(err.value)
    code, out, errtext = cli(capsys, "flops", "--model", name, "--tokens", "1e9")
    assert code == 2 and out == "" and len(errtext.strip().splitlines()) == 1 and meant in errtext
