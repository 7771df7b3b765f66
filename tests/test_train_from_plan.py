"""`flopscalc train --from-plan`: a plan written by the real `flopscalc plan --json` runs on the CPU with the plan's
settings, the learning rate follows the published schedules, and what cannot run is refused in one line.

The schedules are checked against the papers' formulas written out here, not against the code's function:
cosine [Hoffmann et al. 2022, App. B; Loshchilov & Hutter 2017, eq. 5] after a linear warm-up [Goyal et al. 2017,
sec. 2.2]; multi-step: 31.6% of the peak after 80% of the tokens, 10% after 90% [DeepSeek LLM, arXiv:2401.02954,
sec. 2.3].
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from flopscalc.cli import run
from flopscalc.errors import UsageError
from flopscalc.train.config import TrainConfig, learning_rate_at
from flopscalc.train.from_plan import plan_run, read_plan

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# DeepSeek LLM sec. 2.3: "decreased to 31.6% of the maximum value after processing 80% of the training tokens,
# and further reduces to 10% of the maximum value after 90% of the training tokens".
DEEPSEEK_STEPS = ((0.8, 0.316), (0.9, 0.1))


def _plan_file(tmp_path_factory, name: str, *args: str):
    """A plan from the real `flopscalc plan ... --json`, written to a file (a subprocess: the command's own stdout)."""
    out = subprocess.run([sys.executable, "-m", "flopscalc", "plan", *args, "--json"], capture_output=True,
                         text=True, check=True)
    path = tmp_path_factory.mktemp("plans") / name
    path.write_text(out.stdout, encoding="utf-8")
    return path, json.loads(out.stdout)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 3.3M-parameter GPT-2-shaped plan of a few steps (3.6 s of an RTX 4070 Ti, sequences of 64 tokens).

    At a stated 40% efficiency (--mfu 0.4), 11 steps: the default per-operation model prices this 1-layer model at
    MFU 0.06 (2 steps); the tests are about the plan file, not the time model."""
    path, plan = _plan_file(tmp_path_factory, "tiny.json", "--gpu", "4070ti", "--hours", "0.001", "--seq", "64",
                            "--mfu", "0.4")
    rec = plan["recommended"]
    assert rec["model"]["family"] == "GPT-2 block" and rec["n_steps"] <= 30, "the tiny plan is no longer tiny"
    return path, plan


def _one_line_error(capsys, argv, *words):
    code = run(argv)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


def _cosine_lr(peak: float, floor_ratio: float, warmup: int, n_steps: int, step: int) -> float:
    """Linear warm-up [Goyal et al. 2017, sec. 2.2], then one cosine cycle over the rest of the run down to
    floor_ratio x peak [Hoffmann et al. 2022, App. B; SGDR eq. 5]; ``step`` 0-based."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / (n_steps - warmup)
    return peak * floor_ratio + 0.5 * peak * (1 - floor_ratio) * (1 + math.cos(math.pi * t))


# ------------------------------------------------------------------------------------- the plan reaches the run


def test_plan_settings_reach_the_run_unchanged(tiny, tmp_path, capsys):
    """No overrides: micro-batch, accumulation, sequence, steps, LR, warm-up and optimizer are the plan's, and the
    module the trainer builds has the plan's parameter count (counted on the torch module). --max-steps 0 builds
    and writes the settings without training (a step of this plan is 0.5M tokens)."""
    path, plan = tiny
    rec, setup, hp = plan["recommended"], plan["recommended"]["setup"], plan["hyperparameters"]
    out = tmp_path / "run"
    assert run(["train", "--from-plan", str(path), "--synthetic", "--device", "cpu", "--max-steps", "0",
                "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    s = json.loads((out / "settings.json").read_text(encoding="utf-8"))
    assert summary["from_plan"] == s
    assert summary["n_params_measured"] == rec["model"]["n_params"] == rec["n_params"]
    assert (s["micro_batch"], s["grad_accum"], s["seq_len"]) == (setup["micro_batch"], setup["grad_accum"],
                                                                 setup["seq_len"])
    assert s["tokens_per_step"] == setup["tokens_per_step"] and s["max_steps"] == rec["n_steps"]
    assert s["learning_rate"] == hp["learning_rate"] and s["warmup_steps"] == hp["plan_warmup_steps"]
    assert (s["schedule"], s["min_lr_ratio"]) == (hp["schedule"], hp["min_lr_ratio"])
    assert [s["beta1"], s["beta2"]] == hp["adam_betas"]
    assert (s["weight_decay"], s["grad_clip"]) == (hp["weight_decay"], hp["grad_clip"])
    assert s["recompute"] == setup["recompute"] and s["precision"] == "fp32"  # --device cpu: named below
    assert len(s["changes"]) == 1 and s["changes"][0].startswith("precision bf16-mixed -> fp32 on the CPU")
    assert summary["steps_done"] == 0 and summary["max_steps"] == rec["n_steps"]


def test_tiny_plan_trains_on_cpu_on_the_plans_schedule(tiny, tmp_path, capsys):
    """The whole tiny plan on the CPU at a smaller batch (the overrides are named); the learning rate of every
    logged step is the plan's peak on Hoffmann et al.'s cosine over the plan's steps after its warm-up."""
    path, plan = tiny
    rec, hp = plan["recommended"], plan["hyperparameters"]
    out = tmp_path / "run"
    assert run(["train", "--from-plan", str(path), "--synthetic", "--device", "cpu", "--micro-batch", "2",
                "--grad-accum", "1", "--eval-batches", "1", "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    n, seq = rec["n_steps"], rec["setup"]["seq_len"]
    assert summary["steps_done"] == n and summary["tokens_seen"] == n * 2 * seq
    assert summary["n_params_measured"] == rec["n_params"]
    changes = summary["from_plan"]["changes"]
    assert any("micro-batch" in c and "(--micro-batch)" in c for c in changes)
    assert any("accumulation" in c and "(--grad-accum)" in c for c in changes)
    for c in changes:
        assert f"flopscalc: from the plan: {c}" in captured.err  # each change said before training
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in rows] == list(range(1, n + 1))
    peak, warmup = hp["learning_rate"], hp["plan_warmup_steps"]
    for r in rows:
        expected = _cosine_lr(peak, hp["min_lr_ratio"], warmup, n, r["step"] - 1)
        assert r["lr"] == pytest.approx(expected, rel=1e-12, abs=0)
    assert rows[warmup - 1]["lr"] == pytest.approx(peak, rel=1e-12)  # the end of warm-up is the plan's peak
    assert all(math.isfinite(r["loss"]) for r in rows)


def test_max_steps_stops_early_without_changing_the_schedule(tiny, tmp_path, capsys):
    path, plan = tiny
    n = plan["recommended"]["n_steps"]
    out = tmp_path / "run"
    assert run(["train", "--from-plan", str(path), "--synthetic", "--device", "cpu", "--micro-batch", "1",
                "--grad-accum", "1", "--eval-batches", "1", "--max-steps", "3", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps_done"] == 3 and summary["max_steps"] == n
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    hp = plan["hyperparameters"]
    assert [r["lr"] for r in rows] == pytest.approx(
        [_cosine_lr(hp["learning_rate"], hp["min_lr_ratio"], hp["plan_warmup_steps"], n, s) for s in range(3)],
        rel=1e-12)


# ------------------------------------------------------------------------------------------------- refusals


@pytest.fixture(scope="module")
def offload(tmp_path_factory):
    """GPT-2 XL on a 12 GiB RTX 4070 Ti: the planner offloads the optimizer to fit."""
    path, plan = _plan_file(tmp_path_factory, "xl.json", "--gpu", "4070ti", "--model", "gpt2-xl", "--tokens", "1e9")
    assert plan["recommended"]["setup"]["offload_optimizer"] is True
    return path, plan


def test_plan_needing_offload_is_refused_naming_the_tool(offload, capsys):
    path, _ = offload
    _one_line_error(capsys, ["train", "--from-plan", str(path), "--synthetic", "--device", "cpu"],
                    "offload", "DeepSpeed", "--allow-substitute")


def test_allow_substitute_names_each_change_and_keeps_the_model(offload):
    path, plan = offload
    pr = plan_run(read_plan(path), str(path), device="cpu", allow_substitute=True)
    assert any(c.startswith("optimizer offload -> none") for c in pr.changes)
    assert pr.settings()["n_params"] == plan["recommended"]["n_params"] == 1_557_611_200  # GPT-2 XL, its preset


def test_more_gpus_than_processes_keeps_the_batch_only_when_allowed(tmp_path_factory, capsys):
    """A 4-GPU ZeRO-1 plan in one process: refused naming torchrun and ZeRO; substituted, accumulation grows 4x so
    the tokens per step stay the plan's."""
    path, plan = _plan_file(tmp_path_factory, "four.json", "--gpu", "4070ti", "--n-gpus", "4", "--hours", "0.001",
                            "--seq", "64", "--mfu", "0.4")  # --mfu 0.4: as `tiny`, a step must fit in 3.6 s
    setup = plan["recommended"]["setup"]
    assert setup["n_gpus"] == 4
    err = _one_line_error(capsys, ["train", "--from-plan", str(path), "--synthetic", "--device", "cpu"],
                          "torchrun --nproc-per-node 4", "--allow-substitute")
    if setup["zero_stage"] in (1, 2):
        assert f"ZeRO stage {setup['zero_stage']}" in err and "DeepSpeed" in err
    pr = plan_run(plan, "four.json", device="cpu", world_size=1, allow_substitute=True)
    cfg = pr.config
    assert cfg.grad_accum == 4 * setup["grad_accum"] and cfg.micro_batch == setup["micro_batch"]
    assert cfg.micro_batch * cfg.grad_accum * cfg.seq_len == setup["tokens_per_step"]
    if setup["zero_stage"] in (1, 2):
        assert cfg.parallel == "fsdp" and any(c.startswith(f"ZeRO stage {setup['zero_stage']}") for c in pr.changes)


@pytest.mark.parametrize("text, words", [
    ("{not json", ("is not JSON", "line 1")),
    ('{"gpu": "h100"}', ("not a flopscalc plan", "'recommended'")),
    ("[1, 2]", ("not a flopscalc plan",)),
    ("", ("is not JSON",)),
])
def test_malformed_or_non_plan_json_is_one_line(tmp_path, capsys, text, words):
    f = tmp_path / "p.json"
    f.write_text(text, encoding="utf-8")
    _one_line_error(capsys, ["train", "--from-plan", str(f), "--synthetic", "--device", "cpu"], *words)


def test_plan_with_a_field_missing_or_edited_is_one_line(tiny, tmp_path, capsys):
    _, plan = tiny
    broken = json.loads(json.dumps(plan))
    del broken["recommended"]["setup"]["grad_accum"]
    f = tmp_path / "p.json"
    f.write_text(json.dumps(broken), encoding="utf-8")
    _one_line_error(capsys, ["train", "--from-plan", str(f), "--synthetic", "--device", "cpu"],
                    "'grad_accum'")
    edited = json.loads(json.dumps(plan))
    edited["recommended"]["model"]["n_layer"] += 1  # the shape no longer has the plan's parameter count
    f.write_text(json.dumps(edited), encoding="utf-8")
    _one_line_error(capsys, ["train", "--from-plan", str(f), "--synthetic", "--device", "cpu"],
                    "parameters, the plan says")


@pytest.mark.parametrize("extra, words", [
    (["--lr", "1e-3"], ("--from-plan sets --lr",)),
    (["--n-layer", "2", "--seq", "32"], ("--n-layer, --seq",)),
    (["--precision", "fp32"], ("--precision",)),
    (["--steps", "5"], ("--steps",)),
    (["--metrics-log", "m.jsonl", "--out", "o"], ("--out or --metrics-log",)),
    (["--max-steps", "100000"], ("past the plan's",)),
])
def test_contradictory_flags_are_one_line(tiny, capsys, extra, words):
    path, _ = tiny
    _one_line_error(capsys, ["train", "--from-plan", str(path), "--synthetic", "--device", "cpu", *extra], *words)


def test_plan_options_without_a_plan_are_refused(capsys):
    _one_line_error(capsys, ["train", "--synthetic", "--max-steps", "3"], "without --from-plan")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a CUDA GPU")
def test_gpu_plan_on_a_machine_without_a_gpu_needs_device_cpu(tiny, capsys):
    path, plan = tiny
    _one_line_error(capsys, ["train", "--from-plan", str(path), "--synthetic"], "no CUDA GPU", "--device cpu",
                    plan["gpu_name"])


# -------------------------------------------------------------------------------------- the multi-step schedule


@pytest.mark.parametrize("n_steps, warmup", [(20, 2), (1000, 20)])
def test_multistep_drops_at_deepseeks_steps(n_steps, warmup):
    """With 0-based step s having trained s / n_steps of the tokens before it: the peak until 80%, 31.6% from 80%,
    10% from 90% [DeepSeek LLM, sec. 2.3], after a linear warm-up."""
    from flopscalc.model import ModelConfig

    peak = 4.2e-4  # DeepSeek LLM 7B's peak (Table 2)
    cfg = TrainConfig(model=ModelConfig(n_layer=1, n_head=1, n_embd=8, block_size=8, vocab_size=16), seq_len=8,
                      max_steps=n_steps, warmup_steps=warmup, learning_rate=peak, schedule="multistep",
                      milestones=DEEPSEEK_STEPS)
    for s in range(n_steps):
        if s < warmup:
            expected = peak * (s + 1) / warmup
        elif s < 0.8 * n_steps:
            expected = peak
        elif s < 0.9 * n_steps:
            expected = 0.316 * peak
        else:
            expected = 0.1 * peak
        assert learning_rate_at(cfg, s) == pytest.approx(expected, rel=1e-12), s
    first_drop = next(s for s in range(n_steps) if learning_rate_at(cfg, s) < peak and s >= warmup)
    assert first_drop == round(0.8 * n_steps)


def test_multistep_plan_runs_its_milestones(tiny):
    """A plan whose hyperparameters are DeepSeek's multi-step (the engine's own recommendation for the plan's
    model) becomes a multistep TrainConfig with the milestones of the paper."""
    from flopscalc.scaling.hyperparams import recommend_hyperparameters

    _, plan = tiny
    p = json.loads(json.dumps(plan))
    m, rec = p["recommended"]["model"], p["recommended"]
    h = recommend_hyperparameters(m["n_layer"], m["n_embd"], rec["setup"]["seq_len"], rec["n_tokens"],
                                  schedule="multistep").as_dict()
    p["hyperparameters"] = {**h, "plan_warmup_steps": p["hyperparameters"]["plan_warmup_steps"]}
    cfg = plan_run(p, "multistep.json", device="cpu").config
    assert cfg.schedule == "multistep" and cfg.milestones == DEEPSEEK_STEPS


@pytest.mark.parametrize("schedule, milestones, words", [
    ("wsd", (), "schedule must be one of"),
    ("multistep", (), "needs its milestones"),
    ("cosine", DEEPSEEK_STEPS, "belong to the multistep"),
    ("multistep", ((0.9, 0.316), (0.8, 0.1)), "increasing"),
])
def test_bad_schedules_are_refused(schedule, milestones, words):
    from flopscalc.model import ModelConfig

    with pytest.raises(UsageError, match=words):
        TrainConfig(model=ModelConfig(n_layer=1, n_head=1, n_embd=8, block_size=8, vocab_size=16), seq_len=8,
                    schedule=schedule, milestones=milestones)


def test_a_plan_run_resumes_on_the_plans_schedule(tiny, tmp_path, capsys):
    """Stop after 2 steps with a checkpoint, resume to 4: the log continues and the resumed steps' learning rates
    are still the plan's cosine (the schedule is a function of the step and the plan's n_steps)."""
    path, plan = tiny
    hp, n = plan["hyperparameters"], plan["recommended"]["n_steps"]
    ck, out = tmp_path / "ck.pt", tmp_path / "run"
    base = ["train", "--from-plan", str(path), "--synthetic", "--device", "cpu", "--micro-batch", "1",
            "--grad-accum", "1", "--eval-batches", "1", "--checkpoint", str(ck), "--out", str(out), "--json"]
    assert run([*base, "--max-steps", "2"]) == 0
    assert run([*base, "--max-steps", "4", "--resume"]) == 0
    summaries = capsys.readouterr().out
    assert '"steps_done": 4' in summaries
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert [r["lr"] for r in rows] == pytest.approx(
        [_cosine_lr(hp["learning_rate"], hp["min_lr_ratio"], hp["plan_warmup_steps"], n, s) for s in range(4)],
        rel=1e-12)


def test_multistep_drops_after_80_percent_when_it_falls_inside_a_step():
    """11 steps: 80% of the tokens are processed after 8.8 steps, so step 9 (0-based; 9/11 = 82% processed before
    it) is the first at 31.6%, and step 10 (91%) the first at 10% [DeepSeek LLM, sec. 2.3]."""
    from flopscalc.model import ModelConfig

    cfg = TrainConfig(model=ModelConfig(n_layer=1, n_head=1, n_embd=8, block_size=8, vocab_size=16), seq_len=8,
                      max_steps=11, warmup_steps=1, learning_rate=1.0, schedule="multistep",
                      milestones=DEEPSEEK_STEPS)
    assert [learning_rate_at(cfg, s) for s in range(11)] == pytest.approx([1.0] * 9 + [0.316, 0.1], rel=1e-12)


def test_substituted_plan_runs_on_cpu_and_says_what_changed(tmp_path_factory, capsys):
    """The 4-GPU ZeRO-1 plan, run in one CPU process with --allow-substitute: it trains, and the ZeRO and GPU-count
    changes are in the summary and on stderr."""
    path, plan = _plan_file(tmp_path_factory, "four.json", "--gpu", "4070ti", "--n-gpus", "4", "--hours", "0.001",
                            "--seq", "64", "--mfu", "0.4")  # --mfu 0.4: as `tiny`, a step must fit in 3.6 s
    assert run(["train", "--from-plan", str(path), "--synthetic", "--device", "cpu", "--allow-substitute",
                "--micro-batch", "1", "--grad-accum", "1", "--eval-batches", "1", "--max-steps", "2", "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["steps_done"] == 2 and summary["n_params_measured"] == plan["recommended"]["n_params"]
    changes = summary["from_plan"]["changes"]
    assert any(c.startswith("4 GPUs -> 1 process") for c in changes)
    if plan["recommended"]["setup"]["zero_stage"] in (1, 2):
        assert any(c.startswith("ZeRO stage") for c in changes)
    assert all(f"from the plan: {c}" in captured.err for c in changes)


def test_a_llama_preset_plan_is_rebuilt_from_its_preset(tmp_path_factory):
    """A plan for Llama 3.1 8B names its preset, which is rebuilt exactly: 8,030,261,248 parameters, the count of
    Meta's released checkpoint (meta-llama/Llama-3.1-8B model.safetensors.index.json: total_size 16,060,522,496
    bytes of bf16, 2 bytes each)."""
    path, plan = _plan_file(tmp_path_factory, "llama.json", "--gpu", "h100", "--model", "llama-3.1-8b",
                            "--tokens", "1e9")
    pr = plan_run(read_plan(path), str(path), device="cpu", allow_substitute=True)
    assert pr.config.model.name == "llama-3.1-8b" and pr.settings()["n_params"] == 8_030_261_248
    assert pr.config.model.family == plan["recommended"]["model"]["family"]


def test_an_unnamed_non_gpt2_block_is_refused_in_one_line(tiny, tmp_path, capsys):
    """The plan's JSON carries a block's options only as its family label: a non-GPT-2 shape without a preset
    name cannot be rebuilt, and is refused rather than guessed."""
    _, plan = tiny
    p = json.loads(json.dumps(plan))
    p["recommended"]["model"]["family"] = "GQA 32/8, swiglu, rmsnorm, rope"
    f = tmp_path / "p.json"
    f.write_text(json.dumps(p), encoding="utf-8")
    _one_line_error(capsys, ["train", "--from-plan", str(f), "--synthetic", "--device", "cpu"],
                    "GQA 32/8, swiglu, rmsnorm, rope", "preset")


def test_data_vocabulary_resizing_the_plans_model_is_named(tiny, tmp_path, capsys):
    """--data with a byte-level vocabulary (256) resizes the plan's model; the change is named, and the module
    counted has the resized count."""
    path, plan = tiny
    data = tmp_path / "pydoc"
    assert run(["train", "prepare", str(data), "--pydoc", "--json"]) == 0
    capsys.readouterr()
    assert run(["train", "--from-plan", str(path), "--data", str(data), "--device", "cpu", "--micro-batch", "1",
                "--grad-accum", "1", "--eval-batches", "1", "--max-steps", "1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    m = plan["recommended"]["model"]
    assert any(c.startswith(f"vocabulary {m['vocab_size']:,} -> 256") for c in summary["from_plan"]["changes"])
    # GPT-2 block, tied head: only the token table changes size, by (50257 - 256) x n_embd parameters
    assert summary["n_params_measured"] == m["n_params"] - (m["vocab_size"] - 256) * m["n_embd"]


def test_an_existing_settings_file_under_out_is_refused_not_replaced(tiny, tmp_path, capsys):
    """--out DIR holding a settings.json but no metrics log (a folder the user made, or a run's settings kept after
    its log was moved): a fresh run would write its own settings.json over it; refused, the file left as it was."""
    path, _ = tiny
    out = tmp_path / "run"
    out.mkdir()
    mine = out / "settings.json"
    mine.write_text('{"mine": true}\n', encoding="utf-8")
    _one_line_error(capsys, ["train", "--from-plan", str(path), "--synthetic", "--device", "cpu", "--max-steps", "0",
                             "--out", str(out)], "the settings file", "already exists", "--resume")
    assert mine.read_text(encoding="utf-8") == '{"mine": true}\n'
