"""config.json files as users have them: published configs give the published sizes; bad values are one line."""

from __future__ import annotations

import json

import pytest

from flopscalc.cli import run
from flopscalc.errors import UsageError
from flopscalc.hf_config import config_from_hf
from flopscalc.model import count_params

# meta-llama/Meta-Llama-3-8B config.json (fields that set the shape), as published on the Hugging Face hub
LLAMA3_8B = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
             "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 128256,
             "max_position_embeddings": 8192, "rope_theta": 500000.0, "rms_norm_eps": 1e-05,
             "tie_word_embeddings": False, "hidden_act": "silu"}


def test_llama3_8b_is_the_published_size():
    # Dubey et al. 2024 Table 3 / model card: 8.03B parameters
    assert count_params(config_from_hf(LLAMA3_8B)).total == 8_030_261_248


@pytest.mark.parametrize("key", ["rope_theta", "rms_norm_eps"])
def test_infinite_float_field_names_the_field(tmp_path, capsys, key):
    # Python's json reads the non-standard 'Infinity'; it was let through as "positive" and refused later
    # without the file or the field ("model rope_theta must be a positive number, got inf")
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**LLAMA3_8B, key: float("inf")}), encoding="utf-8")
    assert run(["flops", "--config", str(path), "--tokens", "1B"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err and f"'{key}'" in err and "finite" in err


def test_infinite_nested_rope_theta_is_refused():
    with pytest.raises(UsageError, match=r"'rope_theta' must be a positive number \(and finite\), got inf"):
        config_from_hf({**LLAMA3_8B, "rope_scaling": {"rope_theta": float("inf")}})
