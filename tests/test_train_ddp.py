"""Two CPU processes under torchrun (gloo) give what one process gives at the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest

from flopscalc.cli import run
from tests.conftest import needs_cxx

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():  # pragma: no cover - some builds lack torch.distributed
    pytest.skip("torch.distributed is not available", allow_module_level=True)

ARGS = ["--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--steps", "5",
        "--warmup-steps", "2", "--lr", "1e-3", "--eval-interval", "0", "--eval-batches", "2", "--device", "cpu",
        "--json"]
GLOBAL_BATCH = 8


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


def _losses(path):
    return [json.loads(line)["loss"] for line in path.read_text().splitlines()]


# compiled runs go through the same wrap-then-compile path a GPU run takes (torch.compile(DDP(model)))
@pytest.mark.parametrize("parallel,compiled", [
    pytest.param("ddp", False, id="ddp"), pytest.param("fsdp", False, id="fsdp"),
    pytest.param("ddp", True, id="ddp-compile", marks=needs_cxx),
    pytest.param("fsdp", True, id="fsdp-compile", marks=needs_cxx)])
def test_two_processes_match_one(single, parallel, compiled, capfd):
    d = single
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    name = f"{parallel}-compile" if compiled else parallel
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "flopscalc", "train", "--data", str(d / "data"), *ARGS, "--micro-batch", str(GLOBAL_BATCH // 2),
           "--parallel", parallel, "--checkpoint", str(d / f"{name}.pt"), "--metrics-log",
           str(d / f"{name}.jsonl"), *(["--compile"] if compiled else [])]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    if r.returncode != 0 and ("(SIGABRT)" in r.stderr or "(SIGSEGV)" in r.stderr):
        # a worker killed by a native abort inside torch/gloo (2 in ~60 runs of the FSDP case on a shared
        # 2-core VM, never reproduced on demand) is retried once; a Python error or wrong numbers are not
        warnings.warn(f"torchrun worker died by a signal; retrying once:\n{r.stderr[-800:]}", stacklevel=1)
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    errors = [line for line in r.stderr.splitlines()
              if any(m in line for m in ("Error", "error:", "terminate", "what()", "gloo", "Abort", "Fatal"))]
    assert r.returncode == 0, "\n".join(errors[:20]) + "\n...\n" + r.stderr[-1500:]
    summary = json.loads(r.stdout)  # only rank 0 prints
    assert summary["world_size"] == 2 and summary["tokens_seen"] == 5 * GLOBAL_BATCH * 32
    one, two = _losses(d / "one.jsonl"), _losses(d / f"{name}.jsonl")
    assert len(one) == len(two) == 5
    assert two == pytest.approx(one, rel=1e-5)  # global mean loss: all-reduced mean of the ranks' means
    a = torch.load(d / "one.pt", weights_only=True)
    b = torch.load(d / f"{name}.pt", weights_only=True)
    assert b["world_size"] == 2 and b["step"] == a["step"] == 5 and b["data"] == a["data"]
    assert b["model"].keys() == a["model"].keys()  # no torch.compile prefix: any run resumes any other
    for key, p in a["model"].items():  # full tensors even from FSDP's shards
        torch.testing.assert_close(b["model"][key], p, rtol=0, atol=1e-5, msg=key)


def test_one_process_resumes_a_two_process_checkpoint(single, capsys):
    d = single
    if not (d / "ddp.pt").is_file():
        pytest.skip("needs the DDP run above")
    args = [a if a != "5" else "6" for a in ARGS]  # one more step
    assert run(["train", "--data", str(d / "data"), *args, "--micro-batch", str(GLOBAL_BATCH),
                "--checkpoint", str(d / "ddp.pt"), "--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["steps_done"] == 6
