"""Two CPU processes under torchrun (gloo) give what one process gives at the same global batch.

The MFU each run reports is checked against FlopCounterMode's count of the model: the 2-process MFU must be
half what one process would report for the same step time and tokens (both processes' peaks are available).
``fsdp-compile`` is marked ``slow`` (it and ``ddp-compile`` took 28% of the suite, issue 17); run it with
``pytest --run-slow tests/test_train_ddp.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest

from flopscalc.cli import run
from flopscalc.model import ModelConfig
from tests.conftest import measure_flops, needs_cxx

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():  # pragma: no cover - some builds lack torch.distributed
    pytest.skip("torch.distributed is not available", allow_module_level=True)

N_LAYER, N_HEAD, N_EMBD, SEQ, STEPS = 2, 2, 32, 32, 5
PEAK_TFLOPS = 1.0  # a stated per-device peak, so every run reports an MFU (the CPU is not in the GPU database)
ARGS = ["--n-layer", str(N_LAYER), "--n-head", str(N_HEAD), "--n-embd", str(N_EMBD), "--block-size", str(SEQ),
        "--steps", str(STEPS), "--warmup-steps", "2", "--lr", "1e-3", "--eval-interval", "0", "--eval-batches", "2",
        "--device", "cpu", "--peak-tflops", str(PEAK_TFLOPS), "--json"]
GLOBAL_BATCH = 8
NATIVE_ABORTS = ("(SIGABRT)", "(SIGSEGV)")


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """One process, micro-batch 8: the reference."""
    d = tmp_path_factory.mktemp("ddp")
    assert run(["train", "prepare", str(d / "data"), "--pydoc", "--json"]) == 0
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = run(["train", "--data", str(d / "data"), *ARGS, "--micro-batch", str(GLOBAL_BATCH),
                    "--checkpoint", str(d / "one.pt"), "--metrics-log", str(d / "one.jsonl")])
    finally:
        torch.set_num_threads(before)
    assert code == 0
    return d


class TorchRun:
    """Runs `flopscalc train` in two processes under torchrun, once per setup, and counts retries.

    A worker killed by a native abort inside torch/gloo (2 in ~60 runs of the FSDP case on a shared 2-core VM,
    never reproduced on demand) is retried once; a Python error or wrong numbers are not. Every run and retry
    is counted and printed in the session summary (tests/conftest.py), so retries that become common are seen.
    """

    def __init__(self, data_dir, log: dict):
        self.d = data_dir
        self.log = log
        self.done: dict[str, subprocess.CompletedProcess] = {}

    def __call__(self, parallel: str, compiled: bool) -> subprocess.CompletedProcess:
        name = f"{parallel}-compile" if compiled else parallel
        if name in self.done:
            return self.done[name]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "flopscalc", "train", "--data", str(self.d / "data"), *ARGS,
               "--micro-batch", str(GLOBAL_BATCH // 2), "--parallel", parallel, "--checkpoint",
               str(self.d / f"{name}.pt"), "--metrics-log", str(self.d / f"{name}.jsonl"),
               *(["--compile"] if compiled else [])]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
        self.log["runs"].append(name)
        if r.returncode != 0 and any(s in r.stderr for s in NATIVE_ABORTS):
            self.log["retries"].append(f"{name}: {r.stderr.strip().splitlines()[-1][:200]}")
            warnings.warn(f"torchrun worker died by a signal; retrying once:\n{r.stderr[-800:]}", stacklevel=1)
            r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
        errors = [line for line in r.stderr.splitlines()
                  if any(m in line for m in ("Error", "error:", "terminate", "what()", "gloo", "Abort", "Fatal"))]
        assert r.returncode == 0, "\n".join(errors[:20]) + "\n...\n" + r.stderr[-1500:]
        self.done[name] = r
        return r


@pytest.fixture(scope="module")
def torchrun(single, torchrun_log):
    """Each two-process setup run once per module, whichever test asks first."""
    return TorchRun(single, torchrun_log)


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _model_flops_per_token(data_dir) -> float:
    """Model FLOPs per token of the trained model, counted by FlopCounterMode (fwd + bwd, no recompute)."""
    from flopscalc.train.run import data_vocab_size

    cfg = ModelConfig(n_layer=N_LAYER, n_head=N_HEAD, n_embd=N_EMBD, block_size=SEQ,
                      vocab_size=data_vocab_size(str(data_dir / "data")))
    return measure_flops(cfg, GLOBAL_BATCH, SEQ)["total"] / (GLOBAL_BATCH * SEQ)


def _one_process_mfu(row, flops_per_token) -> float:
    """MFU by its definition (Chowdhery et al. 2022, App. B) for one device: model FLOP/s over its peak."""
    return GLOBAL_BATCH * SEQ / row["step_time_s"] * flops_per_token / (PEAK_TFLOPS * 1e12)


def test_one_process_mfu_is_model_flops_over_peak(single):
    flops = _model_flops_per_token(single)
    rows = _rows(single / "one.jsonl")
    assert len(rows) == STEPS
    for row in rows:
        assert row["mfu"] == pytest.approx(_one_process_mfu(row, flops), rel=1e-9)


# compiled runs go through the same wrap-then-compile path a GPU run takes (torch.compile(DDP(model)))
@pytest.mark.parametrize("parallel,compiled", [
    pytest.param("ddp", False, id="ddp"), pytest.param("fsdp", False, id="fsdp"),
    pytest.param("ddp", True, id="ddp-compile", marks=needs_cxx),
    pytest.param("fsdp", True, id="fsdp-compile", marks=[needs_cxx, pytest.mark.slow])])
def test_two_processes_match_one(single, torchrun, parallel, compiled):
    d = single
    name = f"{parallel}-compile" if compiled else parallel
    r = torchrun(parallel, compiled)
    summary = json.loads(r.stdout)  # only rank 0 prints
    assert summary["world_size"] == 2 and summary["tokens_seen"] == STEPS * GLOBAL_BATCH * SEQ
    one, two = _rows(d / "one.jsonl"), _rows(d / f"{name}.jsonl")
    assert len(one) == len(two) == STEPS
    assert [x["loss"] for x in two] == pytest.approx([x["loss"] for x in one], rel=1e-5)  # all-reduced mean
    # two devices' peak: half the MFU one device would show for the same step time and global tokens
    flops = _model_flops_per_token(d)
    for row in two:
        assert row["mfu"] == pytest.approx(_one_process_mfu(row, flops) / 2, rel=1e-9)
    a = torch.load(d / "one.pt", weights_only=True)
    b = torch.load(d / f"{name}.pt", weights_only=True)
    assert b["world_size"] == 2 and b["step"] == a["step"] == STEPS and b["data"] == a["data"]
    assert b["model"].keys() == a["model"].keys()  # no torch.compile prefix: any run resumes any other
    for key, p in a["model"].items():  # full tensors even from FSDP's shards
        torch.testing.assert_close(b["model"][key], p, rtol=0, atol=1e-5, msg=key)


def test_one_process_resumes_a_two_process_checkpoint(single, torchrun, capsys):
    d = single
    torchrun("ddp", False)  # already run by the test above when the module runs in order; run now otherwise
    args = [a if a != str(STEPS) else str(STEPS + 1) for a in ARGS]  # one more step
    assert run(["train", "--data", str(d / "data"), *args, "--micro-batch", str(GLOBAL_BATCH),
                "--checkpoint", str(d / "ddp.pt"), "--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["steps_done"] == STEPS + 1
