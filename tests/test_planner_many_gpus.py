"""Beyond one node the plan weighs every setup family it knows (b74): the Megatron TP/PP layouts of the layout engine
and the data-parallel setups of one node's search (ZeRO, 8-bit AdamW, optimizer offload), and keeps the fastest that
fits. Before, a model that fitted 8 H100s (ZeRO-3 with offload) fitted "no parallel layout" of 16, and the hint
named the next power of two of layouts alone ("it would fit on 32 GPUs").

Checked against paths the planner does not take: the `memory` command fed the plan's JSON setup (the memory engine),
the layout engine called directly (`search_layouts`), the per-operation step model (`estimate_step`), and the plan
itself at the counts around the one it was asked about.
"""

from __future__ import annotations

import json
import re

import pytest

from flopscalc.cli import run
from flopscalc.errors import DomainError
from flopscalc.flops import Recompute
from flopscalc.hardware import get_gpu
from flopscalc.layout import cluster_for
from flopscalc.layout.search import search_layouts
from flopscalc.memory import Optimizer, TrainingSetup, estimate_memory
from flopscalc.memory.precision import MemoryPrecision
from flopscalc.model import ALL_PRESETS
from flopscalc.perf import estimate_step

# A fixed model and token count: the plan weighs that one model only (no shapes around an optimum), so each run is
# quick and the question is only "what setup on these GPUs".
TOKENS = "10B"
SEQ = 8192  # Llama 3's pretraining length (Meta Llama 3 model card), the plan's default for these presets
# GPT-3 Table 2.1 (Brown et al. 2020): 3.2M tokens per step for the largest models (175B), in 8192-token sequences
GPT3_LARGE_BATCH_SEQUENCES = 3 * 2**20 // SEQ
# The share of each GPU the plan fills at most: it keeps 5% free (docs/planner.md, the memory row of its assumptions)
PLAN_FILL = 0.95
# H100 and A100 systems ship as HGX/DGX boards of 8 GPUs (NVIDIA DGX H100 / DGX A100 user guides)
GPUS_PER_NODE = 8


def _plan(capsys, gpu: str, n_gpus: int, model: str, *extra: str) -> tuple[int, dict | str]:
    """Exit code and the plan's JSON (or its one-line error)."""
    code = run(["plan", "--gpu", gpu, "--n-gpus", str(n_gpus), "--model", model, "--tokens", TOKENS, *extra,
                "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else err)


def _memory_of_plan_setup(capsys, gpu: str, model: str, setup: dict) -> dict:
    """The `memory` command's JSON for the setup the plan's JSON names: the memory engine reached from the outside."""
    argv = ["memory", "--model", model, "--gpu", gpu, "--n-gpus", str(setup["n_gpus"]),
            "--micro-batch", str(setup["micro_batch"]), "--grad-accum", str(setup["grad_accum"]),
            "--seq", str(setup["seq_len"]), "--precision", setup["precision"], "--optimizer", setup["optimizer"],
            "--recompute", setup["recompute"], "--zero", str(setup["zero_stage"]),
            "--flash" if setup["flash"] else "--no-flash", "--json"]
    if setup["offload_optimizer"]:
        argv.insert(-1, "--offload")
    assert run(argv) == 0
    return json.loads(capsys.readouterr().out)


# ------------------------------------------------------------------------------------------ 70B on 16 GPUs


@pytest.mark.parametrize("gpu,n_gpus", [("h100", 16), ("h100", 12), ("a100-80gb", 12), ("a100-80gb", 16)])
def test_70b_on_more_than_a_node_gets_a_plan_the_memory_engine_confirms_fits(capsys, gpu, n_gpus):
    cfg = ALL_PRESETS["llama-3-70b"]
    spec = get_gpu(gpu)
    # the reviewer's case: no TP/PP layout of these GPUs holds 70B at GPT-3's batch (the layout engine, directly)
    with pytest.raises(DomainError):
        search_layouts(cfg, cluster_for(spec, n_gpus), SEQ, GPT3_LARGE_BATCH_SEQUENCES,
                       memory_limit_bytes=PLAN_FILL * spec.memory_bytes)
    code, d = _plan(capsys, gpu, n_gpus, "llama-3-70b")
    assert code == 0, d
    rec = d["recommended"]
    assert rec["fits"] and "layout" not in rec  # a data-parallel setup, on all the GPUs asked for
    s = rec["setup"]
    assert s["n_gpus"] == n_gpus and s["zero_stage"] == 3  # nothing smaller than ZeRO-3 shards 70B over 16 GPUs
    mem = _memory_of_plan_setup(capsys, gpu, "llama-3-70b", s)
    assert mem["peak_bytes"] <= PLAN_FILL * spec.memory_bytes
    # the plan reports what the memory engine says of its own setup: one model, so equal
    assert rec["memory"]["peak_bytes"] == mem["peak_bytes"]
    assert rec["memory"]["cpu_offload_bytes"] == mem["cpu_offload_bytes"]


@pytest.mark.parametrize("gpu", ["h100", "a100-80gb"])
def test_the_data_parallel_pick_beyond_a_node_is_timed_by_the_step_model_over_the_network(capsys, gpu):
    # the setup beside the layouts is priced as `flopscalc step` prices it on all 16 GPUs, two nodes of 8
    code, d = _plan(capsys, gpu, 16, "llama-3-70b")
    assert code == 0, d
    s = d["recommended"]["setup"]
    setup = TrainingSetup(micro_batch=s["micro_batch"], seq_len=s["seq_len"], precision=MemoryPrecision(s["precision"]),
                          optimizer=Optimizer(s["optimizer"]), recompute=Recompute(s["recompute"]), flash=s["flash"],
                          grad_accum=s["grad_accum"], n_gpus=s["n_gpus"], zero_stage=s["zero_stage"],
                          offload_optimizer=s["offload_optimizer"])
    est = estimate_step(ALL_PRESETS["llama-3-70b"], setup, get_gpu(gpu))
    assert d["recommended"]["speed"]["step_s"] == pytest.approx(est.step_s, rel=1e-12)
    if gpu == "a100-80gb":
        # DGX A100: one 200 Gb/s HDR HCA per GPU (Narayanan et al. 2021, sec. 5), 8 x 25 GB/s per node, below the
        # ring's NVLink rate: the ring that crosses nodes runs at the network's pace
        assert est.comm.link == "network between nodes"


def test_where_a_layout_also_fits_the_plan_is_at_least_as_fast_as_either_family(capsys):
    # 70B on 24 H100s: TP8 PP3 fits (the reviewer), and so does the 16-GPU plan's data-parallel setup on 24 GPUs
    cfg, spec = ALL_PRESETS["llama-3-70b"], get_gpu("h100")
    code, d16 = _plan(capsys, "h100", 16, "llama-3-70b")
    assert code == 0, d16
    code, d24 = _plan(capsys, "h100", 24, "llama-3-70b")
    assert code == 0, d24
    rate = d24["recommended"]["speed"]["tokens_per_s"]
    best_layout = search_layouts(cfg, cluster_for(spec, 24), SEQ, GPT3_LARGE_BATCH_SEQUENCES,
                                 memory_limit_bytes=PLAN_FILL * spec.memory_bytes).best
    assert rate >= best_layout.time.tokens_per_s * (1 - 1e-12)
    s = d16["recommended"]["setup"]
    per_gpu = GPT3_LARGE_BATCH_SEQUENCES // 24  # the same batch, split over 24
    dp24 = TrainingSetup(micro_batch=1, seq_len=SEQ, precision=MemoryPrecision(s["precision"]),
                         optimizer=Optimizer(s["optimizer"]), recompute=Recompute(s["recompute"]), flash=s["flash"],
                         grad_accum=per_gpu, n_gpus=24, zero_stage=s["zero_stage"],
                         offload_optimizer=s["offload_optimizer"])
    assert estimate_memory(cfg, dp24).peak_bytes <= PLAN_FILL * spec.memory_bytes  # a candidate the plan had
    est = estimate_step(cfg, dp24, spec)
    assert rate >= est.tokens_per_step / est.step_s * (1 - 1e-12)


# ------------------------------------------------------------------------------------------ monotone feasibility


@pytest.mark.parametrize("gpu", ["h100", "a100-80gb"])
def test_if_one_node_fits_70b_every_count_up_to_two_nodes_does(capsys, gpu):
    code, d = _plan(capsys, gpu, GPUS_PER_NODE, "llama-3-70b")
    assert code == 0, d
    for n in range(GPUS_PER_NODE + 1, 2 * GPUS_PER_NODE + 1):
        code, d = _plan(capsys, gpu, n, "llama-3-70b")
        assert code == 0, f"{n} GPUs: {d}"
        assert d["recommended"]["fits"]
        assert d["recommended"]["memory"]["peak_bytes"] <= PLAN_FILL * get_gpu(gpu).memory_bytes


def _hinted(err: str) -> int:
    found = re.search(r"it would fit on (\d+) GPUs", err)
    assert found, err
    return int(found[1])


def test_405b_from_its_smallest_count_to_twice_it_every_whole_node_fits_or_says_why_not(capsys):
    code, err = _plan(capsys, "h100", 16, "llama-3.1-405b")
    assert code == 1
    first = _hinted(err)
    for n in range(first, 2 * first + 1, GPUS_PER_NODE):
        code, d = _plan(capsys, "h100", n, "llama-3.1-405b")
        assert code == 0 or "no parallel layout divides" in d, f"{n} GPUs: {d}"


# ------------------------------------------------------------------------------------------ the hint


@pytest.mark.parametrize("gpu,n_gpus,model", [
    ("h100", 16, "llama-3.1-405b"),  # beyond a node: layouts and data-parallel setups
    ("h100", 8, "llama-3.1-405b"),  # one node asks for more than a node
    ("h100", 4, "llama-3-70b"),  # inside a node
    ("a100-80gb", 16, "llama-3.1-405b"),
])
def test_the_hinted_count_fits_and_no_whole_node_count_below_it_does(capsys, gpu, n_gpus, model):
    code, err = _plan(capsys, gpu, n_gpus, model)
    assert code == 1 and len(err.strip().splitlines()) == 1
    hint = _hinted(err)
    assert hint > n_gpus
    code, d = _plan(capsys, gpu, hint, model)
    assert code == 0, d
    assert d["recommended"]["fits"] and d["recommended"]["memory"]["peak_bytes"] <= (
        PLAN_FILL * get_gpu(gpu).memory_bytes)
    below = ([n for n in range(n_gpus + 1, hint) if n % GPUS_PER_NODE == 0] if hint > GPUS_PER_NODE
             else [n for n in (2, 4, 8) if n_gpus < n < hint])  # inside a node: the power-of-two boards
    for n in below:
        code, e = _plan(capsys, gpu, n, model)
        assert code == 1 and "does not fit" in e and _hinted(e) == hint, f"{n} GPUs: {e}"


def test_the_hint_is_not_only_a_power_of_two(capsys):
    # 405B on H100s: the data-parallel setups with offload fit whole nodes that are no power of two; a hint that tried
    # powers of two only would name 128 here
    code, err = _plan(capsys, "h100", 16, "llama-3.1-405b")
    assert code == 1
    hint = _hinted(err)
    assert hint & (hint - 1) != 0 and hint % GPUS_PER_NODE == 0
