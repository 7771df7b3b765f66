"""The planner's recommendation: memory it claims, bookkeeping, budgets, data limits, bad constraints."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopscalc.calibration import CalibrationPoint, CalibrationProfile, save_profile
from flopscalc.cli import run
from flopscalc.errors import DomainError, UsageError
from flopscalc.hardware import get_gpu
from flopscalc.memory import estimate_memory
from flopscalc.model import PRESETS, count_params
from flopscalc.perf import estimate_step
from flopscalc.planner import plan, plans_frame
from flopscalc.scaling import BUILTIN_LAWS

DAY = 86400.0


@pytest.fixture(scope="module")
def year_4070ti():
    return plan(get_gpu("4070ti"), 365 * DAY)


def test_seed_question_answered_with_a_run_that_fits_12_gib(year_4070ti):
    p = year_4070ti
    r = p.recommended
    # the recommended setup, re-estimated from scratch, fits the card's 12 GiB (the memory it claims)
    assert estimate_memory(r.model, r.chosen.setup).peak_bytes <= 0.95 * 12 * 2**30  # 5% kept free
    assert r.chosen.capacity_bytes == 12 * 2**30
    # its size is within a factor 4 of Besiroglu's compute-optimal N for the budget, and it beats every preset
    assert 0.25 < r.n_params / p.allocation.n_params < 4
    preset_losses = [o.loss for o in p.options if o.model.name in PRESETS and o.fits]
    assert r.loss <= min(preset_losses)
    assert r.loss == pytest.approx(BUILTIN_LAWS["besiroglu2024"].loss(r.n_params, r.n_tokens))


def test_bookkeeping_closes(year_4070ti):
    # tokens x FLOPs/token = model FLOPs = rate x busy time; steps x tokens/step = tokens
    for o in year_4070ti.options:
        if not o.fits:
            continue
        busy_s = o.train_time_s * year_4070ti.budget.utilization
        assert o.model_flops == pytest.approx(o.speed.model_flop_per_s * busy_s, rel=1e-9)
        # whole steps: the last one may be partly used
        assert (o.n_steps - 1) * o.speed.tokens_per_step < o.n_tokens <= o.n_steps * o.speed.tokens_per_step
        assert o.train_time_s == pytest.approx(365 * DAY, rel=1e-9)
        # by default a step takes what 'flopscalc step' says for that model and setup
        assert o.speed.step_s == pytest.approx(estimate_step(o.model, o.chosen.setup, get_gpu("4070ti")).step_s,
                                               rel=1e-9)
    # at a stated efficiency (--mfu 0.4, constant-MFU arithmetic) a step's compute is hardware FLOPs at peak x 0.4
    peak = get_gpu("4070ti").peak_flop_per_s("bf16")
    for o in plan(get_gpu("4070ti"), 365 * DAY, mfu=0.4).options:
        if o.fits:
            assert o.speed.compute_s == pytest.approx(
                o.speed.tokens_per_step * o.speed.hardware_flops_per_token / (peak * 0.4), rel=1e-9)


def test_options_that_fit_nowhere_say_how_many_gpus_they_need(year_4070ti):
    big = [o for o in year_4070ti.options if not o.fits]
    assert big and all(o.min_gpus and o.min_gpus >= 2 for o in big)
    assert [o.min_gpus for o in big] == sorted(o.min_gpus for o in big)  # bigger models need more GPUs


@settings(max_examples=8, deadline=None)
@given(days=st.floats(0.5, 400), more=st.floats(1.2, 8))
def test_more_days_never_predicts_a_worse_loss(days, more):
    gpu = get_gpu("4090")
    short = plan(gpu, days * DAY).recommended
    long = plan(gpu, days * more * DAY).recommended
    assert long.loss <= short.loss + 1e-12


def test_one_gpu_eight_days_vs_eight_gpus_one_day():
    gpu = get_gpu("4090")  # PCIe 4.0: communication is not free
    model = [PRESETS["gpt2-medium"]]
    one = plan(gpu, 8 * DAY, n_gpus=1, models=model)
    eight = plan(gpu, 1 * DAY, n_gpus=8, models=model)
    assert one.budget.busy_flops == pytest.approx(eight.budget.busy_flops, rel=1e-12)  # same budget
    a, b = one.recommended, eight.recommended
    assert b.speed.comm.comm_s > 0 and a.speed.comm.comm_s == 0
    assert b.speed.scaling_efficiency <= 1.0
    # different times: communication the backward pass does not hide costs the 8-GPU run tokens. That is the whole
    # difference only at a constant efficiency (--mfu 0.4); the per-operation model also prices the optimizer
    # step, which ZeRO shards eight ways, so there eight GPUs may deliver more than one.
    a4 = plan(gpu, 8 * DAY, n_gpus=1, models=model, mfu=0.4).recommended
    b4 = plan(gpu, 1 * DAY, n_gpus=8, models=model, mfu=0.4).recommended
    assert b4.speed.comm.exposed_s > 0 and b4.n_tokens < a4.n_tokens


def test_flop_budget_is_spent_exactly():
    p = plan(get_gpu("h100"), flops=1e20)
    assert p.recommended.model_flops == pytest.approx(1e20, rel=1e-9)
    assert p.allocation.c_flops == 1e20


def test_money_budget_rents_hours():
    p = plan(get_gpu("h100"), budget_usd=500, usd_per_gpu_hour=2.5, n_gpus=8)
    assert p.budget.duration_s == pytest.approx(25 * 3600)
    assert p.energy.cloud_usd == pytest.approx(500, rel=1e-9)


def test_dataset_limit_repeats_data_and_costs_loss():
    free = plan(get_gpu("4070ti"), 365 * DAY).recommended
    limited = plan(get_gpu("4070ti"), 365 * DAY, dataset_tokens=2e9)
    r = limited.recommended
    assert r.epochs > 1 and r.effective_tokens < r.n_tokens
    assert r.loss > free.loss
    assert any("repeats the dataset" in w for w in limited.warnings)


def test_max_wall_clock_caps_training():
    p = plan(get_gpu("4070ti"), 365 * DAY, max_wall_clock_s=30 * DAY)
    assert p.recommended.train_time_s <= 30 * DAY * (1 + 1e-9)


def test_calibration_profile_sets_the_mfu(tmp_path, capsys):
    cfg = PRESETS["gpt2"]
    point = CalibrationPoint(model=cfg, n_params=count_params(cfg).total, micro_batch=8, seq_len=1024, grad_accum=1,
                             n_devices=1, precision="bf16", compiled=False, step_time_s=1.0, tokens_per_s=8192,
                             model_flops_per_token=1e9, achieved_flop_per_s=8.2e12, peak_flop_per_s=80.2e12,
                             mfu=0.25)
    path = save_profile(CalibrationProfile("NVIDIA GeForce RTX 4070 Ti", "rtx-4070-ti", "2.13.0", "2026-11-25",
                                           (point,)), tmp_path / "cal.json")
    code = run(["plan", "--gpu", "4070ti", "--days", "30", "--calibration", str(path), "--json"])
    assert code == 0
    d = json.loads(capsys.readouterr().out)
    # one measured point: every model size computes at its MFU (no extrapolation), and the plan says where it
    # came from; an option's own MFU is that or less (offload and recomputation cost time)
    assert all(o["speed"]["hardware_efficiency"] == 0.25 for o in d["options"] if o["fits"])
    assert all(o["speed"]["mfu"] <= 0.25 * (1 + 1e-12) for o in d["options"] if o["fits"])  # to float rounding
    assert d["mfu_source"].startswith("measured")
    code = run(["plan", "--gpu", "4090", "--days", "30", "--calibration", str(path)])
    assert code == 2 and "measured on rtx-4070-ti" in capsys.readouterr().err


def test_calibration_and_mfu_together_is_a_usage_error():
    with pytest.raises(UsageError, match="not both"):
        plan(get_gpu("4070ti"), DAY, mfu=0.3, calibration=object())


@pytest.mark.parametrize("kwargs,exc,pattern", [
    ({"dataset_tokens": 0}, UsageError, "dataset"),
    ({"duration_s": None}, UsageError, "exactly one budget"),
    ({"flops": 1e20}, UsageError, "exactly one budget"),
    ({"memory_bytes": 0.2 * 2**30}, DomainError,
     r"no candidate fits, not even the smallest .* in 0.2 GiB .* needs \d+\.\d GiB"),
    ({"duration_s": 1.0}, DomainError, "less than one optimizer step"),
    ({"law": "chinchila"}, TypeError, "resolve_law"),  # the planner takes a resolved law; names: the face's
])
def test_contradictory_constraints_explain_themselves(kwargs, exc, pattern):
    args = {"duration_s": DAY}
    args.update(kwargs)
    with pytest.raises(exc, match=pattern):
        plan(get_gpu("4070ti"), args.pop("duration_s"), **args)


def test_many_plans_as_a_pandas_frame():
    plans = [plan(get_gpu("4070ti"), d * DAY) for d in (1, 30)]
    frame = plans_frame(plans)
    assert list(frame["duration_s"]) == [DAY, 30 * DAY]
    assert frame["loss"].is_monotonic_decreasing
    # the frame's MFU is each plan's header MFU: model FLOPs delivered over peak x busy time
    for p, mfu in zip(plans, frame["mfu"]):
        assert mfu == pytest.approx(p.recommended.model_flops / (80.2e12 * 0.9 * p.budget.duration_s), rel=1e-9)


def test_cli_plan_json_csv_and_options(capsys):
    assert run(["plan", "--gpu", "4070ti", "--days", "365", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["recommended"]["memory"]["peak_bytes"] <= d["recommended"]["memory"]["capacity_bytes"]
    assert d["law"]["name"] == "besiroglu2024" and d["loss_by_law"]["chinchilla"] > 0
    assert run(["plan", "--gpu", "4070ti", "--days", "365", "--csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("n_params,") and sum(line.endswith(",True") for line in lines[1:]) == 1
    for extra in (["--law", "chinchilla"], ["--dataset-tokens", "5B"], ["--max-days", "30"], ["--memory", "8GiB"],
                  ["--usd-per-kwh", "0.3"]):
        assert run(["plan", "--gpu", "4070ti", "--days", "365", "--json", *extra]) == 0
        assert json.loads(capsys.readouterr().out) != d
    assert run(["plan", "--gpu", "4070ti", "--flops", "1e20", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["budget_kind"] == "flops"
    assert run(["plan", "--gpu", "h100", "--budget-usd", "$500", "--usd-per-gpu-hour", "2.5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["energy"]["cloud_usd"] == pytest.approx(500)


def test_fixed_model_on_fixed_tokens_gives_time_and_cost():
    # GPT-2 small on 10B tokens: time = tokens / rate, and the model FLOPs equal tokens x the engine's FLOPs/token
    from flopscalc.flops import training_flops_per_token

    p = plan(get_gpu("4070ti"), model=PRESETS["gpt2"], n_tokens=1e10, usd_per_kwh=0.3)
    r = p.recommended
    assert p.objective == "fixed" and len(p.options) == 1 and r.n_tokens == 1e10
    assert r.model_flops == pytest.approx(1e10 * training_flops_per_token(PRESETS["gpt2"], 1024).model_flops_per_token)
    assert r.train_time_s == pytest.approx(1e10 / (r.speed.tokens_per_s * 0.9))
    assert p.budget.duration_s == pytest.approx(r.train_time_s)
    assert p.energy.electricity_usd == pytest.approx(285 * r.train_time_s * 0.9 / 3.6e6 * 0.3)


def test_target_loss_is_reached_by_the_fastest_option():
    p = plan(get_gpu("4090"), target_loss=2.6)
    r = p.recommended
    assert r.loss == pytest.approx(2.6, abs=1e-9)  # trained exactly as long as the law says it takes
    reach = [o for o in p.options if o.fits and o.loss is not None]
    assert r.train_time_s == min(o.train_time_s for o in reach)
    with pytest.raises(DomainError, match="floor"):
        plan(get_gpu("4090"), target_loss=1.9)  # below what any model that fits 24 GiB can reach


def test_electricity_money_budget_buys_busy_hours():
    # $100 at $0.25/kWh = 400 kWh; at 285 W busy 90% of the time: 400e3 / (285 x 0.9) hours
    p = plan(get_gpu("4070ti"), budget_usd=100, usd_per_kwh=0.25)
    assert p.budget.duration_s == pytest.approx(400e3 / (285 * 0.9) * 3600)
    assert p.energy.electricity_usd == pytest.approx(100, rel=1e-9)


def test_binding_constraints_relaxed_improve_the_loss(year_4070ti):
    b = {x.constraint: x for x in year_4070ti.binding}
    assert set(b) == {"compute", "memory"}
    assert b["compute"].binds and b["compute"].loss_if_relaxed < year_4070ti.recommended.loss
    # the compute-optimal model needs 2 GPUs here, so memory binds too
    assert b["memory"].binds
    # 80 GiB holds the optimum. Only at a constant efficiency (--mfu 0.4) does memory bind by fit alone; under the
    # per-operation model more memory also buys a larger micro-batch, faster kernels and so a (slightly) better loss
    roomy = plan(get_gpu("h100"), 1 * DAY, mfu=0.4)
    assert not {x.constraint: x for x in roomy.binding}["memory"].binds
    limited = plan(get_gpu("4070ti"), 365 * DAY, dataset_tokens=2e9)
    assert {x.constraint: x for x in limited.binding}["data"].binds


def test_loss_interval_brackets_the_prediction(year_4070ti):
    lo, hi = year_4070ti.loss_interval
    assert lo < year_4070ti.recommended.loss < hi
    e_lo, e_hi = BUILTIN_LAWS["besiroglu2024"].uncertainty["E"]
    assert hi - lo == pytest.approx(e_hi - e_lo)


def test_tags_mark_optimum_and_largest_fit(year_4070ti):
    tags = {t for v in year_4070ti.tags.values() for t in v}
    assert tags == {"optimum", "largest fit", "recommended"}


def test_cli_objectives(capsys):
    assert run(["plan", "--gpu", "4070ti", "--model", "gpt2", "--tokens", "10B", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["objective"] == "fixed" and d["recommended"]["n_tokens"] == 1e10
    assert run(["plan", "--gpu", "4070ti", "--params", "350M", "--days", "7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["objective"] == "fixed"
    assert run(["plan", "--gpu", "4090", "--target-loss", "2.6", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["recommended"]["loss"] == pytest.approx(2.6)
    assert run(["plan", "--gpu", "4070ti", "--tokens", "10B"]) == 2
    assert "add --model" in capsys.readouterr().err
    assert run(["plan", "--gpu", "4070ti", "--days", "3", "--model", "gpt2", "--tokens", "10B"]) == 2
    assert "drop a time" in capsys.readouterr().err
