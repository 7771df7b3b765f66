"""Input contracts the s15 abuse pass found open, each checked against what the user asked for.

1. A model name resolves to the product it names: Llama 3 is not Llama 3.1 (same shapes, contexts of 8,192 and
   131,072 tokens); a name that would pick one product among several is refused with the presets it may mean.
2. A fresh `train` never truncates or replaces an existing --metrics-log or --checkpoint: refused before any work,
   naming the file and the ways on (--resume, another path).
3. --zero 1-3 on one GPU shards nothing and is refused (memory, step, plot memory), as the planner never offers it.
4. A repeatable option (--flops, --law, --model, --params, --micro-batch, --seq, --gpu-csv) takes each value once,
   however it is spelled.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import cli, cli_json

from flopscalc.errors import UsageError
from flopscalc.hf_config import config_from_hf
from flopscalc.model import ALL_PRESETS, PRESET_ALIASES, PRESETS, count_params, get_preset

# ------------------------------------------------------------------ 1. model names

# The published config.json of Meta's Llama 3 (April 2024) base models, the fields that fix the module
# (huggingface.co/meta-llama/Meta-Llama-3-8B and Meta-Llama-3-70B, config.json): no rope_scaling, an 8,192-token
# context, RoPE base 500000. Llama 3.1's files differ in max_position_embeddings (131072) and a "llama3" rope_scaling.
_LLAMA3_COMMON = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
                  "attention_bias": False, "mlp_bias": False, "max_position_embeddings": 8192,
                  "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_scaling": None, "rope_theta": 500000.0,
                  "tie_word_embeddings": False, "vocab_size": 128256}
META_LLAMA3 = {
    "llama-3-8b": {**_LLAMA3_COMMON, "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
                   "num_hidden_layers": 32},
    "llama-3-70b": {**_LLAMA3_COMMON, "hidden_size": 8192, "intermediate_size": 28672, "num_attention_heads": 64,
                    "num_hidden_layers": 80},
}
_SHAPE_FIELDS = ("n_layer", "n_head", "n_embd", "kv_heads", "n_inner", "vocab_size", "block_size", "rope_theta",
                 "norm_eps", "train_seq", "position", "mlp", "norm", "tie_embeddings", "bias")


@pytest.mark.parametrize("name", list(META_LLAMA3))
def test_llama_3_presets_are_the_published_llama_3_files(name):
    published = config_from_hf(META_LLAMA3[name])
    preset = get_preset(name)
    assert {f: getattr(preset, f) for f in _SHAPE_FIELDS} == {f: getattr(published, f) for f in _SHAPE_FIELDS}
    assert preset.block_size == 8192 and preset.train_seq is None  # trained at its whole context (model card)
    three_one = get_preset(name.replace("llama-3-", "llama-3.1-"))
    assert three_one.block_size == 131072 and three_one.train_seq == 8192  # the other release


@pytest.mark.parametrize("name", list(META_LLAMA3))
def test_llama_3_counts_equal_the_transformers_module_of_the_published_file(hf, name):
    import torch

    cfg = hf.AutoConfig.for_model(**{k: v for k, v in META_LLAMA3[name].items() if k != "architectures"})
    with torch.device("meta"):
        model = hf.LlamaForCausalLM(cfg)
    assert count_params(get_preset(name)).total == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("spelling,preset", [("llama-3-8b", "llama-3-8b"), ("llama3-8b", "llama-3-8b"),
                                             ("Llama_3_8B", "llama-3-8b"), ("llama3-70b", "llama-3-70b"),
                                             ("llama3.1-8b", "llama-3.1-8b"), ("llama3.1-70b", "llama-3.1-70b")])
def test_a_llama_spelling_names_its_own_release(spelling, preset):
    assert get_preset(spelling) is ALL_PRESETS[preset]


def _version_and_size(name: str) -> list[str]:
    return re.findall(r"\d+(?:\.\d+)?", name.replace("x", " "))


def test_no_alias_of_a_published_family_changes_the_release_or_size():
    # an alias may respell a name (llama3-8b for llama-3-8b); its numbers (release, size) must be the target's.
    # GPT-2's size names (small, 124m, xl) are the one family whose aliases are sizes by design (tests/test_model.py)
    for alias, target in PRESET_ALIASES.items():
        if target in PRESETS:
            continue
        assert _version_and_size(alias) == _version_and_size(target), (alias, target)


@pytest.mark.parametrize("name,meant", [("mixtral", "mixtral-8x7b"), ("mistral", "mistral-7b"),
                                        ("qwen2.5-7b-instruct", "qwen2.5-7b")])
def test_a_name_of_several_products_is_refused_with_the_preset_it_may_mean(capsys, name, meant):
    with pytest.raises(UsageError) as err:
        get_preset(name)
    assert meant in str(err.value) and "--config" in str(err.value)
    code, out, errtext = cli(capsys, "flops", "--model", name, "--tokens", "1e9")
    assert code == 2 and out == "" and len(errtext.strip().splitlines()) == 1 and meant in errtext


# ------------------------------------------------------------------ 2. a fresh run keeps the user's files

TINY = ["--n-layer", "1", "--n-head", "1", "--n-embd", "16", "--block-size", "16", "--micro-batch", "2", "--seq", "8",
        "--steps", "2", "--warmup-steps", "1", "--eval-interval", "0", "--device", "cpu", "--vocab-size", "64"]
NOTES = "my notes, not a metrics log\n"


def _one_line(capsys, *argv) -> str:
    code, out, err = cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("flopscalc: error: ") and "Traceback" not in err, \
        (code, out, err)
    return lines[0]


@pytest.mark.parametrize("flag", ["--metrics-log", "--checkpoint"])
def test_a_fresh_run_refuses_an_existing_output_and_leaves_it_whole(tmp_path, capsys, flag):
    pytest.importorskip("torch")
    mine = tmp_path / "notes.txt"
    mine.write_text(NOTES, encoding="utf-8")
    line = _one_line(capsys, "train", "--synthetic", *TINY, flag, str(mine))
    assert str(mine) in line and "already exists" in line and "--resume" in line and "another path" in line
    assert mine.read_text(encoding="utf-8") == NOTES  # was: truncated (log) or replaced (checkpoint) by the run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no work was done, nothing else written


@pytest.mark.parametrize("flag", ["--metrics-log", "--checkpoint"])
def test_an_existing_output_named_through_a_missing_folder_is_refused_too(tmp_path, capsys, flag):
    # 'new/../notes.txt' is notes.txt once the writer makes 'new' (it makes missing folders), but Path.exists()
    # answers False while 'new' is missing: the fresh run truncated the log (found in the stop-15 review)
    pytest.importorskip("torch")
    mine = tmp_path / "notes.txt"
    mine.write_text(NOTES, encoding="utf-8")
    line = _one_line(capsys, "train", "--synthetic", *TINY, flag, str(tmp_path / "new" / ".." / "notes.txt"))
    assert "already exists" in line
    assert mine.read_text(encoding="utf-8") == NOTES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("command", ["bench", "calibrate"])
def test_an_existing_profile_named_through_a_missing_folder_is_kept(capsys, tmp_path, command):
    profile = tmp_path / "profile.json"
    profile.write_text('{"mine": true}')
    line = _one_line(capsys, command, "--out", str(tmp_path / "new" / ".." / "profile.json"), "--n-layer", "2",
                     "--n-head", "2", "--n-embd", "64")
    assert "already exists" in line and "--replace" in line
    assert profile.read_text() == '{"mine": true}'


def test_the_same_fresh_run_twice_is_refused_and_a_resume_appends(tmp_path, capsys):
    pytest.importorskip("torch")
    ck, log = tmp_path / "ck.pt", tmp_path / "m.jsonl"
    first = ["train", "--synthetic", *TINY, "--checkpoint", str(ck), "--metrics-log", str(log)]
    assert cli(capsys, *first)[0] == 0
    assert len(log.read_text().splitlines()) == 2
    _one_line(capsys, *first)  # the same fresh run again: refused, both files as they were
    assert len(log.read_text().splitlines()) == 2
    more = [a if a != "2" or first[i - 1] != "--steps" else "3" for i, a in enumerate(first)]
    assert cli(capsys, *more, "--resume", "--new-schedule")[0] == 0  # one step more: a new schedule, asked for
    assert [json.loads(x)["step"] for x in log.read_text().splitlines()] == [1, 2, 3]  # appended, none lost


def test_a_plan_run_refuses_an_existing_metrics_log_in_its_out_folder(tmp_path, capsys):
    pytest.importorskip("torch")
    plan = cli_json(capsys, "plan", "--gpu", "4070ti", "--hours", "0.001", "--seq", "64", "--mfu", "0.4")
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan), encoding="utf-8")
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text(NOTES, encoding="utf-8")
    line = _one_line(capsys, "train", "--from-plan", str(path), "--synthetic", "--device", "cpu", "--max-steps", "0",
                     "--out", str(out))
    assert str(out / "metrics.jsonl") in line and "--resume" in line
    assert (out / "metrics.jsonl").read_text(encoding="utf-8") == NOTES and not (out / "settings.json").exists()


# ------------------------------------------------------------------ 3. ZeRO on one GPU

# ZeRO partitions the model states over the N_d data-parallel ranks (Rajbhandari et al. 2020, sec. 5, Fig. 1:
# (2 + 2 + K) Psi / N_d per GPU at stage 3): with N_d = 1 the partition is the whole, so a stage moves nothing it
# names. Its estimate moved anyway (ZeRO-1 3.57 GB against ZeRO-0 3.65 GB for GPT-2 on a 4090) because stages 1-3 are
# priced in DeepSpeed's mixed-precision layout rather than PyTorch AMP's: not what --zero asks for.
ZERO_COMMANDS = [("memory", "--model", "gpt2", "--gpu", "4090"), ("step", "--model", "gpt2", "--gpu", "4090"),
                 ("plot", "memory", "--gpu", "4090", "--model", "gpt2", "--out", "z.png")]


@pytest.mark.parametrize("command", ZERO_COMMANDS, ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize("stage", ["1", "2", "3"])
def test_zero_on_one_gpu_is_refused_in_one_line(capsys, tmp_path, monkeypatch, command, stage):
    monkeypatch.chdir(tmp_path)
    line = _one_line(capsys, *command, "--zero", stage)
    assert f"--zero {stage}" in line and "--n-gpus 1" in line and "--n-gpus 2" in line
    assert not (tmp_path / "z.png").exists()


def test_zero_with_two_gpus_shards_and_offload_on_one_gpu_still_runs(capsys):
    base = ("memory", "--model", "gpt2", "--gpu", "4090", "--n-gpus", "2")
    states = {z: cli_json(capsys, *base, "--zero", z)["components_bytes"]["optimizer_state"] for z in ("0", "1")}
    assert states["1"] == pytest.approx(states["0"] / 2)  # ZeRO-1 over N_d = 2: half the optimizer state per GPU
    assert cli(capsys, "memory", "--model", "gpt2", "--gpu", "4090", "--offload")[0] == 0  # ZeRO-Offload, one GPU


def test_the_planner_offers_zero_only_with_several_gpus():
    from flopscalc.planner.setups import searched_setups

    assert {s["zero_stage"] for s in searched_setups(1)} == {0}
    assert any(s["offload_optimizer"] for s in searched_setups(1))  # offload stays a one-GPU option
    assert {s["zero_stage"] for s in searched_setups(2)} == {0, 1, 2, 3}


# ------------------------------------------------------------------ 4. a repeatable option takes each value once

@pytest.mark.parametrize("argv,option", [
    (("plot", "isoflop", "--flops", "1e20", "--flops", "1e20", "--json"), "--flops"),  # the same spelling
    (("plot", "isoflop", "--flops", "1e20", "--flops=1e20", "--json"), "--flops"),
    (("plot", "isoflop", "--flops", "1e20", "--flops", "100e18", "--json"), "--flops"),  # one number, two spellings
    (("plot", "landscape", "--flops", "1e21", "--flops", "1e+21", "--json"), "--flops"),
    (("plot", "frontier", "--law", "chinchilla", "--law", "Chinchilla", "--json"), "--law"),
    (("plot", "memory", "--gpu", "4090", "--model", "gpt2", "--model", "small", "--json"), "--model"),  # an alias
    (("plot", "memory", "--gpu", "4090", "--params", "350M", "--params", "3.5e8", "--json"), "--params"),
    (("plot", "memory", "--gpu", "4090", "--micro-batch", "2", "--micro-batch", "2", "--json"), "--micro-batch"),
    (("memory", "--model", "gpt2", "--gpu", "4090", "--gpu-csv", "g.csv", "--gpu-csv", "g.csv"), "--gpu-csv"),
    (("bench", "--model", "gpt2", "--model", "gpt2", "--device", "cpu"), "--model"),
    (("bench", "--model", "gpt2", "--model", "124m", "--device", "cpu"), "--model"),
    (("bench", "--model", "gpt2", "--seq", "64", "--seq", "64", "--device", "cpu"), "--seq"),
    (("calibrate", "--out", "p.json", "--micro-batch", "2", "--micro-batch", "2", "--device", "cpu"),
     "--micro-batch"),
])
def test_a_repeated_value_of_a_repeatable_option_is_refused(capsys, tmp_path, monkeypatch, argv, option):
    monkeypatch.chdir(tmp_path)
    line = _one_line(capsys, *argv)
    assert option in line and "give each value once" in line
    assert list(tmp_path.iterdir()) == []  # refused before any work


def test_distinct_values_still_draw_one_curve_each(capsys):
    d = cli_json(capsys, "plot", "isoflop", "--flops", "1e20", "--flops", "1e21")
    assert len(d["curves"]) == 2


# ---- bench / calibrate --out over an existing profile ------------------------------------------------------------
# A profile is minutes of measurement on a device; a quick 'bench --out' replaced a 'calibrate' profile without a
# word, where saved laws need --replace. Refused before any timing, in one line.

@pytest.mark.parametrize("command", ["bench", "calibrate"])
def test_an_existing_profile_is_kept_unless_replace(capsys, tmp_path, command):
    from flopscalc.cli import run

    profile = tmp_path / "profile.json"
    profile.write_text('{"mine": true}')
    assert run([command, "--out", str(profile), "--n-layer", "2", "--n-head", "2", "--n-embd", "64"]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--replace" in err and len(err.strip().splitlines()) == 1
    assert profile.read_text() == '{"mine": true}'


def test_replace_without_out_is_refused(capsys):
    from flopscalc.cli import run

    assert run(["bench", "--replace"]) == 2
    assert "--out" in capsys.readouterr().err
