"""`flopscalc train prepare`, `train`, `bench`, `calibrate`: wiring, JSON, files written, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from flopscalc.cli import run

torch = pytest.importorskip("torch")

SHAPE = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32"]
# no warm-up: runs of 1-8 steps, and a warm-up at least as long as --steps is refused
TRAIN = ["--micro-batch", "4", "--eval-interval", "0", "--eval-batches", "2", "--warmup-steps", "0",
         "--device", "cpu", "--json"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pydoc")
    assert run(["train", "prepare", str(d), "--pydoc", "--json"]) == 0
    return d


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_prepare_reports_counts(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("hello world, " * 100, encoding="utf-8")
    assert run(["train", "prepare", str(tmp_path / "o"), "--text", str(text), "--format", "raw", "--json"]) == 0
    out = _json(capsys)
    assert out["n_train_tokens"] + out["n_val_tokens"] == 1300 and out["vocab_size"] == 256
    assert (tmp_path / "o" / "train.bin").stat().st_size == 2 * out["n_train_tokens"]  # raw uint16, no header


def test_train_then_resume_writes_checkpoint_and_log(data_dir, tmp_path, capsys):
    ck, log = tmp_path / "ck.pt", tmp_path / "m.jsonl"
    base = ["train", "--data", str(data_dir), *SHAPE, *TRAIN, "--steps", "6", "--checkpoint", str(ck),
            "--metrics-log", str(log)]
    assert run(base) == 0
    out = _json(capsys)
    assert out["steps_done"] == 6 and out["n_params"] > 0 and out["final_val_loss"] is not None
    assert ck.is_file() and [json.loads(x)["step"] for x in log.read_text().splitlines()] == list(range(1, 7))
    assert out["tokens_seen"] == 6 * 4 * 32
    assert run([*base[:base.index("--steps")], "--steps", "8", *base[base.index("--steps") + 2:], "--resume",
                "--new-schedule"]) == 0  # a longer run: the schedule changes, so it is asked for
    assert _json(capsys)["steps_done"] == 8
    assert [json.loads(x)["step"] for x in log.read_text().splitlines()] == list(range(1, 9))  # appended


def test_synthetic_training_runs(capsys):
    assert run(["train", "--synthetic", *SHAPE, *TRAIN, "--steps", "2", "--vocab-size", "64"]) == 0
    assert _json(capsys)["steps_done"] == 2


@pytest.mark.parametrize("args,code,match", [
    (["train", "--data", "/no/such/dir", "--steps", "1"], 2, "data folder /no/such/dir does not exist"),
    (["train", "--synthetic", "--micro-batch", "0"], 2, "--micro-batch must be a positive integer"),
    (["train", "--steps", "1"], 2, "give the training data once"),
    (["train", "--synthetic", "--seq", "4096"], 2, "longer than the model's block_size"),
    (["train", "--synthetic", *SHAPE, "--resume"], 2, "--resume needs --checkpoint"),
    (["bench", *SHAPE, "--micro-batch", "0", "--device", "cpu"], 2, "micro-batch must be a positive integer"),
    (["bench", *SHAPE, "--device", "cpu", "--peak-tflops", "-1"], 2, "--peak-tflops must be positive"),
    (["train", "prepare", "/tmp/x", "--text", "/no/such.txt"], 2, "text file /no/such.txt does not exist"),
    (["train", "--synthetic", *SHAPE, "--device", "cpu", "--checkpoint", "/no/such/ck.pt", "--resume"], 2,
     "checkpoint /no/such/ck.pt does not exist"),
    (["train", "--synthetic", *SHAPE, "--steps", "0"], 2, "--steps must be a positive integer"),
    (["train", "--synthetic", *SHAPE, "--vocab-size", "0"], 2, "--vocab-size 0 is too small"),
    (["train", "--synthetic", *SHAPE, "--checkpoint", "/tmp"], 2, "checkpoint /tmp is a directory"),
    (["train", "--synthetic", *SHAPE, "--metrics-log", "/tmp"], 2, "metrics log /tmp is a directory"),
    (["calibrate", "--out", "/tmp", *SHAPE, "--device", "cpu"], 2, "calibration profile /tmp is a directory"),
    (["train", "prepare", "/tmp/x", "--text", "/tmp"], 2, "text file /tmp is a directory"),
])
def test_bad_input_is_one_line(args, code, match, capsys):
    assert run(args) == code
    err = capsys.readouterr().err
    assert err.startswith("flopscalc: error: ") and match in err and err.count("\n") == 1


def _gpt2_bpe_available() -> bool:
    try:
        import tiktoken

        tiktoken.get_encoding("gpt2")
    except Exception:  # noqa: BLE001 - not installed, or its files cannot be fetched offline
        return False
    return True


@pytest.mark.skipif(_gpt2_bpe_available(), reason="tiktoken and its GPT-2 files are available here")
def test_gpt2_tokenizer_without_tiktoken_files(tmp_path, capsys):
    assert run(["train", "prepare", str(tmp_path), "--pydoc", "--tokenizer", "gpt2"]) == 1
    assert "GPT-2 BPE is not available here" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written


def test_bad_checkpoint_and_other_shape(data_dir, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    base = ["train", "--data", str(data_dir), *SHAPE, *TRAIN, "--steps", "1"]
    assert run([*base, "--checkpoint", str(bad), "--resume"]) == 1
    assert "bad.pt is corrupt" in capsys.readouterr().err
    ck = tmp_path / "ck.pt"
    assert run([*base, "--checkpoint", str(ck)]) == 0
    capsys.readouterr()
    wider = [a if a != "32" else "64" for a in base]  # n_embd and block size 64: another shape
    assert run([*wider, "--checkpoint", str(ck), "--resume"]) == 2
    assert "another model shape" in capsys.readouterr().err


def test_truncated_token_file_and_token_beyond_vocab(data_dir, tmp_path, capsys):
    import shutil

    d = tmp_path / "d"
    shutil.copytree(data_dir, d)
    val = d / "val.bin"
    val.write_bytes(val.read_bytes()[:-3])
    assert run(["train", "--data", str(d), *SHAPE, *TRAIN, "--steps", "1"]) == 1
    assert "val.bin is truncated" in capsys.readouterr().err
    shutil.copy(data_dir / "val.bin", val)
    assert run(["train", "--data", str(d), *SHAPE, *TRAIN, "--steps", "1", "--vocab-size", "100"]) == 1
    assert "beyond the model's vocabulary of 100" in capsys.readouterr().err


def test_calibrate_writes_a_profile_the_planner_can_read(tmp_path, capsys):
    from flopscalc.calibration import load_profile

    out = tmp_path / "cpu.json"
    batches = [x for b in (1, 2, 3, 4, 5) for x in ("--micro-batch", str(b))]  # the fewest setups the fit takes
    args = ["calibrate", "--out", str(out), *SHAPE, *batches, "--seq", "16", "--device", "cpu", "--warmup-steps", "1",
            "--steps", "1", "--rounds", "1", "--peak-tflops", "0.5", "--json"]
    assert run(args) == 0
    shown = _json(capsys)
    prof = load_profile(out)
    assert [p.micro_batch for p in prof.points] == [1, 2, 3, 4, 5] and shown["written_to"] == str(out)
    assert all(p.peak_flop_per_s == 0.5e12 and p.mfu > 0 for p in prof.points)
    assert prof.mfu_for(prof.points[0].n_params, micro_batch=4) == pytest.approx(prof.points[3].mfu)


def test_bench_table_on_cpu_without_peak(capsys):
    assert run(["bench", *SHAPE, "--micro-batch", "2", "--seq", "16", "--device", "cpu", "--warmup-steps", "1",
                "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "tokens/s" in out and "not in the GPU database" in out


def test_without_torch_the_commands_say_how_to_install_it(tmp_path):
    code = ("import sys; sys.modules['torch'] = None\n"  # makes 'import torch' raise ImportError
            "from flopscalc.cli import run\n"
            "sys.exit(run(['bench', '--device', 'cpu']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 1
    assert r.stderr == ("flopscalc: error: this command needs PyTorch: install the train extra: "
                        "pip install 'flopscalc[train]'\n")
    code = code.replace("['bench', '--device', 'cpu']", f"['train', 'prepare', '{tmp_path}', '--pydoc']")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, check=False).returncode == 0  # prepare needs no torch


def test_cli_import_stays_light():
    code = "import sys, flopscalc.cli; print(sorted(m for m in ('torch', 'pandas', 'scipy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    import signal
    import time

    ck, log = tmp_path / "ck.pt", tmp_path / "m.jsonl"
    cmd = [sys.executable, "-m", "flopscalc", "train", "--synthetic", *SHAPE, *TRAIN, "--steps", "100000",
           "--vocab-size", "64", "--checkpoint", str(ck), "--metrics-log", str(log)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (log.is_file() and log.read_text().count("\n") >= 3):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "slow"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    steps = json.loads(out)["steps_done"]
    assert err.strip() == f"flopscalc: interrupted at step {steps}; checkpoint saved to {ck}"
    assert "Traceback" not in err
    assert torch.load(ck, weights_only=True)["step"] == steps == len(log.read_text().splitlines())


def _run_out_of_memory_after(monkeypatch, n_steps, micro_batch_above=0):
    """Make the trainer's step raise the error CUDA's allocator raises, after ``n_steps`` good steps."""
    from flopscalc.train.trainer import Trainer

    real = Trainer.train_step

    def step(self):
        if self.step >= n_steps and self.cfg.micro_batch > micro_batch_above:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self)

    monkeypatch.setattr(Trainer, "train_step", step)


def test_out_of_memory_is_one_line_and_keeps_the_last_checkpoint(data_dir, tmp_path, capsys, monkeypatch):
    ck = tmp_path / "ck.pt"
    _run_out_of_memory_after(monkeypatch, 2)
    args = ["train", "--data", str(data_dir), *SHAPE, *TRAIN, "--steps", "5", "--checkpoint", str(ck),
            "--checkpoint-interval", "1"]
    assert run(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("flopscalc: error: out of memory on CPU")
    assert "micro-batch 4 x 32 tokens" in err and "--micro-batch 2 --grad-accum 2" in err
    assert torch.load(ck, weights_only=True)["step"] == 2  # the last whole checkpoint, not a half-written one
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temp file left behind


def test_bench_sweep_skips_setups_that_run_out_of_memory(capsys, monkeypatch):
    _run_out_of_memory_after(monkeypatch, 0, micro_batch_above=2)
    sweep = ["bench", *SHAPE, "--seq", "16", "--device", "cpu", "--warmup-steps", "1", "--steps", "2", "--json"]
    assert run([*sweep, "--micro-batch", "2", "--micro-batch", "4"]) == 0
    prof = _json(capsys)
    assert [p["micro_batch"] for p in prof["points"]] == [2]
    assert any("out of memory" in n and "micro-batch 4 x 16" in n and n.endswith("skipped") for n in prof["notes"])
    assert run([*sweep, "--micro-batch", "4"]) == 1  # nothing fits: a domain error, not an empty profile
    assert "every setup ran out of memory" in capsys.readouterr().err
