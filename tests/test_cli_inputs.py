"""User input at the CLI's edge: files in any encoding, contradictory or ignored options, output when piped.

Each test drives the real app (`flopscalc.cli.run`, or a subprocess where a terminal or a pipe matters) and
checks the contract: the exit code, and for errors ONE line on stderr naming what was wrong, never a traceback.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from conftest import cli

from flopscalc.cli import app, run

ROOT = Path(__file__).resolve().parents[1]
# Noise-free runs of the Besiroglu et al. 2024 law (E=1.82, A=482, B=2085, alpha=0.348, beta=0.366).
RUNS_CSV = "n_params,n_tokens,loss\n" + "\n".join(
    f"{n:.6g},{d:.6g},{1.82 + 482 / n**0.348 + 2085 / d**0.366:.6f}"
    for n in (1e8, 3e8, 1e9, 3e9) for d in (2e9, 2e10, 2e11))
# A GPU row of the user's own, in the columns of data/gpu_specs.csv.
GPU_CSV = "key,name,memory_gib,bf16_tflop_per_s,source\nmy-card,My Card,24,100,my own benchmark\n"


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flopscalc: error: ") and "Traceback" not in err, err
    return lines[0]


def refused(capsys, *argv, code: int = 2) -> str:
    got, out, err = cli(capsys, *argv)
    assert got == code, (got, out, err)
    assert out == ""
    return one_error_line(err)


# ------------------------------------------------------------------------------------------ files


@pytest.fixture
def files(tmp_path):
    """Bad files of each kind: binary, latin-1, UTF-16, semicolon-separated."""
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)))
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("n_params,n_tokens,loss,Größe\n1e9,2e10,2.5,ä\n".encode("latin-1"))
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes(RUNS_CSV.encode("utf-16"))  # Python writes the BOM FF FE first
    semi = tmp_path / "semi.csv"
    semi.write_text(RUNS_CSV.replace(",", ";"))
    return {"binary": binary, "latin1": latin1, "utf16": utf16, "semi": semi}


def _commands_reading(path: Path, tmp_path: Path) -> list[list[str]]:
    """Every command that reads a user's text file, pointed at ``path``."""
    return [
        ["scaling", "fit", str(path), "--grid", "small"],
        ["gpus", "--gpu-csv", str(path)],
        ["gpus", "--gpu-csv", str(path), "show", "4070ti"],
        ["plan", "--gpu", "4070ti", "--days", "30", "--gpu-csv", str(path)],
        ["plan", "--gpu", "4070ti", "--days", "30", "--calibration", str(path)],
        ["memory", "--gpu", "4070ti", "--model", "gpt2", "--gpu-csv", str(path)],
        ["plot", "calibration", str(path), "--json"],
        ["plot", "isoflop", "--runs", str(path), "--json"],
        ["train", "prepare", str(tmp_path / "tokens"), "--text", str(path)],
    ]


@pytest.mark.parametrize("kind, says", [
    ("binary", r"is not a text file \(a NUL byte at offset 0\); expected UTF-8"),
    # latin-1's o-umlaut is the byte F6; it follows the 25 bytes of 'n_params,n_tokens,loss,Gr'
    ("latin1", r"is not UTF-8 text \(byte 0xf6 at offset 25\); save it as UTF-8"),
    ("utf16", r"is UTF-16 text; expected UTF-8"),
])
def test_a_file_not_in_utf8_is_one_line_naming_the_file_and_the_encoding(capsys, tmp_path, files, kind, says):
    for argv in _commands_reading(files[kind], tmp_path):
        line = refused(capsys, *argv)
        assert str(files[kind]) in line and re.search(says, line), (argv, line)
    assert not (tmp_path / "tokens").exists()  # nothing written


def test_a_semicolon_separated_csv_is_named_as_such(capsys, tmp_path, files):
    for argv in _commands_reading(files["semi"], tmp_path)[:4]:  # the CSV readers
        line = refused(capsys, *argv)
        assert "looks semicolon-separated" in line and "save it as comma-separated" in line, line


def test_excel_csv_utf8_with_a_bom_is_read_like_the_same_file_without(capsys, tmp_path):
    plain, bom = tmp_path / "plain.csv", tmp_path / "bom.csv"
    plain.write_text(RUNS_CSV)
    bom.write_bytes(codecs.BOM_UTF8 + RUNS_CSV.encode())
    results = []
    for path in (plain, bom):
        code, out, err = cli(capsys, "scaling", "fit", str(path), "--grid", "small", "--json")
        assert code == 0, err
        results.append(json.loads(out)["constants"])
    assert results[0] == results[1]
    assert results[1]["alpha"] == pytest.approx(0.348, rel=0.01)  # the law the runs were made from

    gpus = tmp_path / "gpus.csv"
    gpus.write_bytes(codecs.BOM_UTF8 + GPU_CSV.encode())
    code, out, err = cli(capsys, "plan", "--gpu", "my card", "--days", "1", "--gpu-csv", str(gpus), "--json")
    assert code == 0, err
    assert json.loads(out)["peak_flop_per_s_per_gpu"] == 100e12  # the file's 100 TFLOP/s


def test_a_saved_law_edited_into_utf8_with_bom_still_loads(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FLOPSCALC_HOME", str(tmp_path))
    runs = tmp_path / "runs.csv"
    runs.write_text(RUNS_CSV)
    assert run(["scaling", "fit", str(runs), "--grid", "small", "--save", "mine", "--json"]) == 0
    capsys.readouterr()
    law = tmp_path / "laws" / "mine.json"
    before = cli(capsys, "scaling", "optimal", "--flops", "1e21", "--law", "mine", "--json")[1]
    law.write_bytes(codecs.BOM_UTF8 + law.read_bytes())
    code, after, err = cli(capsys, "scaling", "optimal", "--flops", "1e21", "--law", "mine", "--json")
    assert code == 0 and after == before, err
    law.write_bytes(bytes(range(256)))
    line = refused(capsys, "scaling", "optimal", "--flops", "1e21", "--law", "mine")
    assert "mine.json" in line and "not a text file" in line


def test_plan_reads_a_saved_law_at_the_face_and_suggests_a_misspelt_one(capsys, tmp_path, monkeypatch):
    """`plan --law NAME` loads the saved file in the command (the planner takes the law object, no I/O): the plan's
    loss is the saved law's, and a misspelt name is one line suggesting the saved law and naming its folder."""
    monkeypatch.setenv("FLOPSCALC_HOME", str(tmp_path))
    runs = tmp_path / "runs.csv"
    runs.write_text(RUNS_CSV)
    assert run(["scaling", "fit", str(runs), "--grid", "small", "--save", "mine", "--json"]) == 0
    fitted = json.loads(capsys.readouterr().out)["constants"]
    d = json.loads(cli(capsys, "plan", "--gpu", "4070ti", "--days", "30", "--law", "mine", "--json")[1])
    r = d["recommended"]
    assert d["law"]["name"] == "mine"
    # the saved constants predict the recommended run's loss (Hoffmann et al. 2022, eq. 2), not the default law's
    e, a, b, alpha, beta = (fitted[k] for k in ("E", "A", "B", "alpha", "beta"))
    assert r["loss"] == pytest.approx(e + a / r["n_params"] ** alpha + b / r["n_tokens"] ** beta, rel=1e-6)
    line = refused(capsys, "plan", "--gpu", "4070ti", "--days", "30", "--law", "mien")
    assert "unknown scaling law 'mien'; did you mean mine?" in line and str(tmp_path / "laws") in line


# ------------------------------------------------------------------------ contradictory or ignored input


@pytest.mark.parametrize("argv, says", [
    (["plan", "--gpu", "4070ti", "--days", "30", "--seq", "0"], "--seq must be a positive whole number of tokens, got 0"),
    (["plan", "--gpu", "4070ti", "--days", "30", "--seq", "-5"], "--seq must be a positive whole number"),
    (["plan", "--gpu", "4070ti", "--target-loss", "2.6", "--days", "30"], "--days would be ignored"),
    (["plan", "--gpu", "4070ti", "--target-loss", "2.6", "--flops", "1e21"], "--flops would be ignored"),
    (["plan", "--gpu", "4070ti", "--days", "30", "--csv", "--json"], "--csv and --json cannot be used together"),
    (["flops", "--model", "gpt2", "--tokens", "1B", "--causal", "--dense"], "--causal and --dense contradict"),
    (["flops", "--model", "gpt2", "--tokens", "1B", "--dense", "--causal"], "--dense and --causal contradict"),
    (["memory", "--gpu", "4070ti", "--model", "gpt2", "--flash", "--no-flash"], "--flash and --no-flash"),
    (["plan", "--gpu", "4070ti", "--days", "1", "--days", "2"], "--days is given twice (1 and 2)"),
    (["plan", "--gpu", "4070ti", "--days=1", "--days", "2"], "--days is given twice (1 and 2)"),
    (["plan", "--gpu", "4070ti", "--gpu", "4090", "--days", "1"], "--gpu is given twice (4070ti and 4090)"),
    (["plot", "frontier", "--mfu", "0.3", "--json"], "--mfu would be ignored without --days"),
    (["plot", "frontier", "--n-gpus", "8", "--json"], "--n-gpus would be ignored without --gpu"),
    (["plot", "isoflop", "--flops-tolerance", "0.2", "--json"], "--flops-tolerance would be ignored without --runs"),
    (["scaling", "fit", "runs.csv", "--replace"], "--replace says what to do with an existing saved law"),
    (["scaling", "fit", "runs.csv", "--approach", "2", "--grid", "small"], "approach 2 would ignore --grid"),
    (["scaling", "fit", "runs.csv", "--approach", "1", "--exclude-highest-loss", "5"],
     "approach 1 would ignore --exclude-highest-loss"),
    (["scaling", "fit", "runs.csv", "--seed", "3"], "--seed would be ignored without --bootstrap N"),
    (["train", "--synthetic", "--steps", "1", "--checkpoint-interval", "5"], "--checkpoint-interval says how often"),
    (["train", "--data", "d", "prepare", "out", "--pydoc"], "--data is an option of 'train' itself"),
])
def test_contradictory_or_ignored_options_are_refused(capsys, argv, says):
    line = refused(capsys, *argv)
    assert says in line, line


@pytest.mark.parametrize("argv", [
    ["flops", "--model", "gpt2", "--tokens", "1B", "--causal", "--causal"],   # the same choice twice
    ["plan", "--gpu", "4070ti", "--days", "1", "--days", "1", "--json"],
    ["plot", "memory", "--model", "gpt2", "--micro-batch", "1", "--micro-batch", "2", "--json"],  # repeatable
    ["plot", "frontier", "--gpu", "4070ti", "--days", "30", "--mfu", "0.3", "--json"],
])
def test_repeating_the_same_value_or_a_repeatable_option_is_fine(capsys, argv):
    code, _, err = cli(capsys, *argv)
    assert code == 0, err


def _every_option():
    import typer

    def walk(command, path=()):
        for param in command.params:
            if getattr(param, "opts", None) and param.opts[0].startswith("--"):
                yield path, param
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, (*path, name))

    return list(walk(typer.main.get_command(app)))


def test_every_flag_pair_of_every_command_refuses_both_halves(capsys):
    pairs = [(path, p) for path, p in _every_option() if p.secondary_opts]
    assert len(pairs) >= 5  # --causal/--dense, --flash/--no-flash, --compile/--no-compile, --published/...
    for path, p in pairs:
        line = refused(capsys, *path, p.opts[0], p.secondary_opts[0])
        assert f"{p.opts[0]} and {p.secondary_opts[0]} contradict each other" in line, (path, line)


def test_every_single_valued_option_of_every_command_refuses_two_different_values(capsys):
    single = [(path, p) for path, p in _every_option()
              if not p.is_flag and not p.multiple and p.opts[0] not in ("--help",)]
    assert len(single) >= 50
    for path, p in single:
        line = refused(capsys, *path, p.opts[0], "1", p.opts[0], "2")
        assert f"{p.opts[0]} is given twice (1 and 2)" in line, (path, line)


def test_json_before_a_subcommand_is_honoured_not_dropped(capsys):
    after = json.loads(cli(capsys, "gpus", "show", "4070ti", "--json")[1])
    code, out, err = cli(capsys, "gpus", "--json", "show", "4070ti")
    assert code == 0 and json.loads(out) == after, err
    assert after["memory_bytes"] == 12 * 2**30  # the 4070 Ti's 12 GiB (NVIDIA spec page)


def test_save_with_an_empty_name_is_refused_before_the_file_is_read(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FLOPSCALC_HOME", str(tmp_path))
    for name in ("", " ", "../evil", "chinchilla", "Chinchilla"):
        line = refused(capsys, "scaling", "fit", str(tmp_path / "missing.csv"), "--save", name)
        assert "missing.csv" not in line and ("file name" in line or "built-in" in line), line
    assert not (tmp_path / "laws").exists()


def test_seq_zero_is_refused_by_plan_as_by_flops_and_memory(capsys):
    for argv in (["plan", "--gpu", "4070ti", "--days", "30"], ["flops", "--model", "gpt2", "--tokens", "1B"],
                 ["memory", "--gpu", "4070ti", "--model", "gpt2"]):
        refused(capsys, *argv, "--seq", "0")


# ------------------------------------------------------------------------------------ plots: check first


@pytest.mark.parametrize("plot", [["frontier"], ["isoflop"], ["landscape"], ["memory"], ["calibration", "p.json"]])
@pytest.mark.parametrize("options, says", [
    (["--dpi", "0"], "--dpi must be between 20 and 1200 dots per inch, got 0"),
    (["--dpi", "-3"], "--dpi must be between"),
    (["--out", "chart.gif"], "accepted: .png, .svg, .pdf"),
    (["--out", "chart"], "suffix 'none'"),
    (["--out", "{tmp}/a_file/chart.png"], "is a file, not a folder"),
    (["--out", "{tmp}"], "cannot tell the image format"),
])
def test_plot_out_and_dpi_are_checked_before_any_rendering(capsys, tmp_path, monkeypatch, no_rendering, plot,
                                                           options, says):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("x")
    argv = ["plot", *plot, *(o.replace("{tmp}", str(tmp_path)) for o in options)]
    if "--out" not in argv:
        argv += ["--out", "chart.png"]
    line = refused(capsys, *argv)
    assert says in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # nothing written


def test_plot_out_in_a_folder_without_write_permission_is_refused_first(capsys, tmp_path, monkeypatch, no_rendering):
    # the suite may run as root, whom os.access never refuses: stand in for a user without write permission
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: Path(p) != locked and real_access(p, mode, **k))
    line = refused(capsys, "plot", "landscape", "--out", str(locked / "sub" / "chart.png"))
    assert f"cannot write in {locked}" in line


# ---------------------------------------------------------------------------- messages in the user's units


@pytest.mark.parametrize("argv, says", [
    (["--days", "30", "--max-days", "-1"], "--max-days must be a positive, finite time of at most 365,000 days"),
    (["--days", "1e308"], "--days must be a positive, finite time of at most 365,000 days"),
    (["--hours", "1e300"], "at most 8,760,000 hours"),
    (["--duration", "1001y"], "at most 365,000 days (1,000 years), got '1001y'"),
])
def test_time_limits_are_said_in_the_unit_the_user_typed(capsys, argv, says):
    line = refused(capsys, "plan", "--gpu", "4070ti", *argv)
    assert says in line, line
    assert "86400" not in line and "inf" not in line
    # the limit is 1,000 years of 365 days (units.SECONDS_PER_YEAR); in hours 1000 x 365 x 24
    assert 1000 * 365 == 365_000 and 1000 * 365 * 24 == 8_760_000


def test_max_days_minus_one_says_minus_one_days(capsys):
    line = refused(capsys, "plan", "--gpu", "4070ti", "--days", "30", "--max-days", "-1")
    assert line.endswith("got -1 days")


def test_a_thousand_years_is_accepted_and_a_little_more_is_not(capsys):
    code, _, err = cli(capsys, "plan", "--gpu", "4070ti", "--days", "365000", "--json")
    assert code in (0, 1), err  # an answer, or a one-line "no answer"; never the range error
    assert "at most 365,000 days" not in err
    refused(capsys, "plan", "--gpu", "4070ti", "--days", "365001")


# ------------------------------------------------------------------------------ saving over a saved law


def test_saving_over_a_saved_law_keeps_it_unless_replace_is_given(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FLOPSCALC_HOME", str(tmp_path))
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    first.write_text(RUNS_CSV)
    second.write_text(RUNS_CSV.replace("\n1e+08", "\n1.1e+08"))  # other runs: other constants
    assert run(["scaling", "fit", str(first), "--grid", "small", "--save", "mine"]) == 0
    assert "saved as 'mine'" in capsys.readouterr().out
    law = tmp_path / "laws" / "mine.json"
    kept = law.read_bytes()

    from flopscalc.scaling import fit

    def no_fit(*a, **k):
        raise AssertionError("the fit ran before the name was checked")

    with monkeypatch.context() as m:
        m.setattr(fit, "fit_approach3", no_fit)
        line = refused(capsys, "scaling", "fit", str(second), "--grid", "small", "--save", "mine")
    assert "a saved law named 'mine' exists" in line and "--replace" in line and str(law) in line
    assert law.read_bytes() == kept

    code, out, err = cli(capsys, "scaling", "fit", str(second), "--grid", "small", "--save", "mine", "--replace")
    assert code == 0, err
    assert "replaced the saved law 'mine'" in out
    assert law.read_bytes() != kept and json.loads(law.read_text())["source"].endswith("second.csv (12 runs)")
    assert [p.name for p in law.parent.iterdir()] == ["mine.json"]  # replaced atomically, no temp file left
    code, out, _ = cli(capsys, "scaling", "fit", str(first), "--grid", "small", "--save", "other", "--json")
    assert code == 0 and json.loads(out)["replaced"] is False


# ----------------------------------------------------------------------------------- --version and -h


def test_version_is_the_installed_distributions(capsys):
    code, out, err = cli(capsys, "--version")
    assert code == 0 and err == ""
    assert out == f"flopscalc {version('flopscalc')}\n"


def _command_paths(command, prefix=()):
    yield prefix
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _command_paths(sub, (*prefix, name))


def test_dash_h_is_help_on_every_command(capsys):
    import typer

    paths = list(_command_paths(typer.main.get_command(app)))
    assert ("plan",) in paths and ("scaling", "fit") in paths and ("gpus", "show") in paths
    for path in paths:
        code, short, err = cli(capsys, *path, "-h")
        assert code == 0 and "Usage:" in short and err == "", (path, err)
        assert cli(capsys, *path, "--help")[1] == short, path


def test_no_command_prints_the_list_and_one_error_line(capsys):
    code, out, err = cli(capsys)
    assert code == 2 and "plan" in out
    assert "say which command to run" in one_error_line(err)


# ------------------------------------------------------------------------------------- piped output


def _piped(*argv, columns: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = columns
    return subprocess.run([sys.executable, "-m", "flopscalc", *argv], capture_output=True, text=True, cwd=ROOT,
                          env=env, check=False)


@pytest.mark.parametrize("argv, whole", [
    (["plan", "--gpu", "4070ti", "--days", "365"], ["gpt2-medium", "gpt2-large"]),
    (["scaling", "laws"], ["muennighoff2023", "besiroglu2024", "kaplan2020"]),
    (["gpus"], ["rtx-4070-ti"]),
])
def test_piped_output_never_cuts_a_cell(argv, whole):
    r = _piped(*argv)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "…" not in r.stdout
    words = set(re.findall(r"[\w.-]+", r.stdout))
    assert all(w in words for w in whole), [w for w in whole if w not in words]


def test_piped_output_at_a_narrow_columns_folds_instead_of_cutting():
    r = _piped("scaling", "laws", columns="60")
    assert r.returncode == 0 and "…" not in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) <= 60


def test_piped_tables_are_not_wrapped_at_80_columns():
    r = _piped("scaling", "laws")
    rows = [line for line in r.stdout.splitlines() if line.startswith("│ muennighoff2023")]
    assert len(rows) == 1 and "with embeddings" in rows[0]  # the whole row on one line


# ---------------------------------------------------------------------------------- progress on stderr


def _fit_with_stderr(stderr_is_terminal: bool, runs: Path) -> tuple[str, str]:
    import pty

    argv = [sys.executable, "-m", "flopscalc", "scaling", "fit", str(runs), "--grid", "small", "--json"]
    if not stderr_is_terminal:
        r = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
        assert r.returncode == 0, r.stderr
        return r.stdout, r.stderr
    main, child = pty.openpty()
    try:
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=child, cwd=ROOT, text=True,
                             env={**os.environ, "TERM": "xterm"})
        os.close(child)
        out, _ = p.communicate(timeout=120)
        err = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the terminal's other end closed
                break
            if not chunk:
                break
            err += chunk
    finally:
        os.close(main)
    assert p.returncode == 0
    return out, err.decode(errors="replace")


def test_a_fit_shows_progress_on_a_terminal_and_nothing_when_stderr_is_piped(tmp_path):
    runs = tmp_path / "runs.csv"
    runs.write_text(RUNS_CSV)
    out_tty, err_tty = _fit_with_stderr(True, runs)
    out_pipe, err_pipe = _fit_with_stderr(False, runs)
    assert "fitting" in err_tty  # the bar's label, drawn on the terminal
    assert err_pipe == ""
    assert json.loads(out_tty) == json.loads(out_pipe)  # stdout holds the result only, either way


def test_the_fit_progress_callback_counts_every_start_once():
    from flopscalc.scaling.fit import SMALL_GRID, fit_approach3, grid_starts
    from flopscalc.scaling.io import read_runs

    calls = []
    fit_approach3(read_runs("runs.csv", RUNS_CSV), grid="small", callback=lambda done, total: calls.append((done, total)))
    n_starts = len(grid_starts(SMALL_GRID))
    assert n_starts == 2**5  # two values of each of the five constants
    assert calls and all(total == n_starts for _, total in calls)
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == n_starts


# ------------------------------------------------------------------------------------ the reader itself


@pytest.mark.parametrize("data, text", [
    (b"a,b\n1,2\n", "a,b\n1,2\n"),
    (codecs.BOM_UTF8 + b"a,b\n", "a,b\n"),                      # Excel's "CSV UTF-8": EF BB BF first
    ("Größe,µs\n".encode(), "Größe,µs\n"),                      # UTF-8 beyond ASCII is read as such
    (b"", ""),
])
def test_decode_text_reads_utf8_with_or_without_a_bom(data, text):
    from flopscalc.textfile import decode_text

    assert decode_text(data, "f.csv") == text


@pytest.mark.parametrize("data, says", [
    (b"a,b\n\x00\x01", "a NUL byte at offset 4"),
    ("Größe".encode("cp1252"), "byte 0xf6 at offset 2"),        # Windows-1252 o-umlaut
    (b"caf\xc3", "byte 0xc3 at offset 3"),                       # a UTF-8 sequence cut short
    ("a,b".encode("utf-16-be"), "a NUL byte"),                   # UTF-16 without a BOM has NULs in ASCII text
    (codecs.BOM_UTF16_BE + "a".encode("utf-16-be"), "UTF-16"),
])
def test_decode_text_refuses_other_encodings_in_one_line(data, says):
    from flopscalc.errors import UsageError
    from flopscalc.textfile import decode_text

    with pytest.raises(UsageError) as err:
        decode_text(data, "f.csv", "runs file")
    assert says in str(err.value) and "runs file f.csv" in str(err.value) and "\n" not in str(err.value)


def test_a_missing_file_or_a_folder_is_one_line(capsys, tmp_path):
    assert "runs file" in refused(capsys, "scaling", "fit", str(tmp_path / "none.csv"))
    assert "is a directory" in refused(capsys, "scaling", "fit", str(tmp_path))
    assert "does not exist; create one with 'flopscalc calibrate'" in refused(
        capsys, "plot", "calibration", str(tmp_path / "none.json"), "--json")


@pytest.mark.parametrize("argv", [
    ["plan", "--gpu", "h100", "--days", "1", "--family", "", "--law", "chinchilla"],
    ["plan", "--gpu", "h100", "--days", "1", "--law", " "],
    ["scaling", "optimal", "--flops", "1e21", "--law", ""],
    ["plot", "landscape", "--law", "", "--json"],
    ["plot", "frontier", "--law", "chinchilla", "--law", "", "--json"],
])
def test_an_empty_law_or_family_is_refused_not_read_as_the_default(capsys, argv):
    # The engines read '' as "the default law/family"; at the CLI an empty value is a mistake, not a choice.
    assert f"{argv[argv.index('') - 1] if '' in argv else '--law'} is empty" in refused(capsys, *argv)


def test_an_empty_mean_sequence_length_is_refused(capsys):
    line = refused(capsys, "finetune", "--gpu", "h100", "--dataset-tokens", "1M", "--model", "gpt2",
                   "--mean-sequence-tokens", "")
    assert "--mean-sequence-tokens" in line


@pytest.mark.parametrize(("flag", "value"), [("--tp", "0"), ("--pp", "-1"), ("--cp", "0"), ("--ep", "0"),
                                             ("--network-gbps", "0"), ("--network-gbps", "nan")])
def test_a_layout_size_below_one_is_refused_not_read_as_one(capsys, flag, value):
    # `step --tp 0` used to price the unsplit layout (0 read as "not given").
    line = refused(capsys, "step", "--gpu", "h100", "--model", "gpt2", flag, value)
    assert flag in line


def test_a_search_over_zero_sequences_is_refused(capsys):
    assert "--global-batch 0" in refused(capsys, "step", "--gpu", "h100", "--model", "gpt2", "--search",
                                         "--global-batch", "0")


@pytest.mark.parametrize("argv", [
    ["step", "--gpu", "h100", "--config", ""],
    ["plan", "--gpu", "h100", "--days", "1", "--calibration", ""],
    ["train", "--synthetic", "--from-plan", ""],
    ["calibrate", "--out", ""],
])
def test_an_empty_path_is_named_as_empty_not_as_the_folder_dot(capsys, argv):
    # typer turns '' into Path('.'); the message used to say ". is a directory", which the user never typed.
    assert "the path is empty" in refused(capsys, *argv)
