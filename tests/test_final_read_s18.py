"""What the final read of stop 17 left, mended at stop 18 (each test failed before its mend).

- `train --lora-targets q,,v` was refused (``LoRA target  is not one of ...``, an empty name quoted as nothing)
  while `finetune --targets q,,v` was accepted as q,v: two parsers of one list had drifted. One parser
  (`finetune.adapters.parse_targets`) and one rule: an empty name between commas is a typo, refused in one line.
- a resume's note was stored twice (``notes`` and ``resume_note`` in `train --json`); it is in ``notes`` once, and
  the table prints the notes under it (so `train --resume` still says it, once).
- a layout report computed `report.layout.layout_margin_note` twice (once per face); once per layout now.
"""

from __future__ import annotations

import json

import pytest
from conftest import TINY_SHAPE, cli, refused

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
