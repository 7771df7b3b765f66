"""The layout face's memory table keeps each component non-negative (review r3 and helper b72, stop 17).

`flopscalc step ... --tp 1 --pp 1` (a DDP/FSDP layout) took the memory engine's correction for tensors that are not
alive at the peak (negative: gradients grow while backward frees activations) into its gradients row: GPT-2 on 8
H200s showed "gradients -1.53 GiB", a Llama-3-8B ZeRO-3 layout "-1002 MiB". The correction is now its own row, as
`flopscalc memory` prints it, and the peak is unchanged: the same as `flopscalc memory` for the same setup.
"""

from __future__ import annotations

import json

import pytest

from flopscalc.cli import run

# cuBLAS's workspaces a row of their own since helper b85 (they were inside cuda_context)
COMPONENTS = ("weights", "gradients", "optimizer", "activations", "logits", "cuda_context", "blas_workspaces",
              "fragmentation")


def _json(capsys, *args):
    assert run([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("flags", [
    ("--model", "gpt2", "--gpu", "h200", "--micro-batch", "16", "--n-gpus", "8"),
    ("--model", "llama-3-8b", "--gpu", "h100", "--micro-batch", "1", "--n-gpus", "8", "--zero", "3", "--seq", "4096"),
])
def test_components_are_non_negative_and_the_peak_is_the_memory_commands(capsys, flags):
    step = _json(capsys, "step", *flags, "--tp", "1", "--pp", "1")
    mem = step["memory_bytes"]
    assert all(mem[k] >= 0 for k in COMPONENTS), {k: mem[k] for k in COMPONENTS}
    assert mem["not_concurrent"] < 0  # the correction exists for these steps, and is shown apart
    peak = _json(capsys, "memory", *flags)
    peak_bytes = peak["peak_bytes"] if "peak_bytes" in peak else peak["total_bytes"]
    assert sum(mem[k] for k in (*COMPONENTS, "not_concurrent")) == pytest.approx(peak_bytes, rel=1e-9)


def test_the_table_prints_the_correction_as_its_own_row(capsys):
    assert run(["step", "--model", "gpt2", "--gpu", "h200", "--micro-batch", "16", "--n-gpus", "8", "--tp", "1",
                "--pp", "1"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip().startswith(("gradients", "not alive"))}
    assert "-" not in rows["gradients"].split()[1]
    assert "not" in rows and "-" in rows["not"]
