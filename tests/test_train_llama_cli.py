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
    assert run(["calibrate", "--out", str(out), "--config", str(config_file), *FAST]) == 0
    capsys.readouterr()
    point = load_profile(out).points[0]
    assert point.model == read_hf_config(config_file).with_(name=point.model.name)  # every family field survives
    assert point.model.family == "GQA 4/2, swiglu, rmsnorm, rope"
