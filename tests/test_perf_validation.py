"""Predicted against published throughput (data/published_throughput.csv), no per-run tuning.

The model has one fitted number, op_kinds.SUSTAINED_FRACTION (the GEMMs' sustained share of their priced rate), fitted on
a named subset (the MosaicML A100-80GB rows at sequence 2048, `validation.in_fit_subset`); the error bounds below are
asserted on the held-out rows only, at the values the model reaches today (docs/performance_model.md), so a
regression fails here. Rows whose source leaves part of the layout unstated (the Llama 2 paper's GPU-hours) are
reported apart and bounded apart.
"""

from __future__ import annotations

import pytest

from flopscalc.errors import UsageError
from flopscalc.hardware import get_gpu
from flopscalc.perf import StepOptions, estimate_step
from flopscalc.perf.device import device_perf
from flopscalc.perf.op_kinds import SUSTAINED_FRACTION, AttentionKernel
from flopscalc.perf.step import MATMUL_PRECISION
from flopscalc.perf.validation import (
    check_row,
    consumer_rows,
    fit_sustained_fraction,
    in_fit_subset,
    published_rows,
    repeat_rows,
    row_config,
    row_device,
    summary,
    validate,
)

# Issue 11's targets over the held-out rows: median absolute error <= 8%, worst <= 20%.
TARGET_MEDIAN, TARGET_WORST = 0.08, 0.20
# Reached on 2026-11-28 with the Triton attention kernel of the MosaicML runs, the H100 FlashAttention-2 rate read as
# forward + backward, the fitted fraction scaling the GEMMs only, the two-kernel norm backward and the CUDA 11.8
# cuBLAS GEMM rate for the MosaicML H100 runs, and Composer's eager optimizer step and clipping for the MosaicML runs
# (docs/performance_model.md), over the 92 held-out rows with a fully stated setup: median 4.9%, worst 28.5%; then,
# with the MosaicML runs' fused cross-entropy kernel and Composer's two train-metric cross-entropy passes priced as
# their code runs them (the fraction refitted 0.80 -> 0.81): median 5.3%, worst 28.7% (constant MFU 0.4: 18.5%,
# 164%); then, with the compute that hides data-parallel collectives slowed by 18.9% of their time (Lee et al. 2025,
# `perf.parallel` [11]; the fraction refits 0.808, still 0.81): median 4.3%, worst 28.4%. Before these changes:
# median 9.8%, worst 32.3%. The median meets the target; the worst does NOT (target 20%): the four rows above 20% are
# MPT-760M at 512 and 1024 on A100 (+28.4%, +20.4%), which MosaicML's earlier sweep of the same setups contradicts
# (tests/test_perf_repeats.py), and MPT-30B at 8192 (H100 +25.3%, A100 +24.2%), slow in every measurement.
# With llm-foundry's A100-40GB table (46 single-node rows, group 'a100-40gb', held out; tests/test_perf_a100_40gb.py)
# the headline is 138 rows: see docs/performance_model.md, "Held-out result". On 2026-11-29 the MosaicML H100 rows
# were corrected to the CUDA of their own image, 12.1 (llm-foundry h100new.md, column Image; they had been read as
# 11.8 from sweep.sh's default) and priced at cuBLAS 12.0.2's GEMM rate (0.751 of peak, was 11.8's 0.728): the 138
# rows' median 3.24% -> 3.51%, worst 28.42% (MPT-760M A100 at 512) unchanged, rows above 20% 4 -> 5 (MPT-760M on
# H100 at 2048, +18.2% -> +20.5%; MPT-30B on H100 at 8192 +25.4% -> +28.3%). No bound here moves.
HELD_OUT_ROWS = 138
HELD_OUT_MEDIAN_BOUND = TARGET_MEDIAN
HELD_OUT_MAX_BOUND = 0.29
# The Llama-style rows among them (torchtitan, 64 A100s): worst 8.3% (Llama 2 13B; 7.6% before ZeRO-3 was priced as
# FSDP's per-block collectives, 122 a step instead of DeepSpeed's 542 buckets; 11.7% before the overlap slowdown);
# constant MFU 0.4: worst 29.7%.
LLAMA_MAX_BOUND = 0.085
# Rows with a partly stated setup (Llama 2 paper, layout assumed: FSDP over 1,024 GPUs as `flopscalc train` runs it,
# fp32 gradient reduction since 2026-11-28): observed +26.2%, +41.5%, +5.1% (7B, 13B, 70B) with FSDP's per-block
# collectives (98-242 a step, each paying a 1,024-rank ring's latency, 4.8 ms); -24.9%, -22.1%, -33.3% before, with
# DeepSpeed's 5e7-parameter buckets (280-2,889 collectives, 1.4-14 s of latency, and the last 5e8-parameter
# reduce-scatter exposed: 0.7-5.6 s); -14.2% .. -24.9% before the overlap slowdown. The rows are end-to-end
# GPU-hours (restarts and evaluation included), so a step model should come out fast; see docs/performance_model.md.
PARTIAL_MAX_BOUND = 0.42


def test_every_row_names_its_source_and_a_measured_throughput():
    for row in published_rows():
        assert row["source"].strip() and float(row["measured_tokens_per_s_per_gpu"]) > 0, row["run"]


# Flag columns: `row_config` reads them by comparing with "true" (torch_compile: tests/test_perf_consumer.py), so
# any other spelling ("True", "yes", a typo) would silently read as false and price another setup.
FLAG_COLUMNS = ("bias", "flash", "fused_loss", "dropout", "torch_compile", "low_precision_norm")


def test_every_flag_and_setting_in_both_csvs_is_one_the_reader_knows():
    for row in (*published_rows(), *consumer_rows(), *repeat_rows()):
        for col in FLAG_COLUMNS:
            assert row[col] in ("true", "false", ""), (row["run"], col, row[col])
        assert row["reduce_dtype"] in ("fp32", "bf16", ""), (row["run"], row["reduce_dtype"])
        assert row["metric_ce_passes"] in ("", "0", "1", "2"), (row["run"], row["metric_ce_passes"])


def test_the_mosaicml_shapes_reproduce_the_reported_parameter_counts_exactly():
    # an independent check that each row's setup is the one measured: the tables' NumParams column
    checks = [c for c in validate() if c.n_params_reported is not None]
    assert len(checks) >= 90
    for c in checks:
        assert c.n_params == c.n_params_reported, c.run


def test_the_fitted_fraction_is_re_derived_from_its_named_subset():
    fit_rows = [r for r in published_rows() if in_fit_subset(r["run"])]
    assert len(fit_rows) == 9
    assert fit_sustained_fraction(fit_rows) == pytest.approx(SUSTAINED_FRACTION, abs=0.005)


def held_out() -> list:
    # published_rows() is the headline set: the consumer-GPU rows (group 'consumer') are held out too but bounded
    # apart, in tests/test_perf_consumer.py, so the 138-row figures below (and the planner's HELD_OUT_*) stay theirs
    return [check_row(r) for r in published_rows() if not in_fit_subset(r["run"])]


def test_held_out_error_stays_within_the_documented_bounds_and_beats_a_constant_mfu():
    held = [c for c in held_out() if c.setup_stated]
    s = summary(held)
    assert s["n_runs"] == HELD_OUT_ROWS
    assert s["median_abs_error"] <= HELD_OUT_MEDIAN_BOUND  # the target, met
    assert s["max_abs_error"] <= HELD_OUT_MAX_BOUND  # the target is TARGET_WORST (20%): not met
    assert s["median_abs_error"] < 0.75 * s["constant_median_abs_error"]
    assert s["max_abs_error"] < 0.5 * s["constant_max_abs_error"]


def test_the_unfitted_model_is_optimistic_everywhere_it_is_fitted():
    # the roofline sum is a bound the real loops do not reach: without the fitted fraction every
    # MosaicML prediction is above the measurement (what the fitted number stands for)
    for row in published_rows():
        if row["run"].startswith("mpt-"):
            cfg, setup, _ = row_config(row)
            est = estimate_step(cfg, setup, get_gpu(row["gpu"]), StepOptions(sustained_fraction=1.0))
            assert est.tokens_per_s_per_gpu > float(row["measured_tokens_per_s_per_gpu"]), row["run"]


def test_llama_style_rows_are_priced_as_their_presets_and_beat_a_constant_mfu():
    # torchtitan's Llama 2/3 rows on 64 A100s: GQA, SwiGLU, RMSNorm, RoPE, untied heads (held out)
    rows = {r["run"]: r for r in published_rows() if r["preset"]}
    llama = [c for c in held_out() if c.run in rows and c.setup_stated]
    assert len(llama) == 3
    for c in llama:
        cfg, _, _ = row_config(rows[c.run])
        assert not cfg.is_gpt2_block and cfg.norm.value == "rmsnorm" and cfg.mlp.value == "swiglu"
        assert abs(c.error) <= LLAMA_MAX_BOUND, c.run
        assert abs(c.error) < abs(c.constant_error), c.run



def test_torchtitan_rows_reproduce_the_reported_mfu_so_the_sequence_and_peak_are_the_measured_ones():
    # an independent check of each row's setup, as NumParams is for MosaicML's: torchtitan's MFU is PaLM's
    # 6N + 12 L H Q T (dense attention) x tokens/s over the A100's 312 TFLOP/s (Chowdhery et al. 2022, App. B)
    from flopscalc.flops import palm_flops_per_token
    from flopscalc.model import count_params

    rows = [r for r in published_rows() if r["run"].startswith("torchtitan-")]
    assert len(rows) == 3
    for row in rows:
        cfg, setup, _ = row_config(row)
        per_token = palm_flops_per_token(count_params(cfg).total, cfg.n_layer, cfg.n_head, cfg.head_dim,
                                         setup.seq_len)
        peak = get_gpu(row["gpu"]).peak_flop_per_s(MATMUL_PRECISION[setup.precision])
        mfu = per_token * float(row["measured_tokens_per_s_per_gpu"]) / peak
        assert mfu == pytest.approx(float(row["reported_mfu"]), abs=0.002), row["run"]


def test_partly_stated_rows_are_reported_apart_within_their_own_bound():
    partial = [c for c in held_out() if not c.setup_stated]
    assert [c.run for c in partial] == ["llama2-paper-7b-a100-s4096", "llama2-paper-13b-a100-s4096",
                                        "llama2-paper-70b-a100-s4096"]
    assert max(abs(c.error) for c in partial) <= PARTIAL_MAX_BOUND


def test_the_llama2_paper_rows_are_its_gpu_hours():
    # Touvron et al. 2023, Table 2: GPU-hours for 2.0T tokens (Table 1) -> tokens/s per GPU
    hours = {"7b": 184_320, "13b": 368_640, "70b": 1_720_320}
    for row in published_rows():
        if row["run"].startswith("llama2-paper-"):
            size = row["run"].split("-")[2]
            assert float(row["measured_tokens_per_s_per_gpu"]) == pytest.approx(2.0e12 / (hours[size] * 3600),
                                                                                 abs=0.05)


def test_mosaicml_rows_run_the_triton_kernel_and_the_others_flash_attention_2():
    # llm-foundry's benchmark script defaults to attn_impl triton (scripts/train/benchmarking/submit_benchmarks.py);
    # llm.c runs cuDNN's fused attention, torchtitan SDPA's flash backend: FlashAttention-2-class kernels
    for row in published_rows():
        _, _, options = row_config(row)
        want = AttentionKernel.triton if row["run"].startswith("mpt-") else AttentionKernel.flash2
        assert options.attention_kernel is want, row["run"]


def test_the_triton_kernel_is_what_the_long_sequence_a100_rows_need():
    # held out: the A100 rows at sequence >= 16384 were -5.6% to +32.3% (median +20%) with FlashAttention-2's rate;
    # with the FlashAttention-2 paper's Triton ratios they are within 15% (observed -12.0% .. +0.1%), and slower than
    # the same rows priced with FlashAttention-2
    rows = [r for r in published_rows() if r["run"].startswith("mpt-") and r["gpu"] == "a100-sxm-80gb"
            and int(r["seq_len"]) >= 16384]
    assert len(rows) == 20
    for row in rows:
        check = check_row(row)
        assert abs(check.error) <= 0.15, row["run"]
        cfg, setup, _ = row_config(row)
        as_flash2 = estimate_step(cfg, setup, get_gpu(row["gpu"]))  # the default kernels, the row's loss
        assert as_flash2.tokens_per_s_per_gpu > check.predicted_tokens_per_s_per_gpu


def test_each_run_gets_the_gemm_rate_of_the_cublas_nearest_its_own_and_no_other_row_does():
    # pytorch/pytorch#100850, H100 SXM, bf16 2048 x 8192 x 8192 against the datasheet's 989.4 TFLOP/s: 720.3 TFLOP/s
    # with cuBLAS 11.11.3.6 (CUDA 11.8), 742.7 with cuBLAS 12.0.2.224 (CUDA 12.0). Every CUDA 11.x takes the first,
    # 12.0-12.1 the second; a later or unstated CUDA the MAMF table's fraction (torch 2.7.0+cu126).
    h100 = get_gpu("h100-sxm")
    peak_tflops = h100.peak_flop_per_s(MATMUL_PRECISION["bf16-mixed"]) / 1e12
    current = device_perf(h100).gemm_peak_fraction
    for cuda, tflops in (("11.7", 720.3), ("11.8", 720.3), ("12.0", 742.7), ("12.1", 742.7)):
        assert row_device({"cuda": cuda}, h100).gemm_peak_fraction == pytest.approx(tflops / peak_tflops, abs=5e-4)
    for cuda in ("", "12", "12.2", "12.8", "13.0"):
        assert row_device({"cuda": cuda}, h100).gemm_peak_fraction == current, cuda
    assert 720.3 / peak_tflops < 742.7 / peak_tflops < current  # cuBLAS gained Hopper kernels release by release
    # a GPU without a figure for that cuBLAS keeps its own fraction, whatever the row states
    a100 = get_gpu("a100-sxm-80gb")
    for cuda in ("11.8", "12.1"):
        assert row_device({"cuda": cuda}, a100).gemm_peak_fraction == device_perf(a100).gemm_peak_fraction
    with pytest.raises(UsageError, match="MAJOR.MINOR"):
        row_device({"cuda": "cu121"}, h100)


def test_the_mosaicml_rows_state_the_cuda_of_their_own_image():
    # llm-foundry scripts/train/benchmarking/h100new.md (commit beb8dee), column Image: every DEFAULT-mode row of the
    # A100-80GB and H100 tables ran on mosaicml/pytorch:2.1.0_cu121-nightly20230827 (CUDA 12.1), not on sweep.sh's
    # IMAGE default (2.0.1_cu118); h100old.md: the PURE triplicates (the repeats file) on 2.0.1_cu118. The one
    # A100-80GB row h100new.md does not list (125m, 2048, micro-batch 40) states none; llm.c's H100 run states none.
    h100 = get_gpu("h100-sxm")
    cuda_12_0_fraction = 742.7e12 / h100.peak_flop_per_s(MATMUL_PRECISION["bf16-mixed"])
    for row in published_rows():
        if not row["run"].startswith("mpt-") or row.get("group"):
            continue
        if row["run"] == "mpt-125m-a100-s2048-mb40":
            assert row["cuda"] == "" and "no record there" in row["notes"]
        else:
            assert row["cuda"] == "12.1" and "h100new.md" in row["notes"] and "beb8dee" in row["notes"], row["run"]
        if row["gpu"] == "h100-sxm":
            assert row_device(row, h100).gemm_peak_fraction == pytest.approx(cuda_12_0_fraction, abs=5e-4)
    (llmc,) = [r for r in published_rows() if r["run"] == "llmc-gpt2-1558m"]
    assert row_device(llmc, h100).gemm_peak_fraction == device_perf(h100).gemm_peak_fraction
    h100_repeats = [r for r in repeat_rows() if r["gpu"] == "h100-sxm"]
    assert len(h100_repeats) == 22
    assert all(r["cuda"] == "11.8" and "h100old.md" in r["notes"] for r in h100_repeats)
