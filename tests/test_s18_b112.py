"""Mends from final reader FR-C (s18, b112).

1. bitsandbytes' 8-bit AdamW where bitsandbytes does not run: the plan's setup search, memory's fixes and
   ``memory/step/plot --optimizer adamw8bit`` follow the rule finetune already refused with. Reference: the
   bitsandbytes 0.50.2 README, "Accelerator support" table (8-bit optimizers: NVIDIA, AMD, Intel GPUs, CPUs yes;
   Intel Gaudi no; no Google TPU or AWS Trainium backend), written out here as its own table.
4. One CUDA-runtime rule in the fine-tuning engine: the adapters' engine counts no CUDA context, allocator reserve or
   cuBLAS workspace itself on a device without PyTorch's CUDA runtime.
5. The re-export shims are gone.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import cli

from flopscalc.hardware import get_gpu

# bitsandbytes README, "Accelerator support", column "8-bit Optimizers", by our database's device rows.
BNB_8BIT_OPTIMIZERS_README = {"h100": True, "a100": True, "4070ti": True, "mi300x": True,
                              "tpu-v5e": False, "tpu-v5p": False, "tpu-v6e": False, "trainium2": False,
                              "gaudi3": False}


@pytest.mark.parametrize("gpu, runs", sorted(BNB_8BIT_OPTIMIZERS_README.items()))
def test_the_rule_follows_the_bitsandbytes_readme(gpu, runs):
    from flopscalc.memory.workspace import runs_bitsandbytes_optimizers

    assert runs_bitsandbytes_optimizers(get_gpu(gpu)) is runs


def _values(obj, key):
    """Every value of ``key`` anywhere in a JSON document."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key:
                yield v
            yield from _values(v, key)
    elif isinstance(obj, list):
        for v in obj:
            yield from _values(v, key)


def test_plan_on_a_tpu_recommends_no_8bit_adamw(capsys):
    # FR-C: `plan --gpu tpu-v5e --days 30` recommended adamw8bit (bitsandbytes) on a TPU
    code, out, err = cli(capsys, "plan", "--gpu", "tpu-v5e", "--days", "30", "--json")
    assert code == 0, err
    optimizers = set(_values(json.loads(out), "optimizer"))
    assert optimizers and "adamw8bit" not in optimizers, optimizers


def test_the_same_chip_from_a_vendor_bitsandbytes_runs_on_gets_8bit_adamw(capsys, tmp_path):
    # the control: TPU v5e's own row with only the vendor changed to Intel (bitsandbytes' optimizers run on Intel
    # GPUs; no CUDA runtime either, so the memory counted is the TPU's) recommends 8-bit AdamW, as the plan did on the
    # TPU before: so the test above tells the rule apart from a search that never picks it
    import csv
    from pathlib import Path

    rows = list(csv.DictReader(open(Path(__file__).parent.parent / "data" / "gpu_specs.csv", newline="")))
    row = {**next(r for r in rows if r["key"] == "tpu-v5e"), "key": "xpu-v5e", "name": "Intel-sold v5e",
           "aliases": "", "vendor": "Intel"}
    path = tmp_path / "gpus.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(row))
        w.writeheader()
        w.writerow(row)
    code, out, err = cli(capsys, "plan", "--gpu", "xpu-v5e", "--gpu-csv", str(path), "--days", "30", "--json")
    assert code == 0, err
    assert json.loads(out)["recommended"]["setup"]["optimizer"] == "adamw8bit"


@pytest.mark.parametrize("gpu", ["tpu-v5p", "gaudi3"])
def test_memory_fixes_propose_no_8bit_adamw_where_bitsandbytes_does_not_run(capsys, gpu):
    code, out, err = cli(capsys, "memory", "--model", "mistral-7b", "--gpu", gpu, "--json")
    assert code in (0, 1), err
    changes = [c for fix in json.loads(out).get("fixes", []) for c in fix["changes"]]
    assert changes, "the setup should need a fix"
    assert not any("adamw8bit" in c for c in changes), changes


def test_memory_fixes_still_propose_8bit_adamw_on_an_h100(capsys):
    code, out, err = cli(capsys, "memory", "--model", "mistral-7b", "--gpu", "h100", "--json")
    assert code in (0, 1), err
    changes = [c for fix in json.loads(out)["fixes"] for c in fix["changes"]]
    assert any("adamw8bit" in c for c in changes), changes


def _finetune_refusal(capsys, gpu):
    code, _, err = cli(capsys, "finetune", "--model", "mistral-7b", "--gpu", gpu, "--method", "lora",
                       "--optimizer", "adamw8bit", "--dataset-tokens", "10M")
    assert code == 2, err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("gpu", ["tpu-v5p", "gaudi3", "trainium2"])
@pytest.mark.parametrize("command", ["memory", "step", "plot-memory"])
def test_typed_8bit_adamw_is_refused_with_finetunes_line(capsys, tmp_path, gpu, command):
    want = _finetune_refusal(capsys, gpu)
    argv = {"memory": ["memory", "--model", "mistral-7b"],
            "step": ["step", "--model", "mistral-7b", "--seq", "2048"],
            "plot-memory": ["plot", "memory", "--model", "mistral-7b", "--out", str(tmp_path / "m.png")]}[command]
    code, out, err = cli(capsys, *argv, "--gpu", gpu, "--optimizer", "adamw8bit")
    assert code == 2 and not out, (out, err)
    line = err.strip().splitlines()[-1]
    assert line == want
    assert "--paged" not in line  # neither command has it: the fix names only what was typed
    assert "Traceback" not in err


def test_typed_8bit_adamw_is_accepted_on_an_nvidia_gpu(capsys):
    code, _, err = cli(capsys, "memory", "--model", "mistral-7b", "--gpu", "h100", "--optimizer", "adamw8bit")
    assert code in (0, 1), err


def test_finetune_paged_alone_is_told_to_drop_paged(capsys):
    code, _, err = cli(capsys, "finetune", "--model", "mistral-7b", "--gpu", "tpu-v5p", "--method", "lora",
                       "--paged", "--dataset-tokens", "10M")
    assert code == 2
    assert re.search(r"drop --paged, or pick a GPU", err), err


# ---- 4: the CUDA-runtime rule once, in each engine


def _cuda_keys():
    from flopscalc.memory.workspace import CUDA_RUNTIME_KEYS

    return CUDA_RUNTIME_KEYS


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_the_adapters_engine_counts_no_cuda_runtime_itself(method):
    # before: `_adapters` counted the context and allocator reserve and `finetune_memory` zeroed them afterwards
    from flopscalc.finetune.memory import FinetuneSetup, _adapters
    from flopscalc.model import get_preset

    cfg = get_preset("llama-3.1-8b")
    tpu = dict((k, b) for k, _, b in _adapters(cfg, FinetuneSetup(method=method, cuda_runtime=False)).components)
    gpu = dict((k, b) for k, _, b in _adapters(cfg, FinetuneSetup(method=method)).components)
    for k in _cuda_keys():
        assert tpu[k] == 0.0 and gpu[k] > 0.0, k
    assert {k: b for k, b in tpu.items() if k not in _cuda_keys()} == {
        k: b for k, b in gpu.items() if k not in _cuda_keys()}


def test_full_finetuning_on_a_tpu_agrees_with_training_memory():
    # full fine-tuning is a training step (`finetune.memory._full` prices it with the memory engine): on a TPU both
    # engines leave out the same three CUDA-runtime components, and agree on every other one
    from flopscalc.finetune.memory import FinetuneSetup, finetune_memory
    from flopscalc.memory import TrainingSetup, estimate_memory
    from flopscalc.memory.precision import MemoryPrecision
    from flopscalc.model import get_preset

    cfg = get_preset("gpt2")
    ft = finetune_memory(cfg, FinetuneSetup(method="full", seq_len=1024, cuda_runtime=False, recompute="full"))
    train = estimate_memory(cfg, TrainingSetup(micro_batch=1, seq_len=1024, precision=MemoryPrecision.bf16_mixed,
                                               recompute="full", cuda_runtime=False))
    assert ft.peak_bytes == train.peak_bytes
    for k in _cuda_keys():
        assert dict((c[0], c[2]) for c in ft.components)[k] == 0.0


# ---- 5: no shims


@pytest.mark.parametrize("module, names", [
    ("flopscalc.memory.settings", ("MATMUL_PRECISION", "MEMORY_PRECISION", "trainer_memory_precision")),
    ("flopscalc.finetune.backends", ("runs_cuda", "CUDA_RUNTIME_KEYS", "CUDA_RUNTIME_VENDORS")),
])
def test_the_re_exports_are_gone(module, names):
    import importlib

    mod = importlib.import_module(module)
    assert [n for n in names if hasattr(mod, n)] == []
