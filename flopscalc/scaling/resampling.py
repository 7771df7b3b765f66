"""How many bootstrap resamples a percentile interval needs, and the warning when a fit drew fewer.

No numpy here: the command line reads `MIN_PERCENTILE_RESAMPLES` for its help text at start-up (issue 18).
"""

from __future__ import annotations

# Fewest resamples whose 95% percentile interval is printed without a warning. The percentile limits are the
# (R+1)alpha/2-th and (R+1)(1-alpha/2)-th ordered draws (Davison & Hinkley 1997, "Bootstrap Methods and their
# Application", sec. 5.2, eq. 5.18), so R + 1 should be a multiple of 40 and large: they take R = 999; Efron &
# Tibshirani 1993 ("An Introduction to the Bootstrap", ch. 13 and 19) ask for about 1,000 for percentile intervals,
# against 25-200 for a standard error (sec. 6.4). We take D&H's 999: (999 + 1) x 0.025 = 25 draws beyond each limit.
MIN_PERCENTILE_RESAMPLES = 999


def resample_warnings(n_resamples: int, level: float = 0.95) -> tuple[str, ...]:
    """A warning when ``n_resamples`` bootstrap draws are too few for a ``level`` percentile interval (else none)."""
    if not 0 < n_resamples < MIN_PERCENTILE_RESAMPLES:
        return ()
    tail = (n_resamples + 1) * (1 - level) / 2  # draws beyond each limit (Davison & Hinkley 1997, eq. 5.18)
    return ((f"{n_resamples} bootstrap resamples are too few for a {level:.0%} percentile interval ({tail:.2g} draws "
            f"beyond each limit): its limits scatter from seed to seed and may exclude the fit itself; use "
            f"--bootstrap {MIN_PERCENTILE_RESAMPLES} or more (Davison & Hinkley 1997 take 999, Efron & Tibshirani "
            "1993 about 1,000)"),)
