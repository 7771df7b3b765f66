"""The planner's shortcuts against doing the work one piece at a time (issue 18: the main job's planner time).

`perf.step.estimate_step` prices a step's passes once for every setup that shares them (`_priced_passes`) and
keeps their sums; `memory.fit.max_micro_batch` predicts the largest micro-batch from two peaks before it
confirms it. Each must give exactly what pricing every operation, or the bisection over micro-batches, gives.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest

from flopscalc.flops import Recompute
from flopscalc.hardware import get_gpu
from flopscalc.memory import MemoryPrecision, Optimizer, TrainingSetup, estimate_memory
from flopscalc.memory.fit import fits, largest_that_fits, max_micro_batch
from flopscalc.memory.settings import grad_wire_bytes_per_param
from flopscalc.model import ALL_PRESETS, PRESETS, count_params, params_outside_blocks
from flopscalc.perf.op_kinds import AttentionKernel, Phase, StepOptions
from flopscalc.perf.ops import PASS_FIELDS, LossKernel, pass_ops, step_ops
from flopscalc.perf.parallel import data_parallel_comm, hiding_window_s
from flopscalc.perf.step import CLASS_ORDER, estimate_step, price_ops

H100 = get_gpu("h100-sxm")
RTX = get_gpu("4070ti")

# Every block kind the step model prices: GPT-2 (learned positions, biases), Llama 3 (GQA, RoPE, SwiGLU), Mistral
# (sliding window), Mixtral (experts), OLMo 2 (q/k norm), Pythia (parallel block), and a tensor- and
# pipeline-parallel rank's share of Llama 3 8B as the layout engine prices it (a quarter of the heads and the MLP,
# a quarter of the layers).
LLAMA = ALL_PRESETS["llama-3.1-8b"]
MODELS = {
    "gpt2": PRESETS["gpt2"],
    "llama": LLAMA,
    "mistral-window": ALL_PRESETS["mistral-7b"].with_(attn_window=512),
    "mixtral": ALL_PRESETS["mixtral-8x7b"],
    "olmo": ALL_PRESETS["olmo-2-7b"],
    "pythia": ALL_PRESETS["pythia-410m"],
    "tp4-pp4-rank": LLAMA.with_(n_layer=LLAMA.n_layer // 4, n_head=LLAMA.n_head // 4, n_kv_head=LLAMA.n_kv_head // 4,
                                ffn_dim=LLAMA.n_inner // 4),
}
# Setups a planner compares for one model: the same passes under other optimizers, offload, ZeRO stages and GPU
# counts, and other passes (micro-batch, accumulation, recomputation, precision, eager attention)
UPDATES = [{}, {"optimizer": Optimizer.adamw8bit}, {"offload_optimizer": True},
           {"zero_stage": 3, "n_gpus": 8}, {"zero_stage": 1, "n_gpus": 4, "offload_optimizer": True}]
PASSES = [{"micro_batch": 1, "grad_accum": 1}, {"micro_batch": 2, "grad_accum": 4, "recompute": Recompute.selective},
          {"micro_batch": 3, "grad_accum": 2, "recompute": Recompute.full},
          {"micro_batch": 2, "precision": MemoryPrecision.fp32, "flash": False},
          {"micro_batch": 1, "grad_accum": 3, "precision": MemoryPrecision.bf16_pure, "recompute": Recompute.full}]
# (options, setup fields): a fused loss and dropout are the setup's (`TrainingSetup`), the kernels the options'
OPTIONS = [(None, {}), (None, {"dropout": True, "fused_loss": True}),
           (StepOptions(metric_ce_passes=1), {"fused_loss": True, "loss_kernel": LossKernel.llmc}),
           (StepOptions(attention_kernel=AttentionKernel.triton, sustained_fraction=1.0), {})]


def _one_by_one(cfg, setup, gpu, options):
    """What `estimate_step` gives when every op is built and priced for this setup alone: the priced ops, their
    class sums in op order, and the data-parallel communication the backward hides."""
    ops = price_ops(step_ops(cfg, setup, options), gpu, setup.precision, options)
    by_class = {c: 0.0 for c in CLASS_ORDER}
    for p in ops:
        by_class[p.op.op_class.value] += p.total_s
    per_micro = sum(p.total_s for p in ops if p.op.phase is not Phase.step) / setup.grad_accum
    backward = sum(p.total_s for p in ops if p.op.phase in (Phase.backward, Phase.recompute)) / setup.grad_accum
    comm = data_parallel_comm(
        count_params(cfg).total, setup.n_gpus, setup.zero_stage, gpu=gpu,
        backward_s=hiding_window_s(setup.zero_stage, setup.grad_accum, backward, per_micro),
        grad_bytes_per_param=grad_wire_bytes_per_param(setup),
        param_bytes_per_param=4.0 if setup.precision is MemoryPrecision.fp32 else 2.0, grad_accum=setup.grad_accum,
        root_params=params_outside_blocks(cfg), fsdp_units=cfg.n_layer if setup.zero_stage == 3 else None)
    return ops, by_class, comm


@pytest.mark.parametrize("name", MODELS)
def test_a_step_priced_from_shared_passes_equals_its_ops_priced_one_by_one(name):
    cfg = MODELS[name]
    seq = min(cfg.block_size, 1024)
    for gpu, passes, (options, kernels) in itertools.product((H100, RTX), PASSES, OPTIONS):
        # the setups sharing these passes are priced in a row, so all but the first reuse the first's passes
        for update in UPDATES:
            setup = TrainingSetup(seq_len=seq, **passes, **kernels, **update)
            est = estimate_step(cfg, setup, gpu, options)
            ops, by_class, comm = _one_by_one(cfg, setup, gpu, options)
            assert est.ops == ops, (name, setup)
            # exact: the kept sums add the same op times in the same order
            assert {c: est.class_seconds[c] for c in CLASS_ORDER[:4]} == {c: by_class[c] for c in CLASS_ORDER[:4]}
            assert dataclasses.replace(est, op_class_seconds=None).class_seconds == est.class_seconds
            assert est.comm == comm, (name, setup)


def test_a_steps_passes_read_only_the_pass_fields():
    # setups that differ in everything but PASS_FIELDS have the same passes (what lets one pricing serve them all);
    # ZeRO and offload reach them only through the residual stream's dtype (16-bit weights: `deepspeed_style`), so
    # every sharded or offloaded setup shares ZeRO 1's passes
    others = [{"optimizer": Optimizer.adamw8bit},
              {"cuda_context_bytes": 0.0, "low_precision_norm": True, "allocator_overhead_fraction": 0.2}]
    sixteen_bit_weights = [{"offload_optimizer": True}, {"zero_stage": 3, "n_gpus": 8},
                           {"optimizer": Optimizer.sgd, "zero_stage": 2, "n_gpus": 2}]
    for cfg, passes in itertools.product(MODELS.values(), PASSES):
        setup = TrainingSetup(seq_len=min(cfg.block_size, 1024), **passes)
        ops = pass_ops(cfg, setup)
        for other in others:
            assert pass_ops(cfg, dataclasses.replace(setup, **other)) == ops
        zero1 = dataclasses.replace(setup, zero_stage=1, n_gpus=2)
        for other in sixteen_bit_weights:
            assert pass_ops(cfg, dataclasses.replace(zero1, **other)) == pass_ops(cfg, zero1)
        fused = dataclasses.replace(setup, fused_loss=True)  # a loss kernel is named only with a fused loss
        moved = {f: dataclasses.replace(fused if f == "loss_kernel" else setup, **{f: v}) for f, v in (
            ("micro_batch", setup.micro_batch + 1), ("grad_accum", setup.grad_accum + 1),
            ("recompute", Recompute.full if setup.recompute is not Recompute.full else Recompute.none),
            ("flash", not setup.flash), ("seq_len", setup.seq_len // 2), ("dropout", not setup.dropout),
            ("fused_loss", not setup.fused_loss),
            ("loss_kernel", LossKernel.llmc),
            ("precision", MemoryPrecision.fp32 if setup.precision is not MemoryPrecision.fp32
             else MemoryPrecision.bf16_mixed),
            ("zero_stage", 1), ("offload_optimizer", True))}
        assert set(moved) == set(PASS_FIELDS)
        for f, s in moved.items():  # and each pass field does move them (none is listed for nothing)
            if f in ("zero_stage", "offload_optimizer"):  # only where mixed precision keeps fp32 weights
                assert (pass_ops(cfg, s) != ops) is setup.precision.mixed, f
                continue
            assert pass_ops(cfg, s) != (pass_ops(cfg, fused) if f == "loss_kernel" else ops), f


def _bisection(cfg, setup, gpu, headroom, upper):
    """The largest micro-batch that fits, by doubling and bisection alone (no prediction)."""
    return largest_that_fits(
        lambda b: fits(estimate_memory(cfg, dataclasses.replace(setup, micro_batch=b)), gpu, headroom).fits, upper)


@pytest.mark.parametrize("name", ["gpt2", "llama", "mixtral", "tp4-pp4-rank"])
def test_the_predicted_largest_micro_batch_is_the_bisections(name):
    # grad_accum 1 makes the peak the larger of two lines (activations or gradients), so the prediction from the
    # peaks at 1 and 2 can miss and must fall back; capacities from nothing fits to everything fits
    cfg = MODELS[name]
    seq = min(cfg.block_size, 1024)
    n_checked = 0
    for rc, acc, opt in itertools.product(Recompute, (1, 2), (Optimizer.adamw, Optimizer.adamw8bit)):
        setup = TrainingSetup(seq_len=seq, recompute=rc, grad_accum=acc, optimizer=opt)
        one = estimate_memory(cfg, setup).peak_bytes
        for factor, headroom, upper in itertools.product((0.5, 1.01, 1.3, 2.0, 7.7, 40.0), (0.0, 0.05), (1, 2, 3, 64)):
            gpu = dataclasses.replace(H100, memory_bytes=one * factor)
            want = _bisection(cfg, setup, gpu, headroom, upper)
            assert max_micro_batch(cfg, setup, gpu, headroom, upper) == want, (rc, acc, opt, factor, headroom, upper)
            n_checked += want > 2
    assert n_checked > 50  # the prediction was exercised, not only the small cases


def test_the_largest_micro_batch_of_a_real_card_is_the_bisections():
    for cfg, rc in itertools.product(PRESETS.values(), Recompute):
        setup = TrainingSetup(seq_len=1024, recompute=rc, grad_accum=2)
        for gpu in (RTX, H100):
            want = _bisection(cfg, setup, gpu, 0.05, 4096)
            assert max_micro_batch(cfg, setup, gpu, 0.05, 4096) == want
            assert want == 0 or math.isfinite(want)


def test_a_prediction_that_undershoots_is_not_taken(monkeypatch):
    # a peak that grows ever slower (allowed: the bisection needs only that it grows) puts the line through
    # b = 1, 2 below the true answer; the look at guess + 1 must catch it and the bisection answer instead
    from flopscalc.memory import fit

    class Peak:
        def __init__(self, b):
            self.peak_bytes = 100.0 * math.sqrt(b)

    monkeypatch.setattr(fit, "estimate_memory", lambda cfg, setup: Peak(setup.micro_batch))
    gpu = dataclasses.replace(H100, memory_bytes=1000.0)  # 100 sqrt(b) <= 1000 up to b = 100; the line says 22
    setup = TrainingSetup(seq_len=1024)
    assert max_micro_batch(PRESETS["gpt2"], setup, gpu, 0.0, 4096) == 100
    assert max_micro_batch(PRESETS["gpt2"], setup, gpu, 0.0, 50) == 50


def test_kept_model_states_and_activations_read_only_their_fields():
    # memory keeps model states per (model, STATE_FIELDS) and activations per (model, ACTIVATION_FIELDS); each must
    # be what the setup as given produces, whatever its other fields
    from flopscalc.memory.activations import ACTIVATION_FIELDS, _activation_bytes, activation_bytes
    from flopscalc.memory.settings import Device
    from flopscalc.memory.states import STATE_FIELDS, _states, model_states

    values = {"micro_batch": (1, 3), "grad_accum": (1, 4), "recompute": tuple(Recompute), "flash": (True, False),
              "precision": tuple(MemoryPrecision), "optimizer": (Optimizer.adamw, Optimizer.adamw8bit, Optimizer.sgd),
              "zero_stage": (0, 2, 3), "n_gpus": (1, 8), "offload_optimizer": (False, True),
              "device": tuple(Device), "dropout": (False, True), "fused_loss": (False, True),
              "low_precision_norm": (False, True)}
    for cfg in (MODELS["gpt2"], MODELS["mixtral"], MODELS["olmo"]):
        for base in (TrainingSetup(seq_len=512), TrainingSetup(seq_len=512, recompute=Recompute.full)):
            for name, options in values.items():
                for value in options:
                    setup = dataclasses.replace(base, **{name: value})
                    assert model_states(cfg, setup) == _states(cfg, setup), name
                    assert activation_bytes(cfg, setup, 512) == _activation_bytes(cfg, setup, 512), name
    # each listed field moves what is kept under it (none is listed for nothing)
    for name in STATE_FIELDS:
        setup = dataclasses.replace(TrainingSetup(seq_len=512, n_gpus=4, zero_stage=1), **{name: {
            "n_gpus": 2, "precision": MemoryPrecision.fp32, "zero_stage": 3, "optimizer": Optimizer.sgd,
            "offload_optimizer": True}[name]})
        assert _states(MODELS["gpt2"], setup) != _states(MODELS["gpt2"], TrainingSetup(seq_len=512, n_gpus=4,
                                                                                        zero_stage=1)), name
    for name in ACTIVATION_FIELDS:
        plain = TrainingSetup(seq_len=512, flash=name != "device")  # the device moves the eager softmax's bytes
        if name in ("zero_stage", "offload_optimizer"):  # 16-bit weights: only the checkpointed block inputs move
            plain = TrainingSetup(seq_len=512, recompute=Recompute.full)
        setup = dataclasses.replace(plain, **{name: {
            "micro_batch": 2, "precision": MemoryPrecision.fp32, "recompute": Recompute.full, "flash": False,
            "device": Device.cpu, "dropout": True, "fused_loss": True, "low_precision_norm": True, "zero_stage": 2,
            "offload_optimizer": True}[name]})
        assert _activation_bytes(MODELS["gpt2"], setup, 512) != _activation_bytes(MODELS["gpt2"], plain, 512), name


def test_the_recompute_floor_is_below_what_recomputation_adds():
    # estimate_step with recomputation minus without, on one GPU (nothing hidden), against the floor the setup
    # search rules setups out with; and the floor is no empty bound: at least a third of the real addition
    from flopscalc.perf.step import recompute_floor_s

    ratios = []
    for cfg, gpu, rc, flash, prec in itertools.product(
            MODELS.values(), (H100, RTX, get_gpu("a100")), (Recompute.selective, Recompute.full), (True, False),
            (MemoryPrecision.bf16_mixed, MemoryPrecision.fp32)):
        for micro, acc, opt in ((1, 8, {}), (4, 2, {"offload_optimizer": True}), (2, 1, {"optimizer": Optimizer.adamw8bit})):
            plain = TrainingSetup(micro_batch=micro, grad_accum=acc, seq_len=min(cfg.block_size, 2048), flash=flash,
                                  precision=prec, **opt)
            setup = dataclasses.replace(plain, recompute=rc)
            added = estimate_step(cfg, setup, gpu).step_s - estimate_step(cfg, plain, gpu).step_s
            floor = recompute_floor_s(cfg, setup, gpu)
            assert 0 < floor <= added, (cfg.name, gpu.key, rc, flash, prec, micro)
            ratios.append(floor / added)
    assert min(r for r in ratios) > 0.05 and sorted(ratios)[len(ratios) // 2] > 1 / 3


def test_the_setup_search_chooses_the_same_without_the_recompute_floor(monkeypatch):
    # the floor only drops setups that would never be timed: the search without it chooses the same setups. The
    # cases include ones where recomputation wins after a plain setup was timed (the only ones a floor can touch:
    # five times the floor drops the winner there, so a floor above the truth would fail this test)
    from flopscalc.hardware import Precision
    from flopscalc.model.shaping import config_for_params
    from flopscalc.planner import setups
    from flopscalc.planner.speed import time_model_for

    cases = [(gpu, config_for_params(n).with_(block_size=4096), cap, seq)
             for gpu in (RTX, H100, get_gpu("4090")) for n in (1.5e8, 2.197e8, 9e8, 2.33e9, 3.94e9)
             for cap in (None, 4e9, 16e9, 24e9) for seq in (1024, 4096)]
    cases += [(RTX, cfg, None, 1024) for cfg in PRESETS.values()]
    cases += [(H100, LLAMA.with_(n_layer=8), 30e9, 4096), (H100, ALL_PRESETS["mixtral-8x7b"].with_(n_layer=2), None, 2048)]

    def search():
        return [setups.choose_setup.__wrapped__(cfg, gpu, 1, seq, Precision.bf16, cap, None, None,
                                                 time_model_for(gpu, Precision.bf16, None, None))
                for gpu, cfg, cap, seq in cases]

    real = setups._recompute_floor
    with_floor = search()
    monkeypatch.setattr(setups, "_recompute_floor", lambda cfg, setup, gpu: 0.0)
    assert search() == with_floor
    assert sum(c is not None and c.setup.recompute is not Recompute.none for c in with_floor) >= 3  # recompute won
    monkeypatch.setattr(setups, "_recompute_floor", lambda cfg, setup, gpu: 5 * real(cfg, setup, gpu))
    assert search() != with_floor  # the cases can tell a floor that is too high


def test_full_recomputation_needs_the_least_memory_of_the_recomputations():
    # the setup search caps every memory search at the largest micro-batch full recomputation fits (and gives up
    # when that is none): it needs no more memory than selective or none with the same other settings, at every
    # micro-batch, for every block kind, precision and sharding the planner searches
    from flopscalc.planner.options import searched_setups

    for cfg, prec, n_gpus in itertools.product(MODELS.values(), (MemoryPrecision.bf16_mixed, MemoryPrecision.fp32),
                                               (1, 8)):
        for flags in searched_setups(n_gpus):
            if flags["recompute"] is not Recompute.full:
                continue
            for micro in (1, 3, 16):
                full = TrainingSetup(micro_batch=micro, seq_len=min(cfg.block_size, 2048), precision=prec,
                                     n_gpus=n_gpus, grad_accum=2, **flags)
                peak = estimate_memory(cfg, full).peak_bytes
                for rc in (Recompute.selective, Recompute.none):
                    other = estimate_memory(cfg, dataclasses.replace(full, recompute=rc)).peak_bytes
                    assert peak < other, (cfg.name, prec, flags, micro, rc)
