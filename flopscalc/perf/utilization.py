"""Model FLOPs utilization and its inverse: the one place the PaLM App. B ratio is written.

MFU = model FLOPs per second achieved / (GPUs x dense peak per GPU) [1]. "Model FLOPs" exclude
recomputation; passing executed FLOPs (recomputation included) gives the hardware FLOPs utilization, HFU [2].
The step-time model (`perf.step`), the layout model, the planner, the trainer, bench and the calibration plot
call these instead of retyping the ratio.

References
----------
[1] Chowdhery et al. 2022, "PaLM", arXiv:2204.02311, App. B (model FLOPs utilization).
[2] Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models",
    arXiv:2205.05198, sec. 5 (hardware FLOPs utilization counts recomputation).
"""

from __future__ import annotations

from functools import lru_cache

from ..flops import training_flops_per_token


def model_flops_utilization(flops_per_token, tokens_per_s, n_gpus, peak_flop_per_s_per_gpu):
    """Fraction of ``n_gpus`` x ``peak_flop_per_s_per_gpu`` (FLOP/s) that ``tokens_per_s`` (tokens/s, all GPUs)
    at ``flops_per_token`` (FLOP/token) delivers: MFU for model FLOPs [1], HFU for executed FLOPs [2]."""
    return flops_per_token * tokens_per_s / (n_gpus * peak_flop_per_s_per_gpu)  # [1] App. B


@lru_cache(maxsize=4096)  # a pure function of these two; the planner prices and bounds many setups of one model
def causal_model_flops_per_token(cfg, seq_len: int) -> float:
    """Model FLOPs per token (FLOP/token) of ``cfg`` (a `ModelConfig`) trained on sequences of ``seq_len`` tokens:
    forward and backward matmuls, the attention core over causal pairs, no recomputation; MFU's numerator ([1] App.
    B), and the fewest FLOPs any setup executes (recomputation and the full T x T only add)."""
    return training_flops_per_token(cfg, seq_len, causal=True).model_flops_per_token


def seconds_at_utilization(flops, n_gpus, peak_flop_per_s_per_gpu, utilization):
    """Time (s) for ``n_gpus`` GPUs to do ``flops`` (FLOP) at ``utilization`` (fraction) of their dense peak
    (FLOP/s per GPU): the inverse of `model_flops_utilization` [1] App. B."""
    return flops / (n_gpus * peak_flop_per_s_per_gpu * utilization)  # [1] App. B
