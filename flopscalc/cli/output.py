"""How a command's answer reaches standard output: the console (its width, piped or not), the JSON-or-table emitter
with its one-line failure, notes after a report, and the stderr progress bar."""

from __future__ import annotations

import os
import sys

# Narrowest layout for piped output: the width rich itself falls back to without a terminal.
PIPED_MIN_WIDTH = 80
# Width at which a renderable is measured for its natural (unwrapped) width; wider than any real table.
MEASURE_WIDTH = 100_000
# How reports are printed: lines as long as the layout makes them (no soft wrap); no ":name:" emoji codes (no report
# writes one, and looking for them costs rich a regular expression per cell and a 3,600-entry table at import);
# no automatic highlighting of numbers and quotes in plain strings (reports style what they mean to).
CONSOLE_SETTINGS = {"soft_wrap": False, "emoji": False, "highlight": False}


def stdout_console(renderable=None):
    """A rich Console for stdout: the terminal's width on a terminal; piped, a layout that never cuts a cell.

    Piped (stdout not a terminal) and with no COLUMNS in the environment, the width is the renderable's natural
    width (at least `PIPED_MIN_WIDTH`), so tables print whole instead of wrapping at 80 columns and ending cells
    in '…'. Table columns fold instead of cutting in any case when piped, so a COLUMNS set narrower wraps a long
    word onto the next line rather than dropping its end; a column that never wraps (numbers) still ends a cut cell
    in '…' (`_fold_tables`).
    """
    from rich.console import Console

    console = Console(**CONSOLE_SETTINGS)
    if console.is_terminal or renderable is None:
        return console
    _fold_tables(renderable)
    if "COLUMNS" in os.environ:  # the caller chose a width: honour it
        return console
    natural = Console(width=MEASURE_WIDTH, **CONSOLE_SETTINGS).measure(renderable).maximum
    return Console(width=max(PIPED_MIN_WIDTH, natural), **CONSOLE_SETTINGS)


def stdout_width() -> int | None:
    """The columns `stdout_console` lays a report out in: the terminal's, or COLUMNS when set; None when piped
    without COLUMNS (a report then prints at its natural width)."""
    from rich.console import Console

    console = Console(**CONSOLE_SETTINGS)
    return console.width if console.is_terminal or "COLUMNS" in os.environ else None


def _fold_tables(renderable) -> None:
    """Set every wrapping table column in ``renderable`` (a Group, a Table, nested) to fold long words, never cut
    them. A column that never wraps (no_wrap: numbers) keeps its '…': folding cannot apply there, and a cut would be
    silent ('0.4' printed for 0.46)."""
    from rich.console import Group
    from rich.table import Table

    if isinstance(renderable, Table):
        for column in renderable.columns:
            if not column.no_wrap:
                column.overflow = "fold"
    elif isinstance(renderable, Group):
        for part in renderable.renderables:
            _fold_tables(part)


def with_notes(renderable, data: dict, notes) -> tuple:
    """(renderable, data) with ``notes`` (a sequence of lines, None skipped) printed after the report and listed
    under "notes" in the JSON."""
    from rich.console import Group
    from rich.text import Text

    notes = [n for n in notes if n]
    if not notes:
        return renderable, data
    return Group(renderable, *(Text(f"note: {n}") for n in notes)), {**data, "notes": notes}


def with_warnings(renderable, data: dict, warnings) -> tuple:
    """(renderable, data) with ``warnings`` (lines, None skipped) printed after the report as "warning: ..." and
    listed under "warnings" in the JSON, as `plan`, `infer` and `finetune` list theirs."""
    from rich.console import Group
    from rich.text import Text

    warnings = [w for w in warnings if w]
    if not warnings:
        return renderable, data
    return (Group(renderable, *(Text(f"warning: {w}") for w in warnings)),
            {**data, "warnings": [*data.get("warnings", ()), *warnings]})


def emit(renderable, data: dict, as_json: bool) -> None:
    """Print ``renderable``, or ``data`` as JSON; a stdout that cannot take it (a full disk: ENOSPC, an I/O error) is
    a `DomainError` of one line. A closed pipe (`BrokenPipeError`) is left to `cli.run`."""
    _refuse_closed_stdout()
    try:
        if as_json:
            from ..jsonsafe import dumps  # here: the tables need no JSON encoder (start-up, issue 18)

            # inf/nan as null (RFC 8259 has no Infinity); a report whose value is infinite says why beside it
            sys.stdout.write(dumps(data, indent=2, default=str) + "\n")
        else:
            from ..report.plain import plain_tables

            console = stdout_console(renderable)
            console.print(plain_tables(renderable, console))  # tables drawn faster when no colour is printed
        sys.stdout.flush()  # a write that fails fails here, not in the interpreter's flush at exit
    except BrokenPipeError:
        raise
    except OSError as e:
        raise _stdout_failed(e) from None


def write_stdout(text: str) -> None:
    """Write ``text`` to stdout as it is (`plan --csv`, the path a plot was saved to), failing as `emit` does: one
    line, not a traceback, when stdout cannot take it."""
    _refuse_closed_stdout()
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        raise _stdout_failed(e) from None


def _stdout_failed(e: OSError) -> Exception:
    """The `DomainError` for a stdout that cannot be written, with stdout dropped (`_drop_stdout`)."""
    _drop_stdout()
    from ..errors import DomainError

    return DomainError(f"cannot write the output to standard output: {e.strerror or e}; free space where it goes, "
                       "or send it elsewhere (> FILE)")


def _refuse_closed_stdout() -> None:
    """`DomainError` (`cli.STDOUT_CLOSED`) when the process started with standard output closed (sys.stdout None)."""
    if sys.stdout is None:
        from ..errors import DomainError
        from . import STDOUT_CLOSED

        raise DomainError(STDOUT_CLOSED)


def _drop_stdout() -> None:
    """Point the process's stdout at the null device, so the bytes still buffered for it are not written again (and
    do not fail again, with a traceback) when the interpreter flushes stdout at exit. Nothing to do for a stdout
    without a file descriptor (a test's capture)."""
    import io

    try:
        fd = sys.stdout.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, io.UnsupportedOperation):
        return
    os.dup2(null, fd)
    os.close(null)


class StderrProgress:
    """A rich progress bar on stderr as a ``callback(done, total)`` context; None when stderr is not a terminal.

    ``with StderrProgress("fitting", enabled) as callback: work(callback=callback)``. The bar is transient: it
    is gone when the work ends, so stdout and a log of stderr hold only results.
    """

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.label = label
        self.enabled = bool(enabled)
        self.bar = None

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.console import Console

        console = Console(stderr=True)
        if not console.is_terminal:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=console, transient=True)
        self.bar.start()
        task = self.bar.add_task(self.label, total=None)

        def callback(done: int, total: int, label: str | None = None) -> None:
            self.bar.update(task, completed=done, total=total, **({"description": label} if label else {}))

        return callback

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
