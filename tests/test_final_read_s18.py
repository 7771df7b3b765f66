"""What the final read of stop 17 left, mended at stop 18 (each test failed before its mend).

- `train --lora-targets q,,v` was refused (``LoRA target  is not one of ...``, an empty name quoted as nothing)
  while `finetune --targets q,,v` was accepted as q,v: two parsers of one list had drifted. One parser
  (`finetune.adapters.parse_targets`) and one rule: an empty name between commas is a typo, refused in one line.
- a resume's note was stored twice (``notes`` and ``resume_note`` in `train --json`); it is in ``notes`` once, and
  the table prints the notes under it (so `train --resume` still says it, once).
- a layout report computed `report.layout.layout_margin_note` twice (once per face); once per layout now.
- the no-fit hint ignored the user's --no-layout-search: GPT-2 XL in 3 GiB per H100 was told "it would fit on 32
  GPUs" with --no-layout-search too, where only a tensor/pipeline layout (which the flag turns off) fits; 32 GPUs
  with the flag were refused. The hint now counts the runs the user's plan would search.
- benchmarks/bench_perf_own_gpu.py matched rows by (file, model, micro-batch): one profile holding GPT-2 XL at
  micro-batch 8 with three recomputation modes gave all three rows one calibrated prediction. Rows are keyed by
  the whole setup now.
- benchmarks/bench_trainer.py --dry-run judged "fits" on the allocated peak, without the CUDA context and the
  allocator's overhead: GPT-2 at micro-batch 170 x 1024 on an H200 (137.8 GiB allocated, 145.2 GiB on the device,
  of 141 GiB) was said to fit. It is judged on the device total `flopscalc memory` reports.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_SHAPE, cli, cli_json, refused

from flopscalc.hardware import get_gpu

FINETUNE = ["finetune", "--model", "llama-3.1-8b", "--gpu", "4090", "--dataset-tokens", "1M"]
TINY_TRAIN = ["train", "--synthetic", "--n-layer", "1", "--n-head", "1", "--n-embd", "8", "--block-size", "8",
              "--vocab-size", "16", "--micro-batch", "1", "--seq", "8", "--eval-interval", "0", "--eval-batches", "1",
              "--device", "cpu", "--steps", "2", "--warmup-steps", "1", "--mlp", "swiglu", "--lora-rank", "2"]


@pytest.mark.parametrize(("argv", "option"), [
    ([*FINETUNE, "--targets"], "--targets"),
    ([*TINY_TRAIN, "--lora-targets"], "--lora-targets"),
])
@pytest.mark.parametrize("targets", ["q,,v", "q,v,", " ,q"])
def test_an_empty_lora_target_between_commas_is_refused_alike_by_finetune_and_train(capsys, argv, option, targets):
    line = refused(capsys, *argv, targets)
    assert f"{option} {targets.replace(' ', '')} has an empty name between commas" in line
    assert f"e.g. {option} q" in line


def test_a_resume_note_is_said_once_in_the_json_and_once_in_the_table(tmp_path, capsys, one_torch_thread):
    ck = tmp_path / "ck.pt"
    args = ["train", "--synthetic", *TINY_SHAPE, "--seq", "16", "--eval-interval", "0", "--eval-batches", "1",
            "--device", "cpu", "--micro-batch", "2", "--warmup-steps", "0", "--checkpoint", str(ck)]
    assert cli(capsys, *args, "--steps", "2")[0] == 0
    code, out, err = cli(capsys, *args, "--steps", "3", "--resume", "--new-schedule", "--json")
    assert code == 0, err
    data = json.loads(out)
    note = next(n for n in data["notes"] if n.startswith("--new-schedule"))  # what the resume changed
    assert json.dumps(data).count(note[:40]) == 1
    code, out, err = cli(capsys, *args, "--steps", "4", "--resume", "--new-schedule")  # the table, from step 3
    assert code == 0, err
    assert " ".join(out.split()).count("--new-schedule") == 1, out


@pytest.mark.parametrize("layout", [["--tp", "2"], ["--search"]])
def test_a_layout_report_computes_its_margin_note_once_per_layout(capsys, monkeypatch, layout):
    import flopscalc.report.layout as report_layout

    calls = []
    real = report_layout.layout_margin_note
    monkeypatch.setattr(report_layout, "layout_margin_note", lambda lt, mem: calls.append(lt.layout) or real(lt, mem))
    code, out, err = cli(capsys, "step", "--model", "gpt2", "--gpu", "h100", "--n-gpus", "8", *layout, "--json")
    assert code == 0, err
    data = json.loads(out)
    shown = data.get("ranked", [data])
    assert len(calls) == len(shown) and len(set(calls)) == len(calls)  # each layout's note, once


def test_the_no_fit_hint_counts_only_the_runs_the_users_plan_searches(capsys):
    plan = ["plan", "--gpu", "h100", "--days", "1", "--model", "gpt2-xl", "--memory", "3GiB"]
    found = re.search(r"it would fit on (\d+) GPUs", refused(capsys, *plan, code=1))
    assert found, "a layout beyond a node holds GPT-2 XL in 3 GiB per GPU"
    n = found.group(1)
    assert cli(capsys, *plan, "--n-gpus", n)[0] == 0  # the count the default hint names runs ...
    assert cli(capsys, *plan, "--n-gpus", n, "--no-layout-search")[0] == 1  # ... only with layouts
    line = refused(capsys, *plan, "--no-layout-search", code=1)
    # data parallelism alone never does; the count is named as the plan without the option's (review r15 #5)
    assert "GPUs hold it in data-parallel setups" in line and f"; it would fit on {n} GPUs without --no-layout-search" in line


ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def test_the_own_gpu_benchmark_keeps_apart_points_of_one_model_and_micro_batch(tmp_path):
    # GPT-2 XL at micro-batch 8 without, with full and with selective recomputation, in one profile (the measured
    # points of three committed files, as one calibrate sweep would write them)
    sizes = json.loads((RESULTS / "calibration_h200-sxm_20261128_eager-sizes.json").read_text())
    for mode in ("full", "selective"):
        other = json.loads((RESULTS / f"calibration_h200-sxm_20261128_recompute-{mode}-gpt2-xl.json").read_text())
        sizes["points"] += other["points"]
    merged = tmp_path / "calibration_h200-sxm_merged.json"
    merged.write_text(json.dumps(sizes))
    paths = [RESULTS / "calibration_h200-sxm_20261128_eager.json", merged,
             RESULTS / "calibration_h200-sxm_20261128_recompute-full-gpt2.json"]
    out = tmp_path / "out.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_perf_own_gpu.py"), "--out", str(out),
                        *(a for p in paths for a in ("--profile", str(p)))], check=False, capture_output=True,
                       text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    predicted = {t["recompute"]: t["calibrated_s"] for t in result["cross_size"]["targets"]
                 if t["model"] == "gpt2-xl"}
    rows = {p["recompute"]: p["calibrated_s"] for p in result["points"] if p["model"] == "gpt2-xl"}
    assert len(predicted) == 3 and rows == predicted  # each row its own prediction


def test_the_trainer_dry_run_judges_fits_on_the_device_total_flopscalc_memory_reports(capsys):
    micro = 170  # GPT-2 x 1024 tokens: allocated 137.8 GiB of the H200's 141, 145.2 GiB with context and overhead
    code = ("import importlib.util, json, sys\n"
            f"spec = importlib.util.spec_from_file_location('m', {str(ROOT / 'benchmarks' / 'bench_trainer.py')!r})\n"
            "mod = sys.modules['m'] = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
            "from flopscalc.train.bench import BenchSetup\n"
            f"print(json.dumps(mod.dry_run_rows([BenchSetup(model=mod.get_preset('gpt2'), micro_batch={micro}, "
            "seq_len=1024, compile=False)], 'h200-sxm')))\n")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout.strip().splitlines()[-1])
    memory = cli_json(capsys, "memory", "--model", "gpt2", "--gpu", "h200", "--micro-batch", str(micro), "--seq",
                      "1024")
    gpu_bytes = get_gpu("h200").memory_bytes
    assert row["predicted_memory_bytes"] == memory["allocated_peak_bytes"] <= gpu_bytes  # allocated: it would fit
    assert row["predicted_device_bytes"] == memory["peak_bytes"] > gpu_bytes and not row["fits"]


def test_calibrate_refuses_one_model_named_twice_as_bench_does(capsys, tmp_path):
    # final read of stop 18: `calibrate --model gpt2 --model small` timed GPT-2 small twice (6 points of 3 setups
    # passed the 5-setup minimum the fit of 4 device factors needs); bench refused the same repeat
    from conftest import refused

    out = tmp_path / "p.json"
    for command in (["calibrate", "--out", str(out)], ["bench"]):
        line = refused(capsys, *command, "--model", "gpt2", "--model", "small", "--micro-batch", "1", "--steps", "1",
                       "--warmup-steps", "1", "--seq", "8")
        assert "--model gpt2 and --model small name the same value" in line
    assert not out.exists()


def test_memory_micro_batch_fix_fits_when_followed_with_the_accumulation_it_names(capsys):
    # final read of stop 18: `memory` offered "micro-batch 64 -> 17" priced at the old accumulation; followed with the
    # accumulation that keeps the sequences per step (4) it needed 83.86 GiB of 80 ("largest ... fits: 15"), the case
    # finetune's fixes already priced right (test_r7_b88)
    import json
    import re

    from conftest import cli

    args = ["--model", "gpt2-xl", "--gpu", "h100", "--seq", "1024", "--precision", "bf16-mixed"]
    _, out, _ = cli(capsys, "memory", *args, "--micro-batch", "64")
    m = re.search(r"micro-batch 64 -> (\d+) \(--grad-accum (\d+) keeps about the sequences per step\)", out)
    assert m, out
    batch, accum = map(int, m.groups())
    assert accum == -(-64 // batch)  # ceil(64 / batch): about the 64 sequences per step
    _, out, _ = cli(capsys, "memory", *args, "--micro-batch", str(batch), "--grad-accum", str(accum), "--json")
    assert json.loads(out)["fits"] is True
    _, out, _ = cli(capsys, "memory", *args, "--micro-batch", str(batch + 1), "--grad-accum",
                    str(-(-64 // (batch + 1))), "--json")
    assert json.loads(out)["fits"] is False
