"""RoPE's base and the normalisation epsilon in the architecture description (``ModelConfig.rope_theta``, ``norm_eps``).

References: transformers' own config classes read the same config.json (``AutoConfig.for_model``: its
``rope_parameters["rope_theta"]`` and its epsilon field, with the model type's defaults when the file omits them);
the published config.json files in data/configs/ for the presets. Neither field may move a count, a FLOP or a byte.
The trainer's use of both is checked against ``LlamaForCausalLM``'s logits in tests/test_train_llama.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flopscalc.errors import UsageError
from flopscalc.flops import training_flops_per_token
from flopscalc.hf_config import config_from_hf, read_hf_config
from flopscalc.memory import TrainingSetup, estimate_memory
from flopscalc.model import ALL_PRESETS, ModelConfig, count_params

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"
CONFIG_FILES = sorted(CONFIGS.glob("*.json"))
# the epsilon's field per model type in transformers' config classes (OLMo's LayerNorm has none: eps fixed at 1e-5
# in modeling_olmo.py OlmoLayerNorm)
EPS_FIELD = {"gpt2": "layer_norm_epsilon", "gpt_neox": "layer_norm_eps", "olmo": None}
# the fields a config.json may carry for the two values (stripped to test the model type's defaults)
ROPE_EPS_KEYS = ("rope_theta", "rotary_emb_base", "rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon",
                 "rope_parameters", "rope_scaling")
# OlmoLayerNorm: F.layer_norm(..., eps=1e-5) (transformers 5.24, models/olmo/modeling_olmo.py)
OLMO_LAYER_NORM_EPS = 1e-5


def theirs(hf, data: dict) -> tuple[float | None, float]:
    """(RoPE base, epsilon) as transformers' config class reads ``data``; base None for a model without RoPE."""
    config = hf.AutoConfig.for_model(**data)
    rope = getattr(config, "rope_parameters", None)
    theta = rope["rope_theta"] if rope else None
    field = EPS_FIELD.get(data["model_type"], "rms_norm_eps")
    return theta, (getattr(config, field) if field else OLMO_LAYER_NORM_EPS)


def ours(cfg: ModelConfig) -> tuple[float | None, float]:
    return (cfg.rope_theta if cfg.pos.value == "rope" else None), cfg.norm_eps


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.stem)
def test_config_files_give_the_base_and_epsilon_transformers_reads(hf, path):
    data = json.loads(path.read_text())
    assert ours(read_hf_config(path)) == theirs(hf, data)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.stem)
def test_a_file_without_them_gets_the_model_types_defaults_as_transformers_does(hf, path):
    data = {k: v for k, v in json.loads(path.read_text()).items() if k not in ROPE_EPS_KEYS}
    assert ours(config_from_hf(data)) == theirs(hf, data)


def test_the_transformers_5_rope_parameters_block_is_read_first(hf):
    data = json.loads((CONFIGS / "llama-3.1-8b.json").read_text())
    data = {**{k: v for k, v in data.items() if k not in ROPE_EPS_KEYS},
            "rope_parameters": {"rope_type": "default", "rope_theta": 250000.0}, "rope_theta": 1.0}
    assert ours(config_from_hf(data)) == theirs(hf, data) == (250000.0, 1e-6)


@pytest.mark.parametrize("path", [p for p in CONFIG_FILES if p.stem.replace("-v0.1", "").replace("-1124", "")
                                  .replace("-hf", "") in ALL_PRESETS], ids=lambda p: p.stem)
def test_presets_carry_the_published_base_and_epsilon(path):
    name = path.stem.replace("-v0.1", "").replace("-1124", "").replace("-hf", "")
    assert ours(ALL_PRESETS[name]) == ours(read_hf_config(path))


def test_the_preset_files_cover_each_kind_of_value():
    # the comparison above is not vacuous: it meets both non-default bases and both epsilons
    covered = {ours(ALL_PRESETS[p.stem.replace("-v0.1", "").replace("-1124", "")])
               for p in CONFIG_FILES if p.stem.replace("-v0.1", "").replace("-1124", "") in ALL_PRESETS}
    assert {(500000.0, 1e-5), (1e6, 1e-5), (1e6, 1e-6), (500000.0, 1e-6), (10000.0, 1e-5)} <= covered
    assert ALL_PRESETS["llama-3.1-405b"].rope_theta == 500000.0  # Llama Team 2024, Table 3: "RoPE theta 500,000"


@pytest.mark.parametrize("name", ["gpt2", "llama-3.1-8b", "qwen2.5-7b", "olmo-2-7b", "pythia-160m"])
def test_the_base_and_epsilon_move_no_count_flop_or_byte(name):
    cfg = ALL_PRESETS[name].with_(n_layer=2)
    changes = {"norm_eps": 3e-3} | ({"rope_theta": 1234.5} if cfg.pos.value == "rope" else {})
    other = cfg.with_(**changes)
    assert other != cfg
    assert count_params(other) == count_params(cfg)
    assert training_flops_per_token(other, 512) == training_flops_per_token(cfg, 512)
    setup = TrainingSetup(micro_batch=2, seq_len=512)
    a, b = estimate_memory(other, setup), estimate_memory(cfg, setup)
    assert (a.states, a.activations, a.component_bytes()) == (b.states, b.activations, b.component_bytes())


@pytest.mark.parametrize("kw,words", [
    ({"rope_theta": 500000.0}, "RoPE's base"),  # learned positions: the base would be silently ignored
    ({"position": "rope", "rope_theta": 0.0}, "rope_theta must be a positive number"),
    ({"norm_eps": -1e-5}, "norm_eps must be a positive number"),
    ({"norm_eps": float("nan")}, "norm_eps must be a positive number"),
])
def test_an_ignored_or_impossible_value_is_one_line(kw, words):
    with pytest.raises(UsageError, match=words) as err:
        ModelConfig(n_layer=1, n_head=2, n_embd=32, **kw)
    assert "\n" not in str(err.value)


def test_leaving_rope_drops_its_base_and_a_bad_file_value_is_one_line():
    llama3 = ALL_PRESETS["llama-3.1-8b"]
    assert llama3.with_(position="learned").rope_theta == 10000.0  # the base belongs to RoPE
    assert llama3.with_(n_layer=2).rope_theta == 500000.0  # any other change keeps it
    data = json.loads((CONFIGS / "llama-3.1-8b.json").read_text())
    with pytest.raises(UsageError, match="'rms_norm_eps' must be a positive number") as err:
        config_from_hf({**data, "rms_norm_eps": "1e-5"})
    assert "\n" not in str(err.value)
