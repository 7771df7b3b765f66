"""The step-time model against llm-foundry's A100-40GB table, held out (data/published_throughput.csv, group 'a100-40gb').

mosaicml/llm-foundry scripts/train/benchmarking/README.md (commit 061f2c7), table 'A100 40GB with 1600 Gbps node-node
interconnect (RoCE)': the 46 rows on one node of 8 GPUs, MPT 125M-13B at 512-32768 tokens, bf16 with FSDP PURE, the
stack of the earlier mosaicml/examples sweep (docs/performance_model.md). They are MosaicML benchmark rows with a
stated setup, so they count in the headline (tests/test_perf_validation.py) and are never fitted on; the reading is
checked by the table's own MFU and NumParams (tests/test_perf_repeats.py) and the fit in 40 GB by the memory engine
(tests/test_memory_published.py). Nothing here is tuned: the model is the headline's.
"""

from __future__ import annotations

import statistics
from collections import Counter

from flopscalc.perf.validation import check_row, in_fit_subset, published_rows, summary

GROUP = "a100-40gb"
ROWS = [r for r in published_rows() if r["group"] == GROUP]
# Observed 2026-11-28, model as for the headline (fraction 0.81 fitted on the A100-80GB rows at 2048): median absolute
# error 2.8%, worst +12.6% (MPT-13B at 1024 with full recomputation; the five MPT-13B rows, micro-batch 1-16 x 16,
# are +9.4% .. +12.6%); with recomputation 15 rows, median -0.9% (-3.7% .. +12.6%), without 31 rows, median +2.8%
# (-1.8% .. +6.0%). Constant MFU 0.4 on the same rows: median 15.6%, worst 49.7%. With the compute beside hidden
# collectives slowed (`perf.parallel` [11]): median 2.3%, worst +10.9%; recompute -1.1% (-4.2% .. +10.9%), none
# +2.1% (-1.9% .. +5.9%); the MPT-13B rows +8.0% .. +10.9%.
MEDIAN_BOUND, WORST_BOUND = 0.03, 0.12


def test_the_rows_are_the_tables_single_node_rows_and_none_is_fitted_on():
    # the table's 8-GPU rows: 13B at 512-8192, 7B at 512-16384, the five smaller sizes at 512-32768 (no 30B or 70B
    # row runs on one node); its 16-128 GPU rows are reported apart (tests/test_perf_multinode.py;
    # docs/performance_model.md, "Multi-node rows, reported apart")
    assert len(ROWS) == 46
    sizes = Counter(r["run"].split("-")[1] for r in ROWS)
    assert sizes == {"13b": 5, "7b": 6, "3b": 7, "1b": 7, "760m": 7, "350m": 7, "125m": 7}
    for r in ROWS:
        assert r["gpu"] == "a100-sxm-40gb" and r["n_gpus"] == "8" and r["setup_stated"] == "full", r["run"]
        assert "061f2c7" in r["source"] and "A100 40GB with 1600 Gbps" in r["source"], r["run"]
        assert not in_fit_subset(r["run"]), r["run"]


def test_the_a100_40gb_rows_held_out_within_their_bounds_and_beat_a_constant_mfu():
    checks = [check_row(r) for r in ROWS]
    s = summary(checks)
    assert s["median_abs_error"] <= MEDIAN_BOUND
    assert s["max_abs_error"] <= WORST_BOUND
    assert s["median_abs_error"] < 0.25 * s["constant_median_abs_error"]
    assert s["max_abs_error"] < 0.5 * s["constant_max_abs_error"]


def test_the_short_sequence_recompute_deficit_of_the_80gb_table_does_not_carry_over():
    # On the A100-80GB table, full recomputation at sequences < 8192 is -3% .. -15% (docs/performance_model.md,
    # "Where the model is weakest", item 2). On the 40GB table the 7B recompute rows at 512-4096 are within 5% (observed
    # -4.2% .. -3.1%) and the five 13B rows are fast (+8.0% .. +10.9%): the split by recomputation is not this table's.
    checks = {r["run"]: (r, check_row(r)) for r in ROWS}
    full = [c.error for r, c in checks.values() if r["recompute"] == "full"]
    none = [c.error for r, c in checks.values() if r["recompute"] == "none"]
    assert len(full) == 15 and len(none) == 31
    assert abs(statistics.median(full)) < 0.02 and abs(statistics.median(none)) < 0.035
    short_7b = [c.error for r, c in checks.values() if r["run"].startswith("mpt-7b-") and int(r["seq_len"]) <= 4096]
    assert len(short_7b) == 4 and all(-0.05 < e < 0 for e in short_7b)
    assert all(0.05 < c.error <= WORST_BOUND for r, c in checks.values() if r["run"].startswith("mpt-13b-"))
