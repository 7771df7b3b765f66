"""Scaling laws by name: the built-in laws and their aliases, and laws saved in the laws folder (`scaling.io` writes
and reads those files and re-exports these names).

Apart from `scaling.io` so that a plan, which resolves its law by name, loads no JSON, CSV or atomic-writing code
for the built-in laws (start-up, issue 18).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError
from .laws import BUILTIN_LAWS, DEFAULT_LAW, ScalingLaw

HOME_ENV = "FLOPSCALC_HOME"


def laws_dir() -> Path:
    """Where saved laws live: ``$FLOPSCALC_HOME/laws`` or ``~/.flopscalc/laws``."""
    home = os.environ.get(HOME_ENV)
    return (Path(home) if home else Path.home() / ".flopscalc") / "laws"


def _all_builtin_names() -> dict[str, str]:
    names = {}
    for law in BUILTIN_LAWS.values():
        names[law.name] = law.name
        for alias in law.aliases:
            names[alias] = law.name
    return names


def get_law(name: str, directory: str | Path | None = None) -> ScalingLaw:
    """A built-in law by name or alias, or a saved one (``NAME.json`` in the laws folder)."""
    key = name.strip().lower()
    builtin = _all_builtin_names()
    if key in builtin:
        return BUILTIN_LAWS[builtin[key]]
    folder = Path(directory) if directory is not None else laws_dir()
    path = folder / f"{name.strip()}.json"
    if path.is_file():
        from .io import load_law  # a saved law: the file readers load only then

        return load_law(path)
    options = list(builtin) + ([p.stem for p in folder.glob("*.json")] if folder.is_dir() else [])
    import difflib

    close = difflib.get_close_matches(key, options, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise UsageError(f"unknown scaling law {name!r}{hint}; run 'flopscalc scaling laws' to list them "
                     f"(saved laws are read from {folder})")


def resolve_law(law: str | ScalingLaw | None = None, directory: str | Path | None = None) -> ScalingLaw:
    """The law a caller means: ``None`` or ``""`` is `DEFAULT_LAW`, a name is `get_law` (built-in or saved in
    ``directory``), a `ScalingLaw` is itself. The one place a name becomes a law; only the faces call it (it reads
    saved laws from disk), and the planner receives the law it returns (`planner.request.PlanRequest.law`)."""
    if law is None or isinstance(law, str):
        return get_law(law or DEFAULT_LAW, directory)
    return law
