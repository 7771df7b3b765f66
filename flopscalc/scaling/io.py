"""Files of the scaling engine: runs CSVs in, saved laws (JSON with a schema version) out and back.

Runs CSV: one run per row; ``#`` lines are comments. Column names are matched loosely:
parameters (n_params, params, N, model_size, "Model Size"), tokens (n_tokens, tokens, D,
"Training Tokens"), loss (loss, L, final_loss), optional FLOPs (c_flops, flops, C, "Training FLOP").
Tokens may be omitted when FLOPs are given (D = C / 6N).

Saved laws live in ``$FLOPSCALC_HOME/laws`` (default ``~/.flopscalc/laws``), one ``NAME.json`` each.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import check_writable_file, write_text_atomic
from ..errors import UsageError
from ..textfile import check_comma_separated, parse_json, read_text
from .law_json import LAW_SCHEMA_VERSION, law_from_dict, law_to_dict  # noqa: F401 - re-exported
from .laws import FLOPS_PER_PARAM_TOKEN, ScalingLaw
from .names import (  # noqa: F401 - re-exported: plans resolve a law by name without this module's file machinery
    HOME_ENV,
    _all_builtin_names,
    get_law,
    laws_dir,
    resolve_law,
    saved_law_file,
    saved_law_files,
)

if TYPE_CHECKING:
    from .runs import Runs

COLUMN_ALIASES = {
    "n_params": ("n_params", "params", "parameters", "n", "model_size", "model size", "num_params"),
    "n_tokens": ("n_tokens", "tokens", "d", "training_tokens", "training tokens", "num_tokens"),
    "loss": ("loss", "l", "final_loss", "eval_loss", "val_loss"),
    "c_flops": ("c_flops", "flops", "c", "training_flop", "training flop", "training_flops"),
}
LAW_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _column_map(header: list[str], path: str) -> dict[str, int]:
    norm = [h.strip().lower() for h in header]
    found = {}
    for key, names in COLUMN_ALIASES.items():
        columns = [i for i, h in enumerate(norm) if h in names]
        if len(columns) > 1:  # two columns for one quantity: which one is meant cannot be guessed
            raise UsageError(f"{path}: columns {', '.join(repr(header[i].strip()) for i in columns)} all give "
                             f"{key}; keep one of them (accepted names: {', '.join(names)})")
        if columns:
            found[key] = columns[0]
    missing = [k for k in ("n_params", "loss") if k not in found]
    if "n_tokens" not in found and "c_flops" not in found:
        missing.append("n_tokens (or c_flops)")
    if missing:
        raise UsageError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(header) or 'none'}; "
                         "accepted: n_params, n_tokens, loss and optionally c_flops (see docs/scaling.md)")
    return found


def read_runs(path: str | Path, text: str | None = None) -> Runs:
    """Read a runs CSV into `Runs`; every problem is a UsageError naming the file, line and value."""
    import numpy as np  # here, not at import: `flopscalc plan` resolves a law from this module and reads no runs

    from .runs import Runs

    path = str(path)
    if text is None:
        text = read_text(path, "runs file", csv=True)
    text = text.removeprefix("\ufeff")  # a BOM in text handed over already decoded
    check_comma_separated(text, path, "runs file")
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise UsageError(f"{path}: no header and no runs; expected a CSV with n_params, n_tokens, loss")
    rows = list(csv.reader(io.StringIO("\n".join(ln for _, ln in lines))))
    cols = _column_map(rows[0], path)
    values: dict[str, list[float]] = {k: [] for k in cols}
    for (line_no, _), row in zip(lines[1:], rows[1:]):
        for key, i in cols.items():
            raw = row[i].strip() if i < len(row) else ""
            try:
                v = float(raw)
            except ValueError:
                raise UsageError(f"{path}, line {line_no}: {key} {raw!r} is not a number; write plain numbers "
                                 "(1.5e9, not 1.5B)") from None
            if not (math.isfinite(v) and v > 0):
                raise UsageError(f"{path}, line {line_no}: {key} must be a positive finite number, got {raw!r}")
            values[key].append(v)
    if len(lines) == 1:
        raise UsageError(f"{path}: header only, no runs; add one row per run (n_params, n_tokens, loss)")
    n = values["n_params"]
    c = values.get("c_flops")
    d = values["n_tokens"] if "n_tokens" in values else [ci / (FLOPS_PER_PARAM_TOKEN * ni) for ci, ni in zip(c, n)]
    runs = Runs(np.array(n), np.array(d), np.array(values["loss"]),  # D = C / 6N above where only C is given
                np.array(c) if c else FLOPS_PER_PARAM_TOKEN * np.array(n) * np.array(d),
                source=path, lines=tuple(ln for ln, _ in lines[1:]))
    runs.validate()
    return runs


# ------------------------------------------------------------------------------------------ saved laws


def saved_law_path(name: str, directory: str | Path | None = None, *, replace: bool = False) -> Path:
    """Where a law saved as ``name`` goes; UsageError for a name that cannot be a file, ends in '.json' or is built
    in, and for a saved law of that name in any case unless ``replace`` (a law the user fitted is never overwritten
    unasked). Names are folded to lower case (`fold_law_name`), as lookups fold them: ``MyLaw`` is saved as
    ``mylaw.json``, and replaces a ``MyLaw.json`` saved before names were folded in its own file."""
    folder = Path(directory) if directory is not None else laws_dir()
    if name.lower().endswith(".json") and LAW_NAME_RE.match(name[:-5]):
        raise UsageError(f"--save names the law, not its file: give --save {name[:-5]} (it is written as "
                         f"{folder / fold_law_name(name[:-5])}.json)")
    if not LAW_NAME_RE.match(name):
        raise UsageError(f"law name {name!r} is not usable as a file name; use 1-64 letters, digits, '.', '_', '-' "
                         "starting with a letter or digit, e.g. --save mylaw")
    key = fold_law_name(name)
    if key in _all_builtin_names():
        raise UsageError(f"{name!r} is a built-in law; save yours under another name")
    existing = saved_law_file(folder, key)
    if existing is not None and not replace:
        raise UsageError(f"a saved law named {key!r} exists ({existing}); choose another name, or add --replace to "
                         "overwrite it")
    return check_writable_file(existing or folder / f"{key}.json", "law file")


def fold_law_name(name: str) -> str:
    """The name a law is saved and looked up under: law names are not case-sensitive (built-in or saved)."""
    return name.strip().lower()


def save_law(law: ScalingLaw, directory: str | Path | None = None, *, replace: bool = False) -> Path:
    """Write ``law`` as ``NAME.json`` atomically (temp file in the same folder, then os.replace).

    An existing saved law of that name is kept (UsageError) unless ``replace``; then it is replaced whole.
    """
    path = saved_law_path(law.name, directory, replace=replace)
    if law.name != fold_law_name(law.name):  # saved under the name it is looked up by
        from dataclasses import replace as with_fields

        law = with_fields(law, name=fold_law_name(law.name))
    return write_text_atomic(path, json.dumps(law_to_dict(law), indent=2) + "\n")


def load_law(path: str | Path) -> ScalingLaw:
    """The law saved in ``path``, named by the file's stem (``best.json`` is law 'best', whatever its "name" field
    says: a copied file answers to the name the user types for --law); every problem one UsageError beginning "law
    file PATH". A file named as a built-in law is refused: ``--law chinchilla`` always means the built-in, so the
    file could never be used and would be listed under the built-in's name."""
    path = Path(path)
    where = f"law file {path}"
    name = path.stem  # as the file spells it (a 'MyLaw.json' saved before names were folded is 'MyLaw')
    if not LAW_NAME_RE.match(name):  # a name --save refuses: one rule for the laws written and those read
        suggestion = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-._")[:64] or "mylaw"
        raise UsageError(f"{where}: {name!r} is not a law name (1-64 letters, digits, '.', '_', '-' starting with a "
                         f"letter or digit, as --save takes); rename the file, e.g. {suggestion}.json")
    if (key := fold_law_name(name)) in _all_builtin_names():
        raise UsageError(f"{where}: {key!r} is a built-in law's name, which --law {key} always means; rename the "
                         f"file (e.g. {key}-mine.json) to use it")
    try:
        d = parse_json(read_text(path, "law file"), str(path), "law file")
    except json.JSONDecodeError as e:
        raise UsageError(f"{where}: not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(d, dict):
        raise UsageError(f"{where}: not a flopscalc law file (expected a JSON object, found {type(d).__name__})")
    law = law_from_dict(d, where)
    if law.name != name:  # the "name" written when it was saved; the file has since been copied or renamed
        from dataclasses import replace as with_fields

        law = with_fields(law, name=name)
    return law


def read_saved_laws(directory: str | Path | None = None) -> tuple[list[ScalingLaw], list[str]]:
    """The usable saved laws, and one line per file that cannot be used (what is wrong, remove or rename it): one
    bad file in the folder does not hide the others (`flopscalc scaling laws`). A file is listed only where --law
    takes it: readable, named as --save names laws (`LAW_NAME_RE`), and not one of two names that differ only in
    case (one line for the pair). Using a bad law by name still refuses (`get_law`)."""
    from ..errors import FlopscalcError

    folder = Path(directory) if directory is not None else laws_dir()
    laws, problems, seen = [], [], set()
    for path in saved_law_files(folder):
        key = path.stem.lower()
        if key in seen:
            continue
        seen.add(key)
        try:
            saved_law_file(folder, key)  # two files differing only in case: --law refuses both, so neither is listed
        except FlopscalcError as e:
            problems.append(f"{e} (neither is listed)")
            continue
        try:
            laws.append(load_law(path))
        except FlopscalcError as e:
            problems.append(f"{e} (not listed: remove or rename the file)")
    return laws, problems
