"""Broadcastable formulas without numpy for a scalar: plain floats stay in Python, arrays go to numpy.

The engines' formulas take a number or an array (the plots and fits pass arrays). `flopscalc plan` and the other
one-answer commands pass numbers only, and importing numpy costs them about half of `python -c "import numpy"`'s
own start (issue 18, item 2). A formula asks `scalars(...)` and computes in floats and `math` when it is true,
otherwise it converts with `arrays(...)`, which imports numpy on first use. The two paths agree to the last bit
on +, -, *, /, min and max (IEEE rounding); ``**``, exp and log come from the C library on one path and from
numpy's own vectorised kernels on the other, which round the last bit differently for a few percent of arguments
(`tests/test_scalar_paths.py` bounds the difference at 1e-14; the main job's text and JSON came out identical).
"""

from __future__ import annotations

import math

# Python's int and float; numpy's float64 is a float subclass, so a value taken out of an array counts as one.
SCALAR_TYPES = (int, float)


def scalars(*values) -> bool:
    """True when every value is a plain number (int, float, numpy float64), so a formula may run in floats."""
    for v in values:  # a loop, not all(<generator>): the step-time model asks this thousands of times a plan
        if not isinstance(v, SCALAR_TYPES):
            return False
    return True


def positive_scalars(*values) -> bool:
    """True when every value is a plain number above zero: a power law's scalar path (``x ** a``, ``A / x ** a``)
    then agrees with numpy's, which it would not at 0 (ZeroDivisionError, not inf) or below (complex, not nan)."""
    for v in values:
        if not (isinstance(v, SCALAR_TYPES) and v > 0):
            return False
    return True


def arrays(*values) -> tuple:
    """The values as float64 arrays; numpy is imported here, on the first array a formula gets."""
    import numpy as np

    return tuple(np.asarray(v, float) for v in values)


def operands(*values) -> tuple:
    """A formula's variables: floats when all are positive numbers (no numpy), else float arrays, so that 0 and
    negative values give numpy's inf and nan as they always have."""
    return tuple(float(v) for v in values) if positive_scalars(*values) else arrays(*values)


class _FloatOps:
    """The few numpy functions the engines' formulas use, for floats: the same names, `math` and builtins."""

    minimum = staticmethod(min)
    maximum = staticmethod(max)
    exp = staticmethod(math.exp)
    log = staticmethod(math.log)

    @staticmethod
    def where(condition, if_true, if_false):
        return if_true if condition else if_false


def with_ops(*values) -> tuple:
    """(variables, ops): the variables as `operands` gives them and a namespace with ``minimum``, ``maximum``,
    ``exp``, ``log`` and ``where`` for them: `math` and builtins for floats, numpy for arrays. A formula written
    once against ``ops`` then serves both."""
    if positive_scalars(*values):
        return tuple(float(v) for v in values), _FloatOps
    import numpy as np

    return arrays(*values), np
