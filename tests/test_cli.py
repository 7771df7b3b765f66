"""CLI wiring and contracts: exit codes, one-line errors, --json values, every option matters, lazy imports."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flopscalc.cli import run

ROOT = Path(__file__).resolve().parents[1]


def cli(capsys, *argv):
    code = run(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(capsys, *argv):
    code, out, err = cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_main_job_prints_budget_candidates_and_sources(capsys):
    code, out, err = cli(capsys, "plan", "--gpu", "4070ti", "--days", "365")
    assert code == 0 and err == ""
    for text in ("RTX 4070 Ti", "2.28e21", "gpt2-xl", "Hoffmann", "Llama 3", "gpu_specs.csv"):
        assert text in out


def test_seed_invocation_shows_1_14e21(capsys):
    code, out, _ = cli(capsys, "plan", "--gpu", "4070ti", "--days", "365", "--precision", "fp32",
                       "--utilization", "0.9", "--mfu", "1")
    assert code == 0 and "1.14e21" in out


def test_plan_json_values(capsys):
    d = cli_json(capsys, "plan", "--gpu", "RTX 4070 Ti", "--hours", "24", "--n-gpus", "2")
    assert d["gpu"] == "rtx-4070-ti" and d["n_gpus"] == 2 and d["duration_s"] == 86400
    assert d["peak_flop_per_s_per_gpu"] == pytest.approx(80.2e12)
    assert d["model_flops"] == pytest.approx(2 * 80.2e12 * 86400 * 0.9 * 0.4, rel=1e-12)
    assert [c["model"] for c in d["candidates"]] == ["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"]
    assert d["candidates"][3]["n_params"] == 1_557_611_200


PLAN_BASE = ["plan", "--gpu", "4070ti", "--days", "10"]


@pytest.mark.parametrize("option", [
    ["--gpu", "4090"], ["--days", "20"], ["--n-gpus", "3"], ["--precision", "fp32"], ["--utilization", "0.5"],
    ["--mfu", "0.3"], ["--seq", "256"],
])
def test_every_plan_option_changes_the_answer(capsys, option):
    base = cli_json(capsys, *PLAN_BASE)
    argv = list(PLAN_BASE)
    i = argv.index(option[0]) if option[0] in argv else None
    if i is not None:
        argv[i + 1] = option[1]
    else:
        argv += option
    assert cli_json(capsys, *argv) != base


def test_duration_forms_agree(capsys):
    days = cli_json(capsys, "plan", "--gpu", "4070ti", "--days", "14")
    assert cli_json(capsys, "plan", "--gpu", "4070ti", "--duration", "2w")["model_flops"] == days["model_flops"]
    assert cli_json(capsys, "plan", "--gpu", "4070ti", "--hours", "336")["model_flops"] == days["model_flops"]


def test_flops_json_matches_six_nd_for_the_seed_claim_2(capsys):
    # SEED_CLAIMS.md #2: 6 x 1.5e9 x 1e10 = 9e19 with 6ND; the exact count is larger (attention + LM head).
    d = cli_json(capsys, "flops", "--model", "gpt2-xl", "--tokens", "10B")
    six = next(c for c in d["conventions"] if c["key"] == "6nd")
    assert six["flops_per_run"] == pytest.approx(6 * 1_557_611_200 * 1e10, rel=1e-12)
    assert d["per_run"]["model_flops"] > six["flops_per_run"]
    assert d["n_tokens"] == 1e10


FLOPS_BASE = ["flops", "--model", "gpt2", "--tokens", "1B", "--seq", "512"]


@pytest.mark.parametrize("option", [
    ["--tokens", "2B"], ["--model", "gpt2-medium"], ["--seq", "1024"], ["--micro-batch", "4"],
    ["--grad-accum", "4"], ["--n-gpus", "2"], ["--recompute", "full"], ["--causal"],
])
def test_every_flops_option_changes_the_answer(capsys, option):
    base = cli_json(capsys, *FLOPS_BASE)
    argv = list(FLOPS_BASE)
    if option[0] in argv:
        argv[argv.index(option[0]) + 1] = option[1]
    else:
        argv += option
    assert cli_json(capsys, *argv) != base


def test_flops_shapes_by_params_and_explicit_shape(capsys):
    by_params = cli_json(capsys, "flops", "--params", "124M", "--tokens", "1B")
    assert by_params["model"]["n_layer"] == 12 and by_params["model"]["n_embd"] == 768
    explicit = cli_json(capsys, "flops", "--n-layer", "12", "--n-head", "12", "--n-embd", "768", "--tokens", "1B")
    assert explicit["per_run"] == by_params["per_run"]


def test_gpus_list_and_show(capsys):
    d = cli_json(capsys, "gpus")
    assert len(d["gpus"]) >= 25
    show = cli_json(capsys, "gpus", "show", "4070ti")
    assert show["key"] == "rtx-4070-ti" and show["source"]
    code, out, _ = cli(capsys, "gpus", "show", "h100")
    assert code == 0 and "H100" in out


def test_user_gpu_csv_reaches_plan(capsys, tmp_path):
    csv = tmp_path / "mine.csv"
    csv.write_text("key,name,memory_gib,bf16_tflop_per_s,source\nmy-card,My Card,24,100,my own benchmark\n")
    d = cli_json(capsys, "plan", "--gpu", "my card", "--days", "1", "--gpu-csv", str(csv))
    assert d["gpu"] == "my-card" and d["peak_flop_per_s_per_gpu"] == 100e12


def test_models_lists_presets(capsys):
    d = cli_json(capsys, "models")
    assert {m["name"]: m["n_params"] for m in d["models"]}["gpt2"] == 124_439_808


@pytest.mark.parametrize("argv,code,pattern", [
    (["plan", "--gpu", "4070t", "--days", "1"], 2, r"unknown GPU '4070t'; did you mean .*rtx-4070-ti"),
    (["plan", "--gpu", "4070ti", "--days", "0"], 2, r"--days must be a positive"),
    (["plan", "--gpu", "4070ti", "--days", "-3"], 2, r"--days must be a positive"),
    (["plan", "--gpu", "4070ti", "--days", "inf"], 2, r"--days must be a positive, finite time"),
    (["plan", "--gpu", "4070ti"], 2, r"--days, --hours or --duration"),
    (["plan", "--gpu", "4070ti", "--days", "1", "--hours", "2"], 2, r"--days and --hours"),
    (["plan", "--gpu", "4070ti", "--duration", "12XB"], 2, r"12XB"),
    (["plan", "--gpu", "4070ti", "--days", "1", "--mfu", "2"], 2, r"mfu"),
    (["plan", "--gpu", "4070ti", "--days", "1", "--precision", "fp64"], 2, r"fp64"),
    (["plan", "--gpu", "v100", "--days", "1", "--precision", "fp8"], 1, r"no FP8"),
    (["flops", "--model", "gpt5", "--tokens", "1B"], 2, r"gpt5"),
    (["flops", "--model", "gpt2", "--tokens", "1..5B"], 2, r"1\.\.5B"),
    (["flops", "--model", "gpt2", "--tokens", "1B", "--seq", "4096"], 2, r"4096"),
    (["flops", "--model", "gpt2", "--params", "124M", "--tokens", "1B"], 2, r"model"),
    (["plan", "--gpu", "4070ti", "--days", "1", "--bogus"], 2, r"--bogus"),
    (["gpus", "show", "4070t"], 2, r"did you mean"),
])
def test_bad_input_gets_one_line_and_the_right_exit_code(capsys, argv, code, pattern):
    got, out, err = cli(capsys, *argv)
    assert got == code
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flopscalc: error: "), err
    assert re.search(pattern, lines[0]), lines[0]


def test_malformed_user_csv_names_file_and_line(capsys, tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text("key,name,memory_gib,bf16_tflop_per_s,source\nok,OK card,8,50,me\nbad,Bad card,lots,50,me\n")
    code, _, err = cli(capsys, "gpus", "--gpu-csv", str(csv))
    assert code == 2 and "bad.csv:3" in err and "memory_gib" in err


def _python(*args, **kw):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, **kw)


def test_console_script_entry_points_exit_codes_without_traceback():
    ok = _python("-m", "flopscalc", "plan", "--gpu", "4070ti", "--days", "365")
    assert ok.returncode == 0 and "2.28e21" in ok.stdout
    bad = _python("-m", "flopscalc", "plan", "--gpu", "4070t", "--days", "365")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == "flopscalc: error: unknown GPU '4070t'; did you mean rtx-4070-ti or rtx-4070-ti-super?"


def test_cli_and_package_import_no_heavy_libraries():
    code = ("import sys, flopscalc, flopscalc.cli; "
            "from flopscalc.cli import run; run(['plan', '--gpu', '4070ti', '--days', '365', '--json']); "
            "heavy = [m for m in ('pandas', 'scipy', 'matplotlib', 'torch') if m in sys.modules]; "
            "sys.stderr.write(repr(heavy))")
    r = _python("-c", code)
    assert r.returncode == 0 and r.stderr == "[]", r.stderr


def test_readme_commands_and_ci_script_agree():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", readme, flags=re.S)
    main_cmd = next(b.strip() for b in blocks if "flopscalc plan --gpu 4070ti --days 365" in b)
    test_cmd = next(b.strip() for b in blocks if "pytest" in b)
    assert main_cmd.startswith("python3 -m venv") and test_cmd.startswith("python3 -m venv")
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci


def test_runs_lists_published_runs_with_their_errors(capsys):
    from flopscalc.runs import compare, get_run

    d = cli_json(capsys, "runs")
    by_name = {r["run"]: r for r in d["runs"]}
    assert len(by_name) >= 6 and "llmc-gpt2-124m" in by_name
    assert by_name["bloom-176b"]["error"] == pytest.approx(compare(get_run("bloom-176b")).error)
    code, out, _ = cli(capsys, "runs")
    assert code == 0 and "opt-175b" in out


def test_readme_shows_what_the_main_job_prints():
    # every line of the README's example (rendered 100 columns wide) is a line the command prints today
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```text\n\$ flopscalc plan --gpu 4070ti --days 365\n(.*?)```", readme, flags=re.S)[1]
    shown = [line.rstrip() for line in block.splitlines() if line.strip() and line.strip() != "..."]
    out = _python("-m", "flopscalc", "plan", "--gpu", "4070ti", "--days", "365", env={**os.environ, "COLUMNS": "100"})
    printed = {line.rstrip() for line in out.stdout.splitlines()}
    missing = [line for line in shown if line not in printed]
    assert not missing, missing
