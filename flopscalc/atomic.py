"""Atomic file writes: a reader sees the old file or the whole new one, never half of it.

One implementation for every file flopscalc writes (calibration profiles, saved laws, plots, checkpoints):
a temp file in the same folder is written and fsynced, given the usual permissions (0666 less the umask,
not ``mkstemp``'s 0600), then renamed over the target with ``os.replace`` (atomic on POSIX and Windows).
On any failure the temp file is removed and the target is untouched.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import UsageError


def check_writable_file(path: str | Path, what: str = "output file") -> Path:
    """Refuse a path that is a directory or sits under a file, before any work is done (UsageError)."""
    if str(path) in ("", "."):  # typer turns an empty Path option ('--out ""') into '.'
        raise UsageError(f"{what}: the path is empty (or '.', the current folder); give a file name, e.g. out.json")
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{what} {path} is a directory; give a file name inside it, e.g. {path / 'out'}")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UsageError(f"{what} {path}: {parent} is a file, not a folder")
    if parent is not None and (not os.access(parent, os.W_OK | os.X_OK) or _read_only_filesystem(parent)):
        raise UsageError(f"{what} {path}: cannot write in {parent} (no permission or a read-only file system); "
                         "choose a folder you can write to")
    return path


def _read_only_filesystem(folder: Path) -> bool:
    """True when ``folder`` sits on a file system mounted read-only (root passes os.access even there)."""
    if not hasattr(os, "statvfs"):  # Windows: os.access answers
        return False
    return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(f)`` on a temp file beside ``path``, then move it over ``path``; returns ``path``."""
    path = check_writable_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return write_atomic(path, lambda f: f.write(data))


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def lands_on(path: str | Path) -> Path:
    """The file a write to ``path`` reaches: '..' after a folder that does not exist yet and links resolved as the
    writer resolves them once it has made that folder (``x/../log.txt`` is ./log.txt, which `Path.exists` misses)."""
    return Path(os.path.realpath(path))


def refuse_overwrite(outputs: dict[str, str | Path | None], replace: bool, what: str = "file") -> None:
    """UsageError, before any work, for an output that already exists when ``replace`` (``--replace``) is not given:
    nothing the user made is lost unasked (plot --out, calibrate/bench --out, train prepare's files). Keys are the
    options as typed (or the file's role), None = not given; a path is looked up as the writer will reach it
    (`lands_on`)."""
    for flag, path in outputs.items():
        if path is not None and not replace and lands_on(path).exists():
            raise UsageError(f"{flag} {path} already exists; give --replace to overwrite the {what}, or another path")


def refuse_same_file(outputs: dict[str, str | Path | None],
                     inputs: dict[str, str | Path | list | tuple | None] | None = None) -> None:
    """UsageError when two outputs, or an output and an input, name one file (``--checkpoint run.pt --metrics-log
    run.pt``; ``calibrate --out config.json --config config.json``): one write would replace the other, or the
    user's input. Keys are the option names as typed; an input may be a list (``--gpu-csv`` repeated); None = not
    given. Paths are compared after resolving '..' and links (os.path.realpath), and by file identity where both
    exist (a hard link)."""
    def same(a: Path, b: Path) -> bool:
        if lands_on(a) == lands_on(b):
            return True
        try:
            return a.exists() and b.exists() and os.path.samefile(a, b)
        except OSError:
            return False

    given_outputs = [(name, Path(p)) for name, p in outputs.items() if p is not None]
    given_inputs = [(name, Path(p)) for name, value in (inputs or {}).items() if value is not None
                    for p in (value if isinstance(value, (list, tuple)) else [value])]
    for i, (name, path) in enumerate(given_outputs):
        for other, other_path in given_outputs[i + 1:]:
            if same(path, other_path):
                raise UsageError(f"{name} and {other} name the same file ({path}): one would be written over the "
                                 "other; give each its own path")
        for other, other_path in given_inputs:
            if same(path, other_path):
                raise UsageError(f"{name} {path} is the file {other} reads: writing it would replace your input; "
                                 f"give {name} another path")
