"""`flopscalc._lazy.lazy_exports`, the PEP 562 exports every lazy package shares, and the six packages that use it.

The helper is checked on a throw-away package written here (what loads, when, how often, what an unknown name
says), then each package against the modules that define its names, and in a fresh interpreter that importing the
package loads none of them (start-up, issue 18).
"""

from __future__ import annotations

import importlib
import sys

import pytest

from flopscalc._lazy import lazy_exports
from tests.fresh_interpreter import json_after

PACKAGES = ["flopscalc.cli", "flopscalc.flops", "flopscalc.memory", "flopscalc.perf", "flopscalc.planner",
            "flopscalc.scaling"]


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package `lazypkg_<n>` exporting `value` and `other` from `sub` and `table` from `more`, lazily; `sub` and
    `more` count their imports in `sys.lazy_test_loads`."""
    name = f"lazypkg_{tmp_path.name.replace('-', '_')}"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text(
        "from flopscalc._lazy import lazy_exports\n"
        "EAGER = 1\n"
        "__getattr__, __dir__ = lazy_exports(__name__, {'value': 'sub', 'other': 'sub', 'table': 'more'})\n")
    count = "import sys\nsys.lazy_test_loads.append(__name__)\n"
    (root / "sub.py").write_text(count + "value = object()\nother = 'o'\n")
    (root / "more.py").write_text(count + "table = {}\n")
    (root / "plain.py").write_text("x = 1\n")
    (root / "shim.py").write_text(  # a module re-exporting a name that moved to its sibling `more`
        "from flopscalc._lazy import lazy_exports\n"
        "__getattr__, __dir__ = lazy_exports(__name__, {'table': 'more'})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "lazy_test_loads", [], raising=False)
    yield importlib.import_module(name)
    for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
        del sys.modules[module]


def test_importing_the_package_loads_no_exported_module(package):
    assert sys.lazy_test_loads == []
    assert f"{package.__name__}.sub" not in sys.modules


def test_a_name_loads_its_own_module_once_and_is_kept_in_the_package(package):
    calls = []
    getattr_ = package.__getattr__

    def counted(name):
        calls.append(name)
        return getattr_(name)

    package.__getattr__ = counted  # PEP 562 looks the hook up in the module's namespace on each miss
    first = package.value
    assert first is sys.modules[f"{package.__name__}.sub"].value
    assert sys.lazy_test_loads == [f"{package.__name__}.sub"]  # `more` is not imported for `sub`'s names
    assert package.value is first and vars(package)["value"] is first  # cached in the package's globals
    assert package.other == "o"
    assert calls == ["value", "other"]  # the second `value` never reached the hook
    assert sys.lazy_test_loads == [f"{package.__name__}.sub"]  # and `sub` ran once for both of its names


def test_from_import_reaches_exports_and_still_imports_submodules(package):
    imported = __import__(package.__name__, fromlist=["table", "plain"])  # `from package import table, plain`
    assert imported.table is sys.modules[f"{package.__name__}.more"].table
    assert imported.plain is sys.modules[f"{package.__name__}.plain"]  # not an export: the submodule is imported


def test_an_unknown_name_is_an_attribute_error_naming_the_module_and_the_name(package):
    with pytest.raises(AttributeError) as error:
        _ = package.nothing
    assert str(error.value) == f"module {package.__name__!r} has no attribute 'nothing'"
    assert not hasattr(package, "nothing")
    assert sys.lazy_test_loads == []


def test_dir_lists_the_exports_before_they_load_and_the_globals(package):
    listed = dir(package)
    assert {"value", "other", "table", "EAGER", "__getattr__", "__dir__"} <= set(listed)
    assert listed == sorted(listed)
    assert sys.lazy_test_loads == []


def test_a_module_exports_names_of_its_sibling_modules(package):
    shim = importlib.import_module(f"{package.__name__}.shim")
    assert sys.lazy_test_loads == []
    assert shim.table is sys.modules[f"{package.__name__}.more"].table
    assert vars(shim)["table"] is shim.table and "table" in dir(shim)
    with pytest.raises(AttributeError, match=rf"^module '{package.__name__}.shim' has no attribute 'value'$"):
        _ = shim.value  # the package's export, not the module's


def test_the_helper_needs_its_package_in_sys_modules():
    with pytest.raises(KeyError):
        lazy_exports("flopscalc_no_such_package", {})


# ------------------------------------------------------------------------------------------ the six packages


@pytest.mark.parametrize("name", PACKAGES)
def test_each_lazy_name_is_its_modules_object_and_listed(name):
    package = importlib.import_module(name)
    exports = package._EXPORTS
    assert exports, name
    for export, module in exports.items():
        assert getattr(package, export) is getattr(importlib.import_module(f"{name}.{module}"), export), export
    listed = set(dir(package))
    assert set(exports) <= listed
    assert set(getattr(package, "__all__", ())) <= listed


@pytest.mark.parametrize("name", PACKAGES)
def test_an_unknown_name_of_a_package_says_which(name):
    with pytest.raises(AttributeError, match=rf"^module '{name}' has no attribute 'no_such_name'$"):
        _ = importlib.import_module(name).no_such_name


def test_the_planner_exports_what_its_core_calls_public():
    from flopscalc import planner
    from flopscalc.planner import core

    assert planner.__all__ == core.__all__


def test_importing_a_package_loads_none_of_its_lazy_modules():
    """Each package alone, in a fresh interpreter: its `__init__` imports none of the modules its lazy names live
    in (what the hook is for), and nothing numerical."""
    for name in PACKAGES:
        exports = importlib.import_module(name)._EXPORTS
        lazy = sorted({f"{name}.{module}" for module in exports.values()})
        after = json_after(f"import {name}", "pass", "sorted(sys.modules)")
        assert not set(lazy) & set(after), (name, set(lazy) & set(after))
        assert not {"numpy", "pandas", "scipy", "matplotlib", "torch"} & {m.split(".")[0] for m in after}, name
