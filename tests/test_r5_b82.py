"""Review r5, helper b82: train --resume checks the schedule and batch settings; --n-head with --n-kv-head over a
config file; calibrate refuses a sweep too small to fit; a CPU profile's step prints CPU time and host memory."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from flopscalc.calibration import CalibrationPoint, CalibrationProfile, save_profile
from flopscalc.cli import run
from flopscalc.memory import Device, TrainingSetup, estimate_memory
from flopscalc.memory.precision import MemoryPrecision
from flopscalc.memory.settings import DEFAULT_CUDA_CONTEXT_BYTES
from flopscalc.model import ModelConfig, count_params

ROOT = Path(__file__).resolve().parents[1]
LLAMA_FILE = ROOT / "data" / "configs" / "llama-3.1-8b.json"
SHAPE = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--vocab-size", "64"]
TRAIN = ["--synthetic", *SHAPE, "--seq", "16", "--eval-interval", "0", "--eval-batches", "1", "--device", "cpu",
         "--json"]


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# ---- 1. train --resume: the schedule and batch settings of the checkpoint --------------------------------------


@pytest.fixture
def trained(tmp_path, capsys, one_torch_thread):
    """A finished 3-step run (warm-up 0, micro-batch 4) and its checkpoint."""
    ck = tmp_path / "ck.pt"
    args = [*TRAIN, "--micro-batch", "4", "--warmup-steps", "0", "--checkpoint", str(ck)]
    assert run(["train", *args, "--steps", "3"]) == 0
    capsys.readouterr()
    return ck, args


@pytest.mark.parametrize("change,words", [
    (["--steps", "4"], "--steps 4 (checkpoint: 3)"),  # r5: the cosine was recomputed over 40 steps, lr 3.09e-4 -> 7.82e-4
    (["--steps", "3", "--lr", "1e-2"], "--lr 0.01 (checkpoint: 0.0006)"),
    (["--steps", "3", "--min-lr-ratio", "0.5"], "--min-lr-ratio 0.5 (checkpoint: 0.1)"),
    (["--steps", "3", "--weight-decay", "0"], "--weight-decay 0 (checkpoint: 0.1)"),
])
def test_a_resume_with_other_settings_is_refused_naming_each(trained, capsys, change, words):
    ck, args = trained
    assert run(["train", *args, *change, "--resume"]) == 2
    err = _err_line(capsys)
    assert words in err and str(ck) in err and "--new-schedule" in err


def test_a_resume_with_another_micro_batch_is_refused_with_both_values(tmp_path, capsys, one_torch_thread):
    ck = tmp_path / "ck.pt"
    base = [*TRAIN, "--warmup-steps", "0", "--steps", "2", "--checkpoint", str(ck)]
    assert run(["train", *base, "--micro-batch", "2"]) == 0
    capsys.readouterr()
    assert run(["train", *base, "--micro-batch", "16", "--lr", "1e-2", "--resume"]) == 2
    err = _err_line(capsys)
    batch = ("--micro-batch 16 x --grad-accum 1 = 16 sequences per step (checkpoint: --micro-batch 2 x --grad-accum 1 "
             "= 2 sequences per step)")
    assert "--lr 0.01 (checkpoint: 0.0006)" in err and batch in err
    # --new-schedule changes the schedule only: the batch still has to match
    assert run(["train", *base, "--micro-batch", "16", "--resume", "--new-schedule"]) == 2
    assert batch in _err_line(capsys)
    # the same sequences per step, split another way, is the same step (as two processes resume in one)
    assert run(["train", *base, "--micro-batch", "1", "--grad-accum", "2", "--resume"]) == 0
    capsys.readouterr()


def test_the_same_settings_resume(trained, capsys):
    _, args = trained
    assert run(["train", *args, "--steps", "3", "--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["steps_done"] == 3


def _cosine(step: int, n_steps: int, peak: float = 6e-4, floor: float = 0.1) -> float:
    """nanoGPT's get_lr with no warm-up (train.py; SGDR eq. 5): written out here as the reference."""
    return peak * (floor + 0.5 * (1 - floor) * (1 + math.cos(math.pi * step / n_steps)))


def test_new_schedule_extends_the_run_on_the_longer_cosine_and_says_where_the_lr_moves(trained, tmp_path, capsys):
    _, args = trained
    log = tmp_path / "m.jsonl"
    assert run(["train", *args, "--steps", "5", "--resume", "--new-schedule", "--metrics-log", str(log)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps_done"] == 5
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["step"] for r in rows] == [4, 5]
    assert [r["lr"] for r in rows] == pytest.approx([_cosine(3, 5), _cosine(4, 5)], rel=1e-12)
    note = next(n for n in out["notes"] if n.startswith("--new-schedule"))
    assert f"{_cosine(3, 5):.3g} at step 4" in note and f"gives {_cosine(3, 3):.3g}" in note
    assert "--steps 5" in note and "--steps 3" in note


@pytest.mark.parametrize("extra,words", [
    (["--steps", "3", "--resume", "--new-schedule"], "--new-schedule changes nothing"),
    (["--steps", "2", "--lr", "1e-3", "--resume", "--new-schedule"], "--steps 2 is not past the checkpoint's step 3"),
])
def test_new_schedule_that_changes_nothing_or_runs_nothing_is_refused(trained, capsys, extra, words):
    _, args = trained
    assert run(["train", *args, *extra]) == 2
    assert words in _err_line(capsys)


def test_new_schedule_without_resume_is_refused(tmp_path, capsys):
    assert run(["train", *TRAIN, "--steps", "2", "--checkpoint", str(tmp_path / "new.pt"), "--new-schedule"]) == 2
    assert "--new-schedule changes the schedule a --resume continues on" in _err_line(capsys)


def test_a_checkpoint_without_stored_settings_resumes_as_before_with_a_note(trained, capsys):
    torch = pytest.importorskip("torch")
    from flopscalc.train.checkpoint import save_checkpoint

    ck, args = trained
    old = torch.load(ck, map_location="cpu", weights_only=True)
    assert "run_settings" in old  # what this version writes; an older one wrote none
    save_checkpoint(ck, {k: v for k, v in old.items() if k not in ("run_settings", "format", "version")})
    assert run(["train", *args, "--steps", "4", "--resume"]) == 0  # unchecked, as before
    out = json.loads(capsys.readouterr().out)
    assert out["steps_done"] == 4
    assert any("does not record its schedule and batch settings" in n for n in out["notes"])


# ---- 2. --n-head with --n-kv-head over a config file; train's name -------------------------------------------------


def _llama_block_params(d: int, n_head: int, n_kv: int, ffn: int) -> int:
    """One Llama block (Touvron et al. 2023, sec. 2; GQA, Ainslie et al. 2023): q and o d x d, k and v
    d x (n_kv x d / n_head), SwiGLU's three d x ffn matrices, two RMSNorm weights; no biases."""
    kv = n_kv * d // n_head
    return 2 * d * d + 2 * d * kv + 3 * d * ffn + 2 * d


def test_memory_takes_n_head_and_n_kv_head_together_over_a_config_file(capsys):
    # r5: refused with 'n_head (4) must be a multiple of n_kv_head (8)', the file's KV heads checked before --n-kv-head
    args = ["memory", "--config", str(LLAMA_FILE), "--n-layer", "2", "--n-head", "4", "--n-kv-head", "2",
            "--n-embd", "64", "--ffn", "128", "--gpu", "4090", "--json"]
    assert run(args) == 0
    out = json.loads(capsys.readouterr().out)
    vocab = json.loads(LLAMA_FILE.read_text())["vocab_size"]  # 128256, untied: embedding and head
    assert out["n_params"] == 2 * vocab * 64 + 2 * _llama_block_params(64, 4, 2, 128) + 64  # + the final norm


def test_bench_builds_the_module_the_combined_options_describe(capsys, one_torch_thread):
    """The trainer's module, counted by PyTorch, has the parameters the hand count gives (GQA 4/2 over the file)."""
    pytest.importorskip("torch")
    args = ["bench", "--config", str(LLAMA_FILE), "--n-layer", "1", "--n-head", "4", "--n-kv-head", "2",
            "--n-embd", "32", "--ffn", "64", "--vocab-size", "128", "--seq", "16", "--micro-batch", "1",
            "--device", "cpu", "--warmup-steps", "1", "--steps", "1", "--json"]
    assert run(args) == 0
    point = json.loads(capsys.readouterr().out)["points"][0]
    assert point["n_params"] == 2 * 128 * 32 + _llama_block_params(32, 4, 2, 64) + 32


def test_train_names_the_block_size_and_vocabulary_it_changed(capsys, one_torch_thread):
    assert run(["train", *TRAIN, "--micro-batch", "2", "--steps", "1", "--warmup-steps", "0"]) == 0
    name = json.loads(capsys.readouterr().out)["model"]
    assert "block_size=32" in name and "vocab_size=64" in name


# ---- 3. calibrate with too few setups; step on a profile without factors ------------------------------------------


def test_calibrate_with_fewer_than_5_setups_is_refused_before_timing(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    import flopscalc.train.calibrate as cal

    def no_timing(*a, **k):
        raise AssertionError("timed a sweep that cannot be fitted")

    monkeypatch.setattr(cal, "run_benchmarks", no_timing)
    out = tmp_path / "p.json"
    args = ["calibrate", "--out", str(out), *SHAPE, "--micro-batch", "2", "--micro-batch", "4", "--seq", "16",
            "--device", "cpu"]
    assert run(args) == 2
    err = _err_line(capsys)
    assert "needs at least 5 setups, got 2" in err and "--micro-batch" in err
    assert not out.exists()


def _points(n: int) -> tuple[CalibrationPoint, ...]:
    cfg = ModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=32, vocab_size=64)
    return tuple(CalibrationPoint(
        model=cfg, n_params=count_params(cfg).total, micro_batch=b, seq_len=32, grad_accum=1, n_devices=1,
        precision="fp32", compiled=False, step_time_s=0.01 * b, tokens_per_s=3200, model_flops_per_token=1e6,
        achieved_flop_per_s=3.2e9, peak_flop_per_s=None, mfu=None) for b in range(1, n + 1))


@pytest.mark.parametrize("n_points,probe,words", [
    (3, 1e10, "it timed 3 setup(s) and the fit of 4 factors needs 5 or more"),
    (5, None, "written by 'bench', which times without fitting"),
])
def test_step_says_why_a_profile_has_no_factors(tmp_path, capsys, n_points, probe, words):
    prof = CalibrationProfile("CPU x86_64", None, "2.13.0", "2026-11-28", _points(n_points),
                              measured_gemm_flop_per_s=probe)
    path = save_profile(prof, tmp_path / "p.json")
    assert run(["step", "--gpu", "cpu", "--calibration", str(path), *SHAPE[:6], "--vocab", "64", "--seq", "32",
                "--precision", "fp32"]) == 2
    err = _err_line(capsys)
    assert words in err and "older flopscalc" not in err.split(words)[0]


# ---- 4. a CPU profile: CPU seconds said, host memory without CUDA's ------------------------------------------------


STEP = ["--n-layer", "2", "--n-head", "2", "--n-embd", "64", "--vocab", "64", "--micro-batch", "8", "--seq", "64",
        "--precision", "fp32"]


def test_step_on_a_cpu_profile_reports_cpu_time_and_the_wall_time_it_ran_to(cpu_profile, capsys):
    saved = json.loads(cpu_profile.read_text())
    assert saved["device_factors"]["timing"] == "process CPU"
    # the profile's own measurements: wall seconds over process CPU seconds, per setup
    ratio = statistics.median(p["step_time_s"] / p["cpu_step_time_s"] for p in saved["points"])
    assert run(["step", "--gpu", "cpu", "--calibration", str(cpu_profile), *STEP, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["timing"] == "process CPU"
    assert out["wall_step_s"] == pytest.approx(out["step_s"] * ratio, rel=1e-12)
    assert out["wall_tokens_per_s"] == pytest.approx(8 * 64 / out["wall_step_s"], rel=1e-12)
    assert run(["step", "--gpu", "cpu", "--calibration", str(cpu_profile), *STEP]) == 0
    shown = capsys.readouterr().out
    assert "of process CPU time" in shown and "ms wall" in shown and "per wall second" in shown
    assert "Process CPU time of one optimizer step" in shown and "per GPU" not in shown
    assert "memory (host)" in shown and "memory per GPU" not in shown


def test_step_on_a_cpu_profile_counts_host_memory_without_the_cuda_context(cpu_profile, capsys):
    """r5: 520.85 MiB printed where bench predicts 7.73 MiB: the 512 MiB CUDA context and the caching allocator's
    5% were added to a CPU run. The CPU peak is the allocated peak, which equals the bytes measured on a CPU
    (tests/test_memory_measured.py), and is what bench predicts for the run (train/bench.predicted_peak_bytes)."""
    torch = pytest.importorskip("torch")
    from flopscalc.train.bench import predicted_peak_bytes
    from flopscalc.train.config import TrainConfig

    assert run(["step", "--gpu", "cpu", "--calibration", str(cpu_profile), *STEP, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    cfg = ModelConfig(n_layer=2, n_head=2, n_embd=64, vocab_size=64)  # step's shape: GPT-2's 1024-row position table
    bench = predicted_peak_bytes(TrainConfig(model=cfg, micro_batch=8, seq_len=64), "fp32", torch.device("cpu"), 1)
    assert out["peak_memory_bytes"] == bench
    assert out["peak_memory_bytes"] < DEFAULT_CUDA_CONTEXT_BYTES


def test_the_memory_engine_adds_cuda_context_and_allocator_reserve_on_cuda_only():
    cfg = ModelConfig(n_layer=2, n_head=2, n_embd=64, block_size=64, vocab_size=64)
    on = {d: estimate_memory(cfg, TrainingSetup(micro_batch=8, seq_len=64, precision=MemoryPrecision.fp32, device=d))
          for d in (Device.cpu, Device.cuda)}
    cpu, cuda = on[Device.cpu].component_bytes(), on[Device.cuda].component_bytes()
    assert cpu["cuda_context"] == 0 and cpu["allocator_overhead"] == 0 and cpu["blas_workspaces"] == 0
    assert on[Device.cpu].peak_bytes == on[Device.cpu].allocated_peak_bytes
    assert cuda["cuda_context"] == DEFAULT_CUDA_CONTEXT_BYTES and cuda["allocator_overhead"] > 0
    assert not any(a.name == "CUDA context" for a in on[Device.cpu].assumptions)

