"""JSON that is JSON: non-finite floats written as null.

Python's ``json.dumps`` writes ``Infinity`` and ``NaN`` by default, which RFC 8259 (sec. 6: "Numeric values that
cannot be represented ... such as Infinity and NaN are not permitted") does not allow and strict parsers (jq,
JavaScript's JSON.parse, Go's encoding/json) reject. Every ``--json`` report and every JSON Lines row goes through
`dumps`, which maps them to null and then dumps with ``allow_nan=False``, so a value that slips past fails loudly.
Standard library only (start-up).
"""

from __future__ import annotations

import json
import math


def finite_or_none(obj):
    """``obj`` with every non-finite float (inf, -inf, nan, at any depth of dicts, lists and tuples) replaced by
    None; everything else as it was."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: finite_or_none(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(value) for value in obj]
    return obj


def nonfinite_word(value: float) -> str:
    """How a non-finite float is named where the JSON says it was one: 'nan', 'inf' or '-inf'."""
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def dumps(obj, **kwargs) -> str:
    """``json.dumps`` of ``obj`` with non-finite floats as null (`finite_or_none`), refusing any other
    (``allow_nan=False``: a ValueError, never ``Infinity`` in the output)."""
    return json.dumps(finite_or_none(obj), allow_nan=False, **kwargs)
