"""`flopscalc train/bench/calibrate --lora-rank`: wiring, what is logged and measured, one-line refusals."""

from __future__ import annotations

import json

import pytest

from flopscalc.cli import run
from flopscalc.finetune.adapters import count_adapters
from flopscalc.model import ModelConfig

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHAPE = ["--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--vocab-size", "64"]
CFG = ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=64)
TRAIN = ["train", "--synthetic", *SHAPE, "--micro-batch", "4", "--eval-interval", "0", "--eval-batches", "1",
         "--warmup-steps", "1", "--device", "cpu", "--steps", "2", "--json"]


def test_train_with_lora_runs_and_logs_the_trainable_parameters(capsys):
    assert run([*TRAIN, "--lora-rank", "8", "--lora-targets", "q,v,down"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    n = count_adapters(CFG, ("q", "v", "down"), 8, 0).n_params
    assert out["steps_done"] == 2
    assert out["n_params_measured"] - out["n_params"] == n  # the module gained exactly the adapters
    assert f"{n:,} trainable parameters" in captured.err and "rank 8, alpha 8 on q,v,down" in captured.err


def test_bench_measures_the_lora_step(capsys):
    from flopscalc.train.lora import lora_model_flops_per_token

    assert run(["bench", *SHAPE, "--micro-batch", "2", "--seq", "16", "--device", "cpu", "--warmup-steps", "1",
                "--steps", "2", "--lora-rank", "8", "--lora-targets", "q,v", "--peak-tflops", "1", "--json"]) == 0
    point = json.loads(capsys.readouterr().out)["points"][0]
    lora = lora_model_flops_per_token(CFG, 16, 8, ("q", "v"))
    assert point["model_flops_per_token"] == lora
    assert point["achieved_flop_per_s"] == pytest.approx(point["tokens_per_s"] * lora, rel=1e-12)
    assert "LoRA r8" in json.dumps(point["model"])


@pytest.mark.parametrize("args,words", [
    ([*TRAIN, "--lora-alpha", "4"], "applies only to LoRA"),
    ([*TRAIN, "--lora-rank", "4", "--lora-targets", "gate"], "no gate projection"),
    ([*TRAIN, "--lora-rank", "4", "--lora-targets", "qkv"], "not one of"),
    (["train", "--synthetic", "--from-plan", "plan.json", "--lora-rank", "4"], "--from-plan"),
    (["bench", *SHAPE, "--lora-rank", "4", "--out", "p.json"], "calibration profile describes pre-training"),
    (["calibrate", "--out", "p.json", "--lora-rank", "4"], "does not price LoRA"),
])
def test_lora_refusals_are_one_line_exit_2(args, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(args) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and not (tmp_path / "p.json").exists()
