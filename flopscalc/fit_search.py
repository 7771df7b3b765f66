"""The largest model that fits a GPU's memory: a search over model size, for the frontier plot and any face.

Memory grows with N, so the models that fit are all N below a limit: a log-spaced grid over
`config_for_params` shapes, then bisection in log N. Each size is asked of the planner's own setup search
(`planner.options.choose_setup`) and of plain AdamW (`memory.max_micro_batch`), so the plot and the plan agree
on what fits. Pure: no printing, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from .errors import DomainError
from .hardware import GpuSpec, Precision
from .model import GPT2_BLOCK_SIZE, config_for_params, count_params

# Model sizes searched for the largest that fits a GPU (parameters): config_for_params spans ~1e7..1e13.
FIT_SEARCH_PARAMS = (1e7, 1e13)
# Grid steps per decade of that search before bisection, and bisection steps after it.
FIT_GRID_PER_DECADE = 4
FIT_BISECTIONS = 14


def _fits(n_params: float, gpu: GpuSpec, n_gpus: int, seq_len: int, precision: Precision,
          capacity_bytes: float | None) -> tuple[bool, bool]:
    """(fits with some setup the planner searches, fits with plain AdamW: no recompute, ZeRO or offload)."""
    # imported here: the plots package imports this module, and the planner's setup search is heavy to load
    from .memory import TrainingSetup, max_micro_batch
    from .memory.workspace import gpu_setup_fields
    from .planner.options import MEMORY_PRECISION, PLAN_MEMORY_HEADROOM, choose_setup
    from .planner.setups import LIGHTEST_GRAD_ACCUM

    try:
        cfg = config_for_params(n_params)
    except DomainError:
        return False, False
    if seq_len > cfg.block_size:
        cfg = cfg.with_(block_size=seq_len)
    if choose_setup(cfg, gpu, n_gpus, seq_len, precision, capacity_bytes) is None:
        return False, False
    # asked directly: the search may prefer another setup (e.g. ZeRO on several GPUs) even where plain AdamW fits
    target = replace(gpu, memory_bytes=capacity_bytes) if capacity_bytes else gpu
    plain = TrainingSetup(micro_batch=1, seq_len=seq_len, precision=MEMORY_PRECISION[precision], n_gpus=n_gpus,
                          grad_accum=LIGHTEST_GRAD_ACCUM, **gpu_setup_fields(gpu))  # as the search
    return True, max_micro_batch(cfg, plain, target, PLAN_MEMORY_HEADROOM, upper=1) >= 1


def largest_fitting_params(gpu: GpuSpec, n_gpus: int = 1, seq_len: int = GPT2_BLOCK_SIZE,
                           precision: Precision | str = Precision.bf16,
                           capacity_bytes: float | None = None) -> dict:
    """Largest model (parameters, GPT-2 shapes by ``config_for_params``) that fits ``n_gpus`` x ``gpu``.

    Two answers: with any setup the planner searches (``planner.options.choose_setup``: recomputation,
    8-bit AdamW, ZeRO, optimizer offload) and with plain AdamW only (no recomputation, no
    sharding). Log-spaced grid, then bisection in log N; the fitting set is taken to be all N below the
    limit (memory grows with N). Returns the parameter count and shape of the largest shaped config found
    to fit (None: nothing fits). The shaping rule picks shapes by aspect ratio within 2% of a target, so a
    target just above the limit can give a slightly larger model: the limit is good to about 2%.
    """
    precision = Precision(precision)
    lo, hi = (math.log10(v) for v in FIT_SEARCH_PARAMS)
    grid = np.logspace(lo, hi, int((hi - lo) * FIT_GRID_PER_DECADE) + 1)
    results = [_fits(float(n), gpu, n_gpus, seq_len, precision, capacity_bytes) for n in grid]
    limits, shapes = {}, {}
    for which, key in ((0, "any_setup"), (1, "plain_adamw")):
        ok = [i for i, r in enumerate(results) if r[which]]
        if not ok:
            limits[key] = shapes[key] = None
            continue
        i = ok[-1]
        a = math.log(grid[i])  # fits at a
        if i < len(grid) - 1:
            b = math.log(grid[i + 1])  # does not fit at b
            for _ in range(FIT_BISECTIONS):
                mid = 0.5 * (a + b)
                a, b = (mid, b) if _fits(math.exp(mid), gpu, n_gpus, seq_len, precision, capacity_bytes)[which] else (a, mid)
        cfg = config_for_params(math.exp(a))
        limits[key] = float(count_params(cfg).total)
        shapes[key] = {"n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_embd": cfg.n_embd}
    return {"gpu": gpu.name, "n_gpus": n_gpus, "seq_len": seq_len, "precision": precision.value,
            "capacity_bytes": float(capacity_bytes or gpu.memory_bytes),
            "n_max_params_any_setup": limits["any_setup"], "n_max_params_plain_adamw": limits["plain_adamw"],
            "shape_any_setup": shapes["any_setup"], "shape_plain_adamw": shapes["plain_adamw"]}
