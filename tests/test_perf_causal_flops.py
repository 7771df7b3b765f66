"""`perf.utilization.causal_model_flops_per_token` (re-exported by perf.step), MFU's numerator and the planner's fewest-FLOPs bound (planner.relax),
against PyTorch's FlopCounterMode and as the one number the step model reports for every setup."""

from __future__ import annotations

import pytest

from flopscalc.flops import Recompute
from flopscalc.hardware import get_gpu
from flopscalc.memory import TrainingSetup
from flopscalc.model import PRESETS
from flopscalc.perf.step import causal_model_flops_per_token, estimate_step
from tests.conftest import measure_flops


@pytest.mark.parametrize("seq", [1, 64, 1024])
def test_the_counters_dense_count_less_the_masked_pairs(seq):
    """FlopCounterMode on meta tensors sees SDPA as dense matmuls over all T x T pairs. A causal model needs the
    T (T + 1) / 2 unmasked ones: each masked pair is a q.k product and a p.v product of n_embd MACs per layer,
    2 FLOPs a MAC (Narayanan et al. 2021, App.), forward plus a backward of twice the forward (Kaplan et al. 2020,
    sec. 2.1), so per token 3 x 2 x 2 x n_embd x n_layer x (T - 1) / 2 = 6 L C (T - 1) less. Exact: integers."""
    cfg = PRESETS["gpt2"]
    measured_per_token = measure_flops(cfg, 1, seq)["total"] / seq
    masked_per_token = 6 * cfg.n_layer * cfg.n_embd * (seq - 1)
    assert causal_model_flops_per_token(cfg, seq) == measured_per_token - masked_per_token


def test_every_setup_reports_the_same_model_flops():
    """Recomputation and the attention path change what runs (HFU), never the model FLOPs (MFU's numerator)."""
    cfg, gpu, seq = PRESETS["gpt2"], get_gpu("h100"), 1024
    expected = causal_model_flops_per_token(cfg, seq)
    for recompute in Recompute:
        for flash in (True, False):
            setup = TrainingSetup(micro_batch=4, seq_len=seq, recompute=recompute, flash=flash)
            estimate = estimate_step(cfg, setup, gpu)
            assert estimate.model_flops_per_token == expected, (recompute, flash)
            assert estimate.hardware_flops_per_token >= expected
