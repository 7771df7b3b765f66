"""What the final read of stop 17 found (each failed before its fix).

- `step` and `memory --n-gpus 1e20` printed a 1.8e16 s step with exit 0: the plan's bound on GPU counts (about 60x
  Llama 3 405B's 16,384 H100s, Dubey et al. 2024 sec. 3.3.1) lived only in the planner; every `TrainingSetup` now
  checks it.
- a saved law's uncertainty interval of NaN, or with low > high, loaded silently and gave the plan a loss interval
  of [9.6, null]; it is refused in one line naming the field, as the fitted range's spans are.
- `report.step.step_network` printed the GPU generation's network for a step priced on another (a plan's
  --network-gbps reaches `StepOptions.network_bytes_per_s`).
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from conftest import refused

from flopscalc.hardware import get_gpu
from flopscalc.memory import TrainingSetup
from flopscalc.model import get_preset
from flopscalc.perf.step import StepOptions, estimate_step
from flopscalc.planner.budget import MAX_N_GPUS


@pytest.mark.parametrize("command", ["step", "memory"])
def test_a_gpu_count_past_the_bound_is_refused_by_every_command(capsys, command):
    line = refused(capsys, command, "--model", "gpt2", "--gpu", "h100", "--n-gpus", str(MAX_N_GPUS + 1))
    assert f"at most {MAX_N_GPUS:,}" in line


def test_the_bound_itself_is_accepted(capsys):
    from flopscalc.cli import run

    assert run(["memory", "--model", "gpt2", "--gpu", "h100", "--n-gpus", str(MAX_N_GPUS), "--zero", "3"]) == 0


@pytest.mark.parametrize("span", [[9.0, float("nan")], [2.0, 1.0], [float("inf"), 3.0]])
def test_a_saved_law_with_a_bad_uncertainty_interval_is_refused(tmp_path, monkeypatch, capsys, span):
    from flopscalc.scaling.io import save_law
    from flopscalc.scaling.names import get_law

    monkeypatch.setenv("FLOPSCALC_HOME", str(tmp_path))
    path = save_law(replace(get_law("chinchilla"), name="badunc"), tmp_path / "laws")
    data = json.loads(path.read_text())
    data["uncertainty"] = {"E": span}
    path.write_text(json.dumps(data))  # json writes NaN/Infinity, as Python's reader accepts them
    line = refused(capsys, "plan", "--law", "badunc", "--flops", "1e21", "--gpu", "h100")
    assert "E" in line and "low <= high" in line


def test_the_step_report_names_the_network_it_was_priced_on():
    from flopscalc.report.step import step_dict

    gpu, cfg = get_gpu("h100"), get_preset("gpt2-xl")
    setup = TrainingSetup(micro_batch=4, seq_len=1024, n_gpus=16, zero_stage=1)
    slow = 100e9 / 8  # 100 Gb/s per GPU, in bytes/s
    priced = estimate_step(cfg, setup, gpu, options=replace(StepOptions(), network_bytes_per_s=slow))
    d = step_dict(priced)
    assert d["network_bytes_per_s_per_gpu"] == slow and d["network_source"] == "--network-gbps"
    default = step_dict(estimate_step(cfg, setup, gpu))
    assert default["network_bytes_per_s_per_gpu"] != slow  # the DGX H100's 400 Gb/s
