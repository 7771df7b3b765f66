"""The planner on several nodes uses the layout search (issue 13): every candidate gets the fastest TP/PP/CP/EP/DP
layout that fits, priced by the layout engine, and the recommended run names its layout and the engine that runs
it. Checked against the layout engine called here on the same inputs (wiring: exact), the FLOPs engine (MFU/HFU),
Kaplan's critical batch evaluated here, and limit cases (one GPU, one node, a stated efficiency)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math

import pytest

from flopscalc.cli import run
from flopscalc.flops import Recompute, training_flops_per_token
from flopscalc.hardware import Precision, get_gpu
from flopscalc.layout import Layout, cluster_for, layout_memory, layout_time
from flopscalc.layout.search import search_layouts
from flopscalc.memory import MemoryPrecision
from flopscalc.model import PRESETS
from flopscalc.planner import plan

DAY_S = 86400
# NVIDIA H100 SXM5 datasheet: 80 GB of HBM3 per GPU
H100_MEMORY_BYTES = 80e9
# Kaplan et al. 2020, eq. 5.3 and Table 5: B_crit(L) = 2.1e8 tokens / L^(1/0.21)
KAPLAN_B_STAR, KAPLAN_ALPHA_B = 2.1e8, 0.21
# GPT-3 175B (Brown et al. 2020, Table 2.1): 96 layers, 96 heads, d_model 12288; GPT-2's vocabulary
GPT3_175B = {"model_type": "gpt2", "n_layer": 96, "n_head": 96, "n_embd": 12288, "vocab_size": 50257}


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = run(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _json(capsys, *argv) -> dict:
    code, out, err = _cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def _layout_of(d: dict) -> Layout:
    """The Layout the JSON names, rebuilt from its degrees."""
    return Layout(tp=d["tp"], pp=d["pp"], dp=d["dp"], cp=d["cp"], ep=d["ep"], interleave=d["interleave"],
                  sequence_parallel=d["sequence_parallel"], zero_stage=d["zero_stage"], micro_batch=d["micro_batch"],
                  n_micro=d["n_micro"], recompute=Recompute(d["recompute"]))


@pytest.fixture(scope="module")
def h100_1024():
    return plan(get_gpu("h100"), 30 * DAY_S, n_gpus=1024)


def test_recommended_run_names_a_layout_of_all_gpus_that_fits(capsys, h100_1024):
    d = _json(capsys, "plan", "--gpu", "h100", "--n-gpus", "1024", "--days", "30")
    r = d["recommended"]
    lay = r["layout"]
    assert lay["tp"] * lay["pp"] * lay["dp"] * lay["cp"] == 1024 == lay["n_gpus"] == d["n_gpus"]
    assert lay["dp"] * lay["cp"] % lay["ep"] == 0  # experts shard over data x context ranks
    assert lay["tp"] <= 8  # tensor parallelism stays inside a DGX node (Narayanan et al. 2021 sec. 3.2)
    assert r["memory"]["peak_bytes"] <= H100_MEMORY_BYTES
    assert r["memory"]["peak_bytes"] <= 0.95 * r["memory"]["capacity_bytes"]  # the planner's 5% kept free
    # the layout's memory is the layout engine's per-GPU peak, recomputed here
    cfg = h100_1024.recommended.model
    assert r["n_params"] == h100_1024.recommended.n_params
    assert r["memory"]["peak_bytes"] == layout_memory(cfg, _layout_of(lay), 1024, flash=True, dropout=False).total
    # the label, the engine and its settings are the layout's own
    assert lay["label"] == _layout_of(lay).label()
    assert lay["engine"] == _layout_of(lay).engine().value
    assert lay["engine_settings"] == _layout_of(lay).engine_settings(cfg.n_layer)
    assert lay["flopscalc_train_runs_it"] == (lay["engine"].startswith("flopscalc train"))
    assert lay["global_batch_sequences"] * 1024 == r["setup"]["tokens_per_step"]


def test_tokens_per_second_is_the_layout_engines_prediction(capsys, h100_1024):
    r = h100_1024.recommended
    gpu = get_gpu("h100")
    lay = r.chosen.layout
    lt = layout_time(r.model, lay, cluster_for(gpu, 1024), 1024, precision=MemoryPrecision.bf16_mixed, flash=True)
    assert r.speed.tokens_per_s == lt.tokens_per_s  # wiring: the same engine, the same inputs
    assert r.speed.step_s == lt.step_s
    # it is the search's best at the plan's batch, within the memory the plan keeps free
    res = search_layouts(r.model, cluster_for(gpu, 1024), 1024, r.chosen.tokens_per_step // 1024,
                         memory_limit_bytes=0.95 * gpu.memory_bytes)
    assert res.best.layout == lay
    # the JSON carries the same rate
    d = _json(capsys, "plan", "--gpu", "h100", "--n-gpus", "1024", "--days", "30")
    assert d["recommended"]["speed"]["tokens_per_s"] == lt.tokens_per_s
    assert d["recommended"]["layout"]["step_components_s"] == pytest.approx(lt.components, rel=1e-12)


def test_mfu_and_hfu_agree_with_the_runs_flops_and_time(capsys, h100_1024):
    d = _json(capsys, "plan", "--gpu", "h100", "--n-gpus", "1024", "--days", "30")
    r = d["recommended"]
    cfg = h100_1024.recommended.model
    f = training_flops_per_token(cfg, 1024, recompute=Recompute(r["setup"]["recompute"]))
    peak = get_gpu("h100").peak_flop_per_s(Precision.bf16)
    sp = r["speed"]
    assert sp["model_flops_per_token"] == f.model_flops_per_token
    assert sp["mfu"] == pytest.approx(sp["tokens_per_s"] * f.model_flops_per_token / (1024 * peak), rel=1e-12)
    # HFU: recomputation and flash's backward recomputation of the scores (Dao 2023, Alg. 2)
    executed = f.hardware_flops_per_token + f.forward.attn_scores
    assert sp["hfu"] == pytest.approx(sp["tokens_per_s"] * executed / (1024 * peak), rel=1e-12)
    # the header delivers what the run does: busy FLOPs x the run's MFU = its tokens x FLOPs per token
    assert d["mfu"] == sp["mfu"]
    assert d["model_flops"] == pytest.approx(d["busy_flops"] * sp["mfu"], rel=1e-12)
    assert r["model_flops"] == pytest.approx(r["n_tokens"] * f.model_flops_per_token, rel=1e-12)
    assert r["n_tokens"] == pytest.approx(sp["tokens_per_s"] * d["utilization"] * 30 * DAY_S, rel=1e-12)
    # the layout engine counts causal attention in its own MFU: the two differ by exactly the FLOP convention
    lt = layout_time(cfg, h100_1024.recommended.chosen.layout, cluster_for(get_gpu("h100"), 1024), 1024)
    causal = training_flops_per_token(cfg, 1024, causal=True).model_flops_per_token
    assert sp["mfu"] / lt.mfu == pytest.approx(f.model_flops_per_token / causal, rel=1e-12)
    # the plan says which model priced it, and states no efficiency of its own
    assert d["hardware_efficiency"] is None
    assert r["layout"]["time_model"].startswith("per-operation model") and "per-operation model" in d["mfu_source"]


def test_report_names_the_layout_the_engine_and_the_time_model(capsys):
    code, out, err = _cli(capsys, "plan", "--gpu", "h100", "--n-gpus", "1024", "--days", "30")
    assert code == 0, err
    text = " ".join(out.split())
    assert "layout TP" in text and "= 1024 GPUs" in text
    assert "Megatron-LM --tensor-model-parallel-size" in text and "torchtitan parallelism." in text
    assert "time model per-operation model" in text
    d = _json(capsys, "plan", "--gpu", "h100", "--n-gpus", "1024", "--days", "30")
    code, out, err = _cli(capsys, "plan", "--gpu", "h100", "--n-gpus", "1024", "--days", "30", "--csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["layout"] for r in rows] == [o["layout"]["label"] if o["fits"] else "" for o in d["options"]]


def test_grown_batches_buy_useful_tokens_within_the_critical_batch(h100_1024):
    grown = [o for o in h100_1024.options if o.fits and o.batch is not None]
    assert grown, "no option grew its batch; pick a case where one does"
    gpu = get_gpu("h100")
    for o in grown:
        g = o.batch
        assert g.critical_tokens == pytest.approx(KAPLAN_B_STAR / g.loss_nats ** (1 / KAPLAN_ALPHA_B), rel=1e-12)
        assert o.chosen.tokens_per_step <= g.critical_tokens
        assert math.log2(g.tokens_per_step / g.default_tokens_per_step).is_integer()
        default = search_layouts(o.model, cluster_for(gpu, 1024), 1024, g.default_tokens_per_step // 1024,
                                 memory_limit_bytes=0.95 * gpu.memory_bytes).best.time
        value = (1 + g.default_tokens_per_step / g.critical_tokens) / (1 + g.tokens_per_step / g.critical_tokens)
        assert g.token_value == pytest.approx(value, rel=1e-12)  # Kaplan et al. 2020 eq. 5.5
        assert o.speed.tokens_per_s * value > default.tokens_per_s


def test_a_model_too_large_for_zero3_fits_through_tensor_and_pipeline_parallelism(capsys, tmp_path):
    # GPT-3 175B at sequence 32,768: full recomputation still keeps each block's input for one sequence, which no
    # data parallelism splits: L s d x 2 bytes (16-bit under ZeRO, Korthikanti et al. 2022 sec. 4) = 77 GB, more
    # than an 80 GB A100 holds with the rest. At 16,384 (38.6 GB) ZeRO-3 now fits; only TP's sequence parallelism
    # and CP split those checkpoints.
    cfg = tmp_path / "gpt3-175b.json"
    cfg.write_text(json.dumps({**GPT3_175B, "n_positions": 32768}))
    base = ("plan", "--config", str(cfg), "--gpu", "a100-80gb", "--n-gpus", "1024", "--days", "30", "--seq", "32768")
    code, _, err = _cli(capsys, *base, "--no-layout-search")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "lightest setup" in err
    d = _json(capsys, *base)
    lay = d["recommended"]["layout"]
    assert d["recommended"]["fits"] and lay["tp"] > 1 and lay["pp"] > 1
    assert lay["tp"] * lay["pp"] * lay["dp"] * lay["cp"] == 1024
    assert d["recommended"]["memory"]["peak_bytes"] <= 0.95 * d["recommended"]["memory"]["capacity_bytes"]
    assert lay["engine"] == "Megatron-LM" and lay["flopscalc_train_runs_it"] is False
    assert any("'flopscalc train' cannot run this layout" in w for w in d["warnings"])


def test_one_node_one_gpu_and_a_stated_efficiency_keep_the_data_parallel_search(capsys):
    one = _json(capsys, "plan", "--gpu", "4070ti", "--days", "365")
    # by default no stated efficiency: the per-operation model prices each option
    assert "layout" not in one["recommended"] and one["hardware_efficiency"] is None
    assert one["time_model"] == "per-operation"
    assert plan(get_gpu("4070ti"), 365 * DAY_S).recommended == plan(get_gpu("4070ti"), 365 * DAY_S,
                                                                    layout_search=False).recommended
    node = plan(get_gpu("h100"), 30 * DAY_S, n_gpus=8, model=PRESETS["gpt2-xl"], explain=False)
    assert node.recommended.chosen.layout is None
    stated = _json(capsys, "plan", "--gpu", "h100", "--n-gpus", "1024", "--days", "30", "--mfu", "0.4")
    assert "layout" not in stated["recommended"] and stated["mfu_source"] == "given"
    # asked for on one node, the search runs there too
    forced = plan(get_gpu("h100"), 30 * DAY_S, n_gpus=8, model=PRESETS["gpt2-xl"], explain=False, layout_search=True)
    assert forced.recommended.chosen.layout.n_gpus == 8


@pytest.mark.parametrize("argv, says", [
    (("--gpu", "4070ti", "--days", "365", "--layout-search"), "one GPU has one layout"),
    (("--gpu", "h100", "--n-gpus", "1024", "--days", "30", "--mfu", "0.4", "--layout-search"), "--mfu"),
    (("--gpu", "h100", "--n-gpus", "1024", "--days", "30", "--precision", "fp8", "--layout-search"), "bf16"),
])
def test_contradictions_are_refused_in_one_line(capsys, argv, says):
    code, _, err = _cli(capsys, "plan", *argv)
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1


def test_megatron_settings_name_the_layers_per_virtual_stage(h100_1024):
    # an interleaved schedule needs --num-layers-per-virtual-pipeline-stage as a number (Megatron-LM's argument
    # parser rejects a placeholder); with v chunks per stage each chunk holds L / (PP x v) layers (Narayanan et al.
    # 2021 sec. 2.2.2)
    rec = h100_1024.recommended
    lay = rec.chosen.layout
    assert lay.interleave > 1  # the case this checks (the 1024-GPU plan interleaves)
    flags = lay.engine_settings(rec.model.n_layer)["Megatron-LM"]
    per_chunk = int(flags.split("--num-layers-per-virtual-pipeline-stage ")[1].split()[0])
    # layers that leave slots in PP x v chunks fill them with the loss, then the embedding (Megatron-LM's
    # --account-for-loss/embedding-in-pipeline-split); a chunk count that needs more slots is not a valid setting
    empty = per_chunk * lay.pp * lay.interleave - rec.model.n_layer
    assert empty in (0, 1, 2)
    assert ("--account-for-loss-in-pipeline-split" in flags) == (empty >= 1)
    assert ("--account-for-embedding-in-pipeline-split" in flags) == (empty == 2)


def test_torchtitan_settings_say_its_sharding_is_not_zero_1(h100_1024):
    # torchtitan's data_parallel_shard_degree is FSDP2, which shards parameters, gradients and optimizer state
    # (ZeRO-3 in Rajbhandari et al. 2020's terms): a ZeRO-1 layout has no exact torchtitan equivalent, and says so
    lay = h100_1024.recommended.chosen.layout
    titan = lay.engine_settings()["torchtitan"]
    if lay.zero_stage in (1, 2):
        assert "ZeRO-3" in titan and f"ZeRO-{lay.zero_stage}" in titan
    # a data-parallel ZeRO-3 layout is what FSDP does: no caveat (ZeRO-3 refuses pipelines, so PP 1 here)
    zero3 = dataclasses.replace(lay, zero_stage=3, pp=1, interleave=1, dp=lay.dp * lay.pp)
    assert "as ZeRO-3" not in zero3.engine_settings()["torchtitan"]


def test_a_cluster_plan_shapes_models_a_tensor_parallel_group_can_split(h100_1024):
    # Megatron-LM splits attention heads over TP (Shoeybi et al. 2019 sec. 3), so every shaped option beyond one
    # node has a head count a TP group of up to 8 divides; the one-GPU plan shapes by the plain rule (the main
    # job's 30 heads in the README)
    shaped = [o.model for o in h100_1024.options if not o.model.name]
    assert shaped and all(m.n_head % 8 == 0 for m in shaped)
    single = plan(get_gpu("4070ti"), 365 * DAY_S)
    assert any(o.model.n_head % 8 for o in single.options if not o.model.name)


def test_the_recommended_batch_is_whole_micro_batch_rounds_of_the_layouts_replicas(h100_1024):
    # a layout's data-parallel replicas each take one micro-batch of whole sequences per round (TP, PP and CP ranks
    # share their replica's), so the hyperparameters' batch is a multiple of DP x micro-batch sequences, and capped at
    # Kaplan's critical batch (eq. 5.3) it stays at or below it: with every GPU counted as a replica, 16,384 H100s
    # got 16.8M tokens "capped at the critical batch 9.6M"
    rec, hp = h100_1024.recommended, h100_1024.hyperparameters
    lay = rec.chosen.layout
    assert hp.batch_sequences % (lay.dp * lay.micro_batch) == 0
    assert hp.batch_tokens <= hp.critical_batch_tokens
    assert hp.batch_tokens > hp.critical_batch_tokens - lay.dp * lay.micro_batch * hp.seq_len  # the largest below
