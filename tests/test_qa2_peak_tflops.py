"""QA pass 2, bug 7: `bench --peak-tflops inf` was accepted and reported MFU 0 (a finite rate over an infinite
peak). A stated peak must be positive and finite, in the bench, train and calibrate paths alike (all resolve it in
`train.bench.resolve_peak`); one line, exit 2, before any timing."""

from __future__ import annotations

import pytest

from flopscalc.cli import run
from flopscalc.errors import UsageError

torch = pytest.importorskip("torch")

SHAPE = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32"]


@pytest.mark.parametrize("peak", ["inf", "nan", "1e308"])  # 1e308 TFLOP/s overflows to inf FLOP/s
def test_bench_refuses_a_peak_that_is_not_finite(capsys, peak):
    assert run(["bench", *SHAPE, "--device", "cpu", "--steps", "1", "--warmup-steps", "1",
                "--peak-tflops", peak]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--peak-tflops must be positive and finite" in err


@pytest.mark.parametrize("peak", [float("inf"), float("nan"), 0.0, -1.0])
def test_resolve_peak_is_the_one_check(peak):
    from flopscalc.train.bench import resolve_peak

    with pytest.raises(UsageError):
        resolve_peak("cpu", "fp32", None, peak)


def test_a_finite_peak_gives_a_positive_mfu():
    from flopscalc.train.bench import resolve_peak

    _, _, peak, _ = resolve_peak("cpu", "fp32", None, 0.5)
    assert peak == 0.5e12
