"""The planner prices every option with the per-operation step-time model (issue 11, item 3): one time model per
plan, `--mfu` as the constant-efficiency override, a fitted calibration profile as the model with its rates."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flopscalc.calibration import CalibrationPoint, CalibrationProfile, DeviceFactors
from flopscalc.cli import run
from flopscalc.flops import Recompute, training_flops_per_token
from flopscalc.hardware import Precision, get_gpu
from flopscalc.memory import TrainingSetup, estimate_memory
from flopscalc.model import PRESETS, ModelConfig, count_params
from flopscalc.perf.op_kinds import AttentionKernel, OptimizerKernel
from flopscalc.perf.step import estimate_step
from flopscalc.perf.validation import check_row, published_rows, row_config
from flopscalc.planner import plan
from flopscalc.planner.options import (
    MEMORY_PRECISION,
    PLAN_MEMORY_HEADROOM,
    TIE_REL,
    _per_gpu_batch,
    choose_setup,
    searched_setups,
)
from flopscalc.planner.speed import (
    HELD_OUT_MEDIAN_ERROR,
    HELD_OUT_WORST_ERROR,
    PER_OPERATION,
    TimeModel,
    price_setup,
    step_throughput,
)

YEAR_S = 365 * 86400
MAIN_JOB = ["plan", "--gpu", "4070ti", "--days", "365"]
PEAK_4070TI_BF16 = 80.2e12  # NVIDIA Ada whitepaper v2.02, Table 2: BF16 tensor, FP32 accumulate, dense
# docs/performance_model.md "Held-out result": the per-operation model's worst error on the published runs (what the
# plan prints; test_the_error_the_plan_prints_is_the_validations below keeps the two equal).
DOCUMENTED_WORST_ERROR = HELD_OUT_WORST_ERROR


def _json(capsys, args) -> dict:
    assert run([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_main_job_recommended_run_is_what_flopscalc_step_predicts(capsys):
    d = _json(capsys, MAIN_JOB)
    assert d["time_model"] == PER_OPERATION and "per-operation" in d["mfu_source"]
    r = d["recommended"]
    m, s = r["model"], r["setup"]
    step = _json(capsys, [
        "step", "--gpu", "4070ti", "--n-layer", str(m["n_layer"]), "--n-head", str(m["n_head"]),
        "--n-embd", str(m["n_embd"]), "--seq", str(s["seq_len"]), "--micro-batch", str(s["micro_batch"]),
        "--grad-accum", str(s["grad_accum"]), "--precision", s["precision"], "--optimizer", s["optimizer"],
        "--recompute", s["recompute"], "--zero", str(s["zero_stage"]), "--n-gpus", str(s["n_gpus"]),
        *(["--offload"] if s["offload_optimizer"] else [])])
    # the same step: its time and tokens/s exactly
    assert r["speed"]["step_s"] == step["step_s"]
    assert r["speed"]["tokens_per_s"] == step["tokens_per_s"]
    # MFU: the same time, each command's own FLOP convention. The plan counts attention over all T keys per query,
    # as its law and budget do (FlopCounterMode's count); `step` over the causal ones, (T + 1) / 2 on average
    # (llm.c's convention). They differ by the masked (T - 1) / 2 keys x 2 matmuls x 2 FLOPs x 3 passes x L x d.
    plan_f, step_f = r["speed"]["model_flops_per_token"], step["model_flops_per_token"]
    assert plan_f - step_f == pytest.approx(6 * m["n_layer"] * m["n_embd"] * (s["seq_len"] - 1), rel=1e-12)
    assert r["speed"]["mfu"] == pytest.approx(step["mfu"] * plan_f / step_f, rel=1e-12)
    # and the budget header's MFU is that run's
    assert d["mfu"] == pytest.approx(r["speed"]["mfu"], rel=1e-12)
    assert d["hardware_efficiency"] is None  # no efficiency was stated


def test_every_option_is_priced_by_the_step_model():
    p = plan(get_gpu("4070ti"), YEAR_S, explain=False)
    gpu = get_gpu("4070ti")
    fitting = [o for o in p.options if o.fits]
    assert len(fitting) >= 5
    for o in fitting:
        est = estimate_step(o.model, o.chosen.setup, gpu)
        assert o.speed.step_s == est.step_s and o.speed.tokens_per_s == est.tokens_per_s, o.model
    # a prediction per option, not one constant
    assert len({round(o.speed.mfu, 4) for o in fitting}) >= 3


def test_mfu_override_keeps_the_constant_efficiency_model():
    # --mfu 0.4: step = hardware FLOPs / (peak x 0.4) + optimizer offload, exactly (one GPU: no communication)
    gpu = get_gpu("4070ti")
    p = plan(gpu, YEAR_S, mfu=0.4, explain=False)
    assert p.time_model == "stated" and p.stated_efficiency == 0.4
    for o in (o for o in p.options if o.fits):
        s = o.chosen.setup
        hw = training_flops_per_token(o.model, s.seq_len, recompute=s.recompute).hardware_flops_per_token
        want_s = o.chosen.tokens_per_step * hw / (PEAK_4070TI_BF16 * 0.4) + o.speed.offload.total_s
        assert o.speed.step_s == pytest.approx(want_s, rel=1e-12), o.model
        # HFU's hardware FLOPs run at 0.4 while computing; flash's backward recomputation comes on top of them
        hfu_hw = o.speed.hfu * hw / (hw + o.speed.flash_recompute_flops_per_token)
        assert hfu_hw == pytest.approx(0.4 * o.speed.compute_s / o.speed.step_s, rel=1e-12)
        assert o.speed.flash_recompute_flops_per_token > 0


def test_mfu_and_the_step_model_disagree_for_gpt2_small(capsys):
    base = ["plan", "--gpu", "4070ti", "--model", "gpt2", "--tokens", "1e9"]
    default = _json(capsys, base)["recommended"]
    stated = _json(capsys, [*base, "--mfu", "0.4"])["recommended"]
    # the constant: MFU 0.4 exactly (no recomputation, no offload chosen at 0.4 for this model)
    assert stated["speed"]["mfu"] == pytest.approx(0.4 * stated["speed"]["compute_s"] / stated["speed"]["step_s"])
    # the step model's own MFU for the setup it picked, not the constant
    s = default["setup"]
    est = estimate_step(PRESETS["gpt2"], TrainingSetup(
        micro_batch=s["micro_batch"], grad_accum=s["grad_accum"], seq_len=1024, optimizer=s["optimizer"],
        recompute=s["recompute"], offload_optimizer=s["offload_optimizer"]), get_gpu("4070ti"))
    assert default["speed"]["tokens_per_s"] == est.tokens_per_s
    assert abs(default["speed"]["tokens_per_s"] / stated["speed"]["tokens_per_s"] - 1) > 0.01


def _mpt7b_row():
    # MosaicML llm-foundry's MPT-7B on 8 x A100-80GB at sequence 2048, FSDP (ZeRO-3), no recomputation, PyTorch's
    # cross-entropy: the settings the planner searches (flash, bf16 autocast, AdamW), so it can price it exactly
    return next(r for r in published_rows() if r["run"] == "mpt-7b-a100-s2048-mb6")


def test_the_planner_prices_a_published_run_as_the_step_model_with_its_documented_error():
    row = _mpt7b_row()
    cfg, setup, options = row_config(row)
    assert setup.fused_loss and options.metric_ce_passes == 2 and setup.flash and setup.recompute is Recompute.none
    # a plan prices PyTorch's cross-entropy and no train metrics, as users run; the row's own loss kernel is priced
    # by check_row
    setup = dataclasses.replace(setup, fused_loss=False, low_precision_norm=False)
    options = dataclasses.replace(options, metric_ce_passes=0)
    gpu = get_gpu(row["gpu"])
    speed = step_throughput(cfg, setup, setup.micro_batch * setup.seq_len * setup.grad_accum * setup.n_gpus, gpu,
                            Precision.bf16, TimeModel(PER_OPERATION))
    # MosaicML ran the Triton attention kernel and Composer's eager AdamW (check_row prices them); a plan prices
    # FlashAttention-2 and a fused AdamW, as users run
    flash2 = estimate_step(cfg, setup, gpu, dataclasses.replace(options, attention_kernel=AttentionKernel.flash2,
                                                                optimizer_kernel=OptimizerKernel.fused))
    assert speed.tokens_per_s / setup.n_gpus == pytest.approx(flash2.tokens_per_s / setup.n_gpus, rel=1e-12)
    measured = float(row["measured_tokens_per_s_per_gpu"])
    error = speed.tokens_per_s / setup.n_gpus / measured - 1
    assert abs(error) <= DOCUMENTED_WORST_ERROR
    # what the planner's old constant 0.4 made of the same run, for comparison: further off (docs, constant column)
    const = price_setup(cfg, setup, speed.tokens_per_step, gpu, Precision.bf16, TimeModel("stated", 0.4))
    assert abs(const.tokens_per_s / setup.n_gpus / measured - 1) > abs(error)


def test_a_fixed_model_plan_on_eight_gpus_uses_the_step_model_for_its_own_setup():
    row = _mpt7b_row()
    cfg, _, _ = row_config(row)
    gpu = get_gpu(row["gpu"])
    p = plan(gpu, model=cfg, n_tokens=1e10, n_gpus=8, seq_len=2048, explain=False)
    rec = p.recommended
    est = estimate_step(cfg, rec.chosen.setup, gpu)
    assert rec.speed.step_s == est.step_s and rec.speed.comm == est.comm
    assert p.time_model == PER_OPERATION


def _factors(gemm_fraction: float) -> DeviceFactors:
    gpu = get_gpu("4070ti")
    peak, bw = gpu.peak_flop_per_s(Precision.bf16), gpu.memory_bandwidth_bytes_per_s
    return DeviceFactors(gemm_flop_per_s=gemm_fraction * peak, memory_bytes_per_s=0.8 * bw, kernel_min_s=5e-6,
                         attention_fraction=0.6, precision="bf16", n_points=6, rms_rel_error=0.05,
                         max_rel_error=0.08, datasheet_peak_flop_per_s=peak, datasheet_bandwidth_bytes_per_s=bw)


def _profile_on_4070ti(factors: DeviceFactors | None, mfu: float = 0.3) -> CalibrationProfile:
    cfg = PRESETS["gpt2"]
    point = CalibrationPoint(
        model=cfg, n_params=count_params(cfg).total, micro_batch=4, seq_len=1024, grad_accum=1, n_devices=1,
        precision="bf16", compiled=False, step_time_s=1.0, tokens_per_s=4096, model_flops_per_token=1e9,
        achieved_flop_per_s=4e12, peak_flop_per_s=4e12 / mfu, mfu=mfu)
    return CalibrationProfile("NVIDIA GeForce RTX 4070 Ti", "rtx-4070-ti", "2.13.0", "2026-11-28", (point,),
                              device_factors=factors)


@pytest.fixture(scope="module")
def fitted_profiles():
    return {f: _profile_on_4070ti(_factors(f)) for f in (0.3, 0.6)}


def test_a_profile_without_factors_keeps_its_measured_mfu():
    p = plan(get_gpu("4070ti"), YEAR_S, calibration=_profile_on_4070ti(None), model=PRESETS["gpt2"], explain=False)
    assert p.time_model == "profile MFU" and p.mfu_source.startswith("measured")
    assert p.recommended.speed.hardware_efficiency == pytest.approx(0.3, rel=1e-12)


def test_a_fitted_profile_prices_the_plan_with_its_rates(fitted_profiles):
    gpu = get_gpu("4070ti")
    slow, fast = (plan(gpu, YEAR_S, calibration=fitted_profiles[f], model=PRESETS["gpt2-medium"], explain=False)
                  for f in (0.3, 0.6))
    for p, f in ((slow, 0.3), (fast, 0.6)):
        assert p.time_model == "calibrated" and "fitted by 'flopscalc calibrate'" in p.mfu_source
        from flopscalc.perf.calibrate import calibrated_step

        est = calibrated_step(p.recommended.model, p.recommended.chosen.setup, fitted_profiles[f], gpu)
        assert p.recommended.speed.step_s == est.step_s
    assert fast.recommended.speed.tokens_per_s > 1.3 * slow.recommended.speed.tokens_per_s
    default = plan(gpu, YEAR_S, model=PRESETS["gpt2-medium"], explain=False)
    assert default.time_model == PER_OPERATION and default.recommended.speed.mfu != fast.recommended.speed.mfu


# ---- the search under the step model: no setup that fits is faster than the one chosen (brute force)

# How much faster brute force may find a smaller micro-batch under the per-operation model: split-K quantization
# (planner.options.choose_setup's docstring). Observed over 40 GPT-2 shapes of 2-24 layers on a 4070 Ti and an A100:
# at most 5.0% (2 layers x 256), 4.1% at 12 layers, 2.6% at 24, 0.45% at 6; random Hypothesis runs then found
# 7.2% (8 layers x 1152, seq 512, 4 x A100 at 6 GiB) and 8.9%. The search keeps each setup's largest micro-batch
# (its contract, checked exactly below); this bound is the known cost of that, with margin, on a fixed
# (derandomized) set of examples so that CI does not hunt for a new worst case on every run.
SPLIT_K_GAP = 0.10

SMALL_SHAPES = st.builds(lambda layers, heads: PRESETS["gpt2"].with_(n_layer=layers, n_head=heads,
                                                                       n_embd=64 * heads, name=""),
                         st.integers(2, 16), st.integers(4, 24))
PER_OP_CASES = {"cfg": SMALL_SHAPES, "gpu_key": st.sampled_from(["4070ti", "a100-80gb", "rtx-3090"]),
                "n_gpus": st.sampled_from([1, 2, 4]), "seq": st.sampled_from([512, 1024]),
                "capacity_gib": st.sampled_from([None, 6.0])}


def _brute_force(cfg, gpu, n_gpus, seq, cap, tm, largest_only: bool) -> float:
    """The least step time over every flag set, at every micro-batch that divides the batch and fits (or, with
    ``largest_only``, at the largest such micro-batch of each flag set, which is what the search times)."""
    target = cap or gpu.memory_bytes
    want = _per_gpu_batch(cfg, seq, n_gpus, None)
    tokens = want * seq * n_gpus
    best = math.inf
    base = TrainingSetup(seq_len=seq, precision=MEMORY_PRECISION[Precision.bf16], n_gpus=n_gpus,
                         gpu_architecture=gpu.architecture)  # as choose_setup builds it (the workspace size)
    fitting_of = {}
    for flags in searched_setups(n_gpus):
        fitting = []
        for micro in (d for d in range(1, want + 1) if want % d == 0):
            s = replace(base, micro_batch=micro, grad_accum=want // micro, **flags)
            memory = estimate_memory(cfg, replace(s, grad_accum=2))  # as the search counts it: the safe side
            if memory.peak_bytes > target * (1 - PLAN_MEMORY_HEADROOM):
                break  # memory grows with the micro-batch
            fitting.append(s)
        fitting_of[tuple(sorted(flags.items(), key=str))] = fitting
    for flags in searched_setups(n_gpus):
        fitting = fitting_of[tuple(sorted(flags.items(), key=str))]
        if flags["offload_optimizer"] and fitting:  # setups.choose_setup: offload only where it buys memory
            on_gpu = fitting_of[tuple(sorted({**flags, "offload_optimizer": False}.items(), key=str))]
            if on_gpu and on_gpu[-1].micro_batch >= fitting[-1].micro_batch:
                continue
        for s in fitting[-1:] if largest_only else fitting:
            best = min(best, price_setup(cfg, s, tokens, gpu, Precision.bf16, tm).step_s)
    return best


def _chosen_and_brute_force(cfg, gpu_key, n_gpus, seq, capacity_gib, *, largest_only: bool) -> tuple[float, float]:
    """(step time of the setup the search chose, the fastest found by brute force); both inf when nothing fits."""
    gpu = get_gpu(gpu_key)
    cap = None if capacity_gib is None else capacity_gib * 2**30
    tm = TimeModel(PER_OPERATION)
    chosen = choose_setup(cfg, gpu, n_gpus, seq, Precision.bf16, cap, None, None, tm)
    best = _brute_force(cfg, gpu, n_gpus, seq, cap, tm, largest_only=largest_only)
    if chosen is None:
        assert best == math.inf
        return math.inf, math.inf
    tokens = _per_gpu_batch(cfg, seq, n_gpus, None) * seq * n_gpus
    return price_setup(cfg, chosen.setup, tokens, gpu, Precision.bf16, tm).step_s, best


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**PER_OP_CASES)
def test_no_setup_at_its_largest_micro_batch_is_faster_than_the_chosen_one(cfg: ModelConfig, gpu_key, n_gpus, seq,
                                                                           capacity_gib):
    # the search's contract under the per-operation model, exactly (to TIE_REL): among the flag sets, each at the
    # largest micro-batch that fits and divides the batch, none is faster than the one chosen
    got, best = _chosen_and_brute_force(cfg, gpu_key, n_gpus, seq, capacity_gib, largest_only=True)
    assert got <= best * (1 + TIE_REL)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(**PER_OP_CASES)
def test_no_fitting_setup_is_faster_than_the_chosen_one(cfg: ModelConfig, gpu_key, n_gpus, seq, capacity_gib):
    # every micro-batch, not only the largest: the split-K gap above is what keeping the largest can cost
    got, best = _chosen_and_brute_force(cfg, gpu_key, n_gpus, seq, capacity_gib, largest_only=False)
    assert got <= best * (1 + SPLIT_K_GAP) * (1 + TIE_REL)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=SMALL_SHAPES, n_gpus=st.sampled_from([1, 4]), capacity_gib=st.sampled_from([None, 6.0]))
def test_at_a_constant_efficiency_no_fitting_setup_is_faster_exactly(cfg: ModelConfig, n_gpus, capacity_gib):
    # with --mfu the largest micro-batch is never slower, so the search is exact (to TIE_REL)
    gpu, seq = get_gpu("4070ti"), 1024
    cap = None if capacity_gib is None else capacity_gib * 2**30
    tm = TimeModel("stated", 0.4)
    chosen = choose_setup(cfg, gpu, n_gpus, seq, Precision.bf16, cap, 0.4, None, tm)
    want = _per_gpu_batch(cfg, seq, n_gpus, None)
    tokens = want * seq * n_gpus
    best = math.inf
    base = TrainingSetup(seq_len=seq, precision=MEMORY_PRECISION[Precision.bf16], n_gpus=n_gpus)
    for flags in searched_setups(n_gpus):
        for micro in (d for d in range(1, want + 1) if want % d == 0):
            s = replace(base, micro_batch=micro, grad_accum=want // micro, **flags)
            if estimate_memory(cfg, replace(s, grad_accum=2)).peak_bytes > (cap or gpu.memory_bytes) * (
                    1 - PLAN_MEMORY_HEADROOM):
                break
            best = min(best, price_setup(cfg, s, tokens, gpu, Precision.bf16, tm).step_s)
    if chosen is None:
        assert best == math.inf
        return
    got = price_setup(cfg, chosen.setup, tokens, gpu, Precision.bf16, tm).step_s
    assert got <= best * (1 + TIE_REL) * (1 + 1e-12)


def test_a_tpu_plan_falls_back_to_the_default_efficiency_and_says_so(capsys):
    """The per-operation model has no sourced TPU kernel figures; a TPU plan is still answered, at the stated default
    efficiency, and names that time model instead of passing it off as a prediction."""
    from flopscalc.cli import run

    assert run(["plan", "--gpu", "tpu-v5e", "--days", "30", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["time_model"] == "default constant"
    assert d["hardware_efficiency"] == pytest.approx(0.4)


def test_the_error_the_plan_prints_is_the_validations():
    # the plan's note quotes the per-operation model's held-out error; it must be what the validation measures today
    from flopscalc.perf.validation import in_fit_subset, published_rows, summary

    s = summary([c for c in (check_row(r) for r in published_rows() if not in_fit_subset(r["run"])) if c.setup_stated])
    assert HELD_OUT_MEDIAN_ERROR == pytest.approx(s["median_abs_error"], abs=0.0005)
    assert HELD_OUT_WORST_ERROR == pytest.approx(s["max_abs_error"], abs=0.0005)


def test_a_consumer_gpu_plan_quotes_the_consumer_runs_error(capsys):
    # the 138 published runs are A100/H100 clusters; on a GeForce card the plan quotes the held-out consumer rows
    # (nanoGPT on an RTX 3080 and 4090), and the quote is what the validation measures today
    from flopscalc.perf.validation import summary, validate_consumer
    from flopscalc.planner.speed import (
        CONSUMER_HELD_OUT_MEDIAN_ERROR,
        CONSUMER_HELD_OUT_ROWS,
        CONSUMER_HELD_OUT_WORST_ERROR,
    )

    stated = [c for c in validate_consumer() if c.setup_stated]
    s = summary(stated)
    assert CONSUMER_HELD_OUT_ROWS == len(stated)
    assert CONSUMER_HELD_OUT_MEDIAN_ERROR == pytest.approx(s["median_abs_error"], abs=0.0005)
    assert CONSUMER_HELD_OUT_WORST_ERROR == pytest.approx(s["max_abs_error"], abs=0.0005)
    consumer = plan(get_gpu("4070ti"), YEAR_S, explain=False)
    datacenter = plan(get_gpu("h100"), 30 * 86400.0, explain=False)
    assert f"median {CONSUMER_HELD_OUT_MEDIAN_ERROR:.1%}" in consumer.mfu_source
    assert any(f"median {CONSUMER_HELD_OUT_MEDIAN_ERROR:.1%}" in w for w in consumer.warnings)
    assert f"median {HELD_OUT_MEDIAN_ERROR:.1%}" in datacenter.mfu_source


@pytest.mark.parametrize("gpu_key,n_gpus,preset", [("4070ti", 8, "gpt2-xl"), ("a100", 64, "gpt2-xl"),
                                                   ("h100", 512, "gpt2")])
def test_a_stated_mfu_hides_fsdp_gathers_behind_every_pass_as_the_per_operation_model_does(gpu_key, n_gpus, preset):
    # FSDP prefetches each unit's all-gather during every forward and backward pass of every micro-batch (Zhao et
    # al. 2023 sec. 3.3.2-3.3.3); the per-operation model hides ZeRO-3 traffic behind all of them, the --mfu model
    # hid it behind the backward passes only (a100 x 64, gpt2-xl, micro-batch 1 x 4: 117 ms exposed against 11)
    from flopscalc.perf.parallel import DEFAULT_OVERLAP, data_parallel_comm
    from flopscalc.planner.options import throughput

    cfg, gpu = PRESETS[preset], get_gpu(gpu_key)
    setup = TrainingSetup(micro_batch=1, seq_len=1024, n_gpus=n_gpus, zero_stage=3, grad_accum=4)
    t = throughput(cfg, setup, 1024 * n_gpus * 4, gpu, Precision.bf16, 0.4)
    last = data_parallel_comm(count_params(cfg).total, n_gpus, 3, gpu=gpu, backward_s=1e9, grad_bytes_per_param=4,
                              grad_accum=4).exposed_s  # what nothing hides: the last reduce-scatter bucket
    assert t.comm.exposed_s == pytest.approx(t.comm.comm_s - min(t.comm.comm_s - last, DEFAULT_OVERLAP * t.compute_s),
                                             rel=1e-12)
