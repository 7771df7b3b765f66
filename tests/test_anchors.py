"""One independent anchor for each formula of the step-time model that a one-line bug slipped past (issue 17).

Each test checks a public result (the planner's `Plan`, `planner.options.throughput`) against a figure from
outside the code under test: a paper's statement, PyTorch's FlopCounterMode, or a limit case. The mutants each
one kills are listed in docs/testing.md.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from flopscalc.flops import Recompute
from flopscalc.hardware import Precision, builtin_database
from flopscalc.memory import MemoryPrecision, TrainingSetup
from flopscalc.model import PRESETS, count_params, params_outside_blocks
from flopscalc.planner import plan
from flopscalc.planner.options import throughput
from tests.conftest import measure_flops

# Element sizes: IEEE 754 binary32 and bfloat16 (Kalamkar et al. 2019, "A Study of BFLOAT16 for Deep Learning")
FP32_BYTES, BF16_BYTES = 4, 2


def _ring(n: int) -> float:
    """Share of a buffer each process sends per ring phase: (n - 1) / n (Patarasuk & Yuan 2009; nccl-tests
    doc/PERFORMANCE.md, busbw = algbw x 2 (n-1)/n for all-reduce)."""
    return (n - 1) / n


def zero_paper_volume_bytes(n_params: int, n_gpus: int, zero_stage: int, grad_accum: int,
                            fp32_reduce: bool = False, root_params: int = 0) -> float:
    """Bytes each GPU sends per step under bf16 mixed precision (Rajbhandari et al. 2020, sec. 7.2).

    Sec. 7.2.1: plain data parallelism all-reduces the gradients, 2 Psi elements per step; PyTorch AMP keeps them
    fp32 (torch.amp docs: parameters and their gradients stay fp32), so 4 bytes each. ZeRO stages 1-2
    reduce-scatter 16-bit gradients (Psi) and all-gather 16-bit parameters (Psi): the same 2 Psi elements,
    2 bytes each. Sec. 7.2.2: stage 3 adds a parameter all-gather for the forward and another for the backward,
    3 Psi per step; with gradient accumulation, 2 Psi more for each further micro-batch. Stages 2 and 3 keep the
    gradients sharded, so they reduce-scatter after every micro-batch (DeepSpeed PR #338: "Zero stage 2
    communicates during non gradient accumulation boundaries as well"; FSDP without ``no_sync``): Psi more per
    further micro-batch. ``fp32_reduce``: the reduce-scatter's Psi elements in fp32 (FSDP2's
    ``MixedPrecisionPolicy(reduce_dtype=torch.float32)``). ``root_params``: FSDP keeps its root unit (the
    parameters outside the blocks) gathered from forward to backward (PyTorch FSDP ``_post_forward_reshard``: "Do
    not free the root's parameters in the post-forward"), so those are gathered once per micro-batch, not twice.
    """
    r = _ring(n_gpus)
    if zero_stage == 0:
        return 2 * n_params * FP32_BYTES * r
    grads = n_params * (FP32_BYTES if fp32_reduce else BF16_BYTES) * r * (grad_accum if zero_stage >= 2 else 1)
    if zero_stage in (1, 2):
        return grads + n_params * BF16_BYTES * r
    return grads + grad_accum * (2 * n_params - root_params) * BF16_BYTES * r


# Several GPTs on several cards: the search picks whatever setup is fastest; the anchor holds for any of them.
ZERO_CASES = [("4070ti", 8, "gpt2-xl"), ("4070ti", 4, "gpt2-large"), ("4070ti", 2, "gpt2-xl"),
              ("h100", 8, "gpt2-xl"), ("a100", 2, "gpt2-xl")]


# Both time models send the same bytes: the per-operation model (the default) and a stated MFU (`--mfu`).
@pytest.mark.parametrize("mfu", [None, 0.4], ids=["per-operation", "mfu-0.4"])
def test_data_parallel_traffic_is_the_zero_papers_volume(mfu):
    db = builtin_database()
    stages = set()
    for gpu, n_gpus, model in ZERO_CASES:
        p = plan(db.get(gpu), n_gpus=n_gpus, model=PRESETS[model], n_tokens=1e10, explain=False, mfu=mfu)
        for o in p.options:
            if o.chosen is None:
                continue
            s = o.chosen.setup
            assert s.precision is MemoryPrecision.bf16_mixed  # the default plan precision, which the anchor is for
            stages.add(s.zero_stage)
            # FSDP (stage 3) reduces fp32 gradients, as 'flopscalc train' runs it; DeepSpeed's stages 1-2 16-bit
            want = zero_paper_volume_bytes(o.n_params, n_gpus, s.zero_stage, s.grad_accum, s.zero_stage == 3,
                                           params_outside_blocks(o.model))
            assert o.speed.comm.volume_bytes == pytest.approx(want, rel=1e-12), (gpu, n_gpus, model, s)
    assert stages & {1, 2, 3}, f"the cases no longer exercise ZeRO (stages {stages}); pick ones that do"


def test_zero_papers_volume_for_each_stage_of_one_setup():
    # The same model and GPUs, every ZeRO stage at grad-accum 1: the paper's 2 Psi, 2 Psi, 2 Psi, 3 Psi in bf16
    # (DDP's 2 Psi in fp32 under AMP)
    gpu, cfg = builtin_database().get("h100"), PRESETS["gpt2-xl"]
    n = count_params(cfg).total
    for stage in (0, 1, 2, 3):
        for fp32_reduce in (False, True):  # the paper's 16-bit gradients, and FSDP2's fp32 reduce-scatter
            setup = TrainingSetup(micro_batch=8, seq_len=1024, precision=MemoryPrecision.bf16_mixed, n_gpus=8,
                                  zero_stage=stage, reduce_fp32=fp32_reduce)
            got = throughput(cfg, setup, 8 * 8 * 1024, gpu, Precision.bf16, 0.4).comm.volume_bytes
            want = zero_paper_volume_bytes(n, 8, stage, 1, fp32_reduce and stage > 0, params_outside_blocks(cfg))
            assert got == pytest.approx(want, rel=1e-12), (stage, fp32_reduce)


def test_step_model_sends_the_zero_papers_volume_for_each_stage():
    # 'flopscalc step' (perf.estimate_step) and the planner share one gradient-bytes rule: at every ZeRO stage the
    # step model moves the paper's bytes too (it sent 4-byte gradients under ZeRO before)
    from flopscalc.perf import estimate_step

    gpu, cfg = builtin_database().get("h100"), PRESETS["gpt2-xl"]
    n = count_params(cfg).total
    for stage in (0, 1, 2, 3):
        for accum in (1, 4):
            setup = TrainingSetup(micro_batch=8, seq_len=1024, precision=MemoryPrecision.bf16_mixed, n_gpus=8,
                                  zero_stage=stage, grad_accum=accum)
            got = estimate_step(cfg, setup, gpu).comm.volume_bytes
            want = zero_paper_volume_bytes(n, 8, stage, accum, stage == 3,  # FSDP: fp32 reduce by default
                                           params_outside_blocks(cfg))
            assert got == pytest.approx(want, rel=1e-12), (stage, accum)
    # fp32 training all-reduces fp32 gradients under any stage (Rajbhandari et al. 2020 sec. 7.2.1, 2 Psi)
    fp32 = TrainingSetup(micro_batch=8, seq_len=1024, precision=MemoryPrecision.fp32, n_gpus=8, zero_stage=1)
    assert estimate_step(cfg, fp32, gpu).comm.volume_bytes == pytest.approx(2 * n * FP32_BYTES * _ring(8), rel=1e-12)


def _offload_plan():
    """gpt2-xl on one 12 GiB RTX 4070 Ti: its AdamW states (16 bytes/param, 25 GB) leave the GPU only by offload."""
    return plan(builtin_database().get("4070ti"), model=PRESETS["gpt2-xl"], n_tokens=1e10, explain=False)


def test_offload_adds_exactly_its_time_to_the_step():
    p = _offload_plan()
    o = p.recommended
    s = o.chosen.setup
    assert s.offload_optimizer, "the case no longer offloads; pick one that does"
    gpu, eff = builtin_database().get("4070ti"), o.speed.hardware_efficiency
    with_offload = throughput(o.model, s, o.chosen.tokens_per_step, gpu, Precision.bf16, eff)
    without = throughput(o.model, replace(s, offload_optimizer=False), o.chosen.tokens_per_step, gpu,
                         Precision.bf16, eff)
    assert without.offload.total_s == 0
    # Ren et al. 2021 Fig. 5: 16-bit gradients to the CPU and 16-bit parameters back, 2 x 2 bytes per parameter
    assert with_offload.offload.link_bytes == 2 * BF16_BYTES * o.n_params
    assert with_offload.offload.link_s > 0 and with_offload.offload.cpu_s > 0
    # nothing of it hides behind compute (module docstring of flopscalc.perf.offload): the steps differ by all of it
    assert with_offload.step_s - without.step_s == pytest.approx(with_offload.offload.total_s, rel=1e-12)
    assert with_offload.compute_s == without.compute_s


def test_plan_time_counts_the_offload():
    # the plan's wall clock: tokens / (tokens per step / step time) / duty cycle, the step including offload
    p = _offload_plan()
    o = p.recommended
    sp = o.speed
    assert sp.offload.total_s > 0
    step_s = sp.compute_s + sp.comm.exposed_s + sp.offload.total_s
    assert sp.step_s == pytest.approx(step_s, rel=1e-12)
    assert o.train_time_s == pytest.approx(o.n_tokens / sp.tokens_per_step * step_s / p.budget.utilization,
                                           rel=1e-12)


RECOMPUTE_CASES = [("gpt2", 4, 1024), ("gpt2-medium", 2, 512)]


@pytest.mark.parametrize("model,micro,seq", RECOMPUTE_CASES)
def test_recompute_cost_in_the_step_is_what_flop_counter_counts(torch, model, micro, seq):
    cfg, gpu = PRESETS[model], builtin_database().get("4070ti")
    tokens = micro * seq
    measured = {rc: measure_flops(cfg, micro, seq, recompute=rc.value)["total"] / tokens for rc in Recompute}
    forward = measure_flops(cfg, micro, seq, backward=False)["total"] / tokens
    lm_head_forward = 2 * cfg.n_embd * cfg.vocab_size  # one (d x V) matmul per token
    # limit case, and Narayanan et al. 2021 sec. 5.1: full recompute runs every layer's forward once more (not
    # the LM head); the counter says so too
    assert measured[Recompute.full] - measured[Recompute.none] == pytest.approx(forward - lm_head_forward,
                                                                                rel=1e-12)
    speeds = {}
    for rc in Recompute:
        setup = TrainingSetup(micro_batch=micro, seq_len=seq, precision=MemoryPrecision.bf16_mixed, recompute=rc)
        speeds[rc] = sp = throughput(cfg, setup, 64 * tokens, gpu, Precision.bf16, 0.4)
        assert sp.model_flops_per_token == pytest.approx(measured[Recompute.none], rel=1e-9)
        assert sp.hardware_flops_per_token == pytest.approx(measured[rc], rel=1e-9)
    def hfu_at_rate(sp):  # HFU without flash's backward recomputation of the scores, which it also counts
        return sp.hfu * sp.hardware_flops_per_token / (sp.hardware_flops_per_token + sp.flash_recompute_flops_per_token)

    none = speeds[Recompute.none]
    assert none.hardware_flops_per_token == none.model_flops_per_token  # nothing redone
    assert none.hfu > none.mfu and hfu_at_rate(none) == pytest.approx(none.mfu, rel=1e-12)  # but flash's scores
    for rc in (Recompute.selective, Recompute.full):
        ratio = measured[rc] / measured[Recompute.none]
        assert speeds[rc].compute_s == pytest.approx(none.compute_s * ratio, rel=1e-9)  # same rate, more FLOPs
        assert speeds[rc].mfu == pytest.approx(none.mfu / ratio, rel=1e-9)  # MFU counts model FLOPs only
        assert hfu_at_rate(speeds[rc]) == pytest.approx(hfu_at_rate(none), rel=1e-9)  # HFU counts what the GPU ran
