"""CSV validation and the `flopscalc scaling` commands (wiring, --json, exit codes)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from flopscalc.cli import run
from flopscalc.errors import UsageError
from flopscalc.scaling.io import read_runs

GOOD = "n_params,n_tokens,loss\n" + "\n".join(
    f"{n:.6g},{d:.6g},{1.82 + 482 / n**0.348 + 2085 / d**0.366:.6f}"
    for n in (1e8, 3e8, 1e9, 3e9) for d in (2e9, 2e10, 2e11))


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("text, message", [
    ("params,tokens\n1e9,2e10\n", r"missing column\(s\) loss"),
    ("n_params,n_tokens,loss\n1e9,2e10,2.5\n-1e9,2e10,2.5\n", r"line 3: n_params must be a positive"),
    ("n_params,n_tokens,loss\n1e9,2e10,nan\n", r"line 2: loss must be a positive finite"),
    ("n_params,n_tokens,loss\n1e9,abc,2.5\n", r"line 2: n_tokens 'abc' is not a number"),
    ("# comment\nn_params,n_tokens,loss\n1e9,2e10,2.5\n1e9,0,2.5\n", r"line 4: n_tokens must be"),
])
def test_bad_csv_names_file_line_and_problem(tmp_path, text, message):
    p = tmp_path / "runs.csv"
    p.write_text(text)
    with pytest.raises(UsageError, match=message) as e:
        read_runs(p)
    assert "runs.csv" in str(e.value) and "\n" not in str(e.value)


def test_too_few_runs_and_one_size_refused(tmp_path, capsys):
    few = tmp_path / "few.csv"
    few.write_text("n_params,n_tokens,loss\n" + "\n".join(f"{1e8 * (i + 1)},{2e9 * (i + 1)},3.0" for i in range(5)))
    assert run(["scaling", "fit", str(few), "--grid", "small"]) == 2
    assert "5 run(s) cannot determine 5 constants" in capsys.readouterr().err
    one = tmp_path / "one.csv"
    one.write_text("n_params,n_tokens,loss\n" + "\n".join(f"1e9,{2e9 * (i + 1)},3.0" for i in range(8)))
    assert run(["scaling", "fit", str(one), "--grid", "small"]) == 2
    assert "same parameter count" in capsys.readouterr().err


def test_flops_column_gives_tokens(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("Model Size,Training FLOP,loss\n1e9,6e19,2.5\n")
    assert read_runs(p).n_tokens[0] == pytest.approx(1e10)


def test_laws_lists_builtins(capsys):
    assert run(["scaling", "laws", "--json"]) == 0
    names = {law["name"] for law in _json(capsys)["laws"]}
    assert {"chinchilla", "besiroglu2024", "chinchilla-a1", "chinchilla-a2", "kaplan2020", "muennighoff2023"} <= names


def test_optimal_json_and_every_option_changes_the_answer(capsys):
    assert run(["scaling", "optimal", "--flops", "1e21", "--json"]) == 0
    base = _json(capsys)
    assert base["law"] == "besiroglu2024" and 6 * base["n_params"] * base["n_tokens"] == pytest.approx(1e21)
    assert run(["scaling", "optimal", "--flops", "1e22", "--json"]) == 0
    assert _json(capsys)["n_params"] > base["n_params"]
    assert run(["scaling", "optimal", "--flops", "1e21", "--law", "chinchilla-a1", "--json"]) == 0
    assert _json(capsys)["n_params"] != base["n_params"]
    assert run(["scaling", "optimal", "--flops", "1e21", "--unique-tokens", "5B", "--json"]) == 0
    dc = _json(capsys)
    assert dc["unique_tokens"] == 5e9 and dc["epochs"] > 1


def test_loss_and_budget_commands(capsys):
    assert run(["scaling", "loss", "--params", "1.5B", "--tokens", "10B", "--law", "chinchilla", "--json"]) == 0
    out = _json(capsys)
    assert out["loss"] == pytest.approx(1.69 + 406.4 / 1.5e9**0.34 + 410.7 / 1e10**0.28)  # Hoffmann eq. 10 by hand
    assert run(["scaling", "budget", "--params", "1.4B", "--law", "chinchilla-a1", "--json"]) == 0
    out = _json(capsys)
    assert out["n_tokens"] == pytest.approx(28e9, rel=0.02)  # seed claim 3: ~28B tokens, ~2.4e20 FLOPs
    assert out["c_flops"] == pytest.approx(2.4e20, rel=0.02)
    assert run(["scaling", "budget", "--loss", "1.0"]) == 1  # below E: domain error
    assert run(["scaling", "budget"]) == 2


def test_unknown_law_exit_2_with_suggestion(capsys):
    assert run(["scaling", "optimal", "--flops", "1e21", "--law", "kaplan2021"]) == 2
    assert "did you mean kaplan2020" in capsys.readouterr().err


def test_fit_save_and_use_by_name(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FLOPSCALC_HOME", str(tmp_path))
    p = tmp_path / "runs.csv"
    p.write_text(GOOD)
    assert run(["scaling", "fit", str(p), "--grid", "small", "--bootstrap", "20", "--seed", "3",
                "--save", "mylaw", "--json"]) == 0
    out = _json(capsys)
    assert out["constants"]["alpha"] == pytest.approx(0.348, rel=0.01)  # noise-free runs: exact recovery
    assert out["bootstrap"]["n_samples"] == 20
    assert (tmp_path / "laws" / "mylaw.json").is_file()
    assert run(["scaling", "optimal", "--flops", "1e21", "--law", "mylaw", "--json"]) == 0
    mine = _json(capsys)
    assert run(["scaling", "optimal", "--flops", "1e21", "--law", "besiroglu2024", "--json"]) == 0
    assert mine["n_params"] == pytest.approx(_json(capsys)["n_params"], rel=0.02)


def test_fit_table_output_renders(tmp_path, capsys):
    p = tmp_path / "runs.csv"
    p.write_text(GOOD)
    assert run(["scaling", "fit", str(p), "--grid", "small"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Approach 3 fit on 12 runs" in out and "bound hits: none" in out


def test_cli_import_stays_light():
    code = "import sys, flopscalc.cli; print([m for m in ('scipy', 'pandas', 'matplotlib', 'torch') if m in sys.modules])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
