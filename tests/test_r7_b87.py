"""Review r7, helper b87: pipeline p2p across nodes priced on the network; a resume refusal names only the warm-up
the user typed; a CPU profile's step says "1 process"; --n-kv-head 0 worded as the option."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flopscalc.cli import run
from flopscalc.hardware import get_gpu
from flopscalc.layout.cluster import NETWORK_BUS_EFFICIENCY, cluster_for
from flopscalc.layout.spec import Layout
from flopscalc.layout.time import layout_time
from flopscalc.model import ModelConfig

ROOT = Path(__file__).resolve().parents[1]
LLAMA_FILE = ROOT / "data" / "configs" / "llama-3.1-8b.json"


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# ---- 1. pipeline p2p: the inter-node network whenever adjacent stages' ranks sit on different nodes --------------


def _crosses_by_placement(g: int, p: int, v: int, per_node: int) -> bool:
    """Rank placement enumerated (Megatron-LM parallel_state, order tp-cp-ep-dp-pp: stage k holds ranks
    k g .. (k+1) g - 1 and rank r's next stage is r + g; interleaving also sends the last stage's chunk back to the
    first): does any stage-to-stage pair sit on two nodes?"""
    pairs = [(k * g + j, (k + 1) * g + j) for k in range(p - 1) for j in range(g)]
    if v > 1:
        pairs += [((p - 1) * g + j, j) for j in range(g)]
    return any(a // per_node != b // per_node for a, b in pairs)


CFG = ModelConfig(n_layer=16, n_head=24, n_embd=1536, block_size=1024, vocab_size=50304)


def _time(n_gpus, tp, pp, dp, v, gbps):
    layout = Layout(tp=tp, pp=pp, interleave=v, dp=dp, micro_batch=4, n_micro=8, zero_stage=1 if dp > 1 else 0)
    cluster = cluster_for(get_gpu("h100"), n_gpus, network_gbps=gbps if n_gpus > 8 else None)
    return layout_time(CFG, layout, cluster, 1024), cluster


@pytest.mark.parametrize("n_gpus,tp,pp,dp,v", [
    (16, 1, 4, 4, 2),  # r7: stage 1 -> 2 crosses the node boundary; the old span 2 x tp x dp = 8 fitted one node
    (16, 1, 4, 4, 1), (16, 2, 8, 1, 1), (16, 1, 2, 8, 1), (8, 1, 4, 2, 1), (8, 2, 4, 1, 2), (32, 2, 4, 4, 1),
    (64, 8, 8, 1, 1), (4, 1, 2, 2, 1),
])
def test_pipeline_p2p_uses_the_network_exactly_when_a_stage_boundary_crosses_nodes(n_gpus, tp, pp, dp, v):
    crosses = _crosses_by_placement(tp * dp, pp, v, 8)
    slow, cluster = _time(n_gpus, tp, pp, dp, v, 0.1)
    act = 2 * 4 * 1024 * CFG.n_embd / tp  # [1] 4.1: b s h / t 16-bit bytes per transfer
    transfers = 2 * v * 8  # one activation forward, one gradient back, per chunk and micro-batch (m = 8)
    if crosses:  # at 0.1 Gb/s, and the step slower than on 400 Gb/s
        per_transfer_s = act / (0.1e9 / 8 * NETWORK_BUS_EFFICIENCY)
        assert slow.pp_comm_s == pytest.approx(transfers * per_transfer_s, rel=1e-3)
        assert slow.step_s > _time(n_gpus, tp, pp, dp, v, 400)[0].step_s
    else:  # the whole pipeline inside one node: its NVLink bus and hop
        assert slow.pp_comm_s == pytest.approx(
            transfers * (act / cluster.intra_bus_bytes_per_s + cluster.intra_hop_s), rel=1e-12)


def test_step_cli_prices_the_crossing_pipeline_on_the_network(capsys):
    args = ["step", "--n-layer", "14", "--n-head", "24", "--n-embd", "1536", "--gpu", "h100", "--n-gpus", "16", "--pp",
            "4", "--interleave", "2", "--micro-batch", "4", "--grad-accum", "32", "--zero", "1", "--json"]
    steps = {}
    for gbps in ("400", "10", "0.1"):
        assert run([*args, "--network-gbps", gbps]) == 0
        steps[gbps] = json.loads(capsys.readouterr().out)
    assert steps["400"]["step_s"] < steps["10"]["step_s"] < steps["0.1"]["step_s"]
    # 12.6 MB per transfer at 12.5 MB/s: about a second each, 2 x v x m = 128 of them
    assert steps["0.1"]["time_s"]["pipeline p2p"] > 128 * 2 * 4 * 1024 * 1536 / 12.5e6


# ---- 2. a resume refusal names --warmup-steps only as the user gave it --------------------------------------------

SHAPE = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--vocab-size", "64"]
TRAIN = ["--synthetic", *SHAPE, "--seq", "16", "--eval-interval", "0", "--eval-batches", "1", "--device", "cpu",
         "--json"]


@pytest.fixture
def six_steps(tmp_path, capsys, one_torch_thread):
    """A 6-step run with the default warm-up (cut to a tenth of the run: 0 steps) and its checkpoint."""
    ck = tmp_path / "ck.pt"
    args = [*TRAIN, "--micro-batch", "2", "--checkpoint", str(ck)]
    assert run(["train", *args, "--steps", "6"]) == 0
    capsys.readouterr()
    return args


def test_a_refused_resume_labels_the_derived_warm_up_as_the_default(six_steps, capsys):
    assert run(["train", *six_steps, "--steps", "10", "--resume"]) == 2
    err = _err_line(capsys)
    assert "--steps 10 (checkpoint: 6)" in err
    assert "--warmup-steps 1" not in err and "warm-up 1 (the default: a tenth of --steps) (checkpoint: 0)" in err


def test_the_new_schedule_note_labels_the_derived_warm_up_as_the_default(six_steps, capsys):
    assert run(["train", *six_steps, "--steps", "10", "--resume", "--new-schedule"]) == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "--new-schedule: from step 7" in text and "--warmup-steps 1" not in text
    assert "warm-up 1 (the default: a tenth of --steps)" in text


def test_a_typed_warm_up_is_still_named_as_the_option(six_steps, capsys):
    assert run(["train", *six_steps, "--steps", "6", "--warmup-steps", "2", "--resume"]) == 2
    assert "--warmup-steps 2 (checkpoint: 0)" in _err_line(capsys)


# ---- 3. a CPU profile's step: "1 process", not "1 GPU(s)" ---------------------------------------------------------


def test_step_on_a_cpu_profile_says_one_process(cpu_profile, capsys):
    step = ["--n-layer", "2", "--n-head", "2", "--n-embd", "64", "--vocab", "64", "--micro-batch", "8", "--seq", "64",
            "--precision", "fp32"]
    assert run(["step", "--gpu", "cpu", "--calibration", str(cpu_profile), *step]) == 0
    shown = capsys.readouterr().out
    assert "1 process" in shown and "GPU(s)" not in shown
    assert run(["step", "--gpu", "h100", *step]) == 0  # a GPU still counts GPUs
    assert "1 GPU(s)" in capsys.readouterr().out


# ---- 4. --n-kv-head 0 or negative: in the option's words -----------------------------------------------------------


@pytest.mark.parametrize("model,kv,heads", [
    (["--config", str(LLAMA_FILE)], "0", "the model's 32 heads"),
    (["--model", "gpt2"], "-2", "the model's 12 heads"),
    (["--n-layer", "2", "--n-head", "4", "--n-embd", "64"], "0", "--n-head 4"),
])
def test_a_non_positive_kv_head_count_is_worded_as_the_option(capsys, model, kv, heads):
    assert run(["memory", "--gpu", "h100", *model, "--n-kv-head", kv]) == 2
    err = _err_line(capsys)
    assert f"--n-kv-head {kv}" in err and f"positive number of key/value heads that divides {heads}" in err
    assert "n_kv_head" not in err.replace("--n-kv-head", "")


def test_the_engine_refuses_a_zero_kv_head_count_with_the_fixes():
    from flopscalc.model.option_words import KvHeadCountError

    with pytest.raises(KvHeadCountError, match=r"n_kv_head must be a positive integer that divides n_head \(4\)"):
        ModelConfig(n_layer=1, n_head=4, n_embd=64, block_size=8, vocab_size=10, n_kv_head=0)
