"""Measured GEMM rates of GeForce cards in data/gpu_perf.csv, checked against the posts they come from.

Datacenter rows take their `gemm_peak_fraction` from ml-engineering's MAMF table; no GeForce card is in it. The one
public source with several independent large-shape measurements of GeForce cards is
zzc0721/torch-performance-test-data (test.py: torch.mm of two random n x n matrices, 6 warm-up and 30 timed calls,
wall clock to a synchronize, n = 1024 .. 10240). The rule for adopting a figure (docs/performance_model.md, "Consumer
GPUs, held out"): a stated large shape (>= 4096^3), dtype and accumulate, software version, and at least two
independent measurements of the same product agreeing within 5%. The figures below are the posts' own numbers,
typed in from them (not outputs of our code); the tests check the CSV against them and against gpu_specs.csv.
"""

from __future__ import annotations

import statistics

import pytest

from flopscalc.hardware import get_gpu
from flopscalc.perf.device import DEFAULT_GEMM_PEAK_FRACTION, device_perf, perf_rows

TERA = 1e12
LARGE_N = (4096, 8192, 10240)  # the script's shapes at or above the rule's 4096^3
AGREE_WITHIN = 0.05  # the rule: independent measurements agreeing within 5%

# Stock RTX 5090, torch.mm BF16 TFLOP/s by n (zzc0721/torch-performance-test-data): post -> (torch, {n: TFLOP/s}),
# plus the same posts' FP16 at 8192^3.
RTX5090_BF16 = {
    "PR #15": ("2.8.0+cu128", {4096: 183.71, 8192: 236.03, 10240: 235.27}),
    "issue #96": ("2.7.0+cu128", {4096: 181.17, 8192: 234.89, 10240: 240.05}),
    "issue #124": ("2.8.0+cu128", {4096: 182.19, 8192: 234.66, 10240: 236.99}),
    "issue #200": ("2.7.1+cu128", {4096: 134.08, 8192: 174.68, 10240: 178.86}),
}
RTX5090_FP16_8192 = {"PR #15": 224.41, "issue #96": 233.99, "issue #124": 223.98, "issue #200": 172.79}

# The GeForce rows of gpu_perf.csv that keep the default, each for a reason its notes give (the number they quote).
NOT_ADOPTED = {
    "rtx-4090": "160.17",  # one stock post with shapes (issue #78); the database maxima state no shape
    "rtx-3090": "76.34",  # database maxima only
    "rtx-3080": "63.56",  # one stock 10 GB post (issue #114); the others are a 20 GB mod and the 12 GB product
    "rtx-3090-ti": "No measured",
    "rtx-4070-ti": "No measured",  # the plan's card: nothing found, so README's golden plan does not move
}


def _best_large(by_n: dict[int, float]) -> float:
    return max(v for n, v in by_n.items() if n in LARGE_N)


def test_rtx5090_posts_meet_the_rule_three_of_four_agree_within_five_percent():
    best = {post: _best_large(by_n) for post, (_, by_n) in RTX5090_BF16.items()}
    agreeing = [post for post, b in best.items() if b >= (1 - AGREE_WITHIN) * max(best.values())]
    assert agreeing == ["PR #15", "issue #96", "issue #124"]  # issue #200 (178.86) is 25% below the others
    # the notes' claim: every figure of the three at 8192^3 and 10240^3 within 2.3% (234.66 .. 240.05)
    large = [v for post in agreeing for n, v in RTX5090_BF16[post][1].items() if n >= 8192]
    assert (min(large), max(large)) == (234.66, 240.05)
    spread = max(large) / min(large) - 1
    assert spread == pytest.approx(0.023, abs=0.0005) and spread < AGREE_WITHIN


def test_rtx5090_measured_rate_is_fp32_accumulate_and_above_the_datasheet_and_stored_as_measured():
    gpu = get_gpu("rtx-5090")
    # FP16 through torch.mm is level with BF16 and far under the FP16-accumulate rate (419): the posts measure the
    # FP32-accumulate path, whose datasheet rate (209.5, gpu_specs.csv bf16 column) is the denominator.
    for post, fp16 in RTX5090_FP16_8192.items():
        assert fp16 < 0.6 * gpu.fp16_acc16_flop_per_s / TERA, post
        assert fp16 == pytest.approx(RTX5090_BF16[post][1][8192], rel=0.06), post
    median = statistics.median(_best_large(by_n) for _, by_n in RTX5090_BF16.values())
    fraction = median * TERA / gpu.bf16_flop_per_s
    assert median == pytest.approx(236.51, abs=0.005) and fraction == pytest.approx(1.129, abs=0.0005)
    # every post but the outlier is above the datasheet (the board boosts past its rated clock): the model takes the
    # measured fraction of the datasheet peak as it is, above 1
    assert fraction > 1
    assert device_perf(gpu).gemm_peak_fraction == pytest.approx(fraction, abs=0.0005)


def test_rtx5090_source_quotes_the_posts_verbatim():
    source = perf_rows()["rtx-5090"]["source"]
    for post, (torch_version, by_n) in RTX5090_BF16.items():
        assert f"{post} (" in source and torch_version in source, post
        assert f"{by_n[8192]:.2f} / {by_n[10240]:.2f}" in source, post
    assert "236.51 = 1.129" in source and "209.5" in source


@pytest.mark.parametrize("key,quoted", sorted(NOT_ADOPTED.items()))
def test_geforce_rows_without_a_qualifying_measurement_keep_the_default_and_say_why(key, quoted):
    row = perf_rows()[key]
    assert row["gemm_peak_fraction"].strip() == ""
    assert device_perf(get_gpu(key)).gemm_peak_fraction == DEFAULT_GEMM_PEAK_FRACTION
    assert quoted in row["notes"] and "default fraction applies" in row["notes"]


def test_the_not_adopted_single_measurements_would_not_be_below_the_default():
    # What was found, checked against gpu_specs.csv's rates: the single stock measurements of the 4090 (issue #78,
    # 160.17 at 8192^3) and the 3080 10 GB (issue #114, 64.68 at 10240^3) are 0.970 and 1.087 of their datasheet
    # rates, above the default 0.803; keeping the default is for want of a second measurement, not because the
    # measured rate is low.
    assert 160.17 * TERA / get_gpu("rtx-4090").bf16_flop_per_s == pytest.approx(0.970, abs=0.0005)
    assert 64.68 * TERA / get_gpu("rtx-3080").bf16_flop_per_s == pytest.approx(1.087, abs=0.0005)
    assert DEFAULT_GEMM_PEAK_FRACTION < 0.970


def test_a_calibration_measuring_a_board_past_its_datasheet_keeps_the_measured_gemm_rate():
    # `flopscalc calibrate` on a GeForce board that boosts past its rated clock fits a GEMM rate above the datasheet
    # peak (the 5090's posts: 1.129): the device keeps it (it used to be clamped to the peak), while the attention
    # fractions, a share of the GEMM rate, stay fractions of the peak.
    from flopscalc.calibration import DeviceFactors
    from flopscalc.perf.calibrate import device_from_factors

    gpu = get_gpu("rtx-5090")
    factors = DeviceFactors(gemm_flop_per_s=1.129 * gpu.bf16_flop_per_s, memory_bytes_per_s=1.5e12,
                            kernel_min_s=5e-6, attention_fraction=0.95, precision="bf16", n_points=0,
                            rms_rel_error=0.0, max_rel_error=0.0)
    _, dev = device_from_factors(factors, gpu)
    assert dev.gemm_peak_fraction == pytest.approx(1.129)
    assert dev.flash_fwd_fraction == dev.flash_bwd_fraction == 1.0
