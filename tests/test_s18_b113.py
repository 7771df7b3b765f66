"""Fresh-eyes review r16, part 1 (each test failed before its fix).

- `step --search` with no fitting layout told the user to try "more GPUs, a shorter sequence or a smaller batch"
  at one sequence per GPU, while a data-parallel setup with ZeRO-3 and the optimizer offloaded fitted (the layout
  engine keeps the optimizer on the GPU). The refusal now names only a setup checked to fit: that step command, or
  the GPU count on which `plan` finds a run.
- `infer` on a device without PyTorch's CUDA runtime (Gaudi 3, Trainium2) counted a 512 MiB CUDA context and sized
  its largest batch with it, where memory/step/finetune count none (`memory.workspace.runs_cuda`).
- `plan --memory -5GiB` echoed raw bytes ("got -5368709120.0") with no accepted forms; it now echoes the user's text
  with the accepted units and an example.
"""

from __future__ import annotations

import re

import pytest
from conftest import cli, cli_json, refused

NO_FIT_FLAGS = re.compile(r"--n-gpus (\d+) (.*?) \(without --search\)")


@pytest.mark.parametrize(("model", "gpu", "extra"), [
    ("mixtral-8x7b", "h100", []),  # the reviewer's: plan fits it with ZeRO-3 + optimizer offload
    ("llama-3.1-8b", "4070ti", ["--seq", "1024"]),
])
def test_search_no_fit_names_a_step_that_fits(capsys, model, gpu, extra):
    line = refused(capsys, "step", "--model", model, "--gpu", gpu, "--n-gpus", "8", "--search", *extra, code=1)
    # nothing unchecked: a global batch of 8 on 8 GPUs is already one sequence per GPU
    assert "smaller batch" not in line and "shorter sequence" not in line, line
    found = NO_FIT_FLAGS.search(line)
    assert found is not None, line
    n_gpus, flags = found.groups()
    # follow the suggestion: the step engine (its own memory model, not the hint's) says it fits the GPU
    got = cli_json(capsys, "step", "--model", model, "--gpu", gpu, "--n-gpus", n_gpus, *flags.split())
    assert got["fits"] is True and got["peak_memory_bytes"] <= got["memory_bytes_per_gpu"], got
    # and `memory` with the same flags agrees (the engine the planner sizes setups with)
    mem = cli_json(capsys, "memory", "--model", model, "--gpu", gpu, "--n-gpus", n_gpus, *flags.split())
    assert mem["fits"] is True, mem


def test_search_no_fit_without_a_data_parallel_setup_names_gpus_plan_fits_on(capsys):
    line = refused(capsys, "step", "--model", "llama-3.1-8b", "--gpu", "4070ti", "--n-gpus", "8", "--search",
                   "--seq", "8192", code=1)
    assert "smaller batch" not in line and "shorter sequence" not in line, line
    found = re.search(r"--n-gpus (\d+)", line)
    assert found is not None, line
    plan = ["plan", "--model", "llama-3.1-8b", "--gpu", "4070ti", "--seq", "8192", "--tokens", "1B"]
    # plan's own no-fit on the same GPUs refuses, and on the named count finds a run
    refused(capsys, *plan, "--n-gpus", "8", code=1)
    code, _, err = cli(capsys, *plan, "--n-gpus", found.group(1))
    assert code == 0, err


@pytest.mark.parametrize("gpu", ["gaudi3", "trainium2"])
def test_infer_counts_no_cuda_context_off_cuda(capsys, gpu):
    infer = ["infer", "--model", "llama-3.1-8b", "--gpu", gpu, "--context", "8k", "--batch", "16"]
    got = cli_json(capsys, *infer)
    # the training engine's rule on the same device: its CUDA context component
    mem = cli_json(capsys, "memory", "--model", "llama-3.1-8b", "--gpu", gpu)
    assert got["cuda_context_bytes"] == mem["components_bytes"]["cuda_context"] == 0.0
    assert any("CUDA runtime" in n for n in got["notes"]), got["notes"]
    # the largest batch is sized without it: it fits, one more does not (infer's own verdict at that batch)
    n = got["max_batch"]
    assert cli_json(capsys, *infer[:-1], str(n))["fits"] is True
    assert cli_json(capsys, *infer[:-1], str(n + 1))["fits"] is False
    code, out, _ = cli(capsys, *infer)
    assert code == 0 and "CUDA context" not in out.split("Memory on the GPU")[1].split("total")[0]


def test_infer_on_cuda_still_counts_the_context(capsys):
    got = cli_json(capsys, "infer", "--model", "llama-3.1-8b", "--gpu", "h100", "--context", "8k", "--batch", "16")
    mem = cli_json(capsys, "memory", "--model", "llama-3.1-8b", "--gpu", "h100")
    assert got["cuda_context_bytes"] == mem["components_bytes"]["cuda_context"] > 0


@pytest.mark.parametrize("text", ["-5GiB", "0", "0GiB", "-1"])
@pytest.mark.parametrize("command", [["plan", "--gpu", "4070ti", "--days", "365"],
                                     ["plot", "frontier", "--gpu", "4070ti"]])
def test_memory_not_positive_echoes_the_text(capsys, command, text, tmp_path, no_rendering):
    out = ["--out", str(tmp_path / "unused.png")] if command[0] == "plot" else []
    line = refused(capsys, *command, *out, f"--memory={text}")
    assert f"'{text}'" in line and "GiB" in line and "e.g. 12GiB" in line, line
    assert "got" not in line and "5368709120" not in line and "not a positive size" in line, line
