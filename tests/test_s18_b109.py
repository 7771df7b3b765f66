"""Today's final read, helper b109: small mends the readers reproduced at 6421209.

Each test failed before its fix. Every CLI case drives the real app in-process and checks the contract: the exit code
and ONE line starting "flopscalc: error:" (conftest `refused`), or the computed field the fix moves.
"""

from __future__ import annotations

import pytest
from conftest import SAVED_LAW_R13 as LAW
from conftest import cli, refused

# ------------------------------------------------------------------ 1. step --search: the refusal is formatted

SEARCH = ["step", "--gpu", "h100", "--model", "gpt2-xl", "--n-gpus", "8", "--search"]


@pytest.mark.parametrize("extra, pronoun", [
    (["--zero", "1"], "drop it or drop --search"),
    (["--zero", "1", "--recompute", "full"], "drop them or drop --search"),
])
def test_search_refusal_names_what_to_drop_in_words(capsys, extra, pronoun):
    line = refused(capsys, *SEARCH, *extra)
    assert "{" not in line and "len(" not in line  # was: "drop {'them' if len(chosen) > 1 else 'it'} or ..."
    assert pronoun in line


# ------------------------------------------------------------------ 2. gpus show: a spelling is not a family name
# 'a100-pcie-80g' is the row a100-pcie-80gb spelt short, 'tpuv4' and 'trn2' the TPU v4 and Trainium2, 'grace-hopper'
# the GH200's codename: each printed "X -> ..., the variant this family name is an alias of (no other variant ...)".
# The row each name belongs to is read from the aliases column of data/gpu_specs.csv, not from the lookup.

def _alias_rows() -> dict[str, str]:
    import csv
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "data" / "gpu_specs.csv"
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    return {a.strip(): r["key"] for r in rows for a in r["aliases"].split(";") if a.strip()}


@pytest.mark.parametrize("name", ["a100-pcie-80g", "tpuv4", "trn2", "grace-hopper", "tpu-trillium", "h100-pci"])
def test_gpus_show_a_spelling_of_one_row_is_not_called_a_family(capsys, name):
    import json

    code, out, _ = cli(capsys, "gpus", "show", name, "--json")
    d = json.loads(out)
    assert code == 0 and d["key"] == _alias_rows()[name] and "resolved_from" not in d
    code, out, _ = cli(capsys, "gpus", "show", name)
    assert code == 0 and "family" not in out.splitlines()[0] and " -> " not in out.splitlines()[0]


@pytest.mark.parametrize("name, others", [("a100", 3), ("h100", 2), ("a100-pcie", 1), ("3060", 0)])
def test_gpus_show_a_family_name_still_says_so(capsys, name, others):
    import json

    code, out, _ = cli(capsys, "gpus", "show", name, "--json")
    d = json.loads(out)
    assert code == 0 and d["key"] == _alias_rows()[name] and len(d["resolved_from"]["other_variants"]) == others


# ------------------------------------------------------------------ 3. one past-context warning for every command
# `memory` worded its own ("sequence 262144 is longer than llama-3.1-8b's context of 131072 tokens; ...") while step,
# flops and plan printed "262,144 tokens per sequence is past the trained context (131,072): ..."; docs/planner.md
# calls it the same line. Llama 3.1's context is 128K = 131,072 tokens (Dubey et al. 2024, sec. 3.4.2).

LONG = ["--model", "llama-3.1-8b", "--gpu", "h100", "--seq", "262144"]


def _past(lines: list[str]) -> list[str]:
    return [w for w in lines if "262,144" in w or "262144" in w]


def test_memory_gives_the_same_past_context_line_as_step_and_flops(capsys):
    from conftest import cli_json

    mem = _past(cli_json(capsys, "memory", *LONG)["warnings"])
    step = _past(cli_json(capsys, "step", *LONG)["warnings"])
    assert len(mem) == 1 and len(step) == 1
    head = "262,144 tokens per sequence is past the trained context (131,072): "
    assert mem[0].startswith(head) and step[0].startswith(head)
    # the same sentence, but for what each command still prices
    assert mem[0].replace("memory is priced", "X") == step[0].replace("time and memory are priced", "X")
    code, out, _ = cli(capsys, "memory", *LONG)
    assert code == 0 and f"warning: {mem[0]}" in " ".join(out.split())


# ------------------------------------------------------------------ 4. --zero on one GPU: what each stage shards
# Was "--zero 1 shards weights, gradients and optimizer state across GPUs" for every stage. Rajbhandari et al. 2020,
# sec. 5 (ZeRO-DP): P_os (stage 1) partitions the optimizer states, P_os+g (stage 2) adds the gradients, P_os+g+p
# (stage 3) adds the parameters.
STAGE_SHARDS = {"1": ({"optimizer"}, {"gradients", "weights", "parameters"}),
                "2": ({"optimizer", "gradients"}, {"weights", "parameters"}),
                "3": ({"optimizer", "gradients", "weights"}, set())}


@pytest.mark.parametrize("stage", ["1", "2", "3"])
@pytest.mark.parametrize("command", ["memory", "step"])
def test_zero_on_one_gpu_names_what_the_stage_shards(capsys, stage, command):
    line = refused(capsys, command, "--model", "gpt2", "--gpu", "h100", "--zero", stage)
    said = line.split(" across GPUs")[0]
    sharded, not_sharded = STAGE_SHARDS[stage]
    assert f"--zero {stage} shards" in said
    assert all(w in said for w in sharded) and not any(w in said for w in not_sharded), line


# ------------------------------------------------------------------ 5. no import shims; comments cite real homes

def test_names_are_imported_from_where_they_live():
    import importlib

    cli_common = importlib.import_module("flopscalc.cli.common")
    report_common = importlib.import_module("flopscalc.report.common")
    for name in ("BLOCK_SIZE_TYPE", "EVAL_BATCHES_TYPE", "SEED_TYPE", "STEP_INTERVAL_TYPE", "emit"):
        assert not hasattr(cli_common, name), name  # cli/train.py takes them from cli/bounds.py and cli/output.py
    assert not hasattr(report_common, "past_context_warning")  # infer and finetune take it from model.sequence
    resampling = importlib.import_module("flopscalc.scaling.resampling")  # what cli/bounds.py and scaling/fit.py cite
    assert hasattr(resampling, "MIN_PERCENTILE_RESAMPLES") and hasattr(resampling, "resample_warnings")


# ------------------------------------------------------------------ 6. `scaling laws` lists only what --law takes
# The reader's folder: best.json and Best.json were both listed while `--law best` refused them ("differ only in
# case"); 'my law.json' and '-x.json' were listed and usable though --save refuses such names ("starting with a
# letter or digit"). The contract checked: a file is listed exactly when --law takes it, and every other file gets
# one warning line naming it.



def test_scaling_laws_lists_exactly_the_saved_laws_law_takes(capsys, tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("FLOPSCALC_HOME", str(tmp_path))
    folder = tmp_path / "laws"
    folder.mkdir()
    stems = ["best", "Best", "my law", "-x", "good", "x.y_z-1"]
    for stem in stems:
        (folder / f"{stem}.json").write_text(json.dumps(LAW))
    code, out, err = cli(capsys, "scaling", "laws", "--json")
    assert code == 0
    listed = {x["name"] for x in json.loads(out)["laws"]}
    warnings = [ln for ln in err.splitlines() if ln.startswith("flopscalc: warning:")]
    for stem in stems:
        code, _, _ = cli(capsys, "scaling", "loss", "--params", "1B", "--tokens", "20B", f"--law={stem}")
        assert (code == 0) == (stem.lower() in listed), stem  # listed exactly when --law takes it
    assert listed & {"best", "my law", "-x"} == set() and {"good", "x.y_z-1"} <= listed
    assert len(warnings) == 3  # one for the pair differing in case, one per file name --save could not write
    assert sum(str(folder / "best.json") in w and str(folder / "Best.json") in w for w in warnings) == 1
    assert sum("my law.json" in w for w in warnings) == 1 and sum("-x.json" in w for w in warnings) == 1
    line = refused(capsys, "scaling", "loss", "--params", "1B", "--tokens", "20B", "--law=my law")
    assert "my law.json" in line and "rename" in line


# ------------------------------------------------------------------ 7. a CUDA version without its minor
# fb1d209 matched any "11.*" to the CUDA 11 GEMM figure; after the range rewrite "11" (no minor) fell outside every
# range and took the current cuBLAS's fraction. Reference: pytorch/pytorch#100850, H100 SXM bf16 2048 x 8192 x 8192
# at 720.3 TFLOP/s with cuBLAS 11.11.3.6 (CUDA 11.8), against the datasheet's 989.4 (its H100 SXM column).

@pytest.mark.parametrize("cuda", ["11", " 11 ", "11.8"])
def test_a_cuda_11_run_without_its_minor_gets_the_cuda_11_gemm_rate(cuda):
    from flopscalc.hardware import get_gpu
    from flopscalc.perf.validation import row_device

    h100 = get_gpu("h100-sxm")
    assert row_device({"cuda": cuda}, h100).gemm_peak_fraction == pytest.approx(720.3 / 989.4, abs=5e-4)


def test_cuda_12_without_its_minor_spans_two_figures_and_takes_neither():
    # 12.0-12.1 are priced at cuBLAS 12.0.2's 742.7 TFLOP/s (same issue), 12.2 on at the current fraction: "12" may
    # be either, so it takes the GPU's own fraction, as an unstated CUDA does
    from flopscalc.hardware import get_gpu
    from flopscalc.perf.device import device_perf
    from flopscalc.perf.validation import row_device

    h100 = get_gpu("h100-sxm")
    assert row_device({"cuda": "12"}, h100).gemm_peak_fraction == device_perf(h100).gemm_peak_fraction
    assert row_device({"cuda": "12.1"}, h100).gemm_peak_fraction == pytest.approx(742.7 / 989.4, abs=5e-4)
