"""`bench`/`calibrate` pick torch's thread count on a CPU, record what torch used, and say when the machine is
oversubscribed (issue 18); the benchmarks' conditions helper records what a results file needs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from flopscalc.errors import UsageError
from flopscalc.train.config import DEFAULT_CPU_THREADS, choose_threads, usable_cores

ROOT = Path(__file__).resolve().parent.parent


def test_default_on_a_cpu_is_one_thread_and_a_gpu_keeps_torchs_own():
    choice = choose_threads(None, "cpu", n_cores=2, load_avg_1min=0.5)
    assert choice.n_threads == DEFAULT_CPU_THREADS == 1
    assert "default" in choice.reason
    assert choose_threads(None, "cuda", n_cores=2, load_avg_1min=0.5) is None
    assert choose_threads(3, "cuda", n_cores=4, load_avg_1min=0.5).n_threads == 3


def test_oversubscription_is_load_above_the_core_count():
    busy = choose_threads(None, "cpu", n_cores=2, load_avg_1min=2.6)
    idle = choose_threads(None, "cpu", n_cores=2, load_avg_1min=2.0)  # exactly one runnable task per core: not over
    assert busy.oversubscribed and not idle.oversubscribed
    assert "oversubscribed" in busy.note() and "2.60 on 2 cores" in busy.note()
    assert "oversubscribed" not in idle.note()
    with pytest.raises(UsageError, match="--threads 4 is more than the 2 CPU cores"):
        choose_threads(4, "cpu", n_cores=2, load_avg_1min=0.1)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_thread_count_must_be_a_positive_integer(bad):
    with pytest.raises(UsageError, match="--threads must be a positive integer"):
        choose_threads(bad, "cpu")


@pytest.mark.parametrize("requested", [None, 2])
def test_recorded_thread_count_is_what_torch_used_during_the_timed_steps(monkeypatch, requested):
    torch = pytest.importorskip("torch")
    if (requested or 1) > usable_cores():
        pytest.skip(f"--threads {requested} is refused on {usable_cores()} usable core(s)")
    from flopscalc.model import ModelConfig
    from flopscalc.train import bench
    from flopscalc.train.trainer import Trainer

    seen = []
    step = Trainer.train_step

    def spy(self):
        seen.append(torch.get_num_threads())  # observed inside every warm-up and timed step
        return step(self)

    monkeypatch.setattr(Trainer, "train_step", spy)
    tiny = ModelConfig(n_layer=1, n_head=1, n_embd=16, block_size=16, vocab_size=64, name="tiny")
    before = torch.get_num_threads()
    prof = bench.run_benchmarks([bench.BenchSetup(tiny, 2, 8, device="cpu", warmup_steps=1, timed_steps=2)],
                                n_threads=requested)
    expected = requested or DEFAULT_CPU_THREADS
    assert seen == [expected] * 3
    note = [n for n in prof.notes if n.startswith("CPU threads")]
    assert len(note) == 1 and f"torch used {expected} intra-op thread" in note[0]
    assert "load average" in note[0]
    assert torch.get_num_threads() == before  # the process's setting is given back


def _conditions_module():
    spec = importlib.util.spec_from_file_location("_conditions", ROOT / "benchmarks" / "_conditions.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_conditions_carry_what_a_results_file_needs():
    torch = pytest.importorskip("torch")
    cond = _conditions_module()
    got = cond.finish(cond.start())
    for key in ("date", "cpu_model", "n_cores", "threads", "load_avg_before", "load_avg_after", "versions"):
        assert got[key] is not None, key
    assert set(got["versions"]) >= {"python", "numpy", "scipy", "torch"}
    assert got["versions"]["numpy"] == sys.modules["numpy"].__version__
    assert got["threads"]["torch"]["intra_op"] == torch.get_num_threads()  # torch is imported in this process
    assert "_t0" not in got and got["wall_s"] >= 0


def test_pinning_blas_threads_after_numpy_is_refused_without_threadpoolctl():
    cond = _conditions_module()
    if importlib.util.find_spec("threadpoolctl") is not None:
        pytest.skip("threadpoolctl can pin after import")
    with pytest.raises(RuntimeError, match="before numpy is imported"):
        cond.pin_threads(1)


def test_bench_threads_option_reaches_the_profile_and_bad_values_are_refused(capsys, tmp_path):
    pytest.importorskip("torch")
    if usable_cores() < 2:
        pytest.skip("--threads 2 is refused on one usable core")
    from flopscalc.cli import run

    shape = ["--n-layer", "1", "--n-head", "1", "--n-embd", "16", "--block-size", "16", "--vocab-size", "64",
             "--micro-batch", "2", "--device", "cpu", "--warmup-steps", "1", "--steps", "1"]
    assert run(["bench", *shape, "--threads", "2", "--out", str(tmp_path / "p.json"), "--json"]) == 0
    saved = json.loads((tmp_path / "p.json").read_text())
    assert any("torch used 2 intra-op threads (as requested" in n for n in saved["notes"])
    capsys.readouterr()
    assert run(["bench", *shape, "--threads", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--threads must be a positive integer, got 0" in err
