"""One pricing of a measured trainer point for both benchmark tables (benchmarks/bench_trainer.py's "step time
(predicted)" column and benchmarks/bench_perf_own_gpu.py's raw model): `perf.calibrate.point_estimate`.

Its docstring claims it is what `flopscalc step` prints for the flags the trainer ran; the CLI builds its setup from
the flags by its own path (`cli.step`), so each committed H200 point is checked against the CLI's JSON, compiled and
padded-vocabulary points included. The benchmark script pins BLAS threads when imported, so it is imported in a
child process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flopscalc.calibration import load_profile
from flopscalc.cli import run
from flopscalc.hardware import get_gpu
from flopscalc.perf.calibrate import point_estimate

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GPU = "h200-sxm"
POINTS = [(path.name, i, p) for path in sorted(RESULTS.glob(f"calibration_{GPU}_20261128_*.json"))
          for i, p in enumerate(load_profile(path).points)]
PRESET = {50257: "gpt2"}  # the profiles' names: "gpt2-xl", "gpt2 (vocab 50304)"
PRECISION = {"bf16": "bf16-mixed"}  # the trainer's autocast word -> the CLI's storage policy


def _flags(p) -> list[str]:
    preset = p.model.name if p.model.name in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl") else "gpt2"
    return ["step", "--model", preset, "--vocab", str(p.model.vocab_size), "--gpu", GPU,
            "--micro-batch", str(p.micro_batch), "--seq", str(p.seq_len), "--grad-accum", str(p.grad_accum),
            "--precision", PRECISION[p.precision], "--recompute", p.recompute,
            "--flash" if p.attention == "sdpa" else "--no-flash", "--compile" if p.compiled else "--no-compile",
            "--json"]


def test_the_committed_points_cover_eager_compiled_and_a_padded_vocabulary():
    assert len(POINTS) == 14
    assert {p.compiled for _, _, p in POINTS} == {True, False}
    assert {p.model.vocab_size for _, _, p in POINTS} == {50257, 50304}
    assert {p.recompute for _, _, p in POINTS} == {"none", "full", "selective"}


@pytest.mark.parametrize("name, index, point", POINTS, ids=[f"{n}[{i}]" for n, i, _ in POINTS])
def test_a_points_price_is_what_flopscalc_step_prints_for_the_flags_it_ran(capsys, name, index, point):
    assert run(_flags(point)) == 0
    cli = json.loads(capsys.readouterr().out)
    est = point_estimate(point, get_gpu(GPU))
    assert est.step_s == cli["step_s"] and est.mfu == cli["mfu"]


def test_bench_trainers_predicted_column_is_point_estimate():
    """The trainer table's prediction for a point, from the script in a process of its own, equals the library's."""
    name, index, point = next(x for x in POINTS if x[2].model.name == "gpt2-xl" and x[2].recompute == "full")
    code = ("import sys; sys.path.insert(0, 'benchmarks'); import bench_trainer; "
            "from flopscalc.calibration import load_profile; "
            f"p = load_profile('benchmarks/results/{name}').points[{index}]; "
            f"print(repr(bench_trainer.predicted_step_s(p, '{GPU}'))); "
            "print(repr(bench_trainer.predicted_step_s(p, None)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.split()
    assert out == [repr(point_estimate(point, get_gpu(GPU)).step_s), "None"]
