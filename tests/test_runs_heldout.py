"""BLOOM's overheads, checked against figures they were not derived from (issue 17, item 4).

Two constants come from BLOOM's training run, and a test that reproduces BLOOM's own figures with them only
checks the arithmetic (`test_parallel_costs.py::test_bloom_gpu_energy_matches_the_published_kwh` is such a
consistency check):

- `costs.BLOOM_CLUSTER_OVERHEAD` = (dynamic + idle) / dynamic energy of BLOOM's training = 1.59 (Luccioni et al.
  2023, JMLR 24(253)). Held out here: GPT-3's published training energy (Patterson et al. 2021).
- The ~10% of BLOOM's calendar that went to evaluations, checkpoints and restarts (its implied duty cycle 0.90,
  docs/published_runs.md). The planner's default duty cycle is 0.90 from a different source (Llama 3, sec.
  3.3.4, `planner.budget.DEFAULT_UTILIZATION`), so BLOOM's wall clock is held out for that default.
"""

from __future__ import annotations

import pytest

from flopscalc.costs import BLOOM_CLUSTER_OVERHEAD, DEFAULT_SYSTEM_OVERHEAD, energy_cost
from flopscalc.hardware import get_gpu
from flopscalc.planner.budget import DEFAULT_UTILIZATION
from flopscalc.runs import compare, get_run
from flopscalc.units import SECONDS_PER_DAY

# GPT-3 175B's training (Patterson et al. 2021, "Carbon Emissions and Large Neural Network Training",
# arXiv:2104.10350, Table 4): 10,000 V100 GPUs for 14.8 days (3,552,000 GPU-hours), measured average system power
# 330 W per GPU, datacenter PUE 1.10, 1,287 MWh. The 1,287 MWh is widely quoted; the per-GPU rows were read through
# secondary reports, and they close: 3.552e6 h x 330 W x 1.10 = 1,289 MWh.
GPT3_N_GPUS = 10_000
GPT3_DAYS = 14.8
GPT3_PUE = 1.10
GPT3_ENERGY_KWH = 1_287_000
# The V100 SXM2's board power is 300 W (data/gpu_specs.csv); GPT-3's cluster was V100s (16 or 32 GB: the same
# 300 W SXM2 board). Patterson's 330 W per GPU is the whole server's draw shared per GPU: 330 / 300 = 1.10.
GPT3_SYSTEM_OVER_BOARD = 330 / 300


def _gpt3_kwh(system_overhead: float) -> float:
    gpu = get_gpu("v100")
    assert gpu.board_power_w == 300
    e = energy_cost(gpu, GPT3_N_GPUS, GPT3_DAYS * SECONDS_PER_DAY, 1.0, system_overhead=system_overhead,
                    pue=GPT3_PUE)
    assert e.gpu_hours == pytest.approx(3_552_000)
    return e.facility_energy_kwh


def test_bloom_cluster_overhead_does_not_transfer_to_gpt3():
    """BLOOM's 1.59 counts its cluster's idle draw over the whole allocation (Jean Zay, shared); applied to GPT-3 it
    overshoots the published energy by 45% (observed +45.0%), while the GPUs alone at board power (the default,
    1.0) land 8.9% short, and Patterson's own system-over-board ratio (1.10) within 1%. So BLOOM's factor stays a
    named example, never a default, and the plan says its energy is the GPUs' alone."""
    bloom = _gpt3_kwh(BLOOM_CLUSTER_OVERHEAD) / GPT3_ENERGY_KWH - 1
    default = _gpt3_kwh(DEFAULT_SYSTEM_OVERHEAD) / GPT3_ENERGY_KWH - 1
    measured = _gpt3_kwh(GPT3_SYSTEM_OVER_BOARD) / GPT3_ENERGY_KWH - 1
    assert DEFAULT_SYSTEM_OVERHEAD == 1.0
    assert abs(measured) < 0.01  # the held-out figures close on themselves (rounding of 330 W and 14.8 days)
    assert -0.10 < default < 0  # GPUs alone: short by the host's share, ~10%
    assert bloom > 0.40  # BLOOM's site overhead is not a property of training: it does not carry over


def test_default_duty_cycle_from_llama3_predicts_bloom_calendar_time():
    """BLOOM's 118 days include evaluations, checkpoints and restarts; the steady-state rate predicts 10% less.
    The planner's default duty cycle (0.90: Llama 3's 'higher than 90% effective training time', not fitted to
    BLOOM) closes that gap to within 2% (observed -0.02%)."""
    c = compare(get_run("bloom-176b"))
    assert c.error < -0.05  # the rate alone is short: the calendar has downtime in it
    with_default = (1 + c.error) / DEFAULT_UTILIZATION - 1
    assert abs(with_default) < 0.02, f"{with_default:+.2%}"
