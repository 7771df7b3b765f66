"""The `flopscalc.flops` package: every public name is one submodule's object, and the plan path loads only `exact`.

The package re-exports `exact` eagerly and `papers`, `conventions`, `summary` on first use (PEP 562, issue 18);
these check the export table against the submodules' own definitions and, in a fresh interpreter, which
submodules each kind of use loads.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from flopscalc import flops

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "flopscalc" / "flops"
SUBMODULES = ("exact", "papers", "conventions", "summary")


def _defined_public_names(module: str) -> set[str]:
    """Top-level classes, functions and assignments of a submodule's source, less private ones."""
    names = set()
    for node in ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_")}


def test_every_public_name_of_every_submodule_is_exported_once():
    owners = {m: _defined_public_names(m) for m in SUBMODULES}
    for a in SUBMODULES:
        for b in SUBMODULES:
            assert a == b or not owners[a] & owners[b], (a, b, owners[a] & owners[b])
    assert sorted(flops.__all__) == sorted(set().union(*owners.values()))


@pytest.mark.parametrize("module", SUBMODULES)
def test_each_exported_name_is_its_submodules_object(module):
    sub = importlib.import_module(f"flopscalc.flops.{module}")
    for name in _defined_public_names(module):
        assert getattr(flops, name) is getattr(sub, name), name


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        flops.no_such_name  # noqa: B018


def _flops_modules_after(code: str) -> list[str]:
    report = "import json, sys\nprint(json.dumps(sorted(m for m in sys.modules if m.startswith('flopscalc.flops'))))"
    out = subprocess.run([sys.executable, "-c", f"{code}\n{report}"], capture_output=True, text=True, cwd=ROOT,
                         check=True)
    return json.loads(out.stdout.splitlines()[-1])


def test_the_exact_names_load_no_other_submodule():
    assert _flops_modules_after("from flopscalc.flops import Recompute, training_flops_per_token") == [
        "flopscalc.flops", "flopscalc.flops.exact"]


def test_a_lazy_name_loads_its_submodule_and_what_it_imports():
    assert _flops_modules_after("from flopscalc.flops import palm_flops_per_token") == [
        "flopscalc.flops", "flopscalc.flops.exact", "flopscalc.flops.papers"]
    assert _flops_modules_after("from flopscalc.flops import summarize") == [
        "flopscalc.flops", "flopscalc.flops.conventions", "flopscalc.flops.exact", "flopscalc.flops.papers",
        "flopscalc.flops.summary"]


def test_plan_loads_only_the_exact_counts():
    code = ("import contextlib, io\nfrom flopscalc.cli import run\nwith contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert run(['plan', '--gpu', '4070ti', '--days', '365']) == 0")
    assert _flops_modules_after(code) == ["flopscalc.flops", "flopscalc.flops.exact"]
