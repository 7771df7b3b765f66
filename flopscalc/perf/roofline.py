"""The roofline: an operation takes as long as its arithmetic or its memory traffic, whichever is longer.

References
----------
[1] Williams, Waterman & Patterson 2009, "Roofline: An Insightful Visual Performance Model for Multicore
    Architectures", CACM 52(4): attainable rate = min(peak, bandwidth x arithmetic intensity).
[2] NVIDIA, "Matrix Multiplication Background User's Guide" (DU-09799-001), ch. 2 "Math And Memory Bounds":
    an operation is math-limited when its FLOPs per byte exceed the processor's FLOP/s per byte/s.
"""

from __future__ import annotations

from ..scalar import SCALAR_TYPES


def roofline_s(flops, bytes_moved, flop_per_s, bytes_per_s, *, min_s=0.0):
    """Time of one operation (s): max(FLOPs / rate, bytes / bandwidth, ``min_s``) ([1]; [2] ch. 2).

    Parameters
    ----------
    flops : float or array
        Arithmetic of the operation (FLOP).
    bytes_moved : float or array
        DRAM traffic of the operation (bytes).
    flop_per_s : float
        Attainable arithmetic rate, peak times efficiency (FLOP/s).
    bytes_per_s : float
        Attainable DRAM bandwidth (bytes/s).
    min_s : float
        Floor, e.g. kernel launch and drain (s).

    Numbers give a float (no numpy import); an array gives an array.
    """
    if (isinstance(flops, SCALAR_TYPES) and isinstance(bytes_moved, SCALAR_TYPES)  # numbers: no numpy
            and isinstance(flop_per_s, SCALAR_TYPES) and isinstance(bytes_per_s, SCALAR_TYPES)
            and flop_per_s > 0 and bytes_per_s > 0):  # a zero rate takes numpy's path: inf, not an error
        return max(flops / flop_per_s, bytes_moved / bytes_per_s, min_s)  # [1]: the higher roof binds
    import numpy as np

    return np.maximum(np.maximum(np.asarray(flops) / flop_per_s, np.asarray(bytes_moved) / bytes_per_s), min_s)


def ridge_intensity(flop_per_s, bytes_per_s):
    """Arithmetic intensity where the two roofs meet (FLOP/byte) ([2] ch. 2: "ops:byte ratio")."""
    return flop_per_s / bytes_per_s
