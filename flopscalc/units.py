"""Parse and format quantities: counts, FLOPs, bytes, durations, money.

Parsing is a regular expression plus a table of suffixes (no ``eval``). Everything inside
flopscalc is in base SI units (counts, FLOP, bytes, seconds, USD); scaling happens only here.
Counts scale by 1000 (``124.3M``); memory scales by 1024 and is labelled GiB.
"""

from __future__ import annotations

import math
import re

from .errors import UsageError

# Decimal count suffixes (SI; "B" for billion as ML papers write it, "G" accepted as its SI twin).
COUNT_SUFFIXES = {
    "": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "Z": 1e21,
}
# The base constants every module imports from here (one definition each; units.py is the base module that
# already scales quantities at the edges and imports nothing of flopscalc but errors, so engines, the trainer
# and the faces can all import it without a cycle).
# Gibibyte, 2**30 bytes (IEC 80000-13 binary prefix); memory is reported in GiB.
GIB = 2.0**30
# SI prefixes giga and tera (BIPM SI Brochure, 9th ed., Table 7): datasheets give TFLOP/s and GB/s.
GIGA = 1e9
TERA = 1e12
# Byte suffixes: decimal (SI) and binary (IEC 80000-13) prefixes.
BYTE_SUFFIXES = {
    "b": 1.0, "": 1.0,
    "kb": 1e3, "mb": 1e6, "gb": GIGA, "tb": TERA, "pb": 1e15,
    "kib": 2.0**10, "mib": 2.0**20, "gib": GIB, "tib": 2.0**40, "pib": 2.0**50,
}
SECONDS_PER_MINUTE = 60.0
SECONDS_PER_HOUR = 3600.0
SECONDS_PER_DAY = 86400.0
SECONDS_PER_WEEK = 7 * SECONDS_PER_DAY
# A year is 365 days here (the seed note's "one year non-stop" = 365 x 24 h); not the 365.25-day Julian year.
SECONDS_PER_YEAR = 365 * SECONDS_PER_DAY
# Longest training time accepted (--days, --hours, --duration, --max-days): a sanity bound, not physics.
# A thousand years is longer than any plan could mean and keeps peak x time x GPUs far from float overflow
# (1.8e308; Python's sys.float_info.max), which 1e308 days would reach in seconds.
MAX_DURATION_S = 1000 * SECONDS_PER_YEAR
# Largest counts accepted where they are typed (--params, --tokens and the other token counts, --flops): sanity
# bounds, not physics, far beyond any model or run made, that keep what the engines raise them to (6ND, a scaling
# law's powers N^(1/a), bytes) inside float range (1.8e308, sys.float_info.max): --params 1e200 overflowed
# inverting N_opt(C) (`scaling.allocate.flops_for_params`).
# ~6,000x Switch-C's 1.571T parameters (Fedus et al. 2022, "Switch Transformers", Table 9), the largest published.
MAX_N_PARAMS = 1e16
# ~64,000x the 15.6T tokens Llama 3 405B was trained on (Dubey et al. 2024, sec. 1); tokens served in a model's life
# (--inference-tokens) too.
MAX_N_TOKENS = 1e18
# ~2.6 billion times the 3.8e25 FLOP of Llama 3 405B's pre-training (Dubey et al. 2024, sec. 1).
MAX_FLOPS = 1e35
# (bound, its unit, what it is measured against) per kind of count, for `parse_count`'s ``kind``.
COUNT_BOUNDS = {
    "params": (MAX_N_PARAMS, "parameters", "about 6,000x the largest published model, Switch-C's 1.6T"),
    "tokens": (MAX_N_TOKENS, "tokens", "about 64,000x Llama 3 405B's 15.6T training tokens"),
    "flops": (MAX_FLOPS, "FLOP", "about 2.6 billion times Llama 3 405B's 3.8e25 FLOP"),
}
DURATION_UNITS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3,
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "min": SECONDS_PER_MINUTE, "mins": SECONDS_PER_MINUTE,
    "minute": SECONDS_PER_MINUTE, "minutes": SECONDS_PER_MINUTE,
    "h": SECONDS_PER_HOUR, "hr": SECONDS_PER_HOUR, "hrs": SECONDS_PER_HOUR,
    "hour": SECONDS_PER_HOUR, "hours": SECONDS_PER_HOUR,
    "d": SECONDS_PER_DAY, "day": SECONDS_PER_DAY, "days": SECONDS_PER_DAY,
    "w": SECONDS_PER_WEEK, "wk": SECONDS_PER_WEEK, "week": SECONDS_PER_WEEK, "weeks": SECONDS_PER_WEEK,
    "y": SECONDS_PER_YEAR, "yr": SECONDS_PER_YEAR, "year": SECONDS_PER_YEAR, "years": SECONDS_PER_YEAR,
}

# A month as the suggestion for an ambiguous 'mo' spells it: a twelfth of the 365-day year of SECONDS_PER_YEAR.
DAYS_PER_MONTH = 365 / 12
# "m" (and "M", since units are read case-blind) is minutes in some tools and months in others: refused
AMBIGUOUS_DURATION_UNITS = frozenset({"m", "mo", "mon", "month", "months"})

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
# Patterns, compiled on first use by re.compile (which keeps them): a command that parses no quantity need not
# compile them at start-up (0.6 ms; issue 18).
_QUANTITY = rf"^\s*(?P<sign>[+-]?)(?P<num>{_NUMBER})\s*(?P<unit>[A-Za-z]*)\s*$"
_DURATION_PART = rf"\s*(?P<num>{_NUMBER})\s*(?P<unit>[A-Za-zµμ]+)"
_THOUSANDS = r"(?<=\d)[,_](?=\d{3}(?:\D|$))"


def _split(text: str, what: str, accepted: str) -> tuple[float, str]:
    """Split ``text`` into (signed number, unit string) or raise a one-line UsageError."""
    if not isinstance(text, str):
        text = str(text)
    m = re.compile(_QUANTITY).match(re.compile(_THOUSANDS).sub("", text))
    if m is None:
        raise UsageError(f"cannot read {what} {text!r}; accepted: {accepted}")
    value = float(m["num"]) * (-1.0 if m["sign"] == "-" else 1.0)
    if not math.isfinite(value):
        raise UsageError(f"cannot read {what} {text!r}: the number is too large; accepted: {accepted}")
    return value, m["unit"]


def parse_count(text: str | float, *, what: str = "count", kind: str | None = None) -> float:
    """Parse a count such as ``124M``, ``1.5B``, ``300B``, ``1e21`` or ``2.5k`` into a float.

    Suffixes are decimal: k=1e3, M=1e6, B (or G)=1e9, T=1e12, P=1e15, E=1e18, Z=1e21. ``kind`` ("params", "tokens",
    "flops") refuses a value past its bound in `COUNT_BOUNDS` (``what`` names the option in the message).
    """
    if isinstance(text, (int, float)):
        return _at_most(float(text), str(text), what, kind)
    accepted = "a number with an optional suffix k, M, B, T, P, E (e.g. 124M, 1.5B, 300B, 1e21)"
    value, unit = _split(text, what, accepted)
    if unit not in COUNT_SUFFIXES:
        hint = ""
        if unit.lower() in BYTE_SUFFIXES and unit.lower() not in ("", "b"):
            hint = " (that looks like a size in bytes)"
        elif unit.upper() in COUNT_SUFFIXES:  # '1.5b': suggested, not read as 1.5B (lower-case m is milli elsewhere)
            hint = f" (did you mean {str(text).strip()[:-len(unit)].rstrip()}{unit.upper()}?)"
        raise UsageError(f"cannot read {what} {text!r}: unknown suffix {unit!r}{hint}; accepted: {accepted}")
    return _at_most(value * COUNT_SUFFIXES[unit], str(text).strip(), what, kind)


def _at_most(value: float, text: str, what: str, kind: str | None) -> float:
    """``value``, or a UsageError when it is past the bound of ``kind`` (`COUNT_BOUNDS`; None: no bound)."""
    if kind is not None:
        bound, unit, reason = COUNT_BOUNDS[kind]
        if not value <= bound:
            limit = f"{bound:.0e}".replace("e+", "e")  # 1e18
            raise UsageError(f"{what} {text} is too large: at most {limit} {unit} ({reason}); give a smaller {what}")
    return value


def parse_bytes(text: str | float, *, what: str = "size", unit_required: bool = False,
                positive: bool = False) -> float:
    """Parse a size such as ``12GB`` (decimal, 12e9 bytes) or ``12GiB`` (binary, 12 x 2**30 bytes).

    A bare number is bytes; ``unit_required`` (the command line) refuses one other than 0 instead, as
    `parse_duration` refuses a bare time: ``--memory 24`` meant 24 GiB, not 24 bytes. ``positive`` refuses a size
    of 0 or less in the user's own words (not as a count of bytes).
    """
    if isinstance(text, (int, float)):
        return float(text)
    accepted = "a number with a unit B, kB, MB, GB, TB (decimal) or KiB, MiB, GiB, TiB (binary), e.g. 12GiB"
    value, unit = _split(text, what, accepted)
    if positive and not value > 0:  # before the unit: '-1' is told it is not positive, not to write '-1GiB'
        raise UsageError(f"{what} {str(text).strip()!r} is not a positive size; accepted: {accepted}")
    if unit_required and not unit and value != 0:
        number = str(text).strip()
        raise UsageError(f"{what} {text!r} has no unit; write it with one, e.g. {number}GiB or {number}GB (bytes: "
                         f"{number}B); accepted: {accepted}")
    key = unit.lower()
    if key not in BYTE_SUFFIXES:
        raise UsageError(f"cannot read {what} {text!r}: unknown unit {unit!r}; accepted: {accepted}")
    return value * BYTE_SUFFIXES[key]


def parse_duration(text: str | float, *, what: str = "duration") -> float:
    """Parse a duration such as ``365d``, ``36h``, ``2w``, ``90min`` or ``1d12h`` into seconds.

    A bare number is refused: the unit must be said (s, min, h, d, w, y; a year is 365 days).
    """
    if isinstance(text, (int, float)):
        return float(text)
    accepted = "a number with a unit ms, s, min, h, d, w or y (e.g. 365d, 36h, 2w, 1d12h)"
    s = str(text).strip()
    total, pos = 0.0, 0
    while pos < len(s):
        m = re.compile(_DURATION_PART).match(s, pos)
        unit = m["unit"].lower() if m is not None else ""
        if unit in AMBIGUOUS_DURATION_UNITS:  # minutes or months: a plan a factor of 43,800 off either way
            days = f"{float(m['num']) * DAYS_PER_MONTH:.4g}d"
            if unit.startswith("month"):  # not minutes, but months differ in length: said in days
                raise UsageError(f"cannot read {what} {text!r}: months differ in length; write them in days, e.g. "
                                 f"{days} (a month of 365/12 days); accepted: {accepted}")
            raise UsageError(f"cannot read {what} {text!r}: '{m['unit']}' could mean minutes or months; write "
                             f"{m['num']}min for minutes, or {days} for months (a month of 365/12 days); "
                             f"accepted: {accepted}")
        if unit not in DURATION_UNITS:
            raise UsageError(f"cannot read {what} {text!r}; accepted: {accepted}")
        total += float(m["num"]) * DURATION_UNITS[unit]
        if not math.isfinite(total):
            raise UsageError(f"cannot read {what} {text!r}: the number is too large; accepted: {accepted}")
        pos = m.end()
        while pos < len(s) and s[pos].isspace():
            pos += 1
    if pos == 0:
        raise UsageError(f"cannot read {what} {text!r}; accepted: {accepted}")
    return total


def check_duration(value: float, *, what: str, unit: str, seconds_per_unit: float, given: str | None = None) -> float:
    """Seconds of a positive duration given in ``unit``; out of (0, `MAX_DURATION_S`] is a UsageError in that unit.

    ``--days -1`` says "got -1 days", not the seconds it became; ``--days 1e308`` gives the accepted range.
    ``given`` is the user's own text when it had its own unit (``--duration 1e9y``).
    """
    limit = MAX_DURATION_S / seconds_per_unit
    if not math.isfinite(value) or not 0 < value <= limit:
        raise UsageError(f"{what} must be a positive, finite time of at most {limit:,.0f} {unit} "
                         f"({MAX_DURATION_S / SECONDS_PER_YEAR:,.0f} years), got {given or f'{value:g} {unit}'}")
    return value * seconds_per_unit


def parse_usd(text: str | float, *, what: str = "amount") -> float:
    """Parse money in US dollars: ``$1,200``, ``1.2k``, ``2.5 USD``, ``0.35``."""
    if isinstance(text, (int, float)):
        return float(text)
    accepted = "an amount in US dollars, e.g. 1200, $1,200, 1.2k, 2.5 USD"
    s = str(text).strip()
    s = s.removeprefix("$")
    if s.upper().endswith("USD"):
        s = s[:-3]
    value, unit = _split(s, what, accepted)
    if unit not in ("", "k", "K", "M", "B"):
        raise UsageError(f"cannot read {what} {text!r}: unknown suffix {unit!r}; accepted: {accepted}")
    return value * COUNT_SUFFIXES[unit]


# ---------------------------------------------------------------- formatting

_COUNT_STEPS = [(1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")]


def format_count(n: float, digits: int = 1) -> str:
    """Format a count by powers of 1000: 124337664 -> '124.3M', 1.5e9 -> '1.5B'."""
    if not math.isfinite(n):
        return str(n)
    mantissa, suffix = (f"{n:.0f}" if float(n).is_integer() else f"{n:.{digits}f}"), ""
    for step, next_suffix in reversed(_COUNT_STEPS):  # k, M, B, T: scale up while the printed mantissa reaches 1000
        if abs(float(mantissa)) < 1000:
            break
        mantissa, suffix = f"{n / step:.{digits}f}", next_suffix
    if abs(float(mantissa)) >= 1000:  # beyond 999.9T the suffixes run out: scientific notation
        return format_sci(n)
    return mantissa + suffix


def format_tokens_per_s(x: float) -> str:
    """A throughput in tokens/s: whole tokens with thousands separators, three significant digits below 100
    (a 70B model on a calibrated CPU runs 0.216 tokens/s, which ',.0f' printed as 0)."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def format_sci(x: float, digits: int = 3) -> str:
    """Scientific notation with ``digits`` significant figures: 1.1381e21 -> '1.14e21'."""
    if x == 0 or not math.isfinite(x):
        return str(x)
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def format_flops(x: float, digits: int = 3) -> str:
    """A FLOP count, always in scientific notation as papers write it: '1.14e21 FLOP'."""
    return f"{format_sci(x, digits)} FLOP"


# Decimal prefixes of FLOP/s (SI, as vendors quote peak rates): the printed mantissa stays in [1, 1000).
_RATE_STEPS = [(1e6, "M"), (1e9, "G"), (1e12, "T"), (1e15, "P"), (1e18, "E"), (1e21, "Z"), (1e24, "Y")]


def format_rate(flop_per_s: float, digits: int = 1) -> str:
    """A FLOP rate with a decimal prefix: '80.2 TFLOP/s', '1.0 EFLOP/s' (not '1013145.6 TFLOP/s'), '50.0 GFLOP/s'.

    TFLOP/s for zero and non-finite values; beyond the prefixes, scientific notation in FLOP/s.
    """
    if flop_per_s == 0 or not math.isfinite(flop_per_s):
        return f"{flop_per_s / TERA:.{digits}f} TFLOP/s"
    step, prefix = _RATE_STEPS[0]
    for candidate, candidate_prefix in _RATE_STEPS:  # the largest prefix whose rounded mantissa is at least 1
        if float(f"{abs(flop_per_s) / candidate:.{digits}f}") >= 1:
            step, prefix = candidate, candidate_prefix
    if float(f"{abs(flop_per_s) / step:.{digits}f}") >= 1000:  # past Y: no prefix left
        return f"{format_sci(flop_per_s)} FLOP/s"
    return f"{flop_per_s / step:.{digits}f} {prefix}FLOP/s"


_BYTE_STEPS = [(2.0**40, "TiB"), (GIB, "GiB"), (2.0**20, "MiB"), (2.0**10, "KiB")]


def format_gib_number(n_bytes: float, digits: int = 2) -> str:
    """Bytes as a bare number of GiB, for table cells whose header or text already says GiB: 2**31 -> '2.00'."""
    return f"{n_bytes / GIB:.{digits}f}"


def format_bytes(n: float, digits: int = 2) -> str:
    """Format bytes by powers of 1024, labelled with IEC units: 12884901888 -> '12.00 GiB'."""
    mantissa, unit = f"{n:.0f}", "B"
    for step, next_unit in reversed(_BYTE_STEPS):  # KiB, MiB, GiB, TiB: scale up while the mantissa reaches 1024
        if abs(float(mantissa)) < 1024:
            break
        mantissa, unit = f"{n / step:.{digits}f}", next_unit
    return f"{mantissa} {unit}"


def format_duration(seconds: float) -> str:
    """Format seconds as the largest sensible unit: '146.0 µs', '0.8 s' -> '800.0 ms', '36.0 h', '2.1 years'."""
    if not math.isfinite(seconds):
        return str(seconds)
    if seconds >= 1e6 * SECONDS_PER_YEAR:
        return f"{format_sci(seconds / SECONDS_PER_YEAR)} years"
    if seconds >= 2 * SECONDS_PER_YEAR:
        return f"{seconds / SECONDS_PER_YEAR:,.1f} years"
    if seconds >= 2 * SECONDS_PER_DAY:
        return f"{seconds / SECONDS_PER_DAY:.1f} days"
    if seconds >= 2 * SECONDS_PER_HOUR:
        return f"{seconds / SECONDS_PER_HOUR:.1f} h"
    if seconds >= 2 * SECONDS_PER_MINUTE:
        return f"{seconds / SECONDS_PER_MINUTE:.1f} min"
    for step, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):  # below a second: ms and µs, not "0.0 s"
        if abs(seconds) >= 0.99995 * step:  # rounds to at least 1.0 of this unit
            return f"{seconds / step:.1f} {unit}"
    return "0.0 s" if seconds == 0 else f"{seconds / 1e-9:.1f} ns"


def format_usd(x: float) -> str:
    """Format US dollars: '$1,234' or '$0.35'."""
    return f"${x:,.0f}" if abs(x) >= 100 else f"${x:,.2f}"
