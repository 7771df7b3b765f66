"""Where a scaling law can be believed: the span of runs it was fitted on, and the uniform-guess ceiling.

Pure functions of a `ScalingLaw` and the quantities it is asked about; they return warnings (strings) and
never print. The planner, `scaling loss` and `scaling optimal` show what they return.

References: [H22] Hoffmann et al. 2022; [K20] Kaplan et al. 2020; [M23] Muennighoff et al. 2023 (see laws.py).
"""

from __future__ import annotations

import math

from ..units import format_count, format_flops
from .laws import FLOPS_PER_PARAM_TOKEN, ScalingLaw

# A law is "far outside" its runs beyond this factor past either end of their span. A judgement, not a published
# threshold: about half a decade (10^0.5 = 3.2, rounded to 3), small beside the 2.4 to 6.3 decades of N the
# built-in laws span (70M-16B [H22, abstract]; 768-1.5B [K20]), so that it flags extrapolation, not the edge
# of the data. The laws' own authors extrapolate further (Hoffmann et al. size Chinchilla at 5.76e23 FLOP, 2.3
# decades past their largest IsoFLOP budget, 3e21 [H22, sec. 3.2 and 4]); the warning says so, it does not refuse.
RANGE_FACTOR = 3.0


def _outside(value: float, span: tuple[float, float] | None) -> tuple[str, float] | None:
    """('below' | 'above', factor) when ``value`` lies more than RANGE_FACTOR past ``span``; else None."""
    if span is None or value is None or not (math.isfinite(value) and value > 0):
        return None
    lo, hi = span
    if value < lo / RANGE_FACTOR:
        return "below", lo / value
    if value > hi * RANGE_FACTOR:
        return "above", value / hi
    return None


def range_warnings(law: ScalingLaw, n_params: float | None = None, n_tokens: float | None = None,
                   c_flops: float | None = None, unique_tokens: float | None = None) -> tuple[str, ...]:
    """Warnings for each quantity more than `RANGE_FACTOR` outside the span ``law`` was fitted on.

    Parameters
    ----------
    law : ScalingLaw
    n_params : float, optional
        Parameters N, counted as the law counts them (non-embedding for Kaplan et al.).
    n_tokens : float, optional
        Training tokens D, repeats included.
    c_flops : float, optional
        Training compute C (FLOP); by default C = 6ND when N and D are given.
    unique_tokens : float, optional
        Unique tokens U, checked against the span the law's repetition decay was fitted on [M23].

    Returns
    -------
    tuple of str
        One line per quantity outside; empty when all lie within the factor, or the law states no range.
    """
    if c_flops is None and n_params is not None and n_tokens is not None:
        c_flops = FLOPS_PER_PARAM_TOKEN * n_params * n_tokens  # C = 6ND  [H22, sec. 3]
    out = []
    r = law.fitted_range
    checks = []
    if r is not None:
        checks += [("parameters N", n_params, r.n_params, format_count, r.source),
                   ("training tokens D", n_tokens, r.n_tokens, format_count, r.source),
                   ("training compute C", c_flops, r.c_flops, format_flops, r.source)]
    if law.repetition is not None:
        rep = law.repetition
        checks.append(("unique tokens U", unique_tokens, rep.unique_tokens, format_count, rep.source))
    for what, value, span, fmt, source in checks:
        hit = _outside(value, span)
        if hit is None:
            continue
        side, factor = hit
        out.append(f"{law.name} is extrapolated: {what} {fmt(value)} is {factor:,.0f}x {side} the range it was "
                   f"fitted on ({fmt(span[0])} to {fmt(span[1])}; {source})")
    return tuple(out)


def uniform_warning(law: ScalingLaw) -> str:
    """The line shown instead of a loss that is worse than a uniform guess over the law's vocabulary."""
    vocab = f"{law.vocab_size:,}" if law.vocab_size else "GPT-2's vocabulary (the law's is unknown)"
    return (f"{law.name} predicts no loss here: its formula exceeds a uniform guess over the vocabulary (ln {vocab} "
            f"= {law.uniform_loss:.2f} nats/token, where an untrained model starts)")
