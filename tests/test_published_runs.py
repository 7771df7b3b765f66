"""Published training runs: the planner's arithmetic against reported wall clock and GPU-hours.

Values checked here come from the runs' own documents (cited per row in data/published_runs.csv):
PaLM's Table 3 MFU, BLOOM's logged TFLOPs, OPT's logbook FLOPs and 33-day estimate, Llama 3's FLOP total.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flopscalc.errors import DomainError, UsageError
from flopscalc.hardware import get_gpu
from flopscalc.runs import (
    AUTHOR_CONVENTIONS,
    BASES,
    PublishedRun,
    author_flops_per_token,
    compare,
    get_run,
    implied_mfu,
    mfu,
    model_flops,
    model_flops_per_token,
    peak_flop_per_s,
    predict_gpu_hours,
    predict_wall_clock_s,
    published_runs,
    read_published_runs,
)

ROOT = Path(__file__).resolve().parent.parent
RUNS = published_runs()
PREDICTABLE = [r for r in RUNS if r.available_bases]
# Two bases on one run describe the same steady state: they must agree to this (llm.c's "up to ~60%" and
# "~50%" MFU against its scripts' step times differ by 6-8%; BLOOM and PaLM's pairs by < 0.1%).
BASES_AGREE_REL = 0.10


def _ids(runs):
    return [r.run for r in runs]


# ---- the table itself


def test_every_row_resolves_its_gpu_and_cites_a_document():
    assert len(RUNS) >= 8
    for r in RUNS:
        assert get_gpu(r.gpu).key == r.gpu, r.run  # exact database key, not a fuzzy match
        assert peak_flop_per_s(r) > 0
        assert re.search(r"(sec\.|Table|line|README|Discussion|\.md|\.sh|paragraph|App\.)", r.source), r.run
        assert r.flop_convention in AUTHOR_CONVENTIONS


# ---- predicted against reported (each run's tolerance and its reason: tests/test_runs_tolerances.py)


@pytest.mark.parametrize("run", [r for r in PREDICTABLE if r.wall_clock_includes_downtime == "yes"],
                         ids=_ids([r for r in PREDICTABLE if r.wall_clock_includes_downtime == "yes"]))
def test_runs_whose_time_includes_downtime_take_longer_than_predicted(run):
    # A steady-state rate with no downtime can only account for part of a time that includes restarts.
    c = compare(run)
    assert c.error < 0 and 0 < c.implied_duty_cycle < 1
    assert implied_mfu(run) < mfu(run)


def test_duty_cycle_brings_llama3_closer():
    # Llama 3 sec. 3.3.4: > 90% effective training time; dividing by it must shrink the gap, not flip it.
    c = compare(get_run("llama31-405b"))
    assert abs(c.error_with_duty_cycle) < abs(c.error) and c.error_with_duty_cycle < 0


@pytest.mark.parametrize("run", [r for r in RUNS if len(r.available_bases) > 1],
                         ids=_ids([r for r in RUNS if len(r.available_bases) > 1]))
def test_every_reported_rate_of_a_run_tells_the_same_story(run):
    times = [predict_gpu_hours(run, b) for b in run.available_bases]
    assert max(times) / min(times) - 1 <= BASES_AGREE_REL


def test_implied_mfu_is_a_fraction_for_every_run_with_a_reported_time():
    for r in RUNS:
        if r.reported_gpu_hours is not None or r.reported_wall_clock_days is not None:
            assert 0.1 < implied_mfu(r) < 1, r.run


def test_llama2_rows_give_only_the_implied_mfu():
    r = get_run("llama2-70b")
    with pytest.raises(DomainError, match="implied_mfu"):
        compare(r)
    assert 0.3 < implied_mfu(r) < 0.6


# ---- the authors' own numbers, reproduced (these pin each row's flop_convention)


def test_palm_table3_mfu_from_its_throughput():
    # Chowdhery et al. 2022 Table 3: 238.3K tokens/s on 6144 TPU v4 = 46.2% MFU (App. B formula, 275 TFLOP/s).
    r = get_run("palm-540b")
    achieved_flop_per_s = author_flops_per_token(r) * r.reported_tokens_per_s
    assert achieved_flop_per_s / (r.n_gpus * peak_flop_per_s(r)) == pytest.approx(0.462, abs=0.0005)


def test_bloom_logged_tflops_from_its_step_time():
    # tr11-176B-ml README, iteration 85376: 104.70 s for 2048 x 2048 tokens on 384 GPUs, "TFLOPs: 149.77".
    r = get_run("bloom-176b")
    tokens_per_s = 2048 * 2048 / 104.70
    assert author_flops_per_token(r) * tokens_per_s / r.n_gpus / 1e12 == pytest.approx(149.77, rel=2e-4)


def test_opt_logbook_flops_and_33_day_estimate():
    # metaseq chronicles/final_update.md: 300B tokens "required ~4.30E+23 FLOPs ... ~33 days of continuous
    # training on 1024 80GB A100s"; the paper's 147 TFLOP/s per GPU must give both.
    r = get_run("opt-175b")
    assert author_flops_per_token(r) * r.n_tokens == pytest.approx(4.30e23, rel=0.005)
    assert predict_wall_clock_s(replace(r, n_gpus=1024)) / 86400 == pytest.approx(33, abs=0.5)


def test_llama3_total_compute():
    # Llama 3 sec. 3: the 405B flagship was pre-trained with 3.8e25 FLOPs.
    assert model_flops(get_run("llama31-405b")) == pytest.approx(3.8e25, rel=0.01)


def test_megatron_estimate_matches_eq4_to_the_eq3_difference():
    # Narayanan et al. 2021 sec. 5.1: 34 days by eq. 4 (8TP); eq. 3 with the real shape adds ~2-3%.
    c = compare(get_run("megatron-gpt3-175b-estimate"))
    assert 0 < c.error < 0.05


# ---- bookkeeping closes (property tests)

_EMPTY = dict.fromkeys((
    "n_layer", "n_head", "n_embd", "head_dim", "vocab_size", "seq_len", "bias", "pos_embedding", "n_params",
    "reported_wall_clock_days", "reported_gpu_hours", "reported_duty_cycle", "basis",
))
_GPT2_LAYOUT = st.fixed_dictionaries({
    "model_shape": st.just("gpt2-layout"), "n_layer": st.integers(1, 48), "n_head": st.integers(1, 32),
    "vocab_size": st.integers(256, 60000), "seq_len": st.integers(16, 4096),
}).map(lambda d: {**d, "n_embd": 64 * d["n_head"]})
_PARAMS_ONLY = st.fixed_dictionaries({
    "model_shape": st.just("params-only"), "n_params": st.floats(1e7, 1e12), "n_layer": st.integers(1, 128),
    "n_head": st.integers(1, 128), "head_dim": st.just(128), "seq_len": st.integers(16, 8192),
})


@st.composite
def _runs(draw):
    shape = draw(st.one_of(_GPT2_LAYOUT, _PARAMS_ONLY))
    conventions = ["6nd", "palm", "palm-causal"]
    if shape["model_shape"] == "gpt2-layout":
        conventions += ["exact", "megatron", "megatron-model"]
    return PublishedRun(
        **{**_EMPTY, **shape}, run="hyp", kind="measured", wall_clock_includes_downtime="unknown",
        source="hypothesis", notes="", precision="bf16",
        n_tokens=draw(st.floats(1e6, 1e13)), n_gpus=draw(st.integers(1, 20000)),
        gpu=draw(st.sampled_from(["a100-sxm-80gb", "h100-sxm", "tpu-v4"])),
        flop_convention=draw(st.sampled_from(conventions)), reported_mfu=draw(st.floats(0.05, 0.8)),
        reported_tokens_per_s=draw(st.floats(1e3, 1e8)),
        reported_tflop_per_s_per_gpu=draw(st.floats(1.0, 900.0)),
    )


@settings(max_examples=60, deadline=None)
@given(_runs(), st.sampled_from(BASES))
def test_flops_time_and_rate_bookkeeping_closes(run, basis):
    flops = model_flops(run)
    assert flops == pytest.approx(run.n_tokens * model_flops_per_token(run), rel=1e-12)
    t = predict_wall_clock_s(run, basis)
    assert mfu(run, basis) * peak_flop_per_s(run) * t * run.n_gpus == pytest.approx(flops, rel=1e-9)
    assert predict_gpu_hours(run, basis) == pytest.approx(t * run.n_gpus / 3600, rel=1e-9)
    # a convention conversion never changes the time the authors' own arithmetic gives
    author_flops = run.n_tokens * author_flops_per_token(run)
    authors_t = {
        "mfu": author_flops / (run.n_gpus * peak_flop_per_s(run) * run.reported_mfu),
        "tokens_per_s": run.n_tokens / run.reported_tokens_per_s,
        "tflop_per_s": author_flops / (run.n_gpus * run.reported_tflop_per_s_per_gpu * 1e12),
    }[basis]
    assert t == pytest.approx(authors_t, rel=1e-9)
    # twice the tokens, twice the time; twice the GPUs at the same MFU, half the time
    doubled_tokens = replace(run, n_tokens=2 * run.n_tokens)
    doubled_gpus = replace(run, n_gpus=2 * run.n_gpus)
    assert predict_wall_clock_s(doubled_tokens, basis) == pytest.approx(2 * t, rel=1e-9)
    if basis != "tokens_per_s":
        assert predict_wall_clock_s(doubled_gpus, basis) == pytest.approx(t / 2, rel=1e-9)


# ---- bad input


def test_malformed_csv_rows_name_the_line(tmp_path):
    text = (ROOT / "data" / "published_runs.csv").read_text(encoding="utf-8").splitlines()
    header, first = text[0], text[1]
    bad = first.replace(",palm-causal,", ",furlongs,", 1)
    with pytest.raises(UsageError, match=r"x\.csv:2.*furlongs|furlongs"):
        read_published_runs(tmp_path / "x.csv", f"{header}\n{bad}")
    with pytest.raises(UsageError, match="header"):
        read_published_runs(tmp_path / "x.csv", "run,gpu\nx,a100")
    with pytest.raises(UsageError, match="x.csv:2: column 'n_gpus'"):
        bad = first.replace(",a100-sxm-80gb,8,", ",a100-sxm-80gb,eight,")
        read_published_runs(tmp_path / "x.csv", f"{header}\n{bad}")


def test_asking_for_a_rate_a_run_does_not_report():
    with pytest.raises(DomainError, match="reports no tflop_per_s"):
        compare(get_run("palm-540b"), "tflop_per_s")
    with pytest.raises(UsageError, match="unknown published run"):
        get_run("gpt-5")


def test_engine_imports_no_heavy_or_face_modules():
    heavy = ("pandas", "torch", "rich", "typer", "matplotlib", "scipy")
    code = (f"import sys, flopscalc.runs; flopscalc.runs.published_runs(); "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


# ---- the docs report what the engine computes


def test_docs_table_reports_each_runs_error():
    doc = (ROOT / "docs" / "published_runs.md").read_text(encoding="utf-8")
    for r in RUNS:
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{r.run}` |")), None)
        assert row is not None, f"docs/published_runs.md has no table row for {r.run}"
        if r.available_bases:
            assert f"{100 * compare(r).error:+.1f}%" in row, r.run
        else:
            assert f"{100 * implied_mfu(r):.1f}%" in row, r.run
