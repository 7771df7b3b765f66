"""Review r6, helper b84: where the planner's parallel merges met.

1. ``plan --network-gbps`` reached the layout search only; a data-parallel winner beyond one node was priced on the
   GPU generation's network while the Assumptions printed the typed figure.
2. When a data-parallel setup won beyond a node, the plan named the layout search as its time model and lost the
   "kernels" assumption.
3. The no-fit hint judged the lightest setups without the GPU's cuBLAS workspace, so it named more GPUs than the
   plan needs.
4. ``memory.max_micro_batch`` and ``memory.suggest_fixes`` ignored the GPU's architecture that ``answer`` applies.
5. ``--network-gbps`` took inf, 1e300 and 1e-300, and refused them with a message about an internal quantity.

Each test failed before its fix. References are independent of the code under test: the step model called directly
on the named network (`perf.step.estimate_step`, as ``flopscalc step`` prices a setup), the ring model's own
multi-node rule (NCCL: a node's NICs together carry its share), the setup search itself, and brute force over
micro-batches.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from conftest import cli

from flopscalc.hardware import Precision, get_gpu
from flopscalc.memory import TrainingSetup, answer, estimate_memory, max_micro_batch, suggest_fixes
from flopscalc.model import get_preset
from flopscalc.perf.fabric import (
    BITS_PER_BYTE,
    GPUS_PER_NODE,
    MAX_NETWORK_GBPS,
    MIN_NETWORK_GBPS,
    NETWORK_BUS_EFFICIENCY,
    check_network_gbps,
    network_bytes_per_s,
)
from flopscalc.perf.op_kinds import StepOptions
from flopscalc.perf.step import estimate_step
from flopscalc.planner.core import plan
from flopscalc.planner.speed import PER_OPERATION
from flopscalc.units import GIB

DAY_S = 86400
# the reviewer's case: on 16 H100s for 30 days a data-parallel setup (ZeRO-3, 8-bit AdamW) beats every layout
PLAN_ARGS = ("plan", "--gpu", "h100", "--n-gpus", "16", "--days", "30", "--model", "llama-3.1-70b")


def _gbps_to_bytes_per_s(gbps: float) -> float:
    return gbps * 1e9 / BITS_PER_BYTE


@pytest.fixture(scope="module")
def h100_plans():
    """The reviewer's plan with no --network-gbps and on 100 Gb/s per GPU (a quarter of the default 400)."""
    gpu, cfg = get_gpu("h100"), get_preset("llama-3.1-70b")
    return {net: plan(gpu, 30 * DAY_S, n_gpus=16, model=cfg, network_gbps=net) for net in (None, 100.0)}


# ------------------------------------------------------------------ 1. the network reaches the data-parallel winner


def test_a_slower_network_slows_a_data_parallel_winner_as_the_step_model_prices_it(h100_plans):
    gpu = get_gpu("h100")
    default, slow = h100_plans[None].recommended, h100_plans[100.0].recommended
    assert default.chosen.layout is None and slow.chosen.layout is None  # data-parallel setups won both
    # the winner's step is the step model's on the typed network, to the last bit (the plan calls that model)
    on_100 = estimate_step(slow.model, slow.chosen.setup, gpu, StepOptions(network_bytes_per_s=_gbps_to_bytes_per_s(100)))
    assert slow.speed.step_s == on_100.step_s
    # ... and that network binds: the ring's bandwidth beyond a node is the node's NICs together (NCCL, perf.fabric
    # [6]), 8 x 12.5 GB/s x the achieved share, below NVLink's
    assert on_100.comm.bus_bytes_per_s == pytest.approx(GPUS_PER_NODE * 12.5e9 * NETWORK_BUS_EFFICIENCY, rel=1e-12)
    assert on_100.comm.link == "network between nodes"
    # the same setup on the generation's network is faster, so the slow plan trains on fewer tokens
    on_default = estimate_step(slow.model, slow.chosen.setup, gpu)
    assert on_100.step_s > on_default.step_s
    assert slow.n_tokens < default.n_tokens


def test_step_options_network_none_is_the_generations_network():
    # limit case: naming the generation's own figure prices exactly what naming none does (A100: 200 Gb/s)
    cfg = get_preset("gpt2-xl")
    for key in ("h100", "a100"):
        gpu = get_gpu(key)
        setup = TrainingSetup(micro_batch=4, seq_len=1024, precision="bf16-mixed", n_gpus=32, zero_stage=1,
                              gpu_architecture=gpu.architecture)
        named = estimate_step(cfg, setup, gpu, StepOptions(network_bytes_per_s=network_bytes_per_s(gpu)))
        assert named.step_s == estimate_step(cfg, setup, gpu).step_s


def test_cli_network_gbps_moves_the_data_parallel_plan(capsys):
    def tokens(*extra):
        code, out, err = cli(capsys, *PLAN_ARGS, *extra, "--json")
        assert code == 0, err
        data = json.loads(out)
        row = next(a for a in data["assumptions"] if a["name"] == "network between nodes")
        return data["recommended"]["n_tokens"], row["value"]

    default, row = tokens()
    slow, slow_row = tokens("--network-gbps", "1")
    assert row.startswith("400 Gb/s") and slow_row.startswith("1 Gb/s")
    assert slow < default / 10  # a 1 Gb/s NIC per GPU starves the 70B's gradient traffic


# ------------------------------------------------------------------ 2. the time model of a data-parallel winner


def test_a_data_parallel_winner_beyond_a_node_names_the_per_operation_model(h100_plans, capsys):
    p = h100_plans[None]
    assert p.recommended.chosen.layout is None
    assert p.time_model == PER_OPERATION
    assert "kernels" in [a.name for a in p.assumptions]  # the per-operation model's row
    code, out, _ = cli(capsys, *PLAN_ARGS, "--json")  # the layout search on, as by default beyond a node
    data = json.loads(out)
    assert code == 0 and data["time_model"] == PER_OPERATION
    assert "kernels" in [a["name"] for a in data["assumptions"]]


# ------------------------------------------------------------------ 3. the no-fit hint's GPUs carry the workspace


def test_no_fit_hint_counts_the_gpus_the_setup_search_needs(capsys):
    from flopscalc.planner.setups import choose_setup, min_gpus_to_plan

    cfg, gpu, cap = get_preset("llama-3.1-8b"), get_gpu("4070ti"), 22.978 * GIB
    n = min_gpus_to_plan(cfg, gpu, 1024, Precision.bf16, cap)
    # the reference: the search the plan runs finds a setup on 2 GPUs of that memory, none on 1
    assert choose_setup(cfg, gpu, 2, 1024, Precision.bf16, cap) is not None
    assert choose_setup(cfg, gpu, 1, 1024, Precision.bf16, cap) is None
    assert n == 2
    code, _, err = cli(capsys, "plan", "--model", "llama-3.1-8b", "--gpu", "4070ti", "--memory", "22.978GiB",
                         "--seq", "1024", "--days", "30")
    assert code == 1 and "it would fit on 2 GPUs" in err, err


def test_min_gpus_to_plan_is_the_first_count_where_the_search_finds_a_setup():
    """(moved from min_gpus_to_fit, which had no caller) Inside one node the hint's counts are powers of two."""
    from flopscalc.model import config_for_params
    from flopscalc.planner.setups import choose_setup, min_gpus_to_plan

    cfg, gpu = config_for_params(7e9), get_gpu("4070ti")
    n = min_gpus_to_plan(cfg, gpu, 1024, Precision.bf16, None)
    assert 2 <= n <= GPUS_PER_NODE
    assert choose_setup(cfg, gpu, n, 1024, Precision.bf16) is not None
    assert choose_setup(cfg, gpu, n // 2, 1024, Precision.bf16) is None


# ------------------------------------------------------------------ 4. the memory APIs take the GPU's architecture


def _large_case():
    cfg, gpu = get_preset("gpt2-large"), get_gpu("4070ti")
    setup = TrainingSetup(micro_batch=4, seq_len=1008, n_gpus=16, zero_stage=3)  # no architecture named
    return cfg, setup, gpu


def test_max_micro_batch_counts_the_gpus_workspace():
    cfg, setup, gpu = _large_case()
    on = replace(setup, gpu_architecture=gpu.architecture)
    # brute force: the largest micro-batch whose peak on this GPU (its cuBLAS workspace) fits its memory
    brute = max(b for b in range(1, 33) if estimate_memory(cfg, replace(on, micro_batch=b)).peak_bytes
                <= gpu.memory_bytes)
    assert brute == 4
    assert max_micro_batch(cfg, setup, gpu) == brute == answer(cfg, setup, gpu).max_micro_batch


def test_suggest_fixes_counts_the_gpus_workspace():
    cfg, setup, gpu = _large_case()
    on = replace(setup, gpu_architecture=gpu.architecture)
    assert estimate_memory(cfg, on).peak_bytes <= gpu.memory_bytes < estimate_memory(cfg, setup).peak_bytes
    advice = suggest_fixes(cfg, setup, gpu)
    assert advice.fits_already and advice.fixes == () and answer(cfg, setup, gpu).advice.fits_already
    assert advice.smallest.setup.gpu_architecture == gpu.architecture


# ------------------------------------------------------------------ 5. --network-gbps within a real NIC's range


@pytest.mark.parametrize("typed", ["inf", "1e300", "1e-300", "nan", "0.05", "100001"])
def test_network_gbps_outside_the_bounds_is_one_line_naming_the_option(capsys, typed):
    code, _, err = cli(capsys, *PLAN_ARGS, "--network-gbps", typed)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("flopscalc: error: --network-gbps"), err
    assert f"got {float(typed)!r}" in lines[0] and "bytes" not in lines[0] and "Traceback" not in err


def test_network_gbps_bounds_are_accepted():
    check_network_gbps(MIN_NETWORK_GBPS, 16)
    check_network_gbps(MAX_NETWORK_GBPS, 16)
    assert MIN_NETWORK_GBPS <= 1 and MAX_NETWORK_GBPS >= 800  # 1 GbE and a ConnectX-8 SuperNIC both plan
