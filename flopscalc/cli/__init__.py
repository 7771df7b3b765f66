"""Command-line face: the table of commands, the top-level help, and `run`, the one place that turns errors into
exit codes. No arithmetic here.

Start-up is part of the product (issue 18). This module imports the standard library, flopscalc.errors and
flopscalc._lazy only; `flopscalc --help` adds rich and nothing else, and every other command line adds typer and
`cli.group`, which imports a command's module, and builds its parser, only when that command runs: `flopscalc plan`
builds `plan` alone (tests/test_cli_startup.py holds all of this).
"""

from __future__ import annotations

import sys

from .._lazy import lazy_exports
from ..errors import DomainError, FlopscalcError, UsageError

HELP = "Compute-budget planner and FLOPs calculator for training GPT-style language models."
VERSION_HELP = "Print the version and exit."
HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}
# Said when standard output is closed (`flopscalc gpus >&-`: Python starts with sys.stdout None). Every command and
# help page answers on standard output, so nothing would reach the user: refused before any work (`run`), and by
# `output.emit` / `output.write_stdout` for a library caller, with exit 1 as for a stdout that fails mid-write.
STDOUT_CLOSED = ("cannot write the output to standard output: it is closed; run with standard output open, or send "
                 "it elsewhere (> FILE, or > /dev/null to discard it)")
# What `flopscalc --help` shows without importing typer, as typer shows the top-level group (the test compares).
USAGE = "Usage: flopscalc [OPTIONS] COMMAND [ARGS]..."
TOP_OPTIONS = (("--version", "", VERSION_HELP), ("--help", "-h", "Show this message and exit."))

# The top-level commands, in the order `flopscalc --help` lists them: name -> (module, the line --help shows).
# To add a command: write a module with `register(app)` that adds it (`app.command("name")(fn)`, or
# `app.add_typer(sub_app, name="name")` for a group), keep heavy imports inside the command function, and add one
# line here. tests/test_cli_startup.py checks that every line builds, that its help is the command's own first
# docstring paragraph, and that no module registers a command missing from this table.
COMMANDS: dict[str, tuple[str, str]] = {
    "plan": ("flopscalc.cli.plan", ("The best training run for a budget: model, tokens, setup that fits, time, loss, "
                                    "energy and cost.")),
    "flops": ("flopscalc.cli.flops", ("FLOPs of training a model on N tokens: per component, per token/step/run, in "
                                      "every convention.")),
    "models": ("flopscalc.cli.catalog", ("The model presets with their exact total and active parameter counts and "
                                         "sources.")),
    "memory": ("flopscalc.cli.memory", ("Training memory per GPU: what fills it, whether it fits, the largest "
                                        "micro-batch, what would make it fit.")),
    "bench": ("flopscalc.cli.bench", ("Time training steps (after warm-up, device-synchronised): tokens/s, achieved "
                                      "FLOP/s, MFU, memory.")),
    "calibrate": ("flopscalc.cli.bench", ("Time a sweep (on a CPU by default 7 small shapes), fit the step-time "
                                          "model's device factors and write the profile that 'step --calibration' "
                                          "and 'plan --calibration' read.")),
    "runs": ("flopscalc.cli.runs", ("Published runs (llm.c, OPT, BLOOM, PaLM, Llama...): wall clock predicted vs "
                                    "reported.")),
    "step": ("flopscalc.cli.step", "Predicted time of one optimizer step by operation class, tokens/s, MFU and HFU."),
    "infer": ("flopscalc.cli.infer", ("Prefill and decode time, tokens/s, KV cache and memory, the largest batch and "
                                      "context, and cost per token.")),
    "finetune": ("flopscalc.cli.finetune", ("Fine-tuning plan: whether full / LoRA / QLoRA fits, the breakdown, the "
                                            "largest batch and sequence, the time.")),
    "gpus": ("flopscalc.cli.catalog", "The GPU database: list every GPU, or show one with its sources."),
    "scaling": ("flopscalc.cli.scaling", ("Scaling laws: list them, allocate a FLOP budget, predict loss, fit your "
                                          "runs.")),
    "plot": ("flopscalc.cli.plot", ("Charts: compute-optimal frontier, IsoFLOP curves, loss landscape, memory, "
                                    "calibration.")),
    "train": ("flopscalc.cli.train", ("Train the reference model (GPT-2 or a dense Llama-style block) on token "
                                      "files (or synthetic tokens); 'prepare' makes them.")),
}



def print_help(usage: str, description: str, options, commands) -> None:
    """typer's rich help layout (usage, description, Options and Commands panels) on stdout.

    ``options``: (long, short, help) per option; ``commands``: (name, one-line help) per command. typer's own
    renderer would import rich.markdown and rich.traceback (about 0.7x `import numpy` by themselves) and build
    every command for its one line.
    """
    import os

    from rich.console import Console
    from rich.padding import Padding
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    width = os.environ.get("TERMINAL_WIDTH")  # typer's own environment settings for its help console
    force = True if os.environ.get("GITHUB_ACTIONS") or os.environ.get("FORCE_COLOR") or os.environ.get(
        "PY_COLORS") else None
    console = Console(width=int(width) if width else None,
                      force_terminal=False if os.environ.get("_TYPER_FORCE_DISABLE_TERMINAL") else force)
    console.print(Padding(Text(usage), 1), style="bold")
    if description:
        console.print(Padding(Text(description), (0, 1, 1, 1)))

    def table() -> Table:
        return Table(highlight=False, show_header=False, expand=True, box=None, pad_edge=False, padding=(0, 1))

    def panel(title: str, rows: Table) -> None:
        if rows.row_count:
            console.print(Panel(rows, border_style="dim", title=title, title_align="left"))

    option_rows = table()  # typer's columns: long, short, negative long, negative short, type, help
    for ratio in (None, None, None, None, None, 1):
        option_rows.add_column(ratio=ratio)
    for long, short, text in options:
        option_rows.add_row(Text(long, style="bold cyan"), Text(short, style="bold green"), Text(), Text(), Text(),
                            Text(text))
    panel("Options", option_rows)
    command_rows = table()
    command_rows.add_column(style="bold cyan", no_wrap=True, width=max((len(n) for n, _ in commands), default=0))
    command_rows.add_column(no_wrap=False, ratio=10)
    for name, text in commands:
        command_rows.add_row(name, text)
    panel("Commands", command_rows)


# `app` (the typer app), `LazyGroup` and `build_command` come from `cli.group`, imported on first use (PEP 562).
_EXPORTS = dict.fromkeys(("app", "LazyGroup", "build_command"), "group")
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code: 0 ok, 1 domain error, 2 usage error (one line on stderr)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if sys.stdout is None:  # before the parser: a help page or --version would go nowhere, and exit 0 (click's echo)
        return _fail(STDOUT_CLOSED, 1)
    if args in (["--help"], ["-h"]):  # the top-level help needs no parser
        try:
            print_help(USAGE, HELP, TOP_OPTIONS, [(name, text) for name, (_, text) in COMMANDS.items()])
            sys.stdout.write("\n")  # as click's help echo ends
            sys.stdout.flush()  # a write that fails fails here, not in the interpreter's flush at exit
        except BrokenPipeError:
            return _pipe_closed()
        except OSError as e:
            return _stdout_failed(e)
        return 0
    import typer

    from .group import PARSER_ERRORS, app

    command = typer.main.get_command(app)
    if not {"-h", "--help"} & set(args):
        from .common import conflicting_options

        conflict = conflicting_options(command, args)
        if conflict is not None:
            return _fail(conflict, 2)
    try:
        result = command.main(args=argv, prog_name="flopscalc", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except UsageError as e:
        return _fail(str(e), 2)
    except DomainError as e:
        return _fail(str(e), 1)
    except FlopscalcError as e:  # pragma: no cover - every error is one of the two above
        return _fail(str(e), 1)
    except PARSER_ERRORS as e:  # the parser's own usage errors (unknown option, bad choice, ...)
        from .group import parser_error_line

        return _fail(parser_error_line(e), getattr(e, "exit_code", 2))
    except typer.Abort:
        return _fail("aborted", 130)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        return _pipe_closed()
    except OSError as e:  # a help page that could not be written (reports go through `output.emit`, which says so)
        if {"-h", "--help"} & set(args):
            return _stdout_failed(e)
        raise


def _pipe_closed() -> int:
    """Exit 1 and quietly when the reader of stdout went away (`flopscalc --help | head -3`): nothing is left to tell
    it, and the bytes still buffered are dropped so the interpreter's flush at exit does not fail again."""
    from .output import _drop_stdout

    _drop_stdout()
    return 1


def _stdout_failed(e: OSError) -> int:
    """One line for standard output that cannot be written (a full disk, /dev/full), as `output.emit` says it."""
    from .output import _drop_stdout

    _drop_stdout()
    return _fail(f"cannot write the output to standard output: {e.strerror or e}; free space where it goes, or send "
                 "it elsewhere (> FILE)", 1)


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"flopscalc: error: {message}\n")
    return code


# The CLI process's garbage collector (start-up, issue 18). A command allocates tens of thousands of objects and
# leaves almost none in reference cycles, yet CPython's defaults (gc.get_threshold() == (700, 10, 10)) collect the
# youngest generation every 700 net allocations (`plan --gpu 4070ti --days 365`: 71 collections, ~8 ms) and, at
# exit, run full collections over every object still alive (~18 ms), which free nothing the operating system would
# not. Measured interleaved against `import numpy` (15-21 rounds, cached bytecode): that plan 2.29-2.43x with the
# defaults, 2.02x with the objects frozen at exit, 1.92-2.04x with this threshold too. So the `flopscalc` process
# collects after GC_GEN0_THRESHOLD net allocations (cyclic garbage stays bounded in long commands: train, fit), and
# once the command has returned freezes what is alive (`gc.freeze`: moved out of the generations the exit's
# collections traverse); atexit handlers, the flushing of stdout and stderr and module teardown run as usual.
# `run` (tests, library callers) leaves the collector as it finds it.
GC_GEN0_THRESHOLD = 100_000


def main() -> None:
    """The `flopscalc` console script (and `python -m flopscalc`): `run` with the process's collector tuned."""
    import gc

    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])
    code = run()
    gc.freeze()  # after the command, so nothing it still needs is skipped; see GC_GEN0_THRESHOLD
    sys.exit(code)
