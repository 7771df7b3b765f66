"""`flopscalc finetune` on inputs a user really gives."""

from __future__ import annotations

import json

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


# Phi-3 (microsoft/Phi-3-mini-4k-instruct config.json, shrunk): qkv_proj and gate_up_proj are fused modules
PHI3_SMALL = {"model_type": "phi3", "hidden_size": 64, "intermediate_size": 96, "num_attention_heads": 8,
              "num_hidden_layers": 3, "num_key_value_heads": 8, "vocab_size": 97, "max_position_embeddings": 128,
              "hidden_act": "silu", "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "pad_token_id": None,
              "bos_token_id": None, "eos_token_id": None}


def _peft_trainable(data: dict, targets) -> int:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    transformers.logging.set_verbosity_error()
    cfg = transformers.AutoConfig.for_model(**data)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=targets, lora_dropout=0.0))
    return model.get_nb_trainable_parameters()[0]


def test_phi3_fused_projections_take_one_adapter_each_in_peft(one_torch_thread):
    # was: 'finetune --config phi3.json --method lora' counted adapters on separate q, k, v, gate, up; peft puts
    # one on qkv_proj and one on gate_up_proj, so every LoRA number of a Phi-3 was off
    from flopscalc.finetune.adapters import TARGETS, check_lora_model, count_adapters, parse_targets
    from flopscalc.hf_config import config_from_hf

    cfg = config_from_hf(PHI3_SMALL, name="phi3-small")
    assert count_adapters(cfg, TARGETS, 4, 0).n_params != _peft_trainable(PHI3_SMALL, "all-linear")
    with pytest.raises(UsageError, match="qkv_proj"):
        check_lora_model(cfg, TARGETS)
    # the unfused ones are exact
    check_lora_model(cfg, parse_targets("o,down"))
    assert count_adapters(cfg, ("o", "down"), 4, 0).n_params == _peft_trainable(PHI3_SMALL, ["o_proj", "down_proj"])


def test_phi3_lora_on_fused_targets_is_one_usage_line(tmp_path, capsys):
    path = tmp_path / "phi3.json"
    path.write_text(json.dumps(PHI3_SMALL), encoding="utf-8")
    argv = ["finetune", "--config", str(path), "--gpu", "4090", "--dataset-tokens", "1M", "--method", "lora"]
    assert run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--targets o,down" in err
    assert run([*argv, "--targets", "o,down"]) == 0


@pytest.mark.parametrize("option, value", [("--epochs", "inf"), ("--epochs", "1e400")])
def test_infinite_epochs_are_refused(capsys, option, value):
    # was: rc 0 and 'time: nan for 1.0M tokens x inf epochs (inf processed, padded, nan% padding; inf FLOP)'
    assert run(["finetune", "--model", LLAMA, "--gpu", "h100", "--dataset-tokens", "1M", option, value]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "finite" in err
