"""`flopscalc step` with parallel-layout options and --search: wiring, JSON values, refusals (exit 2)."""

from __future__ import annotations

import json

import pytest

from flopscalc.cli import run
from flopscalc.hardware import get_gpu
from flopscalc.layout import cluster_for
from flopscalc.layout.search import search_layouts
from flopscalc.model import get_preset

BASE = ["step", "--gpu", "h100", "--model", "llama-3.1-70b", "--seq", "4096", "--n-gpus", "64", "--json"]


def _json(capsys, argv):
    assert run(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_explicit_layout_prints_memory_and_time_by_component(capsys):
    d = _json(capsys, [*BASE, "--tp", "8", "--pp", "4", "--sequence-parallel", "--grad-accum", "16"])
    assert d["layout"]["dp"] == 2 and d["engine"] == "Megatron-LM" and not d["runs_in_flopscalc_train"]
    assert d["time_s"]["pipeline bubble"] > 0 and d["time_s"]["tensor-parallel comm"] > 0
    assert d["memory_bytes"]["total"] == sum(v for k, v in d["memory_bytes"].items()
                                             if k not in ("total", "n_params_per_gpu", "n_in_flight"))
    assert "--sequence-parallel" in d["engine_settings"]["Megatron-LM"]


def test_each_option_moves_a_computed_field(capsys):
    base = _json(capsys, [*BASE, "--tp", "8", "--pp", "4", "--grad-accum", "16"])
    sp = _json(capsys, [*BASE, "--tp", "8", "--pp", "4", "--grad-accum", "16", "--sequence-parallel"])
    inter = _json(capsys, [*BASE, "--tp", "8", "--pp", "4", "--grad-accum", "16", "--interleave", "2"])
    net = _json(capsys, [*BASE, "--tp", "8", "--pp", "4", "--grad-accum", "16", "--network-gbps", "50"])
    assert sp["memory_bytes"]["activations"] < base["memory_bytes"]["activations"]
    assert inter["time_s"]["pipeline bubble"] < base["time_s"]["pipeline bubble"]
    assert net["time_s"]["pipeline p2p"] > base["time_s"]["pipeline p2p"]


def test_plain_data_parallel_layout_runs_in_the_trainer(capsys):
    d = _json(capsys, ["step", "--gpu", "h100", "--model", "gpt2", "--n-gpus", "8", "--zero", "3", "--tp", "1",
                       "--json"])
    assert d["runs_in_flopscalc_train"] and d["engine"] == "flopscalc train (FSDP)"


def test_search_ranks_fitting_layouts(capsys):
    d = _json(capsys, [*BASE, "--search", "--global-batch", "64"])
    ranked = d["ranked"]
    assert len(ranked) >= 2 and all(r["fits"] for r in ranked)
    assert [r["s_per_token"] for r in ranked] == sorted(r["s_per_token"] for r in ranked)
    assert ranked[1]["why_slower"].startswith("+")


def test_contradictions_are_refused(capsys):
    assert run([*BASE, "--search", "--tp", "8"]) == 2
    assert "--search chooses" in capsys.readouterr().err
    assert run([*BASE, "--tp", "3"]) == 2
    assert run([*BASE, "--tp", "8", "--pp", "3"]) == 2  # 64 not a multiple of 24
    assert run([*BASE, "--interleave", "2"]) == 2
    assert run([*BASE, "--tp", "8", "--calibration", "x.json"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err


def test_search_for_1024_gpus_finds_a_layout_that_fits():
    # its speed (0.18 s here) is a benchmark figure, not a test: benchmarks/bench_layout_search.py
    cfg, gpu = get_preset("llama-3.1-70b"), get_gpu("h100")
    r = search_layouts(cfg, cluster_for(gpu, 1024), 8192, 1024)
    assert r.best.memory.total <= gpu.memory_bytes


def test_context_and_expert_parallelism_move_their_fields(capsys):
    long = ["step", "--gpu", "h100", "--model", "llama-3.1-8b", "--seq", "32768", "--n-gpus", "16", "--tp", "8",
            "--sequence-parallel", "--json"]
    no_cp = _json(capsys, long)
    cp = _json(capsys, [*long, "--cp", "2"])
    assert cp["memory_bytes"]["activations"] < no_cp["memory_bytes"]["activations"]
    assert cp["layout"]["dp"] == 1 and no_cp["layout"]["dp"] == 2
    moe = ["step", "--gpu", "h100", "--model", "mixtral-8x7b", "--seq", "4096", "--n-gpus", "32", "--tp", "2",
           "--zero", "1", "--json"]
    no_ep = _json(capsys, moe)
    ep = _json(capsys, [*moe, "--ep", "4"])
    assert ep["time_s"]["expert all-to-all"] > 0 == no_ep["time_s"]["expert all-to-all"]
    assert ep["memory_bytes"]["weights"] < no_ep["memory_bytes"]["weights"]
    assert run([*moe, "--ep", "3"]) == 2


def test_a_layout_that_does_not_fit_says_so_first(capsys):
    # Llama 3.1 8B at its 131,072-token context on TP2 PP2 needs far more than 80 GB per GPU (the JSON's own peak):
    # the report's second line says the run cannot start, as the per-operation step does, not only the memory total
    # (--seq given: by default the training commands run Llama 3.1 at its 8,192-token pretraining length)
    argv = ["step", "--model", "llama-3.1-8b", "--gpu", "h100", "--n-gpus", "16", "--seq", "131072", "--tp", "2", "--pp",
            "2"]
    d = _json(capsys, [*argv, "--json"])
    assert not d["fits"] and d["memory_bytes"]["total"] > get_gpu("h100").memory_bytes
    assert run(argv) == 0
    second = capsys.readouterr().out.splitlines()[1]
    assert second.startswith("does not fit:") and "--search" in second
    fitting = [*argv[:-6], "--tp", "8", "--pp", "2", "--seq", "8192"]
    assert _json(capsys, [*fitting, "--json"])["fits"]
    assert run(fitting) == 0
    assert "does not fit" not in capsys.readouterr().out


@pytest.mark.parametrize("flag", ["--fused-loss", "--dropout"])
def test_search_prices_each_layout_as_the_explicit_layout_does(capsys, flag):
    # --fused-loss/--dropout used to switch the search to the one-GPU fitted fraction for every layout, Megatron's
    # too, and the search left dropout's masks out of memory: a ranked layout's time and memory must be what
    # `step` with that layout given explicitly says
    d = _json(capsys, [*BASE, "--search", "--global-batch", "64", flag])
    megatron = [r for r in d["ranked"] if r["engine"] == "Megatron-LM"]
    assert megatron, "the 70B search should rank a Megatron-LM layout"
    for r in (d["ranked"][0], megatron[0]):
        lay = r["layout"]
        argv = [*BASE, flag, "--tp", str(lay["tp"]), "--pp", str(lay["pp"]), "--zero", str(lay["zero_stage"]),
                "--micro-batch", str(lay["micro_batch"]), "--grad-accum", str(lay["n_micro"]),
                "--recompute", lay["recompute"]]
        argv += (["--interleave", str(lay["interleave"])] if lay["interleave"] > 1 else [])
        argv += (["--cp", str(lay["cp"])] if lay["cp"] > 1 else [])
        argv += (["--sequence-parallel"] if lay["sequence_parallel"] else [])
        explicit = _json(capsys, argv)
        assert explicit["step_s"] == r["step_s"], (lay["label"], explicit["step_s"], r["step_s"])
        assert explicit["memory_bytes"] == r["memory_bytes"], lay["label"]


def test_search_keeps_the_plans_memory_margin(capsys):
    # `plan` keeps 5% of each GPU free (planner.options.PLAN_MEMORY_HEADROOM); `step --search` ranked layouts up to
    # the whole card (78.6 of 80 GiB), so it could recommend a layout the plan refuses
    from flopscalc.planner.options import PLAN_MEMORY_HEADROOM

    d = _json(capsys, ["step", "--gpu", "h100", "--model", "llama-3.1-8b", "--seq", "8192", "--n-gpus", "8",
                       "--search", "--global-batch", "32", "--json"])  # ranked up to 0.991 of the card before
    capacity = get_gpu("h100").memory_bytes
    assert d["ranked"] and all(r["memory_bytes"]["total"] <= capacity * (1 - PLAN_MEMORY_HEADROOM) for r in d["ranked"])
