"""Say why huge clusters stall (issue 13): when the batch stops at the critical batch, more GPUs mean more data-
parallel pipelines with fewer micro-batches each, and the pipeline bubble (Narayanan et al. 2021, sec. 2.2) fills the
step. The plan warns, and its scaling-efficiency line counts the bubble in the step. References: the layout engine
called here on the plan's layout (its bubble and step), Kaplan et al. 2020 eq. 5.3 evaluated here (the critical batch
the batch could not double past), and the 25% threshold evaluated here on those numbers."""

from __future__ import annotations

import re

import pytest

from flopscalc.hardware import get_gpu
from flopscalc.layout import cluster_for, layout_time
from flopscalc.memory import MemoryPrecision
from flopscalc.model import PRESETS
from flopscalc.planner import plan

DAY_S = 86400
# Kaplan et al. 2020, eq. 5.3 and Table 5: B_crit(L) = 2.1e8 tokens / L^(1/0.21)
KAPLAN_B_STAR, KAPLAN_ALPHA_B = 2.1e8, 0.21
BUBBLE_WARNING_SHARE = 0.25  # the brief's "a large share of the step"
SEQ = 1024


def _plan(n_gpus: int):
    return plan(get_gpu("h100"), DAY_S, n_gpus=n_gpus, models=[PRESETS["gpt2-xl"]])


def _engine_time(p):
    rec = p.recommended
    return layout_time(rec.model, rec.chosen.layout, cluster_for(get_gpu("h100"), p.budget.n_gpus), SEQ,
                       precision=MemoryPrecision.bf16_mixed, flash=True)


@pytest.fixture(scope="module")
def stalled():
    return _plan(16384)  # GPT-2 XL on 16,384 H100s: a fast case of the 65,536-GPU plan's stall


def test_the_batch_stopped_at_the_critical_batch_and_the_bubble_is_over_a_quarter_of_the_step(stalled):
    rec = stalled.recommended
    b_crit = KAPLAN_B_STAR / rec.batch.loss_nats ** (1 / KAPLAN_ALPHA_B)  # Kaplan et al. 2020, eq. 5.3
    assert rec.chosen.tokens_per_step <= b_crit < 2 * rec.chosen.tokens_per_step
    lt = _engine_time(stalled)
    assert lt.bubble_s / lt.step_s > BUBBLE_WARNING_SHARE


def test_the_plan_says_the_gpus_outrun_the_critical_batch_with_the_engines_numbers(stalled):
    lay, lt = stalled.recommended.chosen.layout, _engine_time(stalled)
    line = next(w for w in stalled.warnings if "outrun the critical batch" in w)
    assert line.startswith("16,384 GPUs outrun the critical batch")
    n_seq = lt.tokens_per_step // SEQ
    assert (f"{n_seq:,} sequences per step give each of the {lay.dp:,} data-parallel pipelines {lay.n_micro} "
            f"micro-batches for {lay.pp} stages") in line
    assert lay.dp * lay.pp * lay.tp * lay.cp == 16384 and lay.micro_batch * lay.n_micro * lay.dp == n_seq
    assert f"the pipeline bubble is {lt.bubble_s / lt.step_s:.0%} of the step" in line
    mfu = float(re.search(r"MFU (\d\.\d\d)", line).group(1))
    assert mfu == pytest.approx(stalled.recommended.speed.mfu, abs=0.005)


def test_the_scaling_efficiency_line_counts_the_bubble_in_the_step(stalled):
    lt = _engine_time(stalled)
    line = next(w for w in stalled.warnings if w.startswith("scaling efficiency"))
    busy = lt.compute_s + lt.optimizer_s  # the GPUs' work; the rest of the step waits
    assert line.startswith(f"scaling efficiency {busy / lt.step_s:.0%} on 16384 GPUs")
    assert f"of each {lt.step_s:.3g} s step" in line and f"{lt.bubble_s:.3g} s on the pipeline bubble" in line


def test_a_small_bubble_at_the_critical_batch_gives_no_stall_warning():
    p = _plan(4096)  # the batch stops at the critical batch too, but 4 pipeline stages x 4 chunks idle little
    lt = _engine_time(p)
    assert p.recommended.batch.reason == "critical batch size"
    assert lt.bubble_s / lt.step_s < BUBBLE_WARNING_SHARE
    assert not any("outrun the critical batch" in w for w in p.warnings)
