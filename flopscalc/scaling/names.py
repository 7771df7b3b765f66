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


def saved_law_files(folder: Path) -> list[Path]:
    """The saved law files in ``folder`` (``*.json``), sorted; none when the folder does not exist."""
    return sorted(p for p in folder.glob("*.json") if p.is_file()) if folder.is_dir() else []


def saved_law_file(folder: Path, key: str) -> Path | None:
    """The saved law file whose name is ``key`` in any case (``MyLaw.json`` for 'mylaw'), or None. Law names are not
    case-sensitive, as the built-in names are not (`get_law`); two files that differ only in case (saved before
    names were folded) are refused, naming both."""
    found = [p for p in saved_law_files(folder) if p.stem.lower() == key]
    if len(found) > 1:
        raise UsageError(f"saved laws {' and '.join(str(p) for p in found)} differ only in case, and law names are "
                         "not case-sensitive; rename or remove one of them")
    return found[0] if found else None


def get_law(name: str, directory: str | Path | None = None) -> ScalingLaw:
    """A built-in law by name or alias, or a saved one (``NAME.json`` in the laws folder), the name in any case."""
    key = name.strip().lower()
    builtin = _all_builtin_names()
    if key in builtin:
        return BUILTIN_LAWS[builtin[key]]
    folder = Path(directory) if directory is not None else laws_dir()
    path = saved_law_file(folder, key)
    if path is not None:
        from .io import load_law  # a saved law: the file readers load only then

        return load_law(path)
    options = list(builtin) + [p.stem.lower() for p in saved_law_files(folder)]
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
