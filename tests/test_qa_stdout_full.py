"""A report that cannot be written (stdout on a full disk) says so in one line and exits 1, never a traceback.

Found by running `flopscalc plan --gpu 4070ti --days 365 > /dev/full`: an OSError traceback from rich's or
json's write, ~40 lines, for tables and --json alike. /dev/full (Linux) fails every write with ENOSPC, as a full disk
does; each command runs as the console script does (`python -m flopscalc`, a fresh interpreter), so the exit's own
flush of stdout is part of what is checked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")


def _run_into_full_disk(*args: str) -> subprocess.CompletedProcess:
    with open("/dev/full", "w") as full:
        return subprocess.run([sys.executable, "-m", "flopscalc", *args], stdout=full, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT, check=False, env={**os.environ, "COLUMNS": "100"})


@pytest.mark.parametrize("args", [
    ("plan", "--gpu", "4070ti", "--days", "365"),
    ("plan", "--gpu", "4070ti", "--days", "365", "--json"),
    ("plan", "--gpu", "4070ti", "--days", "365", "--csv"),  # written as it is, not through emit's renderer
    ("gpus",),
    ("flops", "--model", "gpt2", "--tokens", "1e9", "--json"),
    ("models",),
    ("--help",),  # the top-level help, printed without the parser
    ("plan", "--help"),  # a command's help, printed by the parser
    ("scaling", "--help"),
    ("--version",),  # an eager option's line, printed while the parser reads the options
])
def test_a_full_disk_is_one_line_and_exit_1(args):
    done = _run_into_full_disk(*args)
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("flopscalc: error: cannot write"), done.stderr
    assert "No space left on device" in lines[0]
    assert done.returncode == 1


def test_the_same_command_to_a_writable_file_succeeds(tmp_path):
    """The failure above is the disk's, not the command's: the same report into a file exits 0 with no stderr."""
    with open(tmp_path / "out.txt", "w") as out:
        done = subprocess.run([sys.executable, "-m", "flopscalc", "gpus"], stdout=out, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT, check=False)
    assert done.returncode == 0 and done.stderr == ""
    assert "h100-sxm" in (tmp_path / "out.txt").read_text()


def _run_into_closed_pipe(*args: str) -> subprocess.CompletedProcess:
    """The command writing into a pipe whose reader has gone (`flopscalc --help | head -1` once head exits): every
    write fails with EPIPE (Python ignores SIGPIPE, so it is a BrokenPipeError), whatever the output's size."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "flopscalc", *args], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT, check=False, env={**os.environ, "COLUMNS": "100"})
    finally:
        os.close(write_end)


@pytest.mark.parametrize("args", [
    ("--help",),  # the top-level help (printed without the parser): was a BrokenPipeError traceback
    ("plan", "--help"),
    ("gpus",),
    ("flops", "--model", "gpt2", "--tokens", "1e9", "--json"),
])
def test_a_closed_pipe_is_a_quiet_exit_1(args):
    """Nobody is left to read a message, so none is written, and no traceback either (not even the interpreter's
    'Exception ignored' from its flush at exit)."""
    done = _run_into_closed_pipe(*args)
    assert done.stderr == "", done.stderr
    assert done.returncode == 1


class _PipeClosingAfterRich:
    """A stdout whose reader goes away just before the top-level help's last line: rich's own prints get through
    (rich turns a broken pipe in its writes into a quiet exit 1 by itself), the help's closing newline, written by
    flopscalc, meets the closed pipe when it is flushed (the race `flopscalc --help | head -40` can lose)."""

    def __init__(self):
        self.last = ""

    def write(self, text):
        self.last = text
        return len(text)

    def flush(self):
        if self.last == "\n":
            raise BrokenPipeError(32, "Broken pipe")

    def isatty(self):
        return False

    def fileno(self):
        import io

        raise io.UnsupportedOperation("no file descriptor")


def test_a_pipe_closed_before_the_help_ends_is_exit_1_not_a_traceback(monkeypatch, capsys):
    from flopscalc.cli import run

    monkeypatch.setattr(sys, "stdout", _PipeClosingAfterRich())
    assert run(["--help"]) == 1  # was: the BrokenPipeError re-raised out of run(), a traceback from the script
    assert capsys.readouterr().err == ""
