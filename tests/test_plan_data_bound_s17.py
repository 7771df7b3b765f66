"""A data-bound plan says the shortest run that reaches nearly its loss (review s17, helper b76).

`plan --gpu 4070ti --days 365 --dataset-tokens 1B` spends a year on 136 epochs of 1B tokens for loss 2.790, where
its own "what limits this run" table says twice the GPU time buys 0.000: repeated tokens lose their value
(Muennighoff et al. 2023, eq. 5-7). The plan keeps its recommendation and says the shortest run of the same model
and setup within `DATA_BOUND_LOSS_TOLERANCE` of its loss. The references: `scaling.predict_loss` (the engine of
`flopscalc scaling loss`) at the tokens the plan names, the run's own speed for its time, and a plan cut short by the
--max-days the line suggests.
"""

from __future__ import annotations

import json
import math

import pytest

from flopscalc.cli import run
from flopscalc.hardware import get_gpu
from flopscalc.model import count_params
from flopscalc.planner import plan
from flopscalc.planner.databound import DATA_BOUND_LOSS_TOLERANCE, shorter_run
from flopscalc.planner.relax import BINDING_LOSS
from flopscalc.scaling import BUILTIN_LAWS
from flopscalc.scaling.allocate import predict_loss

DAY = 86400.0
GPU = get_gpu("4070ti")
LAW = BUILTIN_LAWS["besiroglu2024"]  # the plan's default law; it counts embeddings in N
UNIQUE = 1e9


@pytest.fixture(scope="module")
def data_bound():
    return plan(GPU, 365 * DAY, dataset_tokens=UNIQUE)


def _loss(rec, tokens: float) -> float:
    """`flopscalc scaling loss` of the recommended model at ``tokens`` trained (worth ``useful/n`` each)."""
    value = rec.useful_tokens / rec.n_tokens
    return predict_loss(LAW, count_params(rec.model).total, tokens * value, UNIQUE).loss


def test_the_reviewed_plan_is_data_bound_and_keeps_its_recommendation(data_bound):
    p, rec = data_bound, data_bound.recommended
    compute = next(b for b in p.binding if b.constraint == "compute")
    assert not compute.binds  # the plan's own table: twice the GPU time buys < BINDING_LOSS
    s = p.data_bound
    assert s is not None
    assert s.budget_loss == rec.loss and s.budget_train_time_s == rec.train_time_s
    assert rec.train_time_s == pytest.approx(365 * DAY, rel=1e-9)  # the plan still spends the whole budget


def test_the_shorter_run_is_within_the_tolerance_and_no_shorter_one_is(data_bound):
    rec, s = data_bound.recommended, data_bound.data_bound
    goal = rec.loss + DATA_BOUND_LOSS_TOLERANCE
    assert _loss(rec, s.n_tokens) == pytest.approx(s.loss, rel=1e-12)
    assert _loss(rec, s.n_tokens) <= goal
    assert _loss(rec, s.n_tokens * (1 - 1e-4)) > goal  # the shortest: 0.01% fewer tokens miss the tolerance
    assert s.n_tokens < rec.n_tokens / 2  # and most of the year buys less than the tolerance
    assert _loss(rec, rec.n_tokens) > s.loss - DATA_BOUND_LOSS_TOLERANCE - 1e-12


def test_its_time_and_epochs_are_the_runs_own(data_bound):
    rec, s = data_bound.recommended, data_bound.data_bound
    rate = rec.speed.tokens_per_s * data_bound.budget.utilization  # tokens per wall-clock second of this setup
    assert s.train_time_s == pytest.approx(s.n_tokens / rate, rel=1e-9)
    assert s.epochs == pytest.approx(s.n_tokens / UNIQUE, rel=1e-12)
    assert s.saved_s == pytest.approx(rec.train_time_s - s.train_time_s, rel=1e-12)


def test_the_suggested_max_days_reaches_the_shorter_runs_loss(data_bound):
    """The line's --max-days stops every option there; the plan then reaches at least the shorter run's loss."""
    s = data_bound.data_bound
    days = math.ceil(s.train_time_s / DAY)
    assert f"--max-days {days} " in next(w for w in data_bound.warnings if "data-bound" in w)
    capped = plan(GPU, 365 * DAY, dataset_tokens=UNIQUE, max_wall_clock_s=days * DAY)
    assert capped.recommended.train_time_s <= days * DAY * (1 + 1e-9)
    assert capped.recommended.loss <= s.loss + 1e-9


def test_compute_bound_or_unrepeated_plans_say_nothing():
    main = plan(GPU, 365 * DAY)  # the README's main job: no dataset size
    assert main.data_bound is None and not any("data-bound" in w for w in main.warnings)
    once = plan(GPU, 365 * DAY, dataset_tokens=200e9)  # fewer tokens than the data: no repetition
    assert once.recommended.epochs < 1 and once.data_bound is None
    repeated = plan(GPU, 365 * DAY, dataset_tokens=10e9)  # 13.6 epochs, and more compute still pays
    assert repeated.recommended.epochs > 1
    assert next(b for b in repeated.binding if b.constraint == "compute").binds
    assert repeated.data_bound is None


def test_the_criterion_is_the_compute_rows(data_bound):
    """`shorter_run` answers exactly when twice the tokens of the recommended model buy less than BINDING_LOSS."""
    rec = data_bound.recommended
    assert rec.loss - _loss(rec, 2 * rec.n_tokens) < BINDING_LOSS
    assert shorter_run(rec, LAW, None, "time") is None  # no dataset size: nothing is repeated
    assert shorter_run(rec, LAW, UNIQUE, "tokens") is None  # fixed tokens: no budget to cut short
    assert shorter_run(rec, LAW, UNIQUE, "money") == data_bound.data_bound


def test_cli_text_and_json(capsys):
    argv = ["plan", "--gpu", "4070ti", "--days", "365", "--dataset-tokens", "1B"]
    assert run([*argv, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    s = d["data_bound"]
    assert s["loss"] <= d["recommended"]["loss"] + s["tolerance_nats"]
    assert s["tolerance_nats"] == DATA_BOUND_LOSS_TOLERANCE
    assert s["train_time_s"] < d["recommended"]["train_time_s"] / 2
    assert any("data-bound" in w for w in d["warnings"])
    assert run(argv) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "the loss is data-bound" in text and f"{s['epochs']:.1f} epochs" in text
    assert run(["plan", "--gpu", "4070ti", "--days", "365", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["data_bound"] is None


def test_a_fixed_model_with_a_time_budget_says_it_too():
    """`--model` with a budget spends it as well; the line is about that model and setup."""
    from flopscalc.model import PRESETS

    p = plan(GPU, 365 * DAY, dataset_tokens=UNIQUE, model=PRESETS["gpt2-xl"])
    rec, s = p.recommended, p.data_bound
    assert p.objective == "fixed" and s is not None
    assert _loss(rec, s.n_tokens) <= rec.loss + DATA_BOUND_LOSS_TOLERANCE < _loss(rec, s.n_tokens * (1 - 1e-4))
    fixed_tokens = plan(GPU, None, dataset_tokens=UNIQUE, model=PRESETS["gpt2-xl"], n_tokens=rec.n_tokens)
    assert fixed_tokens.budget_kind == "tokens" and fixed_tokens.data_bound is None  # no budget to cut short
