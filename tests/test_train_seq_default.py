"""The default training sequence of a fixed model: one rule (`model.default_train_seq`) for every training command.

Each preset's default is checked against the number its paper states (written here from the papers, not read from
the presets), the commands are checked to agree on it, a config.json model keeps its context, an explicit --seq
always wins, and the plan that shapes its own models (the README's 4070 Ti job) keeps 1024.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import cli, cli_json

from flopscalc.errors import UsageError
from flopscalc.hardware import get_gpu
from flopscalc.memory import TrainingSetup, estimate_memory
from flopscalc.model import ALL_PRESETS, ModelConfig, default_train_seq, get_preset, seq_source
from flopscalc.planner.request import DEFAULT_SEQ_LEN, PlanRequest

ROOT = Path(__file__).resolve().parents[1]
LLAMA_JSON = str(ROOT / "data" / "configs" / "llama-3.1-8b.json")
MISTRAL_JSON = str(ROOT / "data" / "configs" / "mistral-7b-v0.1.json")


@dataclass(frozen=True)
class Ref:
    preset: str
    seq_len: int  # tokens per sequence in pretraining, as the source states it
    source: str


# The pretraining sequence length each paper states (the initial phase where a long-context phase followed).
PUBLISHED = [
    *(Ref(n, 1024, "Radford et al. 2019, sec. 2.3: 'increase the context size from 512 to 1024 tokens'")
      for n in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")),
    *(Ref(n, 4096, "Touvron et al. 2023, sec. 2.2 and Table 1: context length 4k (doubled from Llama 1's 2k)")
      for n in ("llama-2-7b", "llama-2-13b", "llama-2-70b")),
    *(Ref(n, 8192, "Dubey et al. 2024, sec. 3.4.1: pre-trained with a context window of 8K tokens, then extended "
          "to 128K in long-context pre-training (sec. 3.4.2)") for n in ("llama-3.1-8b", "llama-3.1-70b",
                                                                         "llama-3.1-405b")),
    *(Ref(n, 8192, "Meta Llama 3 model card (meta-llama/llama3 MODEL_CARD.md): context length 8k for 8B and 70B, "
          "the 8,192 of their config.json; no long-context phase (that is Llama 3.1)") for n in ("llama-3-8b",
                                                                                             "llama-3-70b")),
    Ref("mistral-7b", 8192, "Jiang et al. 2023, Table 1: context_len 8192 (window_size 4096)"),
    Ref("mixtral-8x7b", 32768, "Jiang et al. 2024, sec. 2: 'trained with a context size of 32k tokens'"),
    *(Ref(n, 4096, "Qwen2.5 technical report (arXiv:2412.15115): initial pre-training at 4,096 tokens, extended to "
          "32,768 in the final pre-training stage") for n in ("qwen2.5-7b", "qwen2.5-72b")),
    Ref("olmo-2-7b", 4096, "OLMo Team 2024 (arXiv:2501.00656): 4096-token sequences"),
    *(Ref(n, 2048, "Biderman et al. 2023, sec. 2.1: sequence length 2048")
      for n in ("pythia-160m", "pythia-410m", "pythia-1b", "pythia-1.4b", "pythia-2.8b", "pythia-6.9b",
                "pythia-12b")),
]


def test_every_preset_has_a_published_reference():
    assert {r.preset for r in PUBLISHED} == set(ALL_PRESETS)


@pytest.mark.parametrize("ref", PUBLISHED, ids=lambda r: r.preset)
def test_preset_default_is_the_published_pretraining_length(ref):
    cfg = get_preset(ref.preset)
    assert default_train_seq(cfg) == ref.seq_len, ref.source
    src = seq_source(cfg, None)
    assert src.kind == "pretraining" and src.seq_len == ref.seq_len and src.citation
    assert ref.seq_len <= cfg.block_size  # never beyond the context


def test_context_is_not_the_default_where_a_long_context_phase_followed():
    # the config.json contexts (max_position_embeddings): 131,072 for Llama 3.1 and Qwen2.5, 32,768 for Mistral 7B
    for name, context in (("llama-3.1-8b", 131072), ("qwen2.5-7b", 131072), ("mistral-7b", 32768)):
        cfg = get_preset(name)
        assert cfg.block_size == context and default_train_seq(cfg) < context


def test_a_shorter_context_clamps_the_pretraining_length_and_equal_models_compare_equal():
    llama = get_preset("llama-3.1-8b")
    assert default_train_seq(llama.with_(block_size=4096)) == 4096  # no sequence is longer than the context
    assert default_train_seq(llama.with_(block_size=16384)) == 8192
    assert default_train_seq(llama.with_(n_layer=2)) == 8192  # a shape change keeps the model's pretraining length
    # a pretraining length equal to the context is the context: GPT-2 small is still GPT-2 small
    assert get_preset("gpt2") == ModelConfig(n_layer=12, n_head=12, n_embd=768, name="gpt2")
    assert hash(get_preset("gpt2")) == hash(ModelConfig(n_layer=12, n_head=12, n_embd=768, name="gpt2"))
    with pytest.raises(UsageError, match="cannot exceed the context"):
        ModelConfig(n_layer=2, n_head=2, n_embd=64, block_size=512, train_seq=1024)


def test_engines_use_the_rule_when_no_sequence_is_given():
    llama = get_preset("llama-3.1-8b")
    assert estimate_memory(llama, TrainingSetup()).seq_len == 8192
    h100 = get_gpu("h100")
    assert PlanRequest(h100, model=llama, n_tokens=1e9).seq_len == 8192
    assert PlanRequest(h100, duration_s=86400.0).seq_len == DEFAULT_SEQ_LEN == 1024  # shapes its own models
    assert PlanRequest(h100, model=llama, n_tokens=1e9, seq_len=2048).seq_len == 2048


def _setup_seq(d: dict) -> int:
    return d["recommended"]["setup"]["seq_len"]


# Llama 3.1 8B: 8,192 of a 131,072-token context (Dubey et al. 2024); Llama 3 8B: its whole 8,192-token context (its
# model card), the same default from another source
@pytest.mark.parametrize("model,expected", [("llama-3.1-8b", 8192), ("llama-3-8b", 8192), ("gpt2", 1024)])
def test_memory_step_flops_plan_and_hparams_agree_on_the_default(capsys, model, expected):
    mem = cli_json(capsys, "memory", "--model", model, "--gpu", "h100")
    step = cli_json(capsys, "step", "--model", model, "--gpu", "h100")
    flops = cli_json(capsys, "flops", "--model", model, "--tokens", "1e9")
    plan = cli_json(capsys, "plan", "--gpu", "h100", "--n-gpus", "512", "--model", model, "--tokens", "1e12")
    hparams = cli_json(capsys, "scaling", "hparams", "--model", model, "--tokens", "1e12")
    assert (mem["setup"]["seq_len"], step["seq_len"], flops["seq_len"], _setup_seq(plan), hparams["seq_len"]) == (
        expected,) * 5
    for d in (mem["setup"], step, flops, plan, hparams):
        assert d["seq_len_source"].startswith("pretraining (")
    # a layout step (the layout engine) takes the same default
    lay = cli_json(capsys, "step", "--model", model, "--gpu", "h100", "--n-gpus", "16", "--tp", "2")
    assert lay["seq_len"] == expected and lay["seq_len_source"] == mem["setup"]["seq_len_source"]


def test_the_header_says_where_the_default_came_from_once(capsys):
    code, out, _ = cli(capsys, "memory", "--model", "llama-3.1-8b", "--gpu", "h100")
    assert code == 0
    flat = " ".join(out.split())  # however the terminal wraps it
    assert "sequence 8192 (llama-3.1-8b's pretraining length, Dubey et al. 2024, sec. 3.4.1; context 131072; --seq " \
           "to change)" in flat
    assert flat.count("pretraining length") == 1
    # a layout search: in its title, not again in the best layout's detail below it
    code, out, _ = cli(capsys, "step", "--model", "llama-3.1-8b", "--gpu", "h100", "--n-gpus", "16", "--search")
    assert code == 0 and " ".join(out.split()).count("pretraining length") == 1


def test_a_config_json_trains_at_the_context_before_rope_scaling_else_at_its_context(capsys):
    # Llama 3.1's config.json states max_position_embeddings 131,072 and, in rope_scaling,
    # original_max_position_embeddings 8,192: the length it was pretrained at (Dubey et al. 2024, sec. 3.4)
    mem = cli_json(capsys, "memory", "--config", LLAMA_JSON, "--gpu", "h100")
    flops = cli_json(capsys, "flops", "--config", LLAMA_JSON, "--tokens", "1e9")
    assert mem["setup"]["seq_len"] == flops["seq_len"] == 8192
    assert mem["setup"]["seq_len_source"].startswith("pretraining (")
    # Mistral 7B v0.1's states only its 32,768 context: that is the default, and the header says so
    mem = cli_json(capsys, "memory", "--config", MISTRAL_JSON, "--gpu", "h100")
    flops = cli_json(capsys, "flops", "--config", MISTRAL_JSON, "--tokens", "1e9")
    assert mem["setup"]["seq_len"] == flops["seq_len"] == 32768
    assert mem["setup"]["seq_len_source"] == flops["seq_len_source"] == "context"
    code, out, _ = cli(capsys, "flops", "--config", MISTRAL_JSON, "--tokens", "1e9")
    assert code == 0 and "config.json or a shape states no pretraining length" in " ".join(out.split())


def test_a_config_plan_that_fits_nowhere_at_its_context_names_the_context_and_a_sequence_to_pass(capsys):
    # at Mistral 7B's 32,768-token context the lightest setup needs more than one A100-40GB holds; at 8,192 it fits:
    # the one line says the length is the context and what to pass (exit 1: no answer at the default)
    code, _, err = cli(capsys, "plan", "--config", MISTRAL_JSON, "--gpu", "a100-40gb", "--days", "30")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "sequence 32768)" in err and "32768 is the model's context" in err and "--seq 8192" in err
    code, _, err = cli(capsys, "plan", "--config", MISTRAL_JSON, "--gpu", "a100-40gb", "--days", "30", "--seq", "8192")
    assert code == 0, err
    # where the weights and optimizer alone do not fit (one 24 GB card), no sequence is suggested: none would help
    code, _, err = cli(capsys, "plan", "--config", MISTRAL_JSON, "--gpu", "4090", "--days", "30")
    assert code == 1 and "--seq" not in err and "context" not in err


def test_an_explicit_seq_always_wins(capsys):
    for argv in (("memory", "--gpu", "h100"), ("step", "--gpu", "h100"), ("flops", "--tokens", "1e9")):
        d = cli_json(capsys, argv[0], "--model", "llama-3.1-8b", *argv[1:], "--seq", "2048")
        d = d.get("setup", d)
        assert d["seq_len"] == 2048 and d["seq_len_source"] == "--seq"
    plan = cli_json(capsys, "plan", "--gpu", "h100", "--n-gpus", "512", "--model", "llama-3.1-8b", "--tokens",
                    "1e12", "--seq", "4096")
    assert _setup_seq(plan) == 4096 and plan["seq_len_source"] == "--seq"
    # longer than the context of a RoPE model: taken as asked (with a warning), never capped
    long = cli_json(capsys, "memory", "--model", "llama-3.1-8b", "--gpu", "h100", "--seq", "262144")
    assert long["setup"]["seq_len"] == 262144
    # longer than a learned position table: refused in one line, as before
    code, _, err = cli(capsys, "memory", "--model", "gpt2", "--gpu", "h100", "--seq", "2048")
    assert code == 2 and "learned position table" in err


def test_a_plan_of_a_model_shaped_by_params_trains_it_as_the_shapes_a_plan_searches(capsys):
    # a shape states no pretraining length: in a plan it trains at the planner's 1024, as the shapes a plan tries do,
    # in either family (a Llama shape at its 8,192-token context fits no 12 GB card: the 4070 Ti plan must answer)
    gpt2 = cli_json(capsys, "plan", "--params", "350M", "--tokens", "1e10", "--gpu", "h100")
    llama = cli_json(capsys, "plan", "--params", "1B", "--family", "llama", "--tokens", "1e10", "--gpu", "h100")
    assert (_setup_seq(gpt2), _setup_seq(llama)) == (1024, 1024)
    assert gpt2["seq_len_source"].startswith("planner default") and llama["seq_len_source"].startswith("planner")
    small = cli_json(capsys, "plan", "--params", "1B", "--family", "llama", "--gpu", "4070ti", "--days", "30")
    assert _setup_seq(small) == 1024
    # the explicit --seq still wins, and memory keeps the shape's context (a fixed model outside a plan)
    assert _setup_seq(cli_json(capsys, "plan", "--params", "1B", "--family", "llama", "--tokens", "1e10", "--gpu",
                               "h100", "--seq", "4096")) == 4096
    mem = cli_json(capsys, "memory", "--params", "1B", "--gpu", "h100")["setup"]
    assert (mem["seq_len"], mem["seq_len_source"]) == (1024, "context")  # GPT-2's rule shapes on its 1,024 context


def test_the_plan_that_shapes_its_models_keeps_1024_and_prints_no_note(capsys):
    d = cli_json(capsys, "plan", "--gpu", "4070ti", "--days", "365")
    assert _setup_seq(d) == 1024 and d["seq_len_source"].startswith("planner default")
    code, out, _ = cli(capsys, "plan", "--gpu", "4070ti", "--days", "365")
    assert code == 0 and "pretraining length" not in out and "--seq to change" not in out


def test_the_models_listing_shows_each_presets_training_length_beside_its_context(capsys):
    # Dubey et al. 2024 sec. 3.4.1: Llama 3.1 pretrained at 8,192 tokens, its context 131,072 after long-context
    # training; GPT-2 (Radford et al. 2019 sec. 2.3) trained at its 1,024-token context
    import json

    from flopscalc.cli import run

    assert run(["models", "--json"]) == 0
    rows = {m["name"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert (rows["llama-3.1-8b"]["train_seq"], rows["llama-3.1-8b"]["block_size"]) == (8192, 131072)
    assert "Dubey et al. 2024" in rows["llama-3.1-8b"]["train_seq_source"]
    assert rows["gpt2"]["train_seq"] == rows["gpt2"]["block_size"] == 1024
    assert run(["models"]) == 0
    assert "train seq" in capsys.readouterr().out


def test_a_configs_original_context_is_read_only_where_it_is_shorter_and_refused_when_malformed():
    import json

    from flopscalc.hf_config import config_from_hf

    data = json.loads(Path(LLAMA_JSON).read_text())
    assert config_from_hf(data).train_seq == 8192  # rope_scaling.original_max_position_embeddings
    same = {**data, "rope_scaling": {**data["rope_scaling"], "original_max_position_embeddings": 131072}}
    assert config_from_hf(same).train_seq is None  # no shorter pretraining length stated: the context
    newer = {**data, "rope_parameters": data["rope_scaling"]}  # transformers 5's name for the same block
    del newer["rope_scaling"]
    assert config_from_hf(newer).train_seq == 8192
    bad = {**data, "rope_scaling": {**data["rope_scaling"], "original_max_position_embeddings": "8k"}}
    with pytest.raises(UsageError, match="original_max_position_embeddings"):
        config_from_hf(bad)


def test_hparams_names_a_default_sequences_source_in_its_title_and_refuses_one_past_a_learned_table(capsys):
    code, out, _ = cli(capsys, "scaling", "hparams", "--model", "llama-3.1-8b", "--tokens", "1e12")
    assert code == 0 and " ".join(out.split()).count("pretraining length") == 1
    code, out, _ = cli(capsys, "scaling", "hparams", "--model", "llama-3.1-8b", "--tokens", "1e12", "--seq", "4096")
    assert code == 0 and "pretraining length" not in out  # a given --seq needs no note
    # GPT-2's learned position table has 1024 rows: memory, step, flops and plan refuse a longer sequence, and so does
    # hparams (it priced one before)
    code, _, err = cli(capsys, "scaling", "hparams", "--model", "gpt2", "--tokens", "1e10", "--seq", "4096")
    assert code == 2 and "learned position table" in err and len(err.strip().splitlines()) == 1


def test_a_replaced_plan_request_resolves_its_default_sequence_again():
    # dataclasses.replace passes every field: a default resolved for one model must be neither relabelled as given
    # nor carried to another model
    import dataclasses

    req = PlanRequest(get_gpu("h100"), None, n_gpus=512, model=get_preset("llama-3.1-8b"), n_tokens=1e12)
    assert (req.seq_len, req.seq_len_source.kind) == (8192, "pretraining")
    more = dataclasses.replace(req, n_gpus=1024)
    assert (more.seq_len, more.seq_len_source.kind) == (8192, "pretraining")
    other = dataclasses.replace(req, model=get_preset("llama-2-7b"))
    assert (other.seq_len, other.seq_len_source.kind) == (4096, "pretraining")
    given = dataclasses.replace(req, seq_len=2048)
    assert (given.seq_len, given.seq_len_source.kind) == (2048, "given")
    assert dataclasses.replace(given, n_gpus=8).seq_len == 2048  # a given length stays given
