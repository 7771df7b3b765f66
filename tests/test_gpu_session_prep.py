"""The next GPU session's measurements, checked here without a GPU (brief b73, stop 16's "Left for next time").

`benchmarks/gpu_session.sh next` times GPT-2's LM-head GEMMs at vocabulary 50257 and 50304, an eager step with the
vocabulary padded, a compiled padded step at micro-batch 64 and a grad-accum 2 memory point. A lent GPU has
minutes, so every command of that part is run here in its dry-run form (`DRY_RUN=1`), and each prediction the
scripts will record beside a measurement is checked to be the engine's own: the step model's op or step time
(`perf.step`, `perf.estimate_step`) and the memory estimator's peak (`memory.estimate_memory`), called here with
the settings stated from the GPT-2 paper's shapes, not copied from the scripts. The GEMM probe's torch calls run on
the CPU at a tiny size, so a layout slip (a transposed operand, a wrong output) shows before a GPU is spent on it.

The bench scripts pin BLAS threads at import (`benchmarks/_conditions.py`, which refuses once numpy is loaded), so
bench_trainer.py and bench_memory_gpu.py run in their own processes here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flopscalc.hardware import Precision, get_gpu
from flopscalc.memory import Device, MemoryPrecision, TrainingSetup, estimate_memory
from flopscalc.model import ModelConfig, get_preset
from flopscalc.perf import estimate_step
from flopscalc.perf.device import device_perf
from flopscalc.perf.op_kinds import StepOptions

ROOT = Path(__file__).resolve().parents[1]
SESSION = ROOT / "benchmarks" / "gpu_session.sh"
# GPT-2 small (Radford et al. 2019, Table 2; the released vocabulary, 50257) at the trainer's micro-batch 8 x 1024
N_EMBD, VOCAB, TOKENS = 768, 50257, 8 * 1024
VOCAB_PADDED = 50304  # nanoGPT's vocab_size=50304 ("padded up to nearest multiple of 64 for efficiency")
H200 = "h200-sxm"


def _gemm_script():
    spec = importlib.util.spec_from_file_location("bench_gemm_gpu", ROOT / "benchmarks" / "bench_gemm_gpu.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _in_own_process(script: str, expr: str):
    """``expr`` (JSON-able) evaluated in a fresh process with benchmarks/``script`` loaded as ``mod``."""
    code = ("import importlib.util, json, sys\n"
            f"spec = importlib.util.spec_from_file_location('m', {str(ROOT / 'benchmarks' / script)!r})\n"
            "mod = sys.modules['m'] = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
            f"print(json.dumps({expr}))\n")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _session(part: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SESSION), part], check=False, capture_output=True, text=True, cwd=ROOT,
                          timeout=300, env={**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT), **env})


def _script_run(script: str, *argv: str) -> subprocess.CompletedProcess:
    """benchmarks/``script`` run with ``argv`` in its own process."""
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *argv], check=False,
                          capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


# ---- gpu_session.sh ------------------------------------------------------------------------------------------------

@needs_bash
def test_the_session_script_parses():
    done = subprocess.run(["bash", "-n", str(SESSION)], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@needs_bash
def test_all_runs_the_next_part_first_and_leaves_out_what_its_header_says():
    done = _session("all", DRY_RUN="1")
    assert done.returncode == 0, done.stdout + done.stderr
    started = [line.split()[1].rstrip(":") for line in done.stdout.splitlines() if line.endswith(
        tuple("0123456789")) and line.startswith("=== ") and ": start " in line]
    assert started[:4] == ["next-gemm-lm-head", "next-trainer-eager-pad64", "next-memory-accum2",
                           "next-trainer-compiled-pad64-mb64"]
    assert started[4:] == ["smoke-train", "smoke-resume", "trainer-eager", "trainer-eager-sizes", "gemm",
                           "trainer-compiled-pad64", "memory"]
    header = SESSION.read_text().split("set -uo")[0]
    assert "not the unpadded compiled sweep nor" in header and "recompute" in header
    # the next part really ran its scripts' dry runs (no GPU here) and none of them failed
    assert "FAILED" not in done.stdout and done.stdout.count("dry run on h200-sxm") == 3


@needs_bash
def test_the_next_part_plans_the_shapes_and_files_the_brief_asks_for():
    out = _session("next", DRY_RUN="1").stdout
    for m, n, k in [(TOKENS, VOCAB, N_EMBD), (TOKENS, N_EMBD, VOCAB), (N_EMBD, VOCAB, TOKENS)]:
        assert f"{m}x{n}x{k}" in out  # forward, input gradient, weight gradient at 50257 ...
        twin = f"{m}x{n}x{k}".replace(str(VOCAB), str(VOCAB_PADDED))
        assert twin in out  # ... each beside the aligned 50304 twin
    assert "mb=8 seq=1024 compile=False" in out and "mb=32 seq=1024 compile=False" in out
    assert "mb=64 seq=1024 compile=True" in out and out.count(f"vocab {VOCAB_PADDED} mb=") == 3
    assert "mb=8   accum=2" in out
    for name in ("gemm_h200-sxm_", "_lm-head.json", "trainer_h200-sxm_", "_eager-pad64.md",
                 "_compiled-pad64-mb64.md", "_accum2.md"):
        assert name in out, name


@needs_bash
def test_an_unknown_part_is_one_line_and_exit_2():
    done = _session("nxt")
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "next" in done.stderr


@needs_bash
def test_a_failing_part_does_not_stop_the_rest(tmp_path):
    # a Python that fails every command: each part is tried, and the exit status says some failed
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    done = _session("next", PYTHON=str(fake))
    assert done.returncode == 1
    assert done.stdout.count("FAILED (3)") == 4 and "failed: next-gemm-lm-head" in done.stdout


# ---- the LM-head GEMM probe (bench_gemm_gpu.py --lm-head) ----------------------------------------------------------

def _priced_step_ops(vocab: int):
    """The eager step of GPT-2 small at micro-batch 8 x 1024 on the H200, as `flopscalc step` prices it."""
    cfg = get_preset("gpt2").with_(vocab_size=vocab)
    setup = TrainingSetup(micro_batch=8, seq_len=1024, precision=MemoryPrecision.bf16_mixed, device=Device.cuda)
    return {p.op.name: p for p in estimate_step(cfg, setup, get_gpu(H200), StepOptions(gemm_shape_padding=False)).ops}


def test_the_lm_head_plan_is_the_step_models_ops_and_prices():
    mod = _gemm_script()
    rows = mod.lm_head_plan(H200)
    want = {("lm head fwd", TOKENS, VOCAB, N_EMBD), ("lm head dgrad", TOKENS, N_EMBD, VOCAB),
            ("lm head wgrad", N_EMBD, VOCAB, TOKENS)}
    twins = {(op, *(VOCAB_PADDED if d == VOCAB else d for d in dims)) for op, *dims in want}
    assert {(r["op"], r["m"], r["n"], r["k"]) for r in rows} == want | twins
    gpu = get_gpu(H200)
    misaligned_tflops = device_perf(gpu).misaligned_gemm_fraction * gpu.peak_flop_per_s(Precision.bf16) / 1e12
    for vocab in (VOCAB, VOCAB_PADDED):
        step = _priced_step_ops(vocab)
        for r in (r for r in rows if r["vocab"] == vocab):
            # exactly the seconds the whole-step estimate gives this op (one micro-batch: one occurrence)
            assert r["predicted_step_s"] == step[r["op"]].seconds and step[r["op"]].op.count == 1
            assert r["misaligned"] is (vocab == VOCAB)
            if r["misaligned"]:  # eager: cuBLAS's align1 kernel at data/gpu_perf.csv's measured rate
                assert r["predicted_tflops"] == pytest.approx(misaligned_tflops, rel=1e-12)
            else:  # aligned: the same rule the square-shape probe prices with
                assert r["predicted_tflops"] == pytest.approx(mod.predicted_tflops(r["m"], r["n"], r["k"], H200),
                                                              rel=1e-12)
    # the measurement this plans can tell the attribution apart: unaligned priced >= 4x slower than its twin
    by = {(r["op"], r["vocab"]): r["predicted_step_s"] for r in rows}
    assert all(by[(op, VOCAB)] > 4 * by[(op, VOCAB_PADDED)] for op, *_ in want)


def test_the_lm_head_products_run_on_a_cpu_with_the_models_shapes():
    mod = _gemm_script()
    tiny = ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=57, name="tiny")
    rows = mod.measure_lm_head(tiny, 2, 32, (57, 64), device="cpu")
    assert [(r["op"], r["vocab"]) for r in rows] == [(f"lm head {k}", v) for v in (57, 64)
                                                     for k in ("fwd", "dgrad", "wgrad")]
    for r in rows:
        ops = {op.name: op for op in mod.lm_head_ops(tiny.with_(vocab_size=r["vocab"]), 2, 32)}
        assert (r["m"], r["n"], r["k"]) == ops[r["op"]].gemm_shape[:3]
        assert r["measured_s"] > 0 and r["measured_tflops"] == pytest.approx(
            2 * r["m"] * r["n"] * r["k"] / r["measured_s"] / 1e12)


def test_a_timed_product_that_is_not_the_models_shape_is_refused():
    torch = pytest.importorskip("torch")
    mod = _gemm_script()
    tiny = ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=57, name="tiny")
    for op in mod.lm_head_ops(tiny, 2, 32):
        mod._lm_head_call(torch, op, 64, 16, 57, "cpu", torch.float32)  # the model's shapes pass
        m, n, k, batch = op.gemm_shape
        wrong = type(op)(**{**op.__dict__, "gemm_shape": (k, n, m, batch)})  # output and summed dims swapped
        with pytest.raises(AssertionError, match="does not match"):
            mod._lm_head_call(torch, wrong, 64, 16, 57, "cpu", torch.float32)


def test_a_recorded_lm_head_run_is_priced_beside_each_row(tmp_path, capsys):
    mod = _gemm_script()
    plan = mod.lm_head_plan(H200)
    recorded = {"device": "NVIDIA H200", "lm_head": [
        {"op": r["op"], "vocab": r["vocab"], "m": r["m"], "n": r["n"], "k": r["k"], "measured_s": 1e-3,
         "measured_tflops": 2 * r["m"] * r["n"] * r["k"] / 1e-3 / 1e12} for r in plan]}
    path = tmp_path / "gemm_h200-sxm_20990101_lm-head.json"
    path.write_text(json.dumps(recorded))
    assert mod.main(["--from-json", str(path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6
    for line, r, m in zip(lines, plan, recorded["lm_head"]):
        assert f"{100 * (r['predicted_tflops'] / m['measured_tflops'] - 1):+.1f}%" in line
    recorded["lm_head"][0]["n"] += 1  # a row this script does not plan: one line, exit 2
    path.write_text(json.dumps(recorded))
    assert mod.main(["--from-json", str(path)]) == 2
    assert "not one this script plans" in capsys.readouterr().err


def test_the_lm_head_run_writes_its_prices_and_reads_back(tmp_path, capsys, monkeypatch):
    # main's CUDA branch with the timing replaced (no GPU here): what a lent H200 would write, and that the script
    # reads its own file back
    torch = pytest.importorskip("torch")
    mod = _gemm_script()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H200")
    timed = []

    def fake(cfg, micro_batch, seq, vocabs):
        timed.append((cfg.name, cfg.n_embd, micro_batch, seq, tuple(vocabs)))
        return [{"op": r["op"], "vocab": r["vocab"], "m": r["m"], "n": r["n"], "k": r["k"], "measured_s": 2e-3,
                 "measured_tflops": 2 * r["m"] * r["n"] * r["k"] / 2e-3 / 1e12} for r in mod.lm_head_plan(H200)]

    monkeypatch.setattr(mod, "measure_lm_head", fake)
    out = tmp_path / "lm.json"
    assert mod.main(["--lm-head", "--out", str(out)]) == 0
    assert timed == [("gpt2", N_EMBD, 8, 1024, (VOCAB, VOCAB_PADDED))]
    written = json.loads(out.read_text())
    assert written["gpu_key"] == H200 and len(written["lm_head"]) == 6
    for row, plan in zip(written["lm_head"], mod.lm_head_plan(H200)):
        assert row["predicted_step_s"] == plan["predicted_step_s"]
        assert row["error"] == pytest.approx(plan["predicted_tflops"] / row["measured_tflops"] - 1)
    capsys.readouterr()
    assert mod.main(["--from-json", str(out)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 6


@pytest.mark.parametrize("argv, words", [
    (["--dry-run", "--lm-head"], "--gpu"),
    (["--dry-run", "--gpu", "h200", "--out", "x.json"], "--out"),
    (["--lm-head", "--from-json", "benchmarks/results/gemm_h200-sxm_20261128.json"], "--lm-head"),
])
def test_contradictory_probe_options_are_refused(capsys, argv, words):
    assert _gemm_script().main(argv) == 2
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.strip().splitlines()) == 1 and words in out.err


# ---- trainer points (bench_trainer.py --dry-run) -------------------------------------------------------------------

def _trainer_rows(*argv: str) -> list[dict]:
    setup = "__import__('flopscalc.train.bench', fromlist=['BenchSetup']).BenchSetup"
    expr = (f"(lambda a: mod.dry_run_rows([{setup}(model=m, micro_batch=b, seq_len=1024, compile=c) "
            "for m, b, c in a], 'h200-sxm'))([(mod.get_preset('gpt2').with_(vocab_size=v), b, c) for v, b, c in "
            f"{list(argv)!r}])")
    return _in_own_process("bench_trainer.py", expr)


def _eager_step_s(vocab: int, micro_batch: int, compiled: bool = False) -> float:
    cfg = get_preset("gpt2").with_(vocab_size=vocab)
    setup = TrainingSetup(micro_batch=micro_batch, seq_len=1024, precision=MemoryPrecision.bf16_mixed,
                          device=Device.cuda)
    return estimate_step(cfg, setup, get_gpu(H200), StepOptions(gemm_shape_padding=compiled)).step_s


def test_the_trainer_dry_run_predicts_the_step_models_time_and_the_estimators_memory():
    rows = _trainer_rows((VOCAB_PADDED, 8, False), (VOCAB_PADDED, 32, False), (VOCAB, 8, False),
                         (VOCAB_PADDED, 64, True))
    for r in rows:
        assert r["predicted_step_s"] == _eager_step_s(r["vocab_size"], r["micro_batch"], r["compiled"])
        setup = TrainingSetup(micro_batch=r["micro_batch"], seq_len=1024, precision=MemoryPrecision.bf16_mixed,
                              device=Device.cuda)
        cfg = get_preset("gpt2").with_(vocab_size=r["vocab_size"])
        assert r["predicted_memory_bytes"] == estimate_memory(cfg, setup).allocated_peak_bytes
    # the eager twins differ by what the LM head's three unaligned GEMMs are priced at (the rest of the step moves
    # by the 47 extra vocabulary rows only), so the measured pair tests the attribution the GEMM probe times
    head = {v: sum(p.total_s for name, p in _priced_step_ops(v).items() if name.startswith("lm head "))
            for v in (VOCAB, VOCAB_PADDED)}
    gap = rows[2]["predicted_step_s"] - rows[0]["predicted_step_s"]
    assert gap == pytest.approx(head[VOCAB] - head[VOCAB_PADDED], rel=0.01)
    # issue 5's compiled mb 64: the estimator says it fits an 80 GB card (the brief: "80+ GB")
    assert rows[3]["fits"] and rows[3]["predicted_memory_bytes"] < get_gpu("h100-sxm").memory_bytes


def test_the_trainer_dry_run_needs_a_gpu_row():
    done = _script_run("bench_trainer.py", "--dry-run")
    assert done.returncode == 2 and done.stdout == "" and len(done.stderr.strip().splitlines()) == 1
    assert "--gpu" in done.stderr


# ---- memory at grad-accum 2 (bench_memory_gpu.py --grad-accum) -----------------------------------------------------

def test_the_accumulation_point_carries_the_estimators_prediction_for_it():
    expr = ("[[{k: v for k, v in r.items() if k != 'config'} for r in mod.planned_rows(mod.argparse.Namespace("
            "device='cuda', models='gpt2', micro_batches='8', seq=None, recompute='none', no_flash=False, "
            "grad_accum=a))] for a in (1, 2)]")
    one, two = _in_own_process("bench_memory_gpu.py", expr)
    setup = TrainingSetup(micro_batch=8, seq_len=1024, precision=MemoryPrecision.bf16_mixed, device=Device.cuda,
                          grad_accum=2)
    assert len(two) == 1 and two[0]["grad_accum"] == 2
    assert two[0]["estimated_allocated_bytes"] == estimate_memory(get_preset("gpt2"), setup).allocated_peak_bytes
    # the option reaches the estimator: accumulation keeps gradients through the forward (docs/memory.md)
    assert two[0]["estimated_allocated_bytes"] > one[0]["estimated_allocated_bytes"]


def test_the_accumulating_loop_runs_on_a_cpu_and_records_its_settings(tmp_path):
    out = tmp_path / "memory.md"
    done = _script_run("bench_memory_gpu.py", "--device", "cpu", "--micro-batches", "2", "--grad-accum", "2",
                       "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    tiny = ModelConfig(n_layer=2, n_head=4, n_embd=128, block_size=128, vocab_size=1000, name="tiny")
    setup = TrainingSetup(micro_batch=2, seq_len=128, precision=MemoryPrecision.fp32, device=Device.cpu,
                          grad_accum=2)
    assert [(r["model"], r["micro_batch"], r["grad_accum"]) for r in rows] == [("tiny", 2, 2)]
    assert rows[0]["estimated_allocated_bytes"] == estimate_memory(tiny, setup).allocated_peak_bytes
    assert "| tiny | 2 | 2 | 128 |" in out.read_text()


@pytest.mark.parametrize("argv, words", [
    (["--grad-accum", "0", "--dry-run"], "--grad-accum"),
    (["--label", "x", "--out", "y.md"], "--label"),
    (["--models", "gpt3", "--dry-run"], "gpt3"),
])
def test_bad_memory_options_are_one_line(argv, words):
    done = _script_run("bench_memory_gpu.py", *argv)
    assert done.returncode == 2 and done.stdout == "" and len(done.stderr.strip().splitlines()) == 1
    assert words in done.stderr
