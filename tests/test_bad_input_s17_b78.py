"""Review r4 (helper b78): outputs that overwrote the user's files, a closed stdout, the saved-laws folder.

Each case failed before its fix: a plot or `train prepare` replaced an existing file with exit 0; a closed standard
output gave an AttributeError traceback (or exit 0 with nothing written, for a command's help); `train --data FILE`
suggested a command that fails; one bad file in the laws folder stopped `scaling laws` from listing the others, and
a string constant was reported as "missing or bad field must be real number, not str"; saved law names were
case-sensitive while built-in ones are not, and `--save x.json` wrote `x.json.json`.

Checked against the contract, not against our own numbers: the exit code, ONE stderr line starting "flopscalc:
error:", and the user's bytes left as they were (or replaced, with --replace).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli, refused

ROOT = Path(__file__).resolve().parents[1]
USER_BYTES = b"USER DATA, not a chart\n"
TEXT = "The quick brown fox jumps over the lazy dog. " * 20  # 900 bytes: splits at the default 10%


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """$FLOPSCALC_HOME in a temporary folder (never the user's ~/.flopscalc)."""
    monkeypatch.setenv("FLOPSCALC_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


# ------------------------------------------------------------------ 1. outputs that replaced the user's files


PLOTS = [["frontier"], ["isoflop"], ["landscape"], ["memory", "--gpu", "4090"], ["calibration", "profile.json"]]


@pytest.mark.parametrize("plot", PLOTS, ids=lambda p: p[0])
def test_every_plot_keeps_an_existing_out_file_unless_replace(capsys, tmp_path, no_rendering, plot):
    # was: `plot memory --gpu 4090 --out mine.png` replaced the user's file, exit 0
    mine = tmp_path / "mine.png"
    mine.write_bytes(USER_BYTES)
    line = refused(capsys, "plot", *plot, "--out", str(mine))
    assert f"--out {mine} already exists" in line and "--replace" in line and "another path" in line, line
    assert mine.read_bytes() == USER_BYTES
    # named through a folder that does not exist yet ('new/../mine.png' is mine.png once 'new' is made)
    refused(capsys, "plot", *plot, "--out", str(tmp_path / "new" / ".." / "mine.png"))
    assert mine.read_bytes() == USER_BYTES and sorted(p.name for p in tmp_path.iterdir()) == ["mine.png"]


def test_replace_without_out_is_refused(capsys, no_rendering):
    line = refused(capsys, "plot", "landscape", "--json", "--replace")
    assert "--replace" in line and "--out FILE" in line


def test_replace_writes_a_whole_new_image_over_the_file(capsys, tmp_path):
    mine = tmp_path / "mine.svg"
    mine.write_bytes(USER_BYTES)
    code, out, err = cli(capsys, "plot", "landscape", "--out", str(mine), "--replace")
    assert code == 0 and out == f"{mine}\n", err
    body = mine.read_bytes()
    assert body.startswith(b"<?xml") and body.rstrip().endswith(b"</svg>")  # a whole SVG (written atomically)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.svg"]  # no temp file left behind


def _prepare(*argv: str) -> list[str]:
    return ["train", "prepare", *argv]


@pytest.mark.parametrize("existing", ["train.bin", "val.bin", "meta.json"])
def test_prepare_keeps_each_existing_output_and_writes_nothing(capsys, tmp_path, existing):
    # was: `train prepare prep_exist --text t.txt` replaced the user's train.bin, exit 0
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    folder = tmp_path / "prep_exist"
    folder.mkdir()
    (folder / existing).write_bytes(USER_BYTES)
    line = refused(capsys, *_prepare(str(folder), "--text", str(text)))
    assert f"data folder {folder} already holds {existing}" in line and "--replace" in line, line
    assert [p.name for p in folder.iterdir()] == [existing]  # checked before anything was written
    assert (folder / existing).read_bytes() == USER_BYTES


def test_prepare_refuses_to_prepare_a_folder_twice_and_replace_remakes_it(capsys, tmp_path):
    from flopscalc.train.data import find_split_files, read_tokens

    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    folder = tmp_path / "d"
    assert cli(capsys, *_prepare(str(folder), "--text", str(text)))[0] == 0
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    line = refused(capsys, *_prepare(str(folder), "--pydoc"))
    assert "already holds train.bin, val.bin, meta.json" in line and "another folder" in line, line
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    # --replace: the three files are the new text's (byte tokenizer: one token per UTF-8 byte of the text)
    other = "another text, shorter. " * 10
    text.write_text(other)
    assert cli(capsys, *_prepare(str(folder), "--text", str(text), "--replace"))[0] == 0
    train, val, vocab = find_split_files(folder)
    assert len(read_tokens(train)) + len(read_tokens(val)) == len(other.encode())
    assert vocab == 256 and sorted(p.name for p in folder.iterdir()) == ["meta.json", "train.bin", "val.bin"]


def test_prepare_into_a_file_or_over_its_own_text_is_one_line(capsys, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    line = refused(capsys, *_prepare(str(text), "--text", str(text)))
    assert f"data folder {text} is a file" in line
    folder = tmp_path / "d"
    folder.mkdir()
    inside = folder / "meta.json"
    inside.write_text(TEXT)
    line = refused(capsys, *_prepare(str(folder), "--text", str(inside), "--replace"))
    assert "meta.json that prepare writes" in line and "replace your text" in line
    assert inside.read_text() == TEXT


# ------------------------------------------------------------------ 2. standard output closed


def _with_stdout_closed(*args: str) -> subprocess.CompletedProcess:
    """`python -m flopscalc ARGS >&-`, as a shell runs it: the process starts with file descriptor 1 closed."""
    return subprocess.run(["bash", "-c", 'exec "$@" >&-', "_", sys.executable, "-m", "flopscalc", *args],
                          stderr=subprocess.PIPE, text=True, cwd=ROOT, check=False, env={**os.environ})


@pytest.mark.parametrize("args", [
    ("gpus",),  # a report (was: AttributeError 'NoneType' object has no attribute 'flush')
    ("gpus", "--json"),
    ("plan", "--gpu", "4070ti", "--days", "1", "--csv"),
    ("--help",),  # the top-level help (was: ... no attribute 'write')
    ("plan", "--help"),  # a command's help (was: exit 0, nothing written)
    ("--version",),
])
def test_a_closed_stdout_is_one_line_and_exit_1(args):
    done = _with_stdout_closed(*args)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("flopscalc: error: cannot write the output to standard output: "
                                                   "it is closed"), done.stderr
    assert done.returncode == 1


def test_emit_and_write_stdout_refuse_a_missing_stdout(monkeypatch):
    from flopscalc.cli.output import emit, write_stdout
    from flopscalc.errors import DomainError

    monkeypatch.setattr(sys, "stdout", None)
    for call in (lambda: emit(None, {"a": 1}, True), lambda: write_stdout("x\n")):
        with pytest.raises(DomainError, match="it is closed"):
            call()


# ------------------------------------------------------------------ 3. train --data FILE


def test_train_data_naming_a_file_says_to_give_the_folder(capsys, tmp_path):
    # was: "data folder t.txt does not exist; create it with 'flopscalc train prepare t.txt'", which fails
    from test_bad_input_s15 import TINY

    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    line = refused(capsys, "train", "--data", str(text), *TINY)
    assert f"{text} is a file; give the folder holding train.bin/val.bin" in line, line
    assert f"'flopscalc train prepare FOLDER --text {text}'" in line
    # the suggestion works: prepare a folder from that text, and train on it
    folder = tmp_path / "d"
    assert cli(capsys, "train", "prepare", str(folder), "--text", str(text))[0] == 0
    line = refused(capsys, "train", "--data", str(folder / "train.bin"), *TINY)  # a token file: its folder
    assert f"--data {folder}" in line, line


# ------------------------------------------------------------------ 4. the saved-laws folder


def _law(name: str = "mine"):
    from flopscalc.scaling.laws import BUILTIN_LAWS

    return BUILTIN_LAWS["chinchilla"].__class__(**{**BUILTIN_LAWS["chinchilla"].__dict__, "name": name,
                                                   "aliases": ()})


def _law_json(**changes) -> dict:
    from flopscalc.scaling.io import law_to_dict

    d = law_to_dict(_law())
    for path, value in changes.items():
        *outer, key = path.split("__")
        target = d
        for k in outer:
            target = target[k]
        if value is KeyError:
            del target[key]
        else:
            target[key] = value
    return d


def test_one_bad_file_does_not_hide_the_readable_laws(capsys, home):
    # was: exit 2 ("law file ... is not a text file"); the good laws could not be listed
    from flopscalc.scaling.io import save_law

    save_law(_law("good"))
    laws = home / "laws"
    (laws / "broken.json").write_bytes(b"\x00\x01\x02 not text")
    (laws / "stra.json").write_text(json.dumps(_law_json(loss_form__A="400")))
    code, out, err = cli(capsys, "scaling", "laws", "--json")
    assert code == 0
    data = json.loads(out)
    assert [x["name"] for x in data["laws"]][-1] == "good" and len(data["warnings"]) == 2
    warnings = err.strip().splitlines()
    assert len(warnings) == 2 and all(w.startswith("flopscalc: warning: law file ") for w in warnings), err
    assert all("remove or rename" in w for w in warnings)
    assert str(laws / "broken.json") in warnings[0] and "not a text file" in warnings[0]
    assert str(laws / "stra.json") in warnings[1] and "loss_form.A must be a number" in warnings[1]
    code, out, err = cli(capsys, "scaling", "laws")  # the table too
    assert code == 0 and "good" in out and len(err.strip().splitlines()) == 2
    # naming a bad law is still refused, in one line naming the field
    line = refused(capsys, "scaling", "laws", "stra")
    assert 'field loss_form.A must be a number, got "400" (text)' in line, line
    assert "real number" not in line


@pytest.mark.parametrize("changes, says", [
    ({"loss_form__A": "400"}, 'field loss_form.A must be a number, got "400" (text)'),
    ({"loss_form__E": KeyError}, "field loss_form.E is missing"),
    ({"loss_form__kind": "power"}, "field loss_form.kind must be 'parametric' or 'kaplan'"),
    ({"loss_form__a_typo": 1.0}, "field loss_form.a_typo is not one of E, A, B, alpha, beta"),
    ({"allocation": {"k_n": 0.1, "a": 0.5, "k_D": 2.0}}, "field allocation.k_D is not one of k_n, a, k_d"),
    ({"name": 7}, "field name must be text, got 7 (a number)"),
    ({"n_counts_embeddings": "yes"}, "field n_counts_embeddings must be true, false or null"),
    ({"vocab_size": 32000.5}, "field vocab_size must be a whole number or null"),
    ({"fitted_range": {"n_params": [1e8]}}, "field fitted_range.n_params must be [low, high]"),
    ({"loss_form__B": -1.0}, "parametric law constant B must be positive and finite"),  # the engine's own check
])
def test_a_bad_field_is_named(capsys, home, changes, says):
    laws = home / "laws"
    laws.mkdir(parents=True)
    (laws / "bad.json").write_text(json.dumps(_law_json(**changes)))
    line = refused(capsys, "scaling", "loss", "--law", "bad", "--params", "1e9", "--tokens", "2e10")
    assert says in line and str(laws / "bad.json") in line, line


# ------------------------------------------------------------------ 5. saved law names


def test_saved_law_names_fold_case_on_save_and_lookup(capsys, home):
    # was: MyLaw.json and mylaw.json were two laws, and 'scaling laws MYLAW' was unknown
    from flopscalc.scaling.io import get_law, save_law

    path = save_law(_law("MyLaw"))
    assert path == home / "laws" / "mylaw.json" and json.loads(path.read_text())["name"] == "mylaw"
    for name in ("MYLAW", "mylaw", "MyLaw"):
        assert get_law(name).loss_form == _law().loss_form  # built-in names are not case-sensitive either
    code, out, _ = cli(capsys, "scaling", "laws", "MYLAW", "--json")
    assert code == 0 and json.loads(out)["name"] == "mylaw"
    with pytest.raises(Exception, match="a saved law named 'mylaw' exists"):
        save_law(_law("MYLAW"))
    save_law(_law("MYLAW"), replace=True)
    assert sorted(p.name for p in (home / "laws").iterdir()) == ["mylaw.json"]


def test_a_law_saved_before_folding_is_found_and_replaced_in_place(capsys, home):
    from flopscalc.scaling.io import get_law, save_law
    from flopscalc.scaling.law_json import law_to_dict

    laws = home / "laws"
    laws.mkdir(parents=True)
    (laws / "OldLaw.json").write_text(json.dumps(law_to_dict(_law("OldLaw"))))
    assert get_law("oldlaw").name == "OldLaw"
    with pytest.raises(Exception, match="exists"):
        save_law(_law("oldlaw"))
    save_law(_law("oldlaw"), replace=True)
    assert [p.name for p in laws.iterdir()] == ["OldLaw.json"]  # one law, not two
    (laws / "oldlaw.json").write_text(json.dumps(law_to_dict(_law("x"))))
    if len(list(laws.iterdir())) == 2:  # a case-sensitive file system: two files that fold to one name
        line = refused(capsys, "scaling", "laws", "OLDLAW")
        assert "differ only in case" in line and "OldLaw.json" in line and "oldlaw.json" in line


def test_fit_save_folds_the_name_and_refuses_a_json_suffix_before_the_fit(capsys, home, tmp_path, monkeypatch):
    from test_cli_inputs import RUNS_CSV

    runs = tmp_path / "runs.csv"
    runs.write_text(RUNS_CSV)
    code, out, err = cli(capsys, "scaling", "fit", str(runs), "--grid", "small", "--save", "MyLaw")
    assert code == 0, err
    assert "saved as 'mylaw' (law names are not case-sensitive)" in out and "--law mylaw" in out
    line = refused(capsys, "scaling", "fit", str(runs), "--grid", "small", "--save", "mylaw")
    assert "a saved law named 'mylaw' exists" in line and "--replace" in line
    # --save x.json: refused (was: x.json.json), before the runs are read or fitted
    from flopscalc.scaling import fit

    monkeypatch.setattr(fit, "fit_approach3", lambda *a, **k: pytest.fail("fitted before the name was checked"))
    line = refused(capsys, "scaling", "fit", str(runs), "--save", "x.json")
    assert "--save x" in line and "x.json" in line
    assert sorted(p.name for p in (home / "laws").iterdir()) == ["mylaw.json"]
