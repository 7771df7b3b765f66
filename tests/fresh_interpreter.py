"""Run a statement in a fresh interpreter and read back what it reports, for tests of what a process does that the
test's own interpreter, with everything already imported and its collector as pytest left it, cannot show: which
modules a command loads (tests/test_cli_startup.py), how the console script tunes the garbage collector
(tests/test_cli_startup_gc.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def json_after(prelude: str, statement: str, result: str) -> dict:
    """In a fresh interpreter at the repository root: run ``prelude`` (imports, set-up; `contextlib`, `io`, `json`
    and `sys` are imported before it), then ``statement`` with its stdout and stderr swallowed, then print the
    expression ``result`` as JSON; return it parsed. A traceback fails the test with the child's stderr."""
    code = "\n".join([
        "import contextlib, io, json, sys",
        textwrap.dedent(prelude),
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):",
        textwrap.indent(textwrap.dedent(statement), "    "),
        f"print(json.dumps({result}))",
    ])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
