"""`train`, `bench` and `calibrate` take the model from a Hugging Face config.json (``--config``), so they measure
the family a user plans: the Llama-style module runs, and what it reports is the file's model (count, FLOPs)."""

from __future__ import annotations

import json

import pytest

from flopscalc.cli import run
from flopscalc.flops import training_flops_per_token
from flopscalc.hf_config import read_hf_config
from flopscalc.model import count_params

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# a tiny Llama 3-style config.json, as a user writes one (LlamaConfig's field names)
TINY_LLAMA = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
              "num_key_value_heads": 2, "intermediate_size": 96, "vocab_size": 256, "max_position_embeddings": 64,
              "tie_word_embeddings": False, "hidden_act": "silu", "rms_norm_eps": 1e-5}
FAST = ["--device", "cpu", "--warmup-steps", "1", "--steps", "2", "--micro-batch", "2", "--seq", "16", "--json"]


@pytest.fixture()
def config_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY_LLAMA), encoding="utf-8")
    return path


def test_bench_times_the_config_files_model(config_file, capsys):
    assert run(["bench", "--config", str(config_file), *FAST]) == 0
    point = json.loads(capsys.readouterr().out)["points"][0]
    cfg = read_hf_config(config_file)
    assert cfg.kv_heads == 2 and cfg.mlp.value == "swiglu"
    assert point["n_params"] == count_params(cfg).total == 2 * 256 * 64 + 2 * (
        64 * (64 + 2 * 32) + 64 * 64 + 3 * 64 * 96 + 2 * 64) + 64  # embed + head, 2 blocks (GQA, SwiGLU, 2 norms), norm
    assert point["model_flops_per_token"] == training_flops_per_token(cfg, 16).model_flops_per_token


def test_bench_sweeps_a_preset_and_the_config_file_together(config_file, capsys):
    assert run(["bench", "--model", "gpt2", "--config", str(config_file), "--block-size", "64", "--vocab-size", "256",
                *FAST]) == 0
    points = json.loads(capsys.readouterr().out)["points"]
    assert len(points) == 2 and points[0]["n_params"] != points[1]["n_params"]


def test_train_runs_the_config_files_model(config_file, capsys):
    assert run(["train", "--synthetic", "--config", str(config_file), "--micro-batch", "4", "--seq", "32",
                "--steps", "3", "--warmup-steps", "1", "--eval-interval", "0", "--eval-batches", "1", "--device",
                "cpu", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_params"] == count_params(read_hf_config(config_file)).total


@pytest.mark.parametrize("stem,message", [("mixtral-8x7b-v0.1", "mixture-of-experts")])
def test_a_config_the_trainer_cannot_build_is_one_line_exit_2(stem, message, capsys):
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "data" / "configs" / f"{stem}.json"
    assert run(["bench", "--config", str(path), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_calibrate_writes_a_profile_that_reads_back_as_the_llama_style_model(config_file, tmp_path, capsys):
    from flopscalc.calibration import load_profile

    out = tmp_path / "profile.json"
    batches = [x for b in (1, 3, 4, 5) for x in ("--micro-batch", str(b))]  # with FAST's 2: the 5 setups a fit needs
    assert run(["calibrate", "--out", str(out), "--config", str(config_file), *FAST, *batches, "--rounds", "1"]) == 0
    capsys.readouterr()
    point = load_profile(out).points[0]
    assert point.model == read_hf_config(config_file).with_(name=point.model.name)  # every family field survives
    assert point.model.family == "GQA 4/2, swiglu, rmsnorm, rope"


# the same tiny Llama as TINY_LLAMA, spelled with the architecture flags flops and memory take
LLAMA_FLAGS = ["--n-layer", "2", "--n-head", "4", "--n-embd", "64", "--block-size", "64", "--vocab-size", "256",
               "--n-kv-head", "2", "--ffn", "96", "--mlp", "swiglu", "--norm", "rmsnorm", "--pos", "rope", "--no-bias",
               "--untie"]


def test_bench_builds_the_model_the_architecture_flags_describe(config_file, tmp_path, capsys):
    from flopscalc.calibration import load_profile

    out = tmp_path / "profile.json"
    assert run(["bench", *LLAMA_FLAGS, "--out", str(out), *FAST]) == 0
    capsys.readouterr()
    from flopscalc.memory import param_shapes

    model, file = load_profile(out).points[0].model, read_hf_config(config_file)
    assert param_shapes(model) == param_shapes(file)  # the config.json's model: every tensor, named and shaped
    assert training_flops_per_token(model, 64) == training_flops_per_token(file, 64)
    assert (model.family, model.norm_eps, model.rope_theta) == (file.family, file.norm_eps, file.rope_theta)


def test_the_flags_change_every_model_of_a_bench_sweep_and_train(capsys):
    assert run(["bench", "--model", "gpt2", "--block-size", "64", "--vocab-size", "256", "--mlp", "swiglu",
                "--norm", "rmsnorm", *FAST]) == 0
    point = json.loads(capsys.readouterr().out)["points"][0]
    gpt2_swiglu = read_gpt2(block_size=64, vocab_size=256).with_(mlp="swiglu", norm="rmsnorm")
    assert point["n_params"] == count_params(gpt2_swiglu).total != count_params(read_gpt2(64, 256)).total
    assert run(["train", "--synthetic", *LLAMA_FLAGS, "--micro-batch", "2", "--seq", "16", "--steps", "1",
                "--warmup-steps", "0", "--eval-interval", "0", "--eval-batches", "1", "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_params"] == count_params(
        read_gpt2(64, 256).with_(n_layer=2, n_head=4, n_embd=64, n_kv_head=2, ffn_dim=96, mlp="swiglu",
                                 norm="rmsnorm", position="rope", bias=False, tie_embeddings=False)).total


def read_gpt2(block_size, vocab_size):
    from flopscalc.model import get_preset

    return get_preset("gpt2").with_(block_size=block_size, vocab_size=vocab_size)


def test_train_takes_a_sequence_past_the_context_with_rope_and_refuses_it_with_a_learned_table(capsys):
    base = ["train", "--synthetic", "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "16",
            "--vocab-size", "64", "--micro-batch", "1", "--seq", "32", "--steps", "1", "--warmup-steps", "0",
            "--eval-interval", "0", "--eval-batches", "1", "--device", "cpu", "--json"]
    assert run([*base, "--pos", "rope"]) == 0
    assert json.loads(capsys.readouterr().out)["steps_done"] == 1
    assert run(base) == 2
    err = capsys.readouterr().err.strip()
    assert "learned position table" in err and "\n" not in err


@pytest.mark.parametrize("args,words", [
    (["calibrate", "--out", "p.json", "--mlp", "swiglu"], "--mlp would be ignored"),  # the built-in sweep's shapes
    (["train", "--synthetic", "--from-plan", "plan.json", "--norm", "rmsnorm"], "--from-plan sets --norm"),
    (["bench", "--model", "gpt2", "--mlp", "swiglu", "--experts", "4"], "No such option"),  # the trainer is dense
])
def test_flags_that_would_be_ignored_or_contradict_are_refused(args, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plan.json").write_text("{}", encoding="utf-8")
    assert run(args) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
