"""A pretraining-length citation belongs to the preset itself, not to its name (review leftovers, item c).

`model.seq_source` cites a paper for a default sequence only for the preset that paper describes
(`presets.PRETRAIN_SEQ_SOURCES`, keyed on the configuration): a config.json or a user's model named like a preset,
and a preset whose shape or architecture was changed, borrow none.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import cli_json

from flopscalc.model import ALL_PRESETS, ModelConfig, get_preset, resolve_model, seq_source

ROOT = Path(__file__).resolve().parents[1]
LLAMA_JSON = str(ROOT / "data" / "configs" / "llama-3.1-8b.json")
# the papers' authors as the presets cite them (tests/test_train_seq_default.py checks each length against its paper)
RADFORD, DUBEY = "Radford et al. 2019", "Dubey et al. 2024"


@pytest.mark.parametrize("name", sorted(ALL_PRESETS))
def test_every_preset_cites_its_own_source_under_its_own_name(name):
    src = seq_source(get_preset(name), None)
    assert src.kind == "pretraining" and src.model_name == name and src.citation


def test_a_model_named_like_a_preset_borrows_no_citation():
    # a user's GPT-2-named model with a 2,048 context pretrained at 1,024: the 1,024 is its own, not Radford's
    mine = ModelConfig(n_layer=2, n_head=2, n_embd=64, block_size=2048, train_seq=1024, name="gpt2")
    src = seq_source(mine, None)
    assert src.seq_len == 1024 and src.kind == "pretraining" and RADFORD not in src.citation
    # and a preset's own shape under another name is not the preset either
    renamed = get_preset("llama-3.1-8b").with_(name="my-llama")
    assert DUBEY not in seq_source(renamed, None).citation and seq_source(renamed, None).seq_len == 8192
    assert seq_source(get_preset("gpt2").with_(name="my-gpt2"), None).kind == "context"


def test_a_changed_preset_keeps_the_length_but_not_the_citation():
    for cfg in (get_preset("llama-3.1-8b").with_(n_layer=2),
                resolve_model("llama-3.1-8b", arch={"norm": "layernorm"})):  # 'llama-3.1-8b (norm=layernorm)'
        src = seq_source(cfg, None)
        assert src.seq_len == 8192 and DUBEY not in src.citation, cfg.name
    assert seq_source(resolve_model("gpt2", arch={"vocab": 50304}), None).kind == "context"


def test_a_config_json_named_like_the_preset_cites_its_own_file(capsys):
    # data/configs/llama-3.1-8b.json is named by its file; its 8,192 comes from its rope_scaling block
    assert resolve_model(config_file=LLAMA_JSON).name == "llama-3.1-8b"
    source = cli_json(capsys, "memory", "--config", LLAMA_JSON, "--gpu", "h100")["setup"]["seq_len_source"]
    assert source.startswith("pretraining (") and "original_max_position_embeddings" in source and DUBEY not in source
    preset = cli_json(capsys, "memory", "--model", "llama-3.1-8b", "--gpu", "h100")["setup"]["seq_len_source"]
    assert DUBEY in preset
