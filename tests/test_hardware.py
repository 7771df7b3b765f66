"""GPU database: coverage, vendor figures, consistency rules, lookup and user CSVs.

Vendor check values are typed in here from the vendor documents named beside them (not read from
the CSV's notes); tolerance 0.5% covers the vendors' own rounding (e.g. 71 vs 71.2 TFLOP/s).
All tensor rates are dense (a vendor's 2:4-sparsity figure is twice the dense one).
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flopscalc.errors import DomainError, UsageError
from flopscalc.hardware import Precision, builtin_database, get_gpu, load_database

CSV_PATH = Path(__file__).resolve().parent.parent / "data" / "gpu_specs.csv"
TERA, GIGA, GIB = 1e12, 1e9, 2**30
REL = 5e-3


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    """The shipped CSV read with the standard csv module, independently of flopscalc.hardware."""
    with CSV_PATH.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def num(row: dict[str, str], col: str) -> float | None:
    return float(row[col]) if row[col].strip() else None


# ------------------------------------------------------------------ coverage

# The GPUs issue 2 names, each looked up by a spelling a user would type.
REQUIRED = [
    ("RTX 3060 12GB", "rtx-3060-12gb"), ("RTX 3090", "rtx-3090"), ("RTX 3090 Ti", "rtx-3090-ti"),
    ("RTX 4070 Ti", "rtx-4070-ti"), ("RTX 4070 Ti SUPER", "rtx-4070-ti-super"), ("RTX 4080", "rtx-4080"),
    ("RTX 4090", "rtx-4090"), ("RTX 5090", "rtx-5090"), ("RTX A6000", "rtx-a6000"),
    ("RTX 6000 Ada", "rtx-6000-ada"), ("A10", "a10"), ("L4", "l4"), ("L40S", "l40s"), ("T4", "t4"),
    ("V100", "v100-sxm2-32gb"), ("A100 SXM 40GB", "a100-sxm-40gb"), ("A100 SXM 80GB", "a100-sxm-80gb"),
    ("A100 PCIe 40GB", "a100-pcie-40gb"), ("A100 PCIe 80GB", "a100-pcie-80gb"), ("H100 SXM", "h100-sxm"),
    ("H100 PCIe", "h100-pcie"), ("H200", "h200-sxm"), ("GH200", "gh200"), ("B200", "b200"),
    ("MI250X", "mi250x"), ("MI300X", "mi300x"), ("TPU v4", "tpu-v4"), ("TPU v5e", "tpu-v5e"),
]


def test_csv_has_at_least_25_rows(rows):
    assert len(rows) >= 25
    assert len(builtin_database()) == len(rows)


@pytest.mark.parametrize("query,key", REQUIRED)
def test_issue_gpus_are_present(query, key):
    assert get_gpu(query).key == key


def test_every_row_has_a_source(rows):
    assert [r["key"] for r in rows if not r["source"].strip()] == []


def test_keys_are_unique_lowercase_slugs(rows):
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys))
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", k) for k in keys), keys


def test_no_alias_is_shared_between_rows(rows):
    def squash(s: str) -> str:
        return re.sub(r"[^a-z0-9]", "", s.lower())

    owner: dict[str, str] = {}
    clashes = []
    for r in rows:
        for name in {r["key"], r["name"], *[a for a in r["aliases"].split(";") if a.strip()]}:
            prev = owner.setdefault(squash(name), r["key"])
            if prev != r["key"]:
                clashes.append((name, prev, r["key"]))
    assert clashes == []


def test_every_key_name_and_alias_finds_its_own_row(rows):
    wrong = []
    for r in rows:
        for name in [r["key"], r["name"], *[a for a in r["aliases"].split(";") if a.strip()]]:
            try:
                got = get_gpu(name).key
            except UsageError as e:
                got = str(e)
            if got != r["key"]:
                wrong.append((name, r["key"], got))
    assert wrong == []


# ------------------------------------------------------------------ units and plausibility

def test_values_are_in_plausible_ranges():
    # upper ends: the largest parts in the table, MI355X / B300 (288 GB HBM3e) and MI355X / GB300 (1,400 W)
    for g in builtin_database():
        assert 4 * GIB <= g.memory_bytes <= 320 * GIB, g.key
        if g.memory_bandwidth_bytes_per_s is not None:
            assert 100 * GIGA <= g.memory_bandwidth_bytes_per_s <= 10_000 * GIGA, g.key
        if g.board_power_w is not None:
            assert 30 <= g.board_power_w <= 1500, g.key
        if g.release_year is not None:
            assert 2015 <= g.release_year <= 2026, g.key
        for p in g.available_precisions():
            assert 1 * TERA <= g.peak_flop_per_s(p) <= 10_000 * TERA, (g.key, p)


def test_tensor_rates_are_not_below_the_fp32_rate():
    """Tensor cores/matrix units never run slower than the FP32 vector units (and FP8 >= BF16)."""
    for g in builtin_database():
        fp32 = g.fp32_flop_per_s
        for rate in (g.tf32_flop_per_s, g.bf16_flop_per_s, g.fp16_flop_per_s, g.fp16_acc16_flop_per_s):
            if fp32 is not None and rate is not None:
                assert rate >= fp32 * (1 - 1e-9), g.key
        if g.fp8_flop_per_s is not None and g.bf16_flop_per_s is not None:
            assert g.fp8_flop_per_s >= g.bf16_flop_per_s * (1 - 1e-9), g.key
        if g.fp16_acc16_flop_per_s is not None and g.fp16_flop_per_s is not None:
            assert g.fp16_acc16_flop_per_s >= g.fp16_flop_per_s * (1 - 1e-9), g.key


def test_bf16_and_fp16_fp32_accumulate_rates_are_equal_where_both_exist():
    # GA102 WP App. A ("FP16 and BF16 Tensor, FP32 accumulate" one line), A100/H100 datasheets,
    # AMD ROCm MI250/MI300 peak tables: BF16 and FP16 matrix rates are the same on every listed part
    for g in builtin_database():
        if g.bf16_flop_per_s is not None and g.fp16_flop_per_s is not None:
            assert g.bf16_flop_per_s == pytest.approx(g.fp16_flop_per_s, rel=1e-3), g.key


def geforce():
    return [g for g in builtin_database() if "geforce" in g.name.lower()]


def test_geforce_rows_exist():
    assert len(geforce()) >= 8


@pytest.mark.parametrize("g", geforce(), ids=lambda g: g.key)
def test_geforce_fp32_accumulate_is_half_rate(g):
    # GA102 WP App. A (RTX 3090: FP16 tensor FP16-acc 142, FP32-acc 71) and Ada WP App. A
    # (RTX 4090: 330.3 vs 165.2): GeForce tensor cores run FP32 accumulate at half the FP16-accumulate rate
    assert g.fp16_flop_per_s is not None and g.fp16_acc16_flop_per_s is not None
    assert g.fp16_flop_per_s == pytest.approx(g.fp16_acc16_flop_per_s / 2, rel=1e-3)
    # same whitepaper tables: GeForce dense TF32 equals the FP32 (non-tensor) rate (RTX 3090 35.6/35.6)
    assert g.tf32_flop_per_s == pytest.approx(g.fp32_flop_per_s, rel=1e-3)


def test_pro_nvidia_cards_accumulate_fp32_at_full_rate():
    # GA102 WP App. A: RTX A6000 FP16 tensor FP16-acc 154.8 = FP32-acc 154.8 (no GeForce halving);
    # A100/H100 whitepapers list the same rate for FP16 and FP32 accumulate
    for g in builtin_database():
        if (g.vendor == "NVIDIA" and "geforce" not in g.name.lower() and g.fp16_acc16_flop_per_s
                and g.fp16_flop_per_s):
            assert g.fp16_flop_per_s == pytest.approx(g.fp16_acc16_flop_per_s, rel=1e-3), g.key


def test_memory_is_binary_gib():
    # the "12 GB" of a 4070 Ti is 12 x 2^30 bytes; TPU v4's HBM is given by Google as "32 GiB"
    assert get_gpu("4070ti").memory_bytes == 12 * 2**30
    assert get_gpu("tpu-v4").memory_bytes == 32 * 2**30


# ------------------------------------------------------------------ vendor figures

# (key, attribute, value in the document's unit, unit scale, source)
VENDOR = [
    ("rtx-4070-ti", "fp32_flop_per_s", 40.1, TERA, "Ada WP v2.02 App. A"),
    ("rtx-4070-ti", "bf16_flop_per_s", 80.2, TERA, "Ada WP v2.02 App. A (BF16, FP32 acc)"),
    ("rtx-4070-ti", "fp16_acc16_flop_per_s", 160.4, TERA, "Ada WP v2.02 App. A (FP16, FP16 acc)"),
    ("rtx-4070-ti", "fp8_flop_per_s", 160.4, TERA, "Ada WP v2.02 App. A (FP8, FP32 acc)"),
    ("rtx-4070-ti", "memory_bandwidth_bytes_per_s", 504, GIGA, "Ada WP v2.02 App. A"),
    ("rtx-4070-ti", "board_power_w", 285, 1, "Ada WP v2.02 App. A (TGP)"),
    ("rtx-4070-ti", "launch_price_usd", 799, 1, "NVIDIA RTX 4070 Ti launch, Jan 2023 (MSRP)"),
    ("rtx-4090", "fp16_flop_per_s", 165.2, TERA, "Ada WP App. A Table 2 (FP16, FP32 acc)"),
    ("rtx-4090", "fp16_acc16_flop_per_s", 330.3, TERA, "Ada WP App. A Table 2 (FP16, FP16 acc)"),
    ("rtx-4090", "fp8_flop_per_s", 330.3, TERA, "Ada WP App. A Table 2 (FP8, FP32 acc)"),
    ("rtx-3090", "bf16_flop_per_s", 71, TERA, "GA102 WP v2.0 App. A"),
    ("rtx-3090", "fp16_acc16_flop_per_s", 142, TERA, "GA102 WP v2.0 App. A"),
    ("rtx-3090", "memory_bandwidth_bytes_per_s", 936, GIGA, "GA102 WP v2.0 App. A"),
    ("rtx-a6000", "bf16_flop_per_s", 154.8, TERA, "GA102 WP v2.0 App. A / RTX A6000 datasheet"),
    ("rtx-a6000", "memory_bandwidth_bytes_per_s", 768, GIGA, "RTX A6000 datasheet"),
    ("rtx-5090", "bf16_flop_per_s", 209.5, TERA, "RTX Blackwell WP App. A"),
    ("rtx-5090", "fp16_acc16_flop_per_s", 419, TERA, "RTX Blackwell WP App. A"),
    ("rtx-5090", "memory_bandwidth_bytes_per_s", 1792, GIGA, "RTX Blackwell WP App. A"),
    ("a10", "bf16_flop_per_s", 125, TERA, "NVIDIA A10 datasheet (dense; 250 sparse)"),
    ("a10", "tf32_flop_per_s", 62.5, TERA, "NVIDIA A10 datasheet (dense; 125 sparse)"),
    ("a100-sxm-80gb", "memory_bandwidth_bytes_per_s", 2039, GIGA, "NVIDIA A100 datasheet (80GB SXM)"),
    ("a100-sxm-80gb", "board_power_w", 400, 1, "NVIDIA A100 datasheet (80GB SXM)"),
    ("a100-sxm-80gb", "bf16_flop_per_s", 312, TERA, "NVIDIA A100 datasheet (dense; 624 sparse)"),
    ("h100-sxm", "bf16_flop_per_s", 989.4, TERA, "H100 WP v1.04 Table 3 (SXM5, dense)"),
    ("h100-sxm", "board_power_w", 700, 1, "H100 WP v1.04 Table 3"),
    ("h100-sxm", "memory_bandwidth_bytes_per_s", 3350, GIGA, "NVIDIA H100 datasheet (SXM)"),
    ("v100-sxm2-32gb", "fp32_flop_per_s", 15.7, TERA, "NVIDIA V100 datasheet (SXM2)"),
    ("v100-sxm2-32gb", "fp16_flop_per_s", 125, TERA, "NVIDIA V100 datasheet (SXM2 tensor)"),
    ("v100-sxm2-32gb", "memory_bandwidth_bytes_per_s", 900, GIGA, "NVIDIA V100 datasheet"),
    ("mi300x", "fp32_flop_per_s", 163.4, TERA, "AMD ROCm MI300 peak table (vector FP32)"),
    ("mi300x", "bf16_flop_per_s", 1307.4, TERA, "AMD ROCm MI300 peak table"),
    ("mi300x", "fp8_flop_per_s", 2614.9, TERA, "AMD ROCm MI300 peak table"),
    ("tpu-v4", "bf16_flop_per_s", 275, TERA, "Google Cloud TPU v4 docs"),
    ("tpu-v4", "memory_bytes", 32, GIB, "Google Cloud TPU v4 docs (32 GiB HBM2)"),
    ("tpu-v4", "memory_bandwidth_bytes_per_s", 1200, GIGA, "Google Cloud TPU v4 docs"),
]


@pytest.mark.parametrize("key,attr,value,scale,source", VENDOR,
                         ids=[f"{k}-{a.split('_')[0]}" for k, a, *_ in VENDOR])
def test_vendor_figures(key, attr, value, scale, source):
    got = getattr(get_gpu(key), attr)
    assert got == pytest.approx(value * scale, rel=REL), source


def test_peak_rate_by_precision():
    g = get_gpu("4070ti")
    assert g.peak_flop_per_s(Precision.fp32) == pytest.approx(40.1e12, rel=REL)
    assert g.peak_flop_per_s("bf16") == pytest.approx(80.2e12, rel=REL)
    assert g.peak_flop_per_s("fp16-acc16") == pytest.approx(160.4e12, rel=REL)


def test_seed_claim_1_fp32_year_at_90_percent():
    # seed note: one 4070 Ti, one 365-day year, 90% busy, at the FP32 peak = 1.14e21 FLOP
    flops = get_gpu("4070ti").peak_flop_per_s("fp32") * 365 * 86400 * 0.9
    assert flops == pytest.approx(1.14e21, rel=REL)


@pytest.mark.parametrize("key,precision", [("v100", "fp8"), ("v100", "bf16"), ("tpu-v4", "fp32"),
                                           ("t4", "tf32"), ("mi250x", "fp8")])
def test_unsupported_precision_is_a_domain_error(key, precision):
    with pytest.raises(DomainError) as err:
        get_gpu(key).peak_flop_per_s(precision)
    msg = str(err.value)
    assert "\n" not in msg and "available" in msg


# ------------------------------------------------------------------ lookup

@pytest.mark.parametrize("query", ["4070ti", "RTX 4070 Ti", "rtx-4070-ti", "NVIDIA GeForce RTX 4070 Ti",
                                   "geforce rtx 4070 ti", "RTX4070TI", "  4070 Ti  ", "rtx_4070_ti"])
def test_forgiving_spellings(query):
    assert get_gpu(query).key == "rtx-4070-ti"


def test_near_miss_gets_did_you_mean():
    with pytest.raises(UsageError) as err:
        get_gpu("4070t")
    msg = str(err.value)
    assert "\n" not in msg and "'4070t'" in msg
    assert "did you mean" in msg and "rtx-4070-ti" in msg


@pytest.mark.parametrize("query,candidates", [("4070t", {"rtx-4070-ti", "rtx-4070-ti-super"}),
                                              ("h1", {"h100-sxm", "h100-pcie"})])
def test_ambiguous_prefix_lists_the_candidates(query, candidates):
    with pytest.raises(UsageError) as err:
        get_gpu(query)
    assert all(c in str(err.value) for c in candidates)


def test_exact_name_beats_a_longer_prefix_match():
    assert get_gpu("L4").key == "l4"      # 'l4' is also a prefix of 'l40s'


def test_a_prefix_is_never_taken_for_a_longer_name():
    # issue 14: 'h20' resolved to the H200 by prefix; a prefix names a different product, so it only suggests
    with pytest.raises(UsageError) as err:
        get_gpu("h10")
    assert "did you mean" in str(err.value) and "h100-sxm" in str(err.value)


@pytest.mark.parametrize("query", ["xyzzy", "", "   "])
def test_unknown_gpu_is_a_usage_error(query):
    with pytest.raises(UsageError) as err:
        get_gpu(query)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------ user CSV

def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "my_gpus.csv"
    p.write_text(text, encoding="utf-8")
    return p


def test_user_csv_adds_and_overrides_rows(tmp_path):
    p = write(tmp_path, "key,name,memory_gib,bf16_tflop_per_s,source\n"
                        "lab-box,Lab Box 10G,10,100,our lab\n"
                        "rtx-4070-ti,My tuned 4070 Ti,12,70,measured with our benchmark\n")
    new = get_gpu("lab-box", extra_csv=[p])
    assert new.bf16_flop_per_s == pytest.approx(100e12) and new.memory_bytes == 10 * 2**30
    assert new.peak_flop_per_s("bf16") == pytest.approx(100e12)
    over = get_gpu("4070ti", extra_csv=[p])
    assert over.bf16_flop_per_s == pytest.approx(70e12) and over.source == "measured with our benchmark"
    with pytest.raises(DomainError):
        over.peak_flop_per_s("fp32")  # the override replaces the whole row
    # the shipped database is unchanged
    assert get_gpu("4070ti").bf16_flop_per_s == pytest.approx(80.2e12, rel=REL)
    assert len(load_database([p])) == len(builtin_database()) + 1


def test_later_user_files_win(tmp_path):
    a = tmp_path / "a.csv"
    b = tmp_path / "b.csv"
    a.write_text("key,name,memory_gib,bf16_tflop_per_s\nx1,X One,8,10\n", encoding="utf-8")
    b.write_text("key,name,memory_gib,bf16_tflop_per_s\nx1,X One,8,20\n", encoding="utf-8")
    assert get_gpu("x1", extra_csv=[a, b]).bf16_flop_per_s == pytest.approx(20e12)


@pytest.mark.parametrize("bad_row,column", [
    ("bad,Bad GPU,twelve,100", "memory_gib"),   # non-numeric memory
    (",No Key GPU,12,100", "key"),              # missing key
    ("neg,Negative GPU,-12,100", "memory_gib"),  # non-positive memory
    ("nope,No Rates,12,", "bf16"),              # no peak rate at all
])
def test_malformed_row_names_file_and_line(tmp_path, bad_row, column):
    p = write(tmp_path, "key,name,memory_gib,bf16_tflop_per_s\n"  # line 1
                        "ok-gpu,Fine GPU,8,50\n"                   # line 2
                        f"{bad_row}\n")                            # line 3
    with pytest.raises(UsageError) as err:
        get_gpu("ok-gpu", extra_csv=[p])
    msg = str(err.value)
    assert "\n" not in msg
    assert f"{p}:3" in msg and column in msg


def test_unknown_column_and_missing_file_are_usage_errors(tmp_path):
    p = write(tmp_path, "key,name,memory_gib,bf16_tflops\nx,X,8,10\n")
    with pytest.raises(UsageError, match="bf16_tflops"):
        load_database([p])
    with pytest.raises(UsageError, match="missing.csv"):
        load_database([tmp_path / "missing.csv"])


def test_duplicate_key_in_user_file_names_both_lines(tmp_path):
    p = write(tmp_path, "key,name,memory_gib,bf16_tflop_per_s\nx,X,8,10\ny,Y,8,10\nx,X again,8,10\n")
    with pytest.raises(UsageError) as err:
        load_database([p])
    assert f"{p}:4" in str(err.value) and "line 2" in str(err.value)


def test_import_does_not_load_pandas():
    code = ("import sys, flopscalc.hardware as h; h.get_gpu('4070ti'); "
            "print(','.join(m for m in ('pandas', 'numpy', 'scipy', 'matplotlib', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("typed,key", [
    ("A100 80GB SXM", "a100-sxm-80gb"), ("80GB A100 PCIe", "a100-pcie-80gb"), ("sxm h100", "h100-sxm"),
    ("Ti 4070 SUPER", "rtx-4070-ti-super"),
])
def test_lookup_ignores_word_order(typed, key):
    assert get_gpu(typed).key == key


@pytest.mark.parametrize("value", ["inf", "nan", "1e400"])
def test_user_csv_refuses_non_finite_numbers(tmp_path, value):
    csv = tmp_path / "mine.csv"
    csv.write_text(f"key,name,memory_gib,bf16_tflop_per_s,source\nx,X card,{value},100,me\n")
    with pytest.raises(UsageError, match=r"mine\.csv:2.*memory_gib"):
        load_database([csv])
