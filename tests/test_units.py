"""Unit parsing and formatting: expected values are hand arithmetic, not the module's own tables.

SI prefixes (k=10^3, M=10^6, G=10^9, T=10^12) and IEC binary prefixes (Ki=2^10, Mi=2^20, Gi=2^30,
Ti=2^40) follow IEC 80000-13; "B" for billion (10^9) is how ML papers write parameter and token counts
(e.g. "300B tokens", Brown et al. 2020, Table 2.2). A year is 365 days (the seed note's one year
non-stop); a week 7 days.
"""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopscalc.errors import UsageError
from flopscalc.units import (
    check_duration,
    format_bytes,
    format_count,
    format_duration,
    format_rate,
    parse_bytes,
    parse_count,
    parse_duration,
    parse_usd,
)

DAY_S = 24 * 60 * 60  # 86,400 s
HOUR_S = 60 * 60


# ------------------------------------------------------------------ parse_count

@pytest.mark.parametrize("text,expected", [
    ("124M", 124 * 10**6),
    ("1.5B", 1_500_000_000),
    ("300B", 300 * 10**9),
    ("1e21", 10**21),
    ("2.5e10", 25_000_000_000),
    ("1,000", 1000),
    ("1,000,000", 10**6),
    ("1_000", 1000),
    ("12", 12),
    ("0.5", 0.5),
    (".5M", 500_000),
    ("1.5k", 1500),
    ("1.5K", 1500),            # k and K both mean 10^3
    ("12G", 12 * 10**9),       # SI giga, the twin of B
    ("2T", 2 * 10**12),
    (" 124M ", 124 * 10**6),   # surrounding blanks are ignored
    ("1.5 B", 1_500_000_000),  # a blank between number and suffix is allowed
    ("+3M", 3 * 10**6),
    ("1e3k", 10**6),
])
def test_parse_count_values(text, expected):
    assert parse_count(text) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("value", [0, 7, 124_439_808, 2.5])
def test_parse_count_passes_numbers_through(value):
    assert parse_count(value) == value


# Suffix case: upper-case M/B/T are the count suffixes; lower-case m and b are refused because they
# read as milli and bit (SI), and "124m" must not silently become 124 or 124e6.
@pytest.mark.parametrize("text", ["124m", "1.5b", "3t"])
def test_parse_count_refuses_lowercase_milli_and_bit(text):
    with pytest.raises(UsageError):
        parse_count(text)


BAD_COUNTS = ["12XB", "1..5B", "", "abc", "nan", "inf", "-inf", "1,00", "1,0000", "1.5.3", "B",
              "__import__('os')", "__import__('os').system('true')", "1+1", "2**10", "1e", "e5"]


@pytest.mark.parametrize("text", BAD_COUNTS)
def test_parse_count_rejects_malformed_with_one_line(text):
    with pytest.raises(UsageError) as err:
        parse_count(text)
    msg = str(err.value)
    assert "\n" not in msg
    assert repr(text) in msg  # names the input as typed
    assert "accepted" in msg and "124M" in msg  # says what is accepted, with an example


def test_parse_count_byte_units_get_a_hint():
    with pytest.raises(UsageError, match="bytes"):
        parse_count("12GB")


@pytest.mark.parametrize("parse", [parse_count, parse_bytes, parse_duration, parse_usd])
def test_parsers_do_not_evaluate_code(parse, tmp_path, monkeypatch):
    """A parser that called eval would create the marker file; the safe parser only rejects the text."""
    monkeypatch.chdir(tmp_path)
    code = "__import__('pathlib').Path('MARKER').touch()"
    with pytest.raises(UsageError):
        parse(code)
    assert not (tmp_path / "MARKER").exists()


@pytest.mark.parametrize("parse,text", [
    (parse_count, "1e400"), (parse_bytes, "1e400GB"), (parse_duration, "1e400d"), (parse_usd, "1e400"),
])
def test_overflow_to_infinity_is_refused(parse, text):
    # float("1e400") is inf; 'inf' itself is refused, so an overflowing literal must be too
    with pytest.raises(UsageError):
        parse(text)


def test_negative_count_keeps_its_sign():
    # parse_count reads a sign; range checks (tokens > 0, ...) are the callers' job
    assert parse_count("-5B") == -5 * 10**9


# ------------------------------------------------------------------ parse_bytes

@pytest.mark.parametrize("text,expected", [
    ("12GB", 12 * 10**9),              # decimal giga
    ("12GiB", 12 * 1024**3),           # binary gibi = 12,884,901,888
    ("12gib", 12 * 1024**3),           # units are case-insensitive
    ("12 GB", 12 * 10**9),
    ("1.5TB", 1_500_000_000_000),
    ("1TiB", 1024**4),
    ("512MiB", 512 * 1024**2),
    ("80kB", 80_000),
    ("4KiB", 4096),
    ("100", 100),                      # bare number = bytes
    ("100B", 100),
])
def test_parse_bytes_values(text, expected):
    assert parse_bytes(text) == pytest.approx(expected, rel=1e-12)


def test_gib_and_gb_differ_by_the_binary_ratio():
    assert parse_bytes("1GiB") / parse_bytes("1GB") == pytest.approx(1.073741824, rel=1e-12)  # 2^30 / 10^9


@pytest.mark.parametrize("text", ["12XB", "1..5GB", "", "abc", "12 gigs", "nan GB"])
def test_parse_bytes_rejects_malformed(text):
    with pytest.raises(UsageError) as err:
        parse_bytes(text)
    msg = str(err.value)
    assert "\n" not in msg and repr(text) in msg and "GiB" in msg


# ------------------------------------------------------------------ parse_duration

@pytest.mark.parametrize("text,expected_s", [
    ("365d", 365 * DAY_S),   # 31,536,000 s
    ("36h", 36 * HOUR_S),    # 129,600 s
    ("2w", 14 * DAY_S),
    ("1y", 365 * DAY_S),     # a 365-day year, not 365.25
    ("90min", 5400),
    ("45s", 45),
    ("1.5h", 5400),
    ("1d12h", 36 * HOUR_S),  # combined parts add
    ("1d 12h", 36 * HOUR_S),
    ("1w1d", 8 * DAY_S),
    ("12 hours", 12 * HOUR_S),
    ("2 weeks", 14 * DAY_S),
    ("3 days", 3 * DAY_S),
    ("365D", 365 * DAY_S),
])
def test_parse_duration_values(text, expected_s):
    assert parse_duration(text) == pytest.approx(expected_s, rel=1e-12)


@pytest.mark.parametrize("text", ["12", "", "d", "-5d", "1x", "1d1", "abc", "365 dayz", "1..5d"])
def test_parse_duration_rejects_malformed(text):
    with pytest.raises(UsageError) as err:
        parse_duration(text)
    msg = str(err.value)
    assert "\n" not in msg and repr(text) in msg and "365d" in msg


# ------------------------------------------------------------------ parse_usd

@pytest.mark.parametrize("text,expected", [
    ("$1.5k", 1500), ("$1,200", 1200), ("1.2k", 1200), ("2.5 USD", 2.5), ("0.35", 0.35),
    ("799", 799), ("$2M", 2_000_000), ("$0.35", 0.35),
])
def test_parse_usd_values(text, expected):
    assert parse_usd(text) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("text", ["12 EUR", "$$5", "", "1..5k", "5GB"])
def test_parse_usd_rejects_malformed(text):
    with pytest.raises(UsageError) as err:
        parse_usd(text)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------ formatting

@pytest.mark.parametrize("n,text", [
    (124_439_808, "124.4M"),      # 124,439,808 / 10^6 = 124.44
    (124_337_664, "124.3M"),
    (1_557_611_200, "1.6B"),      # / 10^9 = 1.5576
    (1_500_000_000, "1.5B"),
    (2.5e12, "2.5T"),
    (12_345, "12.3k"),
    (999, "999"),
    (0, "0"),
])
def test_format_count_divides_by_1000(n, text):
    assert format_count(n) == text


@pytest.mark.parametrize("n,text", [
    (12 * 2**30, "12.00 GiB"),
    (12 * 10**9, "11.18 GiB"),    # 12e9 / 2^30 = 11.1759
    (80 * 10**9, "74.51 GiB"),    # 80e9 / 2^30 = 74.5058
    (1.5 * 2**40, "1.50 TiB"),
    (3 * 2**20, "3.00 MiB"),
    (512, "512 B"),
])
def test_format_bytes_divides_by_1024_and_says_gib(n, text):
    assert format_bytes(n) == text


@pytest.mark.parametrize("fmt,n,text", [
    (format_count, 999_950, "1.0M"),
    (format_count, 999_960_000, "1.0B"),
    (format_bytes, 1023.999 * 2**20, "1.00 GiB"),
])
def test_rounding_up_moves_to_the_next_suffix(fmt, n, text):
    assert fmt(n) == text


# Property tests. The suffix values below are written out here, independent of units.py's tables.
_COUNT_SCALE = {"": 1.0, "k": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
_FORMATTED_COUNT = re.compile(r"^(-?\d+(?:\.\d+)?)([kMBT]?)$")


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=1.0, max_value=9.99e14, allow_nan=False, allow_infinity=False))
def test_parse_of_format_count_is_within_half_a_printed_digit(x):
    text = format_count(x)
    m = _FORMATTED_COUNT.match(text)
    assert m, text
    scale = _COUNT_SCALE[m[2]]
    decimals = len(m[1].split(".")[1]) if "." in m[1] else 0
    half_unit = 0.5 * 10**-decimals * scale  # rounding of the last printed digit
    assert abs(parse_count(text) - x) <= half_unit * (1 + 1e-9)


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=1e15, max_value=1e300, allow_nan=False, allow_infinity=False))
def test_counts_beyond_the_suffixes_print_in_scientific_notation(x):
    text = format_count(x)
    assert "e" in text and parse_count(text) == pytest.approx(x, rel=0.005)  # three significant figures


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=1e3, max_value=9.99e14, allow_nan=False, allow_infinity=False))
def test_format_count_prints_three_significant_figures_or_more(x):
    # digits=1 after a mantissa of at least 1: relative error at most 0.05 / 1 = 5%
    assert parse_count(format_count(x)) == pytest.approx(x, rel=0.05)


@settings(max_examples=200, deadline=None)
@given(mantissa=st.decimals(min_value="1.0", max_value="999.9", places=1),
       suffix=st.sampled_from(["k", "M", "B", "T"]))
def test_format_of_parse_count_is_identity_on_canonical_text(mantissa, suffix):
    text = f"{mantissa}{suffix}"
    assert format_count(parse_count(text)) == text


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=1.0, max_value=2.0**50, allow_nan=False, allow_infinity=False))
def test_format_bytes_round_trips_within_the_printed_digits(n):
    text = format_bytes(n)
    number, unit = text.split(" ")
    scale = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}[unit]
    half_unit = (0.5 if unit == "B" else 0.005) * scale
    assert abs(float(number) * scale - n) <= half_unit * (1 + 1e-9)
    assert parse_bytes(text.replace(" ", "")) == pytest.approx(float(number) * scale, rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(days=st.integers(min_value=0, max_value=3650), hours=st.integers(min_value=0, max_value=23))
def test_duration_parts_add(days, hours):
    assert parse_duration(f"{days}d{hours}h") == days * DAY_S + hours * HOUR_S


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1000, max_value=10**15))
def test_thousands_separators_are_ignored(n):
    assert parse_count(f"{n:,}") == n
    assert parse_count(f"{n:_}") == n


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="0123456789.eE+-,_ kMBTxyz$()'", max_size=12))
def test_parse_count_returns_a_finite_number_or_raises_usage_error(text):
    try:
        value = parse_count(text)
    except UsageError as e:
        assert "\n" not in str(e)
    else:
        assert isinstance(value, float) and math.isfinite(value)  # '1e400' and 'inf' are refused, never returned


# ------------------------------------------------------------------ extremes: rates and durations


@pytest.mark.parametrize("flop_per_s,text", [
    (80.2e12, "80.2 TFLOP/s"),          # RTX 4070 Ti dense BF16 (the seed claim)
    (1013145.6e12, "1.0 EFLOP/s"),      # 1,013,145.6 TFLOP/s = 1.0131456e18 FLOP/s: not "1013145.6 TFLOP/s"
    (12.6e15, "12.6 PFLOP/s"),
    (999.96e12, "1.0 PFLOP/s"),         # rounds to 1000.0 T: the next prefix
    (5e10, "50.0 GFLOP/s"),             # a CPU: not "0.1 TFLOP/s"
    (2.5e6, "2.5 MFLOP/s"),
    (0.0, "0.0 TFLOP/s"),
    (-3e15, "-3.0 PFLOP/s"),
    (1e27, "1.00e27 FLOP/s"),           # 1000 YFLOP/s: beyond the prefixes, scientific notation
])
def test_format_rate_picks_the_prefix_that_keeps_the_mantissa_below_1000(flop_per_s, text):
    assert format_rate(flop_per_s) == text


_RATE_SCALE = {"M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "Z": 1e21, "Y": 1e24}  # SI prefixes
_FORMATTED_RATE = re.compile(r"^(\d+\.\d+) ([MGTPEZY])FLOP/s$")


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=1e6, max_value=9.99e26), st.integers(min_value=1, max_value=3))
def test_format_rate_mantissa_is_1_to_1000_and_within_half_a_printed_digit(x, digits):
    m = _FORMATTED_RATE.match(format_rate(x, digits))
    assert m, format_rate(x, digits)
    mantissa, scale = float(m[1]), _RATE_SCALE[m[2]]
    assert 1 <= mantissa < 1000
    assert abs(mantissa * scale - x) <= 0.5 * 10**-digits * scale * (1 + 1e-9)


@pytest.mark.parametrize("seconds,text", [
    (0.000146, "146.0 µs"),     # the exposed-communication time once printed as "0.000146 s"
    (0.8, "800.0 ms"),
    (0.00099996, "1.0 ms"),     # rounds to 1000.0 µs: the next unit
    (2.5e-9, "2.5 ns"),
    (0.0, "0.0 s"),
    (1.0, "1.0 s"),
    (45, "45.0 s"),
    (200, "3.3 min"),           # 200 / 60
    (36 * HOUR_S, "36.0 h"),
    (365 * DAY_S, "365.0 days"),
    (2.1 * 365 * DAY_S, "2.1 years"),
    (1e20, "3.17e12 years"),    # 1e20 / (365 x 86400) = 3.17e12
])
def test_format_duration_from_nanoseconds_to_eons(seconds, text):
    assert format_duration(seconds) == text


_DURATION_SCALE = {"ns": 1e-9, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": HOUR_S, "days": DAY_S,
                   "years": 365 * DAY_S}
_FORMATTED_DURATION = re.compile(r"^(\d+\.\d+) (\S+)$")


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=1e-9, max_value=999 * 365 * DAY_S))
def test_parse_of_format_duration_is_within_half_a_printed_digit(x):
    text = format_duration(x)
    m = _FORMATTED_DURATION.match(text)
    assert m, text
    scale = _DURATION_SCALE[m[2]]
    assert parse_duration(text) == pytest.approx(float(m[1]) * scale, rel=1e-12)  # the printed unit reads back
    assert abs(parse_duration(text) - x) <= 0.05 * scale * (1 + 1e-9)


@pytest.mark.parametrize("value,unit,per_unit,says", [
    (-1, "days", DAY_S, "got -1 days"),
    (1e308, "days", DAY_S, "at most 365,000 days (1,000 years), got 1e+308 days"),
    (0, "hours", HOUR_S, "got 0 hours"),
    (float("nan"), "days", DAY_S, "got nan days"),
])
def test_check_duration_speaks_the_users_unit(value, unit, per_unit, says):
    with pytest.raises(UsageError) as err:
        check_duration(value, what="--x", unit=unit, seconds_per_unit=per_unit)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_check_duration_accepts_up_to_a_thousand_365_day_years():
    assert check_duration(365_000, what="--days", unit="days", seconds_per_unit=DAY_S) == 365_000 * DAY_S
    with pytest.raises(UsageError):
        check_duration(365_000.01, what="--days", unit="days", seconds_per_unit=DAY_S)


@pytest.mark.parametrize("text", ["3m", "3M", "2mo"])  # "6months": no minutes; tests/test_bad_input_s17_b79.py
def test_minutes_or_months_is_refused_with_both_spellings_suggested(text):
    # "3m" is 3 minutes to some and 3 months to others: a factor of 43,800 in a budget, so it is never guessed
    with pytest.raises(UsageError, match=r"minutes or months.*min.*\d+d"):
        parse_duration(text)
