"""Lazy exports of a package (PEP 562), written once for every package that re-exports its modules' names.

Start-up is part of the product (issue 18): a package's `__init__` names what it exports and from which of its
modules, and each name's module is imported when the name is first asked for, not with the package. A module that
re-exports names moved to a sibling module uses it the same way. Use it as

    _EXPORTS = {"estimate_step": "step", ...}  # name -> the module of this package that defines it
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

The standard library only, and not even `importlib` until a name is asked for (`flopscalc --help` imports
`flopscalc.cli` and must stay light: tests/test_cli_startup.py).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` (PEP 562) of ``package``, which exports ``exports``.

    Parameters
    ----------
    package : str
        The exporting package's (or module's) ``__name__``; it must be in ``sys.modules`` (it is while its code
        runs).
    exports : mapping of str to str
        Each exported name -> the module that defines it, named without the dot relative to the package (for a
        module: to the package it is in, so its siblings).

    Returns
    -------
    (__getattr__, __dir__)
        ``__getattr__(name)`` imports the name's module, returns the name's value and keeps it in the package's
        globals, so later lookups find it there and never call ``__getattr__`` again; any other name raises
        AttributeError with Python's own message (so ``from package import submodule`` goes on to import the
        submodule). ``__dir__()`` lists the package's globals and every export, sorted.
    """
    namespace = vars(sys.modules[package])
    anchor = namespace["__package__"]  # the package itself, or a module's package

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(f".{module}", anchor), name)
        namespace[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
