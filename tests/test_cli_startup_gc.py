"""The `flopscalc` process tunes its garbage collector (start-up, issue 18; flopscalc.cli.GC_GEN0_THRESHOLD), and
only the process: `run`, which tests and library callers use in their own interpreter, leaves it alone."""

from __future__ import annotations

import contextlib
import gc
import io
import json
import subprocess
import sys

from flopscalc.cli import GC_GEN0_THRESHOLD, run
from tests.fresh_interpreter import ROOT, json_after


def _main_in_fresh_interpreter(argv: list[str]) -> dict:
    """Exit code, collector thresholds and frozen-object count after `flopscalc.cli.main` with ``argv``."""
    prelude = f"""
        import gc
        from flopscalc import cli
        sys.argv = ['flopscalc', *{argv!r}]
        before = gc.get_threshold()
    """
    statement = """
        try:
            cli.main()
        except SystemExit as e:
            exit_code = e.code
    """
    return json_after(prelude, statement, "{'exit': exit_code, 'before': before, 'after': gc.get_threshold(), "
                                          "'frozen': gc.get_freeze_count()}")


def test_run_leaves_the_callers_collector_alone():
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    with contextlib.redirect_stdout(io.StringIO()):
        assert run(["gpus"]) == 0
    assert gc.get_threshold() == threshold
    assert gc.get_freeze_count() == frozen


def test_main_raises_the_threshold_freezes_at_exit_and_keeps_the_exit_code():
    ok = _main_in_fresh_interpreter(["gpus"])
    assert ok["exit"] == 0
    assert ok["before"][0] < GC_GEN0_THRESHOLD  # CPython's default (700) is what the constant replaces
    assert ok["after"] == [GC_GEN0_THRESHOLD, *ok["before"][1:]]  # only the youngest generation's threshold moves
    assert ok["frozen"] > 0
    usage = _main_in_fresh_interpreter(["plan", "--gpu", "4070ti"])  # no budget: a usage error, exit 2
    assert usage["exit"] == 2


def test_the_console_script_prints_the_same_with_and_without_the_tuning():
    """`python -m flopscalc` (main: tuned) and `run` in a plain interpreter print the same characters."""
    argv = ["plan", "--gpu", "4070ti", "--days", "365", "--json"]
    env = {"COLUMNS": "100", "PATH": ""}
    tuned = subprocess.run([sys.executable, "-m", "flopscalc", *argv], capture_output=True, text=True, cwd=ROOT,
                           check=True, env=env).stdout
    plain = subprocess.run([sys.executable, "-c", f"import sys; from flopscalc.cli import run; sys.exit(run({argv!r}))"],
                           capture_output=True, text=True, cwd=ROOT, check=True, env=env).stdout
    assert tuned == plain
    assert json.loads(tuned)["recommended"]
