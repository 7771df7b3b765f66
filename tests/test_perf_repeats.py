"""The MosaicML rows against their own repeats: which of the worst rows are the model's miss, which the row's.

data/published_throughput_repeats.csv holds the same MPT setups measured again (perf.validation.repeat_rows): the
A100-80GB sweep MosaicML published before llm-foundry's tables (mosaicml/examples, bf16 / FSDP PURE) and the H100
runs llm-foundry measured three times (benchmark_results.csv, amp_bf16 / PURE). Each fact below is what
docs/performance_model.md, "Where the model is weakest", reads from them; a change to the data or the model that
removes one fails here. The model is the headline's, untouched: no repeat is fitted on.
"""

from __future__ import annotations

import statistics

import pytest

from flopscalc.hardware import get_gpu
from flopscalc.model import count_params
from flopscalc.perf.step import MATMUL_PRECISION
from flopscalc.perf.validation import (
    check_row,
    in_fit_subset,
    published_rows,
    repeat_rows,
    row_config,
    summary,
)

TABLE = {r["run"]: r for r in published_rows()}
REPEATS = {r["run"]: r for r in repeat_rows()}
SETUP_COLUMNS = ("gpu", "n_gpus", "n_layer", "n_head", "n_embd", "vocab_size", "seq_len", "bias", "micro_batch",
                 "grad_accum", "recompute", "zero_stage", "attn_impl", "n_params_reported")


def _measured(row) -> float:
    return float(row["measured_tokens_per_s_per_gpu"])


def _twin_ratios(gpu: str) -> dict[str, float]:
    """Headline table's tokens/s over the repeat's, per headline run with a twin on ``gpu``."""
    return {r["twin_of"]: _measured(TABLE[r["twin_of"]]) / _measured(r)
            for r in REPEATS.values() if r["twin_of"] and r["gpu"] == gpu}


def _mosaicml_mfu(row) -> float:
    # llm-foundry scripts/train/benchmarking/README.md "MFU" (and collect_results.py): (3 x 2N + 3 x 4 L d T) FLOPs per
    # token, dense T x T attention, no recomputation, over the GPU's dense bf16 peak (data/gpu_specs.csv)
    cfg, setup, _ = row_config(row)
    per_token = 6 * int(row["n_params_reported"]) + 12 * cfg.n_layer * cfg.n_embd * setup.seq_len
    return per_token * _measured(row) / get_gpu(row["gpu"]).peak_flop_per_s(MATMUL_PRECISION[setup.precision])


@pytest.mark.parametrize(("rows", "n_rows"), [
    (list(REPEATS.values()), 82),
    ([r for r in TABLE.values() if r["run"].startswith("mpt-") and r["group"] != "a100-40gb"], 96),
    # llm-foundry README (061f2c7), table 'A100 40GB with 1600 Gbps node-node interconnect (RoCE)': its 46 rows on
    # 8 GPUs (7 sizes x its sequences; 13B 5 of them, 7B 6), MFU over the A100's 312 TFLOP/s as for the 80GB parts
    ([r for r in TABLE.values() if r["group"] == "a100-40gb"], 46),
], ids=["repeats", "headline", "a100-40gb"])
def test_each_mosaicml_row_reproduces_its_tables_mfu_and_parameter_count_so_it_is_read_right(rows, n_rows):
    # an independent check of the reading (tokens/s per GPU, sequence, parameters, GPU): the tables' own MFU column and
    # NumParams. Observed 2026-11-28: MFU within 0.0005 on every row (the tables round to 0.01 points and truncate
    # tokens/s to an integer; the A100-40GB rows within 0.0002), NumParams exact.
    assert len(rows) == n_rows
    for row in rows:
        cfg, _, _ = row_config(row)
        assert count_params(cfg).total == int(row["n_params_reported"]), row["run"]
        assert _mosaicml_mfu(row) == pytest.approx(float(row["reported_mfu"]), abs=0.001), row["run"]


def test_each_twin_is_the_setup_of_its_headline_row():
    twins = [r for r in REPEATS.values() if r["twin_of"]]
    assert len(twins) == 66  # 55 A100 (earlier sweep), 11 H100 (triplicate runs)
    for r in twins:
        for column in SETUP_COLUMNS:
            assert r[column] == TABLE[r["twin_of"]][column], (r["run"], column)


def test_the_two_a100_sweeps_agree_except_on_three_of_the_five_worst_rows():
    # Same shape, GPUs, sequence, micro-batch, accumulation and recomputation, measured in two sweeps. Observed
    # 2026-11-28 (headline / earlier): median |ratio - 1| 1.5% over 55 twins; the three rows slower by more than 2% in
    # the headline table are MPT-760M at 512 (0.802) and 1024 (0.853) and MPT-30B at 8192 (0.923), three of the five
    # rows the model misses by more than 20%. (The recompute rows of 7B-30B are 3-16% faster in the headline table,
    # where the model is already pessimistic.)
    ratios = _twin_ratios("a100-sxm-80gb")
    assert len(ratios) == 55
    assert statistics.median(abs(x - 1) for x in ratios.values()) < 0.02
    slower = {run for run, x in ratios.items() if x < 0.98}
    assert slower == {"mpt-760m-a100-s512-mb96", "mpt-760m-a100-s1024-mb48", "mpt-30b-a100-s8192-mb1"}
    assert ratios["mpt-760m-a100-s512-mb96"] < 0.81 and ratios["mpt-760m-a100-s1024-mb48"] < 0.86


def test_mpt_760m_short_sequences_are_the_rows_outlier_not_the_models():
    # The earlier sweep's MPT-760M gets faster as the sequence shortens at the same tokens per micro-batch (31,763 ->
    # 34,888 -> 36,719 tokens/s per GPU), as every priced cost says it should; the model meets it within 4%
    # (observed +2.8%, +3.0%), where the headline table's pair is +20.5% and +28.5%.
    runs = [f"mpt-760m-a100-s{seq}-mb{mb}-examples" for seq, mb in ((2048, 24), (1024, 48), (512, 96))]
    measured = [_measured(REPEATS[run]) for run in runs]
    assert measured[0] < measured[1] < measured[2]
    for run in runs[1:]:
        assert abs(check_row(REPEATS[run]).error) < 0.04, run
        assert check_row(TABLE[REPEATS[run]["twin_of"]]).error > 0.20


def test_mpt_30b_at_8192_is_slow_in_every_measurement_so_the_model_misses_it():
    # Four measurements, two GPUs, three sweeps: the model is above every one of them by more than 10% (observed
    # A100 +25.8% / +16.1%, H100 +28.1% / +39.4%, the last the median of three runs within 1.8% of each other), while
    # the same runs at 4096 are within 15%. A model miss, not a measurement outlier.
    rows = [TABLE["mpt-30b-a100-s8192-mb1"], REPEATS["mpt-30b-a100-s8192-mb1-examples"],
            TABLE["mpt-30b-h100-s8192-mb1"], REPEATS["mpt-30b-h100-s8192-mb1-pure"]]
    for row in rows:
        assert check_row(row).error > 0.10, row["run"]
    for row in (REPEATS["mpt-30b-a100-s4096-mb1-examples"], REPEATS["mpt-30b-h100-s4096-mb1-pure"]):
        assert abs(check_row(row).error) < 0.15, row["run"]


def test_mpt_13b_on_h100_at_2048_is_as_fast_with_recomputation_at_micro_batch_20():
    # The headline's MPT-13B H100 row at 2048 (micro-batch 2, accumulation 1, no recomputation) against llm-foundry's
    # triplicate 13B H100 runs at 2048 with micro-batch 20, accumulation 3 and full recomputation: 4,941 against 4,792
    # tokens/s per GPU, though recomputation adds a third forward. The model prices the latter within 3% (observed
    # -2.5%) and the former +13.2% (+24.9% before Composer's eager optimizer step and clipping were priced, which
    # weigh 30x more on its 4,096-token step; +20.0% before the compute hiding FSDP's collectives was slowed by 18.9%
    # of their time, `perf.parallel` [11]: its gathers and reductions are 32% of the step, against 3% at micro-batch
    # 20; +13.6% once ZeRO-3 was priced as FSDP's per-block collectives). The rest of what it loses is not in the
    # model; it is not the network either (the same row on 16-64 GPUs: 4,767-4,811). Since 2026-11-29 the row is
    # priced on the cuBLAS of its own image, CUDA 12.1 (llm-foundry h100new.md, column Image; GEMM fraction 0.751),
    # the micro-batch-20 runs on theirs, CUDA 11.8 (h100old.md; 0.728): +16.2% (observed), the bound 0.16 -> 0.17.
    small, large = TABLE["mpt-13b-h100-s2048-mb2"], REPEATS["mpt-13b-h100-s2048-mb20-pure"]
    assert _measured(large) > _measured(small)
    assert abs(check_row(large).error) < 0.03
    assert 0.10 < check_row(small).error < 0.17


def test_the_model_on_the_repeats_held_out_from_the_fit():
    # Every repeat whose twin is not a fit row (the fit rows' twins repeat the fit). Observed 2026-11-28, with the
    # runs' fused loss and train metrics priced: A100 (earlier sweep) 55 rows, median 3.0%, worst 16.1% (MPT-30B
    # 8192); H100 (PURE) 22 rows, median 6.0%, worst 39.4% (MPT-30B 8192), the MPT-350M rows +13% to +19%. With the
    # overlap slowdown (`perf.parallel` [11]): A100 median 2.9%, worst 14.6%; H100 median 4.6%, worst 36.4%.
    held = [check_row(r) for r in REPEATS.values() if not in_fit_subset(r["twin_of"] or "")]
    a100 = summary([c for c in held if c.gpu == "a100-sxm-80gb"])
    h100 = summary([c for c in held if c.gpu == "h100-sxm"])
    assert a100["n_runs"] == 55 and h100["n_runs"] == 22
    assert a100["median_abs_error"] <= 0.035 and a100["max_abs_error"] <= 0.17
    assert h100["median_abs_error"] <= 0.065 and h100["max_abs_error"] <= 0.40
