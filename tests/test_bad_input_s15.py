"""Bad input across the CLI, found by abuse (stop 15): each case failed before its fix with a traceback, a value read
as something else, or a file written over; now it is one line on stderr and exit 2 (a usage error).

Every test drives the real app in-process (`flopscalc.cli.run`) and checks the contract, not our own numbers: the
exit code, ONE line naming what was wrong, and that no file the user made was touched.
"""

from __future__ import annotations

import codecs
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import cli, refused

from flopscalc.calibration import CalibrationProfile, DeviceFactors, save_profile
from flopscalc.errors import UsageError
from flopscalc.textfile import parse_json
from flopscalc.units import parse_bytes

# A small GPT-2 config.json (transformers' GPT2Config field names).
GPT2_CONFIG = {"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 64, "vocab_size": 100, "n_positions": 128}
TINY = ["--n-layer", "1", "--n-head", "1", "--n-embd", "16", "--block-size", "16", "--micro-batch", "2", "--seq", "8",
        "--steps", "2", "--warmup-steps", "1", "--eval-interval", "0", "--device", "cpu"]


def _cpu_profile(**factor_changes) -> dict:
    """A calibration profile's JSON as 'calibrate' writes it on a CPU (fitted fp32 factors), with changes."""
    from test_train_calibration import _point

    factors = DeviceFactors(gemm_flop_per_s=1e11, memory_bytes_per_s=1e10, kernel_min_s=1e-5, attention_fraction=0.5,
                            precision="fp32", n_points=1, rms_rel_error=0.0, max_rel_error=0.0)
    prof = CalibrationProfile(device_name="cpu", gpu_key=None, torch_version="2.13.0", created="2026-01-01",
                              points=(replace(_point(), round_step_times_s=(0.1, 0.11)),), device_factors=factors)
    data = prof.to_dict()
    data["device_factors"].update(factor_changes)
    return data


# ------------------------------------------------------------------ JSON files: one parser for every reader


def _deep(depth: int = 100_000) -> str:
    return "[" * depth + "]" * depth  # valid JSON nested past CPython's recursion limit (RecursionError)


def _long_int() -> str:
    return json.dumps(GPT2_CONFIG).replace('"n_embd": 64', '"n_embd": ' + "9" * (sys.get_int_max_str_digits() + 1))


def _repeated_key() -> str:
    return json.dumps(GPT2_CONFIG)[:-1] + ', "n_layer": 4}'  # json.loads kept the last n_layer (4) without a word


@pytest.mark.parametrize("text,says", [
    (_deep(), "nested too deeply"),
    (_long_int(), "whole number of more than"),
    (_repeated_key(), "key 'n_layer' appears twice"),
])
@pytest.mark.parametrize("command", [
    ["flops", "--tokens", "1e9", "--config"],
    ["memory", "--gpu", "4090", "--config"],
    ["step", "--gpu", "cpu", "--model", "gpt2", "--calibration"],
    ["plan", "--gpu", "4090", "--days", "1", "--calibration"],
])
def test_a_json_file_python_cannot_read_plainly_is_one_line(capsys, tmp_path, text, says, command):
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    line = refused(capsys, *command, str(bad))
    assert says in line and str(bad) in line


def test_a_repeated_key_was_read_as_its_last_value_and_is_now_refused(capsys, tmp_path):
    # was: the 2-layer config with a second "n_layer": 4 counted 4 layers (214,656 parameters), silently
    (tmp_path / "ok.json").write_text(json.dumps(GPT2_CONFIG))
    (tmp_path / "twice.json").write_text(_repeated_key())
    code, out, _ = cli(capsys, "flops", "--tokens", "1e9", "--config", str(tmp_path / "ok.json"), "--json")
    assert code == 0 and json.loads(out)["model"]["n_layer"] == 2
    assert "appears twice" in refused(capsys, "flops", "--tokens", "1e9", "--config", str(tmp_path / "twice.json"))


def test_parse_json_leaves_plain_syntax_errors_to_each_reader_and_reads_good_json():
    with pytest.raises(json.JSONDecodeError):  # each reader words "not valid JSON" for its own file
        parse_json("{not json", "x.json")
    assert parse_json(json.dumps(GPT2_CONFIG), "x.json") == GPT2_CONFIG
    assert parse_json('{"a": {"b": 1}, "c": {"b": 2}}', "x.json") == {"a": {"b": 1}, "c": {"b": 2}}  # per object


def test_saved_law_and_plan_files_use_the_same_parser(tmp_path, monkeypatch):
    from flopscalc.scaling.io import load_law
    from flopscalc.train.from_plan import read_plan

    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "a", "name": "b"}')
    for read in (load_law, read_plan):
        with pytest.raises(UsageError, match="appears twice"):
            read(bad)


@pytest.mark.parametrize("model_type", [["gpt2"], {"type": "gpt2"}, 2])
def test_a_model_type_that_is_not_a_string_is_one_line(capsys, tmp_path, model_type):
    # was: TypeError (unhashable type: 'list') from the lookup of the reader
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**GPT2_CONFIG, "model_type": model_type}))
    line = refused(capsys, "flops", "--tokens", "1e9", "--config", str(path))
    assert "model_type" in line and "gpt2, gpt_neox" in line


# ------------------------------------------------------------------ calibration profiles


def test_step_with_a_profile_without_fitted_factors_says_so(capsys, tmp_path):
    # 'bench --out' writes a profile without device factors; was: AttributeError on None.precision
    data = _cpu_profile()
    data["device_factors"] = None
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(data))
    line = refused(capsys, "step", "--gpu", "cpu", "--model", "gpt2", "--calibration", str(path))
    assert "no fitted device factors" in line and "flopscalc calibrate" in line


def test_step_reads_the_unedited_profile(capsys, tmp_path):
    save = tmp_path / "ok.json"
    save.write_text(json.dumps(_cpu_profile()))
    code, out, err = cli(capsys, "step", "--gpu", "cpu", "--model", "gpt2", "--calibration", str(save), "--json")
    assert code == 0, err
    assert json.loads(out)["step_s"] > 0


@pytest.mark.parametrize("changes,says", [
    ({"precision": "xyz"}, "device factor precision must be one of fp32, tf32, bf16"),  # was: ValueError traceback
    ({"precision": 16}, "device factor precision must be one of"),
])
def test_a_profile_fitted_in_no_known_precision_is_one_line(capsys, tmp_path, changes, says):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(_cpu_profile(**changes)))
    assert says in refused(capsys, "step", "--gpu", "cpu", "--model", "gpt2", "--calibration", str(path))


def test_a_gpu_key_that_is_not_a_string_is_refused_on_reading(capsys, tmp_path):
    # was: "calibration profile was measured on 5; name that GPU"
    data = {**_cpu_profile(), "gpu_key": 5}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    assert "gpu_key must be a GPU database key" in refused(capsys, "step", "--gpu", "cpu", "--model", "gpt2",
                                                          "--calibration", str(path))


def test_the_profile_calibrate_writes_still_loads(tmp_path):
    from flopscalc.calibration import load_profile

    path = tmp_path / "p.json"
    path.write_text(json.dumps(_cpu_profile()))
    prof = load_profile(path)
    assert load_profile(save_profile(prof, tmp_path / "again.json")) == prof


# ------------------------------------------------------------------ sizes without a unit


@pytest.mark.parametrize("argv", [
    ["plan", "--gpu", "4090", "--days", "1", "--memory", "24"],  # was: a plan for 24 bytes per GPU (exit 1)
    ["memory", "--gpu", "4090", "--model", "gpt2", "--cuda-context", "512"],  # was: 512 bytes of CUDA context
    ["plot", "frontier", "--gpu", "4090", "--memory", "24", "--out", "f.png"],
])
def test_a_size_on_the_command_line_must_say_its_unit(capsys, argv):
    line = refused(capsys, *argv)
    number = argv[argv.index("--memory" if "--memory" in argv else "--cuda-context") + 1]
    assert "has no unit" in line and f"{number}GiB" in line and f"{number}GB" in line


def test_a_size_with_a_unit_or_zero_is_read():
    assert parse_bytes("24GiB", unit_required=True) == 24 * 2**30
    assert parse_bytes("24 GB", unit_required=True) == 24e9
    assert parse_bytes("0", unit_required=True) == 0  # nothing, in any unit
    assert parse_bytes("100") == 100  # the library's own callers keep bytes as the bare unit


def test_memory_cuda_context_with_a_unit_moves_the_total(capsys):
    from conftest import cli_json

    small = cli_json(capsys, "memory", "--gpu", "4090", "--model", "gpt2", "--cuda-context", "0")
    large = cli_json(capsys, "memory", "--gpu", "4090", "--model", "gpt2", "--cuda-context", "1GiB")
    # the context sits outside PyTorch's allocator, so its bytes add to the peak as they are: 1 GiB, not 1 byte
    assert large["peak_bytes"] - small["peak_bytes"] == pytest.approx(2**30, rel=1e-9)


# ------------------------------------------------------------------ the trainer's data folder: meta.json


@pytest.fixture
def data_dir(tmp_path):
    np = pytest.importorskip("numpy")
    folder = tmp_path / "data"
    folder.mkdir()
    for split in ("train", "val"):
        np.arange(64, dtype=np.uint16).tofile(folder / f"{split}.bin")
    return folder


@pytest.mark.parametrize("meta", ['{"vocab_size": 300.7}', '{"vocab_size": true}', '{"vocab_size": "64"}',
                                  '{"vocab": 64}', "[64]"])
def test_a_meta_json_without_a_whole_vocab_size_is_refused_not_truncated(data_dir, meta):
    # was: int(300.7) == 300 and int(True) == 1, taken as the vocabulary without a word
    from flopscalc.train.data import find_split_files

    (data_dir / "meta.json").write_text(meta)
    with pytest.raises(UsageError, match="positive whole-number vocab_size"):
        find_split_files(data_dir)


def test_a_meta_json_with_a_bom_is_read_like_every_other_file(data_dir):
    # was: "not a valid meta.json" for Excel's or Notepad's UTF-8 with a byte-order mark
    from flopscalc.train.data import find_split_files

    (data_dir / "meta.json").write_bytes(codecs.BOM_UTF8 + b'{"vocab_size": 64}')
    assert find_split_files(data_dir)[2] == 64


# ------------------------------------------------------------------ outputs that would replace another file


def test_checkpoint_and_metrics_log_at_one_path_are_refused_before_training(capsys, tmp_path):
    # was: both written to one file (the checkpoint over the log, or the log over the checkpoint)
    same = tmp_path / "run.out"
    line = refused(capsys, "train", "--synthetic", *TINY, "--vocab-size", "64", "--checkpoint", str(same),
                   "--metrics-log", str(tmp_path / "sub" / ".." / "run.out"))
    assert "--checkpoint and --metrics-log name the same file" in line
    assert not same.exists()


@pytest.mark.parametrize("command", [["bench", "--steps", "1"], ["calibrate", "--steps", "1"]])
def test_a_profile_written_over_the_config_it_reads_is_refused_first(capsys, tmp_path, monkeypatch, command):
    # was: the sweep ran, then the profile replaced the user's config.json
    from flopscalc.train import bench

    def no_timing(*args, **kwargs):
        raise AssertionError("benchmarked before the output path was checked")

    monkeypatch.setattr(bench, "run_benchmarks", no_timing, raising=False)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(GPT2_CONFIG))
    line = refused(capsys, *command, "--config", str(config), "--out", str(config))
    assert "--out" in line and "is the file --config reads" in line
    assert json.loads(config.read_text()) == GPT2_CONFIG


def test_train_metrics_log_over_the_config_is_refused(capsys, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(GPT2_CONFIG))
    line = refused(capsys, "train", "--synthetic", "--config", str(config), "--metrics-log", str(config),
                   "--device", "cpu")
    assert "is the file --config reads" in line
    assert json.loads(config.read_text()) == GPT2_CONFIG


def test_refuse_same_file_sees_a_hard_link(tmp_path):
    from flopscalc.atomic import refuse_same_file

    a = tmp_path / "a.json"
    a.write_text("{}")
    b = tmp_path / "b.json"
    b.hardlink_to(a)
    with pytest.raises(UsageError, match="--out .* is the file --config reads"):
        refuse_same_file({"--out": b}, {"--config": a})
    refuse_same_file({"--out": tmp_path / "new.json", "--metrics-log": None}, {"--config": a, "--gpu-csv": [a]})


def test_distinct_paths_still_train(capsys, tmp_path):
    pytest.importorskip("torch")
    code, _, err = cli(capsys, "train", "--synthetic", *TINY, "--vocab-size", "64", "--checkpoint",
                       str(tmp_path / "ck.pt"), "--metrics-log", str(tmp_path / "log.jsonl"))
    assert code == 0, err
    assert Path(tmp_path / "ck.pt").stat().st_size > 0 and len((tmp_path / "log.jsonl").read_text().splitlines()) == 2


# ------------------------------------------------------------------ counts past any real run: a bound, not a hang

HUGE = "99999999999999999999999"  # 1e23: click reads it as a Python int


def _subprocess(*argv: str, timeout_s: float = 60):
    """The CLI in a child process with a time limit: these inputs ran for hours before their bound."""
    import os
    import subprocess

    root = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, "-m", "flopscalc", *argv], capture_output=True, text=True, check=False,
                          timeout=timeout_s, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})


@pytest.mark.parametrize("argv,says", [
    (["plan", "--gpu", "4090", "--days", "1", "--n-gpus", HUGE], "number of GPUs must be at most 1,000,000"),
    (["plot", "frontier", "--gpu", "4090", "--days", "1", "--n-gpus", HUGE, "--out", "f.png"],
     "number of GPUs must be at most 1,000,000"),
    (["infer", "--gpu", "h100", "--model", "llama-3.1-8b", "--context", "100", "--gen", HUGE],
     "gen must be at most 10,000,000"),
])
def test_a_count_past_any_real_run_is_refused_not_searched_for_hours(argv, says):
    done = _subprocess(*argv)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and says in lines[0], done.stderr


def test_the_bounds_themselves_are_accepted(capsys):
    from flopscalc.perf.inference.formats import MAX_GEN_TOKENS, InferenceSetup
    from flopscalc.planner.budget import MAX_N_GPUS

    assert InferenceSetup(batch=1, context=1, gen=MAX_GEN_TOKENS).gen == MAX_GEN_TOKENS
    # a million GPUs is read and searched (no layout of GPT-2-sized candidates divides it: exit 1, not 2)
    code, _, err = cli(capsys, "plan", "--gpu", "4090", "--days", "1", "--n-gpus", str(MAX_N_GPUS))
    assert code == 1 and "no parallel layout divides 1,000,000 GPUs" in err


def test_layout_divisors_are_every_divisor_in_order():
    from flopscalc.layout.search import _divisors

    for n in (1, 2, 12, 97, 360, 1024, 999_983, 1_000_000):
        assert _divisors(n) == [d for d in range(1, n + 1) if n % d == 0]  # the definition, by brute force


def test_plot_memory_at_a_micro_batch_past_int64_draws(capsys, tmp_path):
    # was: numpy's UFuncOutputCastingError (an object array of Python ints past 2**63) as a traceback
    out = tmp_path / "m.png"
    code, _, err = cli(capsys, "plot", "memory", "--gpu", "4090", "--model", "gpt2", "--micro-batch", HUGE,
                       "--out", str(out))
    assert code == 0, err
    assert out.read_bytes().startswith(b"\x89PNG")


# ------------------------------------------------------------------ --seq 0 read as "the default"

TRAIN_CMD = ["train", "--synthetic", "--vocab-size", "64", *TINY[:6], "--steps", "2", "--device", "cpu"]  # no --seq
BENCH_CMD = ["bench", *TINY[:6], "--vocab-size", "64", "--steps", "1", "--device", "cpu"]
CALIBRATE_CMD = ["calibrate", *TINY[:6], "--vocab-size", "64", "--steps", "1", "--device", "cpu", "--out",
                 "unwritten.json"]


@pytest.mark.parametrize("command,seqs", [
    *((cmd, seqs) for cmd in (TRAIN_CMD, BENCH_CMD, CALIBRATE_CMD) for seqs in (["0"], ["-3"])),
    (BENCH_CMD, ["8", "0"]), (CALIBRATE_CMD, ["8", "0"]),  # --seq repeats in bench and calibrate (one per sweep)
])
def test_a_seq_below_one_is_refused_not_read_as_the_models_default(capsys, monkeypatch, command, seqs):
    # was: 'seq or default_train_seq(model)' trained and timed at the model's default length when --seq 0 was typed
    from flopscalc.train import bench

    def no_timing(*args, **kwargs):
        raise AssertionError("benchmarked at the default sequence")

    monkeypatch.setattr(bench, "run_benchmarks", no_timing, raising=False)
    argv = [*command, *(a for s in seqs for a in ("--seq", s))]
    line = refused(capsys, *argv)
    assert f"--seq must be a positive whole number of tokens, got {seqs[-1]}" in line


def test_step_on_the_cpu_refuses_a_gpu_csv_it_would_ignore(capsys, tmp_path):
    # was: the rows were read and dropped; the CPU's figures come from the profile alone
    profile = tmp_path / "cpu.json"
    profile.write_text(json.dumps(_cpu_profile()))
    rows = tmp_path / "gpus.csv"
    rows.write_text("key,name,memory_gib,memory_bandwidth_gb_per_s,bf16_tflop_per_s,source\n"
                    "my-card,My Card,24,1000,100,my own benchmark\n")
    line = refused(capsys, "step", "--gpu", "cpu", "--model", "gpt2", "--calibration", str(profile), "--gpu-csv",
                   str(rows))
    assert "--gpu-csv" in line and "would be ignored" in line
    code, _, err = cli(capsys, "step", "--gpu", "my-card", "--model", "gpt2", "--gpu-csv", str(rows))
    assert code == 0, err  # with a GPU named, the rows are read


@pytest.mark.parametrize("argv,owner,before", [
    (["gpus", "show", "4090", "--gpu-csv", "x.csv"], "flopscalc gpus", "show"),
    (["gpus", "show", "4090", "--version"], "flopscalc", "gpus"),
])
def test_a_groups_option_after_its_subcommand_names_where_it_goes(capsys, argv, owner, before):
    # was: "No such option: --gpu-csv; no option is close to it", although the group has exactly that option
    line = refused(capsys, *argv)
    assert f"is an option of '{owner}'" in line and f"give it before '{before}'" in line


def test_an_option_no_command_has_still_gets_the_plain_line(capsys):
    line = refused(capsys, "gpus", "show", "4090", "--nonsense")
    assert "No such option: --nonsense" in line and "flopscalc gpus show --help" in line


def test_a_config_json_size_past_int64_is_one_short_line(capsys, tmp_path):
    # was: "n_embd (999...9, 400 digits) must be divisible by n_head (2); try n_head=15624...": 800 characters
    # (CLI flags keep taking absurd sizes, answered in closed form: tests/test_qa_memory_depth.py)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(GPT2_CONFIG).replace('"n_embd": 64', '"n_embd": ' + "9" * 400))
    line = refused(capsys, "flops", "--tokens", "1e9", "--config", str(path))
    assert "field 'n_embd' must be at most 2**63 - 1" in line and "about 400 digits" in line
    assert len(line.replace(str(path), "")) < 160  # not the 400 digits themselves


def test_the_largest_int64_size_is_still_read_from_a_config_json():
    from flopscalc.hf_config import MAX_FIELD_SIZE, config_from_hf

    assert MAX_FIELD_SIZE == 2**63 - 1  # torch.Size is int64
    assert config_from_hf({**GPT2_CONFIG, "vocab_size": 2**63 - 1}).vocab_size == 2**63 - 1
    with pytest.raises(UsageError, match="at most 2"):
        config_from_hf({**GPT2_CONFIG, "vocab_size": 2**63})
