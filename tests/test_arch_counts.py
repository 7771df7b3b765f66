"""Parameter counts of every family against Hugging Face ``transformers`` and the authors' published totals.

The reference is the module ``transformers`` builds from a config.json on the meta device (shapes only, no
weights, no network): ``sum(p.numel())`` must equal our count exactly. Independently of both, the totals the
authors published (Pythia Table 1, Llama 3.1 8B, Mixtral, Qwen1.5-MoE) must come out.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flopscalc.errors import UsageError
from flopscalc.hf_config import READERS, config_from_hf, read_hf_config
from flopscalc.model import ALL_PRESETS, FAMILY_PRESETS, PRESET_SOURCES, ModelConfig, count_params, get_preset

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"
CONFIG_FILES = sorted(CONFIGS.glob("*.json"))


def hf_numel(hf, data: dict) -> int:
    import torch

    cfg = hf.AutoConfig.for_model(**data)
    with torch.device("meta"):
        model = hf.AutoModelForCausalLM.from_config(cfg)
    return sum(p.numel() for p in model.parameters())


def hf_dict(cfg: ModelConfig) -> dict:
    """A preset written as the config.json of its family (the field names of transformers' config classes)."""
    if cfg.name.startswith("gpt2"):
        return {"model_type": "gpt2", "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_embd": cfg.n_embd,
                "n_positions": cfg.block_size, "vocab_size": cfg.vocab_size}
    common = {"num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head, "hidden_size": cfg.n_embd,
              "intermediate_size": cfg.n_inner, "vocab_size": cfg.vocab_size,
              "max_position_embeddings": cfg.block_size, "tie_word_embeddings": cfg.tie_embeddings}
    if cfg.name.startswith("pythia"):
        return {"model_type": "gpt_neox", **common, "use_parallel_residual": cfg.parallel_block}
    common["num_key_value_heads"] = cfg.kv_heads
    if cfg.name.startswith("mixtral"):
        return {"model_type": "mixtral", **common, "num_local_experts": cfg.n_expert,
                "num_experts_per_tok": cfg.top_k}
    kind = {"llama": "llama", "mistral": "mistral", "qwen2.5": "qwen2", "olmo-2": "olmo2"}
    model_type = next(v for k, v in kind.items() if cfg.name.startswith(k))
    return {"model_type": model_type, **common}


# ------------------------------------------------------------------ against transformers


@pytest.mark.parametrize("name", list(ALL_PRESETS))
def test_every_preset_count_equals_the_transformers_module(hf, name):
    cfg = ALL_PRESETS[name]
    assert count_params(cfg).total == hf_numel(hf, hf_dict(cfg))


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.stem)
def test_every_config_file_counts_as_transformers_builds_it(hf, path):
    data = json.loads(path.read_text())
    assert count_params(read_hf_config(path)).total == hf_numel(hf, data)


# Variations each family's config.json can carry, so every option of the reader meets the module it describes.
VARIANTS = [
    ("llama-3.1-8b", {"attention_bias": True, "mlp_bias": True}),
    ("llama-3.1-8b", {"tie_word_embeddings": True, "num_key_value_heads": 1}),
    ("llama-3.1-8b", {"head_dim": 64}),  # head width other than hidden / heads
    ("gemma-7b", {"num_key_value_heads": 1, "hidden_activation": "silu"}),
    ("qwen1.5-moe-a2.7b", {"qkv_bias": False, "shared_expert_intermediate_size": 2816}),
    ("pythia-160m", {"use_parallel_residual": False, "attention_bias": False, "tie_word_embeddings": True}),
    ("olmo-7b-hf", {"attention_bias": True}),
    ("olmo-2-1124-7b", {"num_key_value_heads": 8}),
    ("gpt2", {"n_inner": 1000, "tie_word_embeddings": False}),
    ("phi-3-mini-4k", {"num_key_value_heads": 8}),
]


@pytest.mark.parametrize("stem,change", VARIANTS, ids=[f"{s}-{'-'.join(c)}" for s, c in VARIANTS])
def test_config_options_count_as_transformers_builds_them(hf, stem, change):
    data = {**json.loads((CONFIGS / f"{stem}.json").read_text()), **change}
    assert count_params(config_from_hf(data)).total == hf_numel(hf, data)


def test_config_files_cover_every_supported_model_type():
    types = {json.loads(p.read_text())["model_type"] for p in CONFIG_FILES}
    assert types == set(READERS)


# ------------------------------------------------------------------ against the published totals

# Biderman et al. 2023 (Pythia), Table 1, "Total Params" (exact integers).
PYTHIA_TABLE_1 = {
    "pythia-160m": 162_322_944, "pythia-410m": 405_334_016, "pythia-1b": 1_011_781_632,
    "pythia-1.4b": 1_414_647_808, "pythia-2.8b": 2_775_208_960, "pythia-6.9b": 6_857_302_016,
    "pythia-12b": 11_846_072_320,
}


@pytest.mark.parametrize("name,published", PYTHIA_TABLE_1.items())
def test_pythia_counts_are_table_1(name, published):
    assert count_params(get_preset(name)).total == published


def test_llama_3_1_8b_file_gives_the_published_8_030_261_248():
    # issue 12's done-when figure: the parameter count of the released Llama 3.1 8B (its safetensors index)
    assert count_params(read_hf_config(CONFIGS / "llama-3.1-8b.json")).total == 8_030_261_248


@pytest.mark.parametrize("name,total,active,rel,source", [
    # Jiang et al. 2024, sec. 2.1: "47B parameters ... 13B active parameters during inference"
    ("mixtral-8x7b", 47e9, 13e9, 0.04, "Mixtral paper sec. 2.1 (rounded to 1B)"),
])
def test_moe_total_and_active_match_the_paper(name, total, active, rel, source):
    pc = count_params(get_preset(name))
    assert pc.total == pytest.approx(total, rel=rel), source
    assert pc.active == pytest.approx(active, rel=rel), source
    assert pc.active < pc.total


def test_qwen_moe_total_and_active_match_the_model_card():
    # Qwen1.5-MoE-A2.7B model card: "14.3B parameters in total and 2.7B activated parameters during runtime"
    pc = count_params(read_hf_config(CONFIGS / "qwen1.5-moe-a2.7b.json"))
    assert round(pc.total / 1e8) == 143 and round(pc.active / 1e8) == 27


def test_active_equals_total_minus_the_unused_experts():
    # limit cases: top_k = n_expert uses every expert; one expert of top-1 is a dense model of that width
    moe = get_preset("mixtral-8x7b")
    assert count_params(moe.with_(top_k=8)).active == count_params(moe).total
    one = count_params(moe.with_(n_expert=1, top_k=1))
    dense = count_params(moe.with_(n_expert=0, top_k=0))
    assert one.total - one.router == dense.total and one.active == one.total


def test_every_family_preset_names_its_source():
    for name in ALL_PRESETS:
        assert PRESET_SOURCES[name].startswith(("config.json of huggingface.co/", "Radford")), name
    assert all(c.name == k for k, c in FAMILY_PRESETS.items())


# ------------------------------------------------------------------ bad files: one line naming the field


@pytest.mark.parametrize("data,words", [
    ({"model_type": "llama", "hidden_size": 64}, "field 'num_attention_heads' is missing"),
    ({"model_type": "bert"}, "model_type 'bert' is not supported"),
    ({"hidden_size": 64}, "field 'model_type' is missing"),
    ({**json.loads((CONFIGS / "llama-3.1-8b.json").read_text()), "hidden_act": "relu"}, "field 'hidden_act'"),
    ({**json.loads((CONFIGS / "llama-3.1-8b.json").read_text()), "num_hidden_layers": "32"},
     "field 'num_hidden_layers' must be a positive integer"),
    ({**json.loads((CONFIGS / "qwen1.5-moe-a2.7b.json").read_text()), "mlp_only_layers": [0]},
     "field 'mlp_only_layers'"),
    ([1, 2], "expected a JSON object"),
])
def test_unreadable_configs_are_one_line(data, words):
    with pytest.raises(UsageError, match=words) as e:
        config_from_hf(data)
    assert "\n" not in str(e.value)


def test_bad_json_and_missing_file_are_one_line(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{\"model_type\": \"llama\",}")
    with pytest.raises(UsageError, match="not valid JSON"):
        read_hf_config(bad)
    with pytest.raises(UsageError, match="does not exist"):
        read_hf_config(tmp_path / "nope.json")
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + (CONFIGS / "gpt2.json").read_bytes())
    assert count_params(read_hf_config(bom)).total == count_params(get_preset("gpt2")).total


@pytest.mark.parametrize("kw,words", [
    ({"n_kv_head": 5}, "multiple of n_kv_head"),
    ({"top_k": 2}, "give n_expert"),
    ({"n_expert": 4, "top_k": 5}, "top_k must be between"),
    ({"ffn_dim": 100, "mlp_ratio": 3.0}, "give the MLP width once"),
    ({"position": "rope", "pos_embedding": True}, "contradicts"),
    ({"mlp": "relu"}, "mlp must be one of"),
])
def test_contradictory_descriptions_are_refused(kw, words):
    with pytest.raises(UsageError, match=words):
        ModelConfig(n_layer=2, n_head=8, n_embd=64, **kw)


# ------------------------------------------------------------------ the Llama family's shaping rule


def test_llama3_ffn_rule_gives_the_released_widths():
    # Llama 3 8B and 70B config.json: intermediate_size 14336 at width 4096, 28672 at width 8192
    from flopscalc.model import llama3_ffn_dim

    assert (llama3_ffn_dim(4096), llama3_ffn_dim(8192)) == (14336, 28672)


def test_llama_family_shapes_8b_parameters_as_llama_3_1_8b():
    from flopscalc.model import config_for_params

    cfg = config_for_params(8.03e9, family="llama")
    ref = get_preset("llama-3.1-8b")
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.kv_heads, cfg.n_inner, cfg.mlp, cfg.norm, cfg.pos) == \
        (ref.n_layer, ref.n_head, ref.n_embd, ref.kv_heads, ref.n_inner, ref.mlp, ref.norm, ref.pos)


@pytest.mark.parametrize("target", [3e9, 7e9, 7e10, 4e11])
def test_llama_family_keeps_eight_kv_heads_and_lands_within_two_percent(target):
    from flopscalc.model import config_for_params

    cfg = config_for_params(target, family="llama")
    assert cfg.kv_heads == 8 and cfg.n_head % 8 == 0 and cfg.head_dim == 128
    assert count_params(cfg).total == pytest.approx(target, rel=0.02)


def test_unknown_family_is_one_line():
    from flopscalc.model import config_for_params

    with pytest.raises(UsageError, match="unknown model family 'gpt5'; accepted: gpt2, llama"):
        config_for_params(1e9, family="gpt5")


def test_each_family_lists_presets_of_its_own_block():
    from flopscalc.model import FAMILIES

    for fam in FAMILIES.values():
        for name, cfg in fam.preset_configs().items():
            assert (cfg.mlp, cfg.norm, cfg.pos, cfg.vocab_size) == \
                (fam.base.mlp, fam.base.norm, fam.base.pos, fam.base.vocab_size), name
