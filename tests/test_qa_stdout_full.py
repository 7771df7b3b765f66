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
