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

    with open(Path(__file__).parent.parent / "data" / "gpu_specs.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
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
    tpu = {k: b for k, _, b in _adapters(cfg, FinetuneSetup(method=method, cuda_runtime=False)).components}
    gpu = {k: b for k, _, b in _adapters(cfg, FinetuneSetup(method=method)).components}
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
        assert {c[0]: c[2] for c in ft.components}[k] == 0.0


# ---- 5: no shims


@pytest.mark.parametrize("module, names", [
    ("flopscalc.memory.settings", ("MATMUL_PRECISION", "MEMORY_PRECISION", "trainer_memory_precision")),
    ("flopscalc.finetune.backends", ("runs_cuda", "CUDA_RUNTIME_KEYS", "CUDA_RUNTIME_VENDORS")),
])
def test_the_re_exports_are_gone(module, names):
    import importlib

    mod = importlib.import_module(module)
    assert [n for n in names if hasattr(mod, n)] == []


# ---- 2: two interleaved stages take an uneven split (Megatron-LM builds it from the first count alone)


def _megatron_best_uneven_any_form(n_layer: int, pp: int, v: int) -> int | None:
    """The fewest layers on the busiest stage over every uneven form Megatron-LM's
    --num-virtual-stages-per-pipeline-rank takes: the first count alone, the last alone, both (`megatron_chunks`,
    tests/test_s18_b95.py, re-implemented from Megatron-LM's source), by trying them all; None if none."""
    from test_s18_b95 import fewest_on_busiest_stage

    base = f"--pipeline-model-parallel-size {pp} --num-virtual-stages-per-pipeline-rank {v}"
    forms = [f" --decoder-first-pipeline-num-layers {n}" for n in range(1, n_layer + 1)]
    forms += [f" --decoder-last-pipeline-num-layers {n}" for n in range(1, n_layer + 1)]
    forms += [f" --decoder-first-pipeline-num-layers {a} --decoder-last-pipeline-num-layers {b}"
              for a in range(1, n_layer + 1) for b in range(1, n_layer + 1)]
    return fewest_on_busiest_stage(n_layer, (base + form for form in forms))


@pytest.mark.parametrize("v", [2, 3, 4])
def test_two_interleaved_stages_split_exactly_when_megatron_builds_a_balanced_split(v):
    import math

    from test_s18_b95 import megatron_chunks

    from flopscalc.errors import UsageError
    from flopscalc.layout import Layout
    from flopscalc.layout.spec import pipeline_split

    pp, uneven = 2, 0
    for n_layer in range(pp * v - 2, 61):
        bound = math.ceil(n_layer / (pp * v)) * v
        if pp * bound - n_layer <= 2:
            continue  # the equal-chunk form (tests/test_s18_b95.py)
        best = _megatron_best_uneven_any_form(n_layer, pp, v)
        split = pipeline_split(n_layer, pp, v)
        assert (split is not None) == (best is not None and best <= bound), (n_layer, v, best)
        layout = Layout(pp=pp, interleave=v, n_micro=pp)
        if split is None:
            with pytest.raises(UsageError):
                layout.engine_settings(n_layer)
            continue
        uneven += 1
        flags = layout.engine_settings(n_layer)["Megatron-LM"]
        assert "--decoder-last-pipeline-num-layers" not in flags  # both counts would leave no stage for the rest
        built = megatron_chunks(n_layer, flags)
        assert [list(split.chunk_layers(r)) for r in range(pp)] == built
        assert max(map(sum, built)) <= bound and sum(built[-1]) <= sum(built[0])
    # v = 2: more than two spare slots means L = 1 (mod 4), odd, so no split of even stages exists
    assert uneven > 0 or v == 2


def test_qwen_pp2_x4_runs_with_megatrons_16_12_split(capsys):
    # FR-C: refused ("--interleave 2, 3, 5, 7, 14, 15 would"); Megatron-LM builds 16/12 (chunks 4x4 and 4x3)
    from test_s18_b95 import _per_gpu_reference, megatron_chunks
    from test_s18_b106 import QWEN_7B_FILE

    code, out, err = cli(capsys, "step", "--config", str(QWEN_7B_FILE), "--gpu", "h100", "--n-gpus", "8", "--pp",
                         "2", "--interleave", "4", "--micro-batch", "1", "--grad-accum", "8", "--json")
    assert code == 0, err
    d = json.loads(out)
    chunks = megatron_chunks(28, d["engine_settings"]["Megatron-LM"])
    assert chunks == [[4, 4, 4, 4], [3, 3, 3, 3]]
    # priced on those stages: parameters per GPU of the peak stage against the transformers module on the meta
    # device (tests/test_s18_b95.py `_per_gpu_reference`)
    emb, layer, head, norm = _per_gpu_reference(json.loads(QWEN_7B_FILE.read_text()), tp=1)
    reference = {"first": emb + 16 * layer, "last": 12 * layer + head + norm}
    assert d["memory_bytes"]["n_params_per_gpu"] == pytest.approx(reference[d["memory_peak_stage"]], rel=1e-12)


# ---- 3: torchtitan's settings carry the schedule and the split, or say why they cannot


def _torchtitan_layers(n_layer: int, pp: int, settings: str) -> list[list[int]]:
    """Layers torchtitan builds in each virtual stage of each rank for ``settings`` (its config keys), re-implemented
    from torchtitan's source: ``torchtitan/distributed/pipeline_parallel.py`` (stages = ceil((L + first_less +
    last_less) / layers_per_stage); ``generate_llm_fqn_per_model_part``: the L + first + last effective layers spread
    over the stages, the first (L + ...) % stages one more, the first stage giving ``first_less`` to the embedding and
    the last ``last_less`` to the output; looped schedules put stage s on rank s mod p)."""
    import math

    kv = dict(part.split("=", 1) for part in settings.split() if part.startswith("parallelism.pipeline"))
    per = int(kv["parallelism.pipeline_parallel_layers_per_stage"])
    first = int(kv.get("parallelism.pipeline_parallel_first_stage_less_layers", 1))
    last = int(kv.get("parallelism.pipeline_parallel_last_stage_less_layers", 1))
    n_stages = math.ceil((n_layer + first + last) / per)
    assert n_stages % pp == 0
    effective = n_layer + first + last
    base, extra = divmod(effective, n_stages)
    stages, left = [], n_layer
    for s in range(n_stages):
        take = base + (s < extra) - (first if s == 0 else 0) - (last if s == n_stages - 1 else 0)
        take = min(take, left)
        stages.append(take)
        left -= take
    return [[stages[r + k * pp] for k in range(n_stages // pp)] for r in range(pp)]


@pytest.mark.parametrize("pp, v", [(2, 1), (4, 1), (4, 2), (2, 3), (8, 2), (3, 4)])
def test_torchtitans_settings_build_the_priced_split_or_say_they_cannot(pp, v):
    from flopscalc.layout import Layout
    from flopscalc.layout.spec import pipeline_split

    layout = Layout(pp=pp, interleave=v, n_micro=pp)
    even = uneven = 0
    for n_layer in range(pp * v, 97):
        split = pipeline_split(n_layer, pp, v)
        if split is None:
            continue
        titan = layout.engine_settings(n_layer)["torchtitan"]
        schedule = "Interleaved1F1B" if v > 1 else "1F1B"
        assert f"parallelism.pipeline_parallel_schedule={schedule}" in titan
        if split.uneven:
            uneven += 1
            assert "layers_per_stage" not in titan and "need its stages' modules listed by hand" in titan
            continue
        even += 1
        assert _torchtitan_layers(n_layer, pp, titan) == [list(split.chunk_layers(r)) for r in range(pp)], n_layer
    assert even > 0


def test_fr_c_pp4_x2_names_the_interleaved_schedule(capsys):
    # FR-C: `--pp 4 --interleave 2` printed only parallelism.pipeline_parallel_degree=4
    code, out, err = cli(capsys, "step", "--model", "llama-3.1-8b", "--gpu", "h100", "--n-gpus", "8", "--pp", "4",
                         "--interleave", "2", "--micro-batch", "1", "--grad-accum", "8", "--json")
    assert code == 0, err
    titan = json.loads(out)["engine_settings"]["torchtitan"]
    assert "parallelism.pipeline_parallel_schedule=Interleaved1F1B" in titan
    assert _torchtitan_layers(32, 4, titan) == [[4, 4]] * 4
