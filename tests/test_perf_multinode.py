"""The step-time model against llm-foundry's A100 rows on 16-128 GPUs, reported apart from the headline.

data/published_throughput_multinode.csv (`perf.validation.multinode_rows`): the rows of mosaicml/llm-foundry
scripts/train/benchmarking/README.md (commit 061f2c7), tables 'A100 80GB / A100 40GB with 1600 Gbps node-node
interconnect (RoCE)', that run on 2-16 nodes of 8 GPUs (bf16, FSDP FULL_SHARD), each with the stack of the table's
8-GPU row named in `stack_of`, and the network's achieved share (`network_efficiency`) of OCI's RoCE cluster network:
"near line rate (above 185 GB per second) aggregated bandwidth for each BM4.8 instance" of 1600 Gb/s (OCI blog,
blogs.oracle.com/cloud-infrastructure/?p=9809). The model is the headline's, untouched and not refitted;
docs/performance_model.md, "Multi-node rows, reported apart", reads its numbers from here.
"""

from __future__ import annotations

import statistics

import pytest

from flopscalc.errors import UsageError
from flopscalc.hardware import get_gpu
from flopscalc.model import count_params
from flopscalc.perf.device import device_perf
from flopscalc.perf.fabric import NETWORK_BUS_EFFICIENCY
from flopscalc.perf.step import MATMUL_PRECISION
from flopscalc.perf.validation import (
    check_row,
    in_fit_subset,
    multinode_rows,
    published_rows,
    row_config,
    row_device,
    row_estimate,
    summary,
    validate_multinode,
)

ALL_ROWS = {r["run"]: r for r in multinode_rows()}
# the A100 tables' rows, network stated; the H100 table's rows (network not stated) are tested apart, at the end
ROWS = {run: r for run, r in ALL_ROWS.items() if r["setup_stated"] == "full"}
H100_ROWS = {run: r for run, r in ALL_ROWS.items() if r["setup_stated"] == "partial"}
HEADLINE = {r["run"]: r for r in published_rows()}
# OCI's stated achieved aggregate per 8x A100 node over its 1600 Gb/s RoCE network (module docstring): 185 of 200 GB/s
ROCE_NETWORK_EFFICIENCY = 185 / 200
# the README's table titles: 1600 Gbps per node of 8 GPUs, 25 GB/s per GPU and direction
TABLE_NETWORK_BYTES_PER_S_PER_NODE = 1600e9 / 8
STACK_COLUMNS = ("precision", "zero_stage", "flash", "fused_loss", "attn_impl", "cuda", "dropout", "torch_compile",
                 "optimizer_impl", "low_precision_norm", "metric_ce_passes", "reduce_dtype", "bias", "vocab_size")
# The A100-80GB table's 70B rows: llm-foundry's per-run record (h100new.md, commit beb8dee, column Image) puts the
# table's 8-GPU rows on CUDA 12.1 but lists no 70B A100 run, and their bf16 / PURE is the earlier sweep's naming, so
# their CUDA is left unstated rather than carried over (it moves no A100 price: gpu_perf.csv has no A100 figure by CUDA).
NO_IMAGE_RECORD = {"mpt-70b-a100-s2048-mb8-g64", "mpt-70b-a100-s2048-mb2-g32"}
# Two rows the table contradicts itself on (same table, same shape and sequence, another GPU count): MPT-1B on 32 GPUs,
# 15,555 tokens/s per GPU against 19,001-19,085 on 16 and 64 (MFU 45.4 against 55.4-55.7), and MPT-70B on 64 A100-40GB
# at micro-batch 2, 276 against 376 on 128 GPUs at micro-batch 4 (MFU 35.9 against 48.9).
TABLE_OUTLIERS = {"mpt-1b-a100-40gb-s2048-mb10-g32", "mpt-70b-a100-40gb-s2048-mb2-g64"}
# Observed 2026-11-28, the model as for the headline (fraction 0.81, overlap slowdown 0.189, ZeRO-3 as FSDP's per-block
# collectives), network at 0.925: median absolute error 5.0%, worst +35.6% (MPT-70B on 64 A100-40GB); without the two
# table outliers worst +9.7% (MPT-125M on 128 GPUs); by GPU count median 4.7% (16, 7 rows), 5.0% (32, 9), 5.4% (64, 9),
# 5.0% (128, 9). Constant MFU 0.4: median 17.6%, worst 25.4%. Before FSDP's units (DeepSpeed's buckets): 5.1% / 33.9%,
# without the outliers 10.7%. With overlap_slowdown=0 (a trial, not in the code, before FSDP's units): 5.4% / 40.8%.
MEDIAN_BOUND, WORST_BOUND, WORST_WITHOUT_OUTLIERS_BOUND = 0.06, 0.36, 0.12


def _mosaicml_mfu(row, tokens_per_s_per_gpu: float) -> float:
    # llm-foundry scripts/train/benchmarking/README.md "MFU": (3 x 2N + 3 x 4 L d T) FLOPs per token (dense T x T
    # attention, no recomputation) over the GPU's dense bf16 peak (data/gpu_specs.csv: 312 TFLOP/s for both A100s)
    cfg, setup, _ = row_config(row)
    per_token = 6 * int(row["n_params_reported"]) + 12 * cfg.n_layer * cfg.n_embd * setup.seq_len
    peak = get_gpu(row["gpu"]).peak_flop_per_s(MATMUL_PRECISION[setup.precision])
    return per_token * tokens_per_s_per_gpu / peak


def test_the_rows_are_the_two_a100_tables_multi_node_rows_70b_included():
    # A100 80GB: its only rows beyond one node are 70B on 32 and 64 GPUs; A100 40GB: 70B (64, 128), 30B (32, 128) and
    # 125M-13B at 2048 on 16, 32, 64 and 128 GPUs (7 x 4)
    assert len(ROWS) == 34
    by_gpu = {g: sorted(int(r["n_gpus"]) for r in ROWS.values() if r["gpu"] == g)
              for g in ("a100-sxm-80gb", "a100-sxm-40gb")}
    assert by_gpu["a100-sxm-80gb"] == [32, 64]
    assert len(by_gpu["a100-sxm-40gb"]) == 32 and set(by_gpu["a100-sxm-40gb"]) == {16, 32, 64, 128}
    for r in ROWS.values():
        table = "A100 80GB" if r["gpu"] == "a100-sxm-80gb" else "A100 40GB"
        assert "061f2c7" in r["source"] and f"'{table} with 1600 Gbps node-node interconnect (RoCE)'" in r["source"]
        assert f"| {r['n_gpus']} | a100_" in r["source"] and r["seq_len"] == "2048" and r["setup_stated"] == "full"


def test_none_is_in_the_headline_which_keeps_its_138_held_out_rows():
    assert not set(ALL_ROWS) & set(HEADLINE)
    assert set(ALL_ROWS) == set(ROWS) | set(H100_ROWS) and len(ALL_ROWS) == 34 + 15
    held_out = [r for r in HEADLINE.values() if not in_fit_subset(r["run"]) and r["setup_stated"] == "full"]
    assert len(held_out) == 138
    assert all(int(r["n_gpus"]) == 8 for r in HEADLINE.values() if r["run"].startswith("mpt-"))


def test_each_row_reproduces_its_tables_mfu_and_parameter_count_so_it_is_read_right():
    # the tables' own MFU column and NumParams, as for the single-node rows (tests/test_perf_repeats.py). The tables
    # truncate tokens/s per GPU to an integer (MPT-70B on 32 A100-80GB: 11,962 tokens/s / 32 = 373.8, listed 373) and
    # round MFU to 0.01 points, so the listed MFU lies between the MFU of the listed tokens/s and of one more, within
    # the rounding: it does on every row. NumParams exact, 70B included (MPT-70B's yaml shape: 80 layers of 8192, 64
    # heads, vocabulary 50368, learned positions of 2048: 64,862,437,376).
    # The H100 rows too (peak 989.4 TFLOP/s, data/gpu_specs.csv): their listed MFU runs a hair below that of the listed
    # tokens/s (observed at most 0.012 points, MPT-30B on 32 GPUs: 43.93 from 2,308 tokens/s, listed 43.92; the table's
    # total, 73,860 tokens/s, gives the same), so their window is 0.02 points wide below.
    for run, row in ALL_ROWS.items():
        cfg, _, _ = row_config(row)
        assert count_params(cfg).total == int(row["n_params_reported"]), run
        tokens = float(row["measured_tokens_per_s_per_gpu"])
        below = 2e-4 if row["gpu"] == "h100-sxm" else 5e-5
        lo, hi = _mosaicml_mfu(row, tokens) - below, _mosaicml_mfu(row, tokens + 1) + 5e-5
        assert lo <= float(row["reported_mfu"]) <= hi, run


def test_each_row_has_the_stack_of_its_tables_8_gpu_row():
    for run, row in ROWS.items():
        twin = HEADLINE[row["stack_of"]]
        assert twin["gpu"] == row["gpu"] and twin["n_gpus"] == "8", run
        for column in STACK_COLUMNS:
            if column == "cuda" and run in NO_IMAGE_RECORD:
                assert row[column] == "" and "lists no 70B A100 run" in row["notes"], run
                continue
            assert row[column] == twin[column], (run, column)
        same_size = twin["run"].split("-")[1] == run.split("-")[1]
        assert same_size or run.split("-")[1] in ("30b", "70b"), run  # the tables have no 8-GPU 30B/70B row here


def test_the_rows_network_is_the_tables_bandwidth_at_ocis_achieved_share():
    row = ROWS["mpt-350m-a100-40gb-s2048-mb18-g128"]
    assert float(row["network_efficiency"]) == pytest.approx(ROCE_NETWORK_EFFICIENCY, abs=5e-4)
    gpu = get_gpu(row["gpu"])
    assert row_device(row, gpu).network_bus_efficiency == pytest.approx(ROCE_NETWORK_EFFICIENCY, abs=5e-4)
    comm = row_estimate(row).comm
    # a ring leaves each node once per NIC channel: the node's network carries the ring, below NVLink's 0.7 x 300 GB/s
    assert comm.link == "network between nodes"
    assert comm.bus_bytes_per_s == pytest.approx(TABLE_NETWORK_BYTES_PER_S_PER_NODE * ROCE_NETWORK_EFFICIENCY,
                                                 rel=1e-3)
    # the same row without the column is priced on the default network share (InfiniBand NDR's)
    plain = {k: v for k, v in row.items() if k != "network_efficiency"}
    assert row_device(plain, gpu).network_bus_efficiency is None
    assert row_estimate(plain).comm.bus_bytes_per_s == pytest.approx(
        TABLE_NETWORK_BYTES_PER_S_PER_NODE * NETWORK_BUS_EFFICIENCY, rel=1e-3)
    assert row_estimate(plain).step_s < row_estimate(row).step_s  # a slower network never speeds the step


def test_a_network_share_outside_0_1_is_refused():
    from dataclasses import replace

    with pytest.raises(UsageError, match="network bus efficiency"):
        replace(device_perf(get_gpu("a100-sxm-40gb")), network_bus_efficiency=1.2)


def test_the_multi_node_rows_within_their_bounds_and_beat_a_constant_mfu():
    checks = {run: check_row(r) for run, r in ROWS.items()}
    assert {c.run for c in validate_multinode()} == set(ROWS)  # the default set is the network-stated one
    s = summary(list(checks.values()))
    assert s["median_abs_error"] <= MEDIAN_BOUND
    assert s["max_abs_error"] <= WORST_BOUND
    assert s["median_abs_error"] < 0.4 * s["constant_median_abs_error"]
    rest = [abs(c.error) for run, c in checks.items() if run not in TABLE_OUTLIERS]
    assert max(rest) <= WORST_WITHOUT_OUTLIERS_BOUND
    # the two rows the table contradicts are the model's two worst, both fast (the model prices them as their siblings)
    worst_two = sorted(checks, key=lambda run: -abs(checks[run].error))[:2]
    assert set(worst_two) == TABLE_OUTLIERS and all(checks[run].error > 0.2 for run in TABLE_OUTLIERS)
    for n_gpus in (16, 32, 64, 128):
        errs = [abs(c.error) for run, c in checks.items() if ROWS[run]["n_gpus"] == str(n_gpus)]
        assert statistics.median(errs) <= MEDIAN_BOUND, n_gpus


# From 16 to 128 GPUs, tokens/s per GPU (the same micro-batch for MPT-125M-760M; 8 -> 10 for 1B, 5 -> 6 for 3B):
# the table's, observed -5.1%, -6.3%, -2.3%, -2.3%, -2.2%; the model's with FSDP's per-block collectives, observed
# -1.1%, -1.1%, -0.7%, -0.3%, +0.4%; with DeepSpeed's buckets (before), -0.2%, -0.2%, -0.2%, -0.05%, +0.4%.
TREND_SIZES = ("125m", "350m", "760m", "1b", "3b")
FSDP_FALL_SIZES = ("125m", "350m", "760m")  # same micro-batch at 16 and 128, L = 12-24 blocks of 7-25M parameters


def _trend(size: str) -> tuple[float, float]:
    """(measured, predicted) change of tokens/s per GPU from the table's 16-GPU row of ``size`` to its 128-GPU row."""
    rows = {int(r["n_gpus"]): r for r in ROWS.values() if r["run"].startswith(f"mpt-{size}-")}
    small, large = check_row(rows[16]), check_row(rows[128])
    return (large.measured_tokens_per_s_per_gpu / small.measured_tokens_per_s_per_gpu - 1,
            large.predicted_tokens_per_s_per_gpu / small.predicted_tokens_per_s_per_gpu - 1)


def test_fsdps_per_block_ring_latency_makes_the_model_fall_with_the_gpu_count_a_fifth_of_the_tables_fall():
    # Composer wraps each block in its own FSDP unit (perf.parallel [12]), so a step of MPT-350M sends 3 x 24 + 2 = 74
    # ring collectives, each paying NCCL's ring latency over every rank ([6]: 70 us on 16 A100s, 599 us on 128); they
    # hide behind compute but slow it by 0.189 of their time ([11]). With DeepSpeed's buckets the model sent 17 and
    # moved by 0.2% (this test fails there: -0.17%, -0.17%, -0.16%); with FSDP's units it falls 0.7-1.1%.
    for size in FSDP_FALL_SIZES:
        measured, predicted = _trend(size)
        assert -0.015 < predicted < -0.005, size
        assert measured < predicted, size  # the right direction, a fifth to a third of the size


def test_the_tables_fall_beyond_fsdps_latency_stays_a_known_miss():
    # A known miss, kept visible: the table falls 2-6% for MPT-125M to 3B, the model at most 1.1%; 3-5 points for the
    # small models are not in it (candidates and why none is priced: docs/performance_model.md, "Multi-node rows,
    # reported apart"). When the model learns them, this test fails and its numbers move to the doc.
    for size in TREND_SIZES:
        measured, predicted = _trend(size)
        assert -0.07 < measured < -0.02, size
        assert predicted - measured > 0.01, size
        assert abs(predicted) < 0.015, size


# --- The H100 table's rows on 16-64 GPUs: network NOT stated (setup_stated partial), reported apart ---------------
# mosaicml/llm-foundry scripts/train/benchmarking/README.md (commit c90b9b3), table 'H100 80GB BF16': its 15 rows beyond
# one node. Every one is a run of sweep.sh (commit 2542a2e, 'INCREASE GPU COUNT') on the cluster (r9z1) of the table's
# 8-GPU rows, and llm-foundry's per-run record (h100new.md, commit beb8dee, column Image) lists each on the 8-GPU rows'
# image (mosaicml/pytorch:2.1.0_cu121, CUDA 12.1; sweep.sh's IMAGE default says 2.0.1_cu118), so the stack is theirs
# (`stack_of`); the table and the script name no network, so the rows are priced on perf/parallel.py's default (one
# 400 Gb/s NIC per GPU at 0.94), an assumption.
H100_TABLE = "'H100 80GB BF16'"
H100_GPU_COUNTS = {"760m": [16, 32], "1b": [16, 32, 64], "3b": [16, 32, 64], "13b": [16, 32, 64], "30b": [16, 32],
                   "70b": [32, 64]}
# Observed 2026-11-28 (the model as for the headline, untouched): median absolute error 8.7%, worst +19.2% (MPT-13B on
# 64 GPUs, micro-batch 2, no recomputation); by GPU count median 6.9% (16, 5 rows), 8.9% (32, 6), 10.5% (64, 4). Constant
# MFU 0.4: median 4.1%, worst 16.6% -- better than the model here (the table's MFU is 0.36-0.44, the constant's 0.4).
# On 2026-11-29 the rows were corrected to their own image's CUDA, 12.1 (priced at cuBLAS 12.0.2's GEMM rate, 0.751 of
# peak, was CUDA 11.8's 0.728): median 11.1%, worst +22.1% (the same row); by GPU count 9.2%, 11.2%, 12.9%. The bounds
# move with that data change (0.10 -> 0.12, 0.21 -> 0.23), no further.
H100_MEDIAN_BOUND, H100_WORST_BOUND = 0.12, 0.23
# At half the assumed network share (0.47: a 200 Gb/s NIC per GPU, Ampere's) the errors move by at most 5.4 points
# (MPT-13B on 64 GPUs +22.1% -> +16.7%; 5.2 points, +19.2% -> +14.0%, before the CUDA 12.1 correction), so the
# assumption is worth up to ~5 points on these rows.
HALF_NETWORK_SHIFT_BOUND = 0.06


def _h100(size: str, n_gpus: int) -> dict[str, str]:
    (row,) = [r for r in H100_ROWS.values() if r["run"].startswith(f"mpt-{size}-") and r["n_gpus"] == str(n_gpus)]
    return row


def test_the_h100_rows_are_that_tables_multi_node_rows_with_the_network_marked_assumed():
    assert len(H100_ROWS) == 15
    got = {size: sorted(int(r["n_gpus"]) for r in H100_ROWS.values() if r["run"].split("-")[1] == size)
           for size in H100_GPU_COUNTS}
    assert got == H100_GPU_COUNTS
    for run, r in H100_ROWS.items():
        assert r["gpu"] == "h100-sxm" and r["seq_len"] == "2048" and r["group"] == "h100-80gb-bf16-multinode", run
        assert "c90b9b3" in r["source"] and H100_TABLE in r["source"] and f"| {r['n_gpus']} | h100_80gb'" in r["source"]
        assert r["network_efficiency"] == "" and "NETWORK NOT STATED" in r["notes"], run
        assert f"-g {r['n_gpus']} --microbatch_size {r['micro_batch']} --accum {r['grad_accum']}" in r["notes"], run


def test_each_h100_row_has_the_stack_of_its_tables_8_gpu_row():
    assert not NO_IMAGE_RECORD & set(H100_ROWS)  # the A100 rows without an image record have no H100 twin here
    for run, row in H100_ROWS.items():
        twin = HEADLINE[row["stack_of"]]
        assert twin["gpu"] == "h100-sxm" and twin["n_gpus"] == "8" and H100_TABLE in twin["source"], run
        for column in STACK_COLUMNS:  # every H100 row has its twin's stack (NO_IMAGE_RECORD holds only A100 rows)
            assert row[column] == twin[column], (run, column)
        size = run.split("-")[1]
        # the table has no 8-GPU 70B row, and no 8-GPU 3B row at 2048 (its 3B row at 4096 is used)
        assert twin["run"].split("-")[1] == size or size == "70b", run
        assert twin["seq_len"] == "2048" or size == "3b", run


def test_the_assumed_network_is_the_default_and_never_the_limiting_link():
    gpu = get_gpu("h100-sxm")
    for run, row in H100_ROWS.items():
        assert row_device(row, gpu).network_bus_efficiency is None, run
        comm = row_estimate(row).comm
        # a node's ring over its 8 x 50 GB/s NICs at 0.94 (376 GB/s) is above NVLink 4's 0.7 x 450 GB/s: NVLink limits
        assert comm.link == "NVLink" and comm.bus_bytes_per_s == pytest.approx(0.7 * 450e9, rel=1e-3), run
    # the assumption's leverage: at half the share the network limits (188 GB/s per node) and every row gets slower
    shifts = []
    for row in H100_ROWS.values():
        plain, half = check_row(row), check_row({**row, "network_efficiency": "0.47"})
        assert half.predicted_tokens_per_s_per_gpu < plain.predicted_tokens_per_s_per_gpu
        shifts.append(plain.error - half.error)
    assert 0.01 < max(shifts) <= HALF_NETWORK_SHIFT_BOUND


def test_the_h100_rows_within_their_bounds_reported_apart_and_a_constant_mfu_does_better_there():
    checks = {run: check_row(r) for run, r in H100_ROWS.items()}
    assert {c.run for c in validate_multinode("partial")} == set(H100_ROWS)
    assert all(not c.setup_stated for c in checks.values())
    s = summary(list(checks.values()))
    assert s["median_abs_error"] <= H100_MEDIAN_BOUND and s["max_abs_error"] <= H100_WORST_BOUND
    for n_gpus in (16, 32, 64):
        errs = [abs(c.error) for run, c in checks.items() if H100_ROWS[run]["n_gpus"] == str(n_gpus)]
        assert statistics.median(errs) <= H100_MEDIAN_BOUND + 0.01, n_gpus  # observed 9.2%, 11.2%, 12.9%
    # A known miss, kept visible: the constant MFU 0.4 is nearer on these rows (median 4.1% against 11.1%; 8.7% before
    # the CUDA 12.1 correction). The model is fast on all 11 rows without recomputation (observed +7.6% .. +22.1%), as
    # on the headline's H100 rows at 2048 (docs/performance_model.md, "Where the model is weakest", item 1), and slow on
    # 3 of the 4 with it (-4.6% .. -1.6%; MPT-70B on 32 GPUs at micro-batch 2 +9.9%). When the model beats the constant here, this fails: move the numbers.
    assert s["constant_median_abs_error"] < s["median_abs_error"]
    no_recompute = [c.error for run, c in checks.items() if H100_ROWS[run]["recompute"] == "none"]
    assert len(no_recompute) == 11 and min(no_recompute) > 0.03
    with pytest.raises(ValueError, match="setup_stated"):
        validate_multinode("assumed")


def _h100_change(size: str, n_from: int, n_to: int) -> tuple[float, float]:
    small, large = check_row(_h100(size, n_from)), check_row(_h100(size, n_to))
    return (large.measured_tokens_per_s_per_gpu / small.measured_tokens_per_s_per_gpu - 1,
            large.predicted_tokens_per_s_per_gpu / small.predicted_tokens_per_s_per_gpu - 1)


def test_the_h100_per_gpu_fall_at_a_fixed_setup_is_larger_measured_than_predicted():
    # Same micro-batch and accumulation at both GPU counts. Observed (measured / predicted): MPT-760M 16 -> 32 -0.85% /
    # -0.08%; MPT-1B 16 -> 64 -3.55% / -0.23%; MPT-3B 32 -> 64 -2.15% / -0.58%: the table falls 0.8-3.6%, the model
    # 0.1-0.6% (on NVLink-limited rings the FSDP units' latency is all the model adds), the A100 tables' miss again.
    for size, n_from, n_to in (("760m", 16, 32), ("1b", 16, 64), ("3b", 32, 64)):
        measured, predicted = _h100_change(size, n_from, n_to)
        assert -0.045 < measured < -0.005, size
        assert -0.01 < predicted <= 0, size
        assert measured < predicted, size
    # MPT-13B (micro-batch 2, accumulation 1) is flat in the table from 8 to 64 GPUs (4,792 / 4,767 / 4,811 / 4,800) and
    # rises in the model (16 -> 64 observed +0.69% measured, +1.84% predicted; 8 -> 64 +5.3% predicted): FULL_SHARD
    # splits the optimizer step over more GPUs (50 ms a step on 8, 6 ms on 64), more than the added ring latency slows
    measured, predicted = _h100_change("13b", 16, 64)
    assert abs(measured) < 0.01 and 0.01 < predicted < 0.03
    eight = check_row(HEADLINE["mpt-13b-h100-s2048-mb2"])
    assert check_row(_h100("13b", 64)).predicted_tokens_per_s_per_gpu / eight.predicted_tokens_per_s_per_gpu - 1 > 0.04
