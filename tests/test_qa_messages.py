"""Two messages QA found misleading (house rule: bad input gets one line saying what was wrong, what is accepted and a
suggestion that fits; a lookup suggests what is near, never unrelated names).

1. An unknown option: `plan --gpu 4070ti --days 365 --usd 5` said "(Possible options: --hours, --n-gpus, --seq)"
   (click's difflib at 0.6 on names with their '--'). Now the options with the word typed, then close spellings,
   else none and the command's --help.
2. A file not in UTF-8: every reader told Excel users to save 'CSV UTF-8', also for a JSON config or profile and a
   training corpus (.txt). Now the Excel hint is for CSV files only; other files get an editor and an iconv
   command for that very file (run here, where iconv exists, to prove it converts the file).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from flopscalc.cli import run


def one_line(capsys, argv: list[str], code: int = 2) -> str:
    """Run ``argv``; it must exit ``code`` with nothing on stdout and one error line on stderr, no traceback."""
    got = run(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert got == code and out == "" and len(lines) == 1, (argv, got, out, err)
    assert "Traceback" not in err and lines[0].startswith("flopscalc: error: ")
    return lines[0].removeprefix("flopscalc: error: ")


def options_of(*path: str) -> set[str]:
    """The long options of a command, from its built parser (what `--help` lists)."""
    import typer

    from flopscalc.cli.group import app

    command = typer.main.get_command(app)
    ctx = command.make_context("flopscalc", list(path), resilient_parsing=True)
    for name in path:
        command = command.get_command(ctx, name)
        ctx = command.make_context(name, [], parent=ctx, resilient_parsing=True)
    return {o for p in command.get_params(ctx) for o in (*p.opts, *getattr(p, "secondary_opts", ()))
            if o.startswith("--")}


# ------------------------------------------------------------------------------------------ unknown options

BASE = {"plan": ["plan", "--gpu", "4070ti", "--days", "365"], "step": ["step"],
        "memory": ["memory", "--gpu", "4070ti", "--model", "gpt2"]}


def suggested(line: str) -> list[str]:
    """The options a line offers after 'did you mean' ('A, B or C?'); [] when it offers none."""
    found = re.search(r"did you mean (.*?)\?", line)
    return re.split(r", | or ", found.group(1)) if found else []


def test_usd_suggests_the_options_about_dollars_not_unrelated_ones(capsys):
    line = one_line(capsys, [*BASE["plan"], "--usd", "5"])
    # the brief's reference: what the user meant, checked against the parser's own option list
    expected = ["--budget-usd", "--usd-per-gpu-hour", "--usd-per-kwh"]
    assert set(expected) <= options_of("plan")
    assert line.startswith("No such option: --usd; did you mean ")
    assert sorted(suggested(line)) == expected
    assert "--hours" not in line and "--seq" not in line  # before: "(Possible options: --hours, --n-gpus, --seq)"
    assert line.endswith("('flopscalc plan --help' lists the options)")


@pytest.mark.parametrize("command", ["plan", "step", "memory"])
def test_gpus_suggests_gpu_and_n_gpus_where_the_command_has_them(capsys, command):
    line = one_line(capsys, [*BASE[command], "--gpus", "2"])
    expected = {"--gpu", "--n-gpus"} & options_of(command)
    assert expected and set(suggested(line)) == expected, line
    assert "--gpu-csv" not in line  # a longer name that merely starts alike is not a spelling of --gpus


@pytest.mark.parametrize("typed", ["--day", "--dyas", "--dayss"])  # one deletion, one swap, one insertion
def test_a_slip_of_one_letter_in_days_suggests_days_alone(capsys, typed):
    line = one_line(capsys, [*BASE["plan"], typed, "3"])
    assert suggested(line) == ["--days"], line  # not --max-days: a different option that contains the word


@pytest.mark.parametrize("command", ["plan", "step", "memory"])
def test_nonsense_suggests_nothing_and_names_the_help(capsys, command):
    line = one_line(capsys, [*BASE[command], "--nonsense", "1"])
    assert line == f"No such option: --nonsense; no option is close to it: 'flopscalc {command} --help' lists the options"


def test_a_subcommand_and_the_top_level_name_their_own_help(capsys):
    line = one_line(capsys, ["scaling", "fit", "runs.csv", "--gird", "small"])
    assert suggested(line) == ["--grid"] and "'flopscalc scaling fit --help'" in line
    line = one_line(capsys, ["--verison"])
    assert suggested(line) == ["--version"] and "'flopscalc --help'" in line


def test_the_option_given_as_name_equals_value_is_named_alone(capsys):
    line = one_line(capsys, [*BASE["plan"], "--usd=5"])
    assert line.startswith("No such option: --usd;") and sorted(suggested(line)) == [
        "--budget-usd", "--usd-per-gpu-hour", "--usd-per-kwh"]


def test_every_suggestion_is_an_option_the_command_accepts(capsys):
    accepted = options_of("plan")
    for typed in ("--usd", "--gpus", "--day", "--hour", "--inference", "--seqq", "--budget", "--kwh"):
        offered = suggested(one_line(capsys, [*BASE["plan"], typed, "1"]))
        assert offered and set(offered) <= accepted, (typed, offered)


@pytest.mark.parametrize("a, b, distance", [
    ("kitten", "sitting", 3),  # the textbook Levenshtein example: k->s, e->i, +g
    ("days", "dyas", 1),       # Damerau: a swap of neighbours is one edit (Levenshtein counts 2)
    ("ca", "abc", 3),          # optimal string alignment is not unrestricted Damerau (which says 2): no edit twice
    ("", "abc", 3), ("gpu", "gpu", 0), ("gpus", "gpu-csv", 3),
])
def test_edit_distance_against_hand_counted_cases(a, b, distance):
    from flopscalc.cli.group import edit_distance

    assert edit_distance(a, b) == distance == edit_distance(b, a)


# ------------------------------------------------------------------------------------------ files not in UTF-8

TEXT = 'Größe {"µs": 1}\n'  # o-umlaut and sharp s: not ASCII, so the encoding matters
ENCODINGS = {"latin-1": TEXT.encode("latin-1"), "utf-16": TEXT.encode("utf-16")}  # Python's utf-16 writes a BOM


def _expect(encoding: str) -> str:
    # latin-1's o-umlaut is the byte F6, after the two bytes of 'Gr'; UTF-16 is recognised by its BOM
    return r"is not UTF-8 text \(byte 0xf6 at offset 2\)" if encoding == "latin-1" else r"is UTF-16 text; expected UTF-8"


def _non_csv_commands(path: Path, tmp_path: Path) -> list[list[str]]:
    return [
        ["train", "prepare", str(tmp_path / "tokens"), "--text", str(path)],     # a training corpus (.txt)
        ["memory", "--config", str(path), "--gpu", "4070ti"],                     # a Hugging Face config.json
        ["plot", "calibration", str(path), "--json"],                             # a calibration profile
        ["plan", "--gpu", "4070ti", "--days", "30", "--calibration", str(path)],  # the same, read by plan
    ]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("suffix", [".txt", ".json"])
def test_a_non_csv_file_gets_no_excel_hint_but_an_iconv_command_for_itself(capsys, tmp_path, encoding, suffix):
    path = tmp_path / f"my file{suffix}"  # a space: the command must quote the path
    path.write_bytes(ENCODINGS[encoding])
    for argv in _non_csv_commands(path, tmp_path):
        line = one_line(capsys, argv)
        assert str(path) in line and re.search(_expect(encoding), line), (argv, line)
        assert "Excel" not in line and "CSV" not in line, line
        assert "save it as UTF-8 (in an editor: encoding UTF-8)" in line
        iconv = f"iconv -f {'UTF-16' if encoding == 'utf-16' else 'WINDOWS-1252'} -t UTF-8 {shlex.quote(str(path))} > "
        assert iconv in line, line
    assert not (tmp_path / "tokens").exists()


@pytest.mark.skipif(shutil.which("iconv") is None, reason="iconv is not installed here")
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_the_suggested_iconv_command_converts_the_file(capsys, tmp_path, encoding):
    path = tmp_path / "corpus file.txt"
    path.write_bytes(ENCODINGS[encoding])
    line = one_line(capsys, ["train", "prepare", str(tmp_path / "tokens"), "--text", str(path)])
    command = re.search(r"(iconv .*)$", line).group(1)
    subprocess.run(command, shell=True, check=True, cwd=tmp_path)
    target = shlex.split(command)[-1]
    assert Path(target).read_bytes() == TEXT.encode("utf-8")  # the same text, now UTF-8 (no BOM)
    assert target != str(path)  # never overwrites the file it reads


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_csv_file_keeps_the_excel_hint(capsys, tmp_path, encoding):
    path = tmp_path / "gpus.csv"
    path.write_bytes(ENCODINGS[encoding])
    for argv in (["gpus", "--gpu-csv", str(path)], ["memory", "--gpu", "4070ti", "--model", "gpt2", "--gpu-csv",
                                                     str(path)], ["scaling", "fit", str(path)]):  # a runs CSV
        line = one_line(capsys, argv)
        assert re.search(_expect(encoding), line) and "in Excel: 'CSV UTF-8'" in line and "iconv" not in line, line


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_the_json_readers_of_the_library_give_the_non_csv_hint(tmp_path, encoding):
    from flopscalc.errors import UsageError
    from flopscalc.scaling.io import load_law
    from flopscalc.train.from_plan import read_plan

    path = tmp_path / "saved.json"
    path.write_bytes(ENCODINGS[encoding])
    for read in (load_law, read_plan):
        with pytest.raises(UsageError) as err:
            read(path)
        msg = str(err.value)
        assert re.search(_expect(encoding), msg) and "Excel" not in msg and "iconv" in msg and "\n" not in msg


def test_a_utf8_file_is_still_read(tmp_path):
    from flopscalc.textfile import read_csv_text, read_text

    path = tmp_path / "ok.json"
    path.write_text(json.dumps({"µs": 1}), encoding="utf-8")
    assert json.loads(read_text(path)) == {"µs": 1} and json.loads(read_csv_text(path)) == {"µs": 1}
