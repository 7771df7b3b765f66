"""The step model and the memory engine read one description of the step (review leftovers, item a).

Whether the loss is fused (and by which kernel) and whether dropout runs live in `TrainingSetup` only;
`StepOptions` keeps the choices that only the step time depends on (attention and optimizer kernels, train metrics,
the sustained fraction). The step model's kept passes
(`perf.step._priced_passes`) are keyed on the fields the passes read, so setups and options that differ elsewhere
share them and those that differ there do not.
"""

from __future__ import annotations

import dataclasses

from flopscalc.hardware import get_gpu
from flopscalc.memory import TrainingSetup, estimate_memory
from flopscalc.model import get_preset
from flopscalc.perf import StepOptions, estimate_step
from flopscalc.perf.op_kinds import OptimizerKernel
from flopscalc.perf.ops import PASS_OPTION_FIELDS, pass_ops
from flopscalc.perf.step import _priced_passes

H100 = get_gpu("h100-sxm")
CFG = get_preset("gpt2").with_(n_layer=3)  # a model no other test keeps passes for


def test_the_fused_loss_and_dropout_have_one_home():
    options = {f.name for f in dataclasses.fields(StepOptions)}
    setup = {f.name for f in dataclasses.fields(TrainingSetup)}
    assert {"fused_loss", "loss_kernel", "dropout"} <= setup and not {"fused_loss", "loss_kernel", "dropout"} & options


def test_the_setups_fused_loss_and_dropout_move_time_and_memory_together():
    plain = TrainingSetup(micro_batch=4, seq_len=1024)
    for field, slower in (("dropout", True), ("fused_loss", False)):
        other = dataclasses.replace(plain, **{field: True})
        a, b = estimate_step(CFG, plain, H100), estimate_step(CFG, other, H100)
        names = {p.op.name for p in b.ops} - {p.op.name for p in a.ops}
        assert names, field  # the step has kernels of its own
        # dropout adds masks (memory) and kernels (time); the fused loss saves the fp32 log-probabilities and moves
        # fewer bytes than autocast's fp32 cross-entropy
        assert (b.step_s > a.step_s) is slower, field
        assert (estimate_memory(CFG, other).peak_bytes > estimate_memory(CFG, plain).peak_bytes) is slower, field


def test_the_kept_passes_are_shared_where_the_passes_are_the_same_and_only_there():
    setup = TrainingSetup(micro_batch=2, seq_len=512, fused_loss=True)
    # the optimizer kernel builds the update, not the passes: a second estimate finds the first's passes
    est = estimate_step(CFG, setup, H100, StepOptions())
    hits = _priced_passes.cache_info().hits
    composer = estimate_step(CFG, setup, H100, StepOptions(optimizer_kernel=OptimizerKernel.composer))
    assert _priced_passes.cache_info().hits == hits + 1
    n_pass = len(pass_ops(CFG, setup))
    assert composer.ops[:n_pass] == est.ops[:n_pass] and composer.ops[n_pass:] != est.ops[n_pass:]
    # the train metrics are read by the passes: new passes, and different ones
    # and so is the compiled graph (`gemm_shape_padding`), which fuses the fp32 residual stream's kernels, and a
    # 16-bit module under mixed precision (`half_weights`: a LoRA base), whose stream is 16-bit
    assert PASS_OPTION_FIELDS == ("metric_ce_passes", "gemm_shape_padding", "half_weights")
    for change in PASS_OPTION_FIELDS:
        value = {"metric_ce_passes": 2, "gemm_shape_padding": True, "half_weights": True}[change]
        misses = _priced_passes.cache_info().misses
        options = StepOptions(**{change: value})
        other = estimate_step(CFG, setup, H100, options)
        assert _priced_passes.cache_info().misses == misses + 1, change
        passes = pass_ops(CFG, setup, options)
        assert [p.op for p in other.ops[:len(passes)]] == passes, change
        assert passes != pass_ops(CFG, setup), change
