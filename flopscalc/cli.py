"""Command-line face: the app, its commands (each imported and built only when it runs), and `run`, the one place
that turns errors into exit codes. No arithmetic here.

Start-up is part of the product (issue 18): this module imports the standard library, typer and flopscalc.errors
only. A command's module is imported, and its parser built, when that command runs, so `flopscalc plan` builds
`plan` alone and `flopscalc --help` imports no command module at all (tests/test_cli_startup.py holds both).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, MutableMapping
from typing import Annotated

import typer
from typer.core import TyperGroup

from .errors import DomainError, FlopscalcError, UsageError

HELP = "Compute-budget planner and FLOPs calculator for training GPT-style language models."
HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}

# The top-level commands, in the order `flopscalc --help` lists them: name -> (module, the line --help shows).
# To add a command: write a module with `register(app)` that adds it (`app.command("name")(fn)`, or
# `app.add_typer(sub_app, name="name")` for a group), keep heavy imports inside the command function, and add one
# line here. tests/test_cli_startup.py checks that every line builds, that its help is the command's own first
# docstring paragraph, and that no module registers a command missing from this table.
COMMANDS: dict[str, tuple[str, str]] = {
    "plan": ("flopscalc.cli_plan", ("The best training run for a budget: model, tokens, setup that fits, time, loss, "
                                    "energy and cost.")),
    "flops": ("flopscalc.cli_flops", ("FLOPs of training a model on N tokens: per component, per token/step/run, in "
                                      "every convention.")),
    "models": ("flopscalc.cli_catalog", ("The model presets with their exact total and active parameter counts and "
                                         "sources.")),
    "memory": ("flopscalc.cli_memory", ("Training memory per GPU: what fills it, whether it fits, the largest "
                                        "micro-batch, what would make it fit.")),
    "bench": ("flopscalc.cli_train", ("Time training steps (after warm-up, device-synchronised): tokens/s, achieved "
                                      "FLOP/s, MFU, memory.")),
    "calibrate": ("flopscalc.cli_train", ("Time a sweep (on a CPU by default 7 small shapes), fit the step-time "
                                          "model's device factors and write the profile that 'step --calibration' "
                                          "and 'plan --calibration' read.")),
    "runs": ("flopscalc.cli_runs", ("Published runs (llm.c, OPT, BLOOM, PaLM, Llama...): wall clock predicted vs "
                                    "reported.")),
    "step": ("flopscalc.cli_step", "Predicted time of one optimizer step by operation class, tokens/s, MFU and HFU."),
    "infer": ("flopscalc.cli_infer", ("Prefill and decode time, tokens/s, KV cache and memory, the largest batch and "
                                      "context, and cost per token.")),
    "finetune": ("flopscalc.cli_finetune", ("Fine-tuning plan: whether full / LoRA / QLoRA fits, the breakdown, the "
                                            "largest batch and sequence, the time.")),
    "gpus": ("flopscalc.cli_catalog", "The GPU database: list every GPU, or show one with its sources."),
    "scaling": ("flopscalc.cli_scaling", ("Scaling laws: list them, allocate a FLOP budget, predict loss, fit your "
                                          "runs.")),
    "plot": ("flopscalc.cli_plot", ("Charts: compute-optimal frontier, IsoFLOP curves, loss landscape, memory, "
                                    "calibration.")),
    "train": ("flopscalc.cli_train", ("Train the reference GPT-2 on token files (or synthetic tokens); 'prepare' "
                                      "makes them.")),
}


def build_command(name: str, module_name: str) -> typer.core.TyperCommand | TyperGroup:
    """The parser of one top-level command: import its module, let it register, build only ``name``."""
    holder = typer.Typer()
    importlib.import_module(module_name).register(holder)
    holder.registered_commands = [c for c in holder.registered_commands
                                  if (c.name or typer.main.get_command_name(c.callback.__name__)) == name]
    holder.registered_groups = [g for g in holder.registered_groups if g.name == name]
    command = typer.main.get_group(holder).commands.get(name)
    if command is None:
        raise LookupError(f"{module_name}.register adds no command {name!r} (see flopscalc.cli.COMMANDS)")
    return command


class _LazyCommands(MutableMapping):
    """The top-level commands by name; each is built from `COMMANDS` on first use and then kept.

    Membership, iteration and ``keys()`` build nothing, so the parser's lookups and its "did you mean" suggestions
    stay cheap; ``items()`` and ``values()`` build every command (tests walk the whole tree that way).
    """

    def __init__(self, built: dict) -> None:
        self._built = dict(built)  # commands registered on `app` itself, built by typer as usual

    def __getitem__(self, name: str):
        if name not in self._built:
            if name not in COMMANDS:
                raise KeyError(name)
            self._built[name] = build_command(name, COMMANDS[name][0])
        return self._built[name]

    def __contains__(self, name: object) -> bool:
        return name in COMMANDS or name in self._built

    def __iter__(self) -> Iterator[str]:
        yield from COMMANDS
        yield from (name for name in self._built if name not in COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS.keys() | self._built.keys())

    def __setitem__(self, name: str, command) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:  # pragma: no cover - click never removes a command
        raise TypeError("flopscalc's commands are fixed by flopscalc.cli.COMMANDS")


class LazyGroup(TyperGroup):
    """typer's group, with the commands of `COMMANDS` imported and built on demand and its own top-level help."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.commands = _LazyCommands(self.commands)

    def list_commands(self, ctx) -> list[str]:
        return list(self.commands)

    def format_help(self, ctx, formatter) -> None:
        _print_help(self, ctx)


def _print_help(group: TyperGroup, ctx) -> None:
    """typer's rich layout of a group's help (usage, description, Options and Commands panels), drawn from the
    parameters and `COMMANDS` alone: typer's own renderer imports rich.markdown and rich.traceback (about 0.7x
    `import numpy` by themselves) and would build every command for its one-line help."""
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
    console.print(Padding(Text(group.get_usage(ctx)), 1), style="bold")
    if group.help:
        console.print(Padding(Text(group.help), (0, 1, 1, 1)))

    def panel(title: str, table: Table) -> None:
        console.print(Panel(table, border_style="dim", title=title, title_align="left"))

    def table() -> Table:
        return Table(highlight=False, show_header=False, expand=True, box=None, pad_edge=False, padding=(0, 1))

    options = table()  # typer's columns: long, short, negative long, negative short, type, help
    for ratio in (None, None, None, None, None, 1):
        options.add_column(ratio=ratio)
    for p in group.get_params(ctx):
        if not getattr(p, "hidden", False):
            options.add_row(Text(",".join(o for o in p.opts if "--" in o), style="bold cyan"),
                            Text(",".join(o for o in p.opts if "--" not in o), style="bold green"), Text(), Text(), Text(),
                            Text(p.help or ""))
    if options.row_count:
        panel("Options", options)
    names = group.list_commands(ctx)
    commands = table()
    commands.add_column(style="bold cyan", no_wrap=True, width=max(map(len, names), default=0))
    commands.add_column(no_wrap=False, ratio=10)
    for name in names:
        commands.add_row(name, COMMANDS[name][1] if name in COMMANDS else group.commands[name].short_help or "")
    if commands.row_count:
        panel("Commands", commands)


app = typer.Typer(
    name="flopscalc",
    help=HELP,
    cls=LazyGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings=HELP_OPTIONS,  # subcommands inherit it: `flopscalc plan -h` works too
)


def _version() -> str:
    """The installed distribution's version (importlib.metadata), else the package's own."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flopscalc")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from . import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"flopscalc {_version()}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Compute-budget planner and FLOPs calculator for training GPT-style language models."""


def _parser_errors() -> type[Exception]:
    """The parser's usage-error base class: typer's own since typer vendored click (0.2x), click's before."""
    if hasattr(typer, "TyperException"):
        return typer.TyperException
    import click

    return click.ClickException


_PARSER_ERRORS = _parser_errors()


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code: 0 ok, 1 domain error, 2 usage error (one line on stderr)."""
    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else list(argv)
    if not {"-h", "--help"} & set(args):
        from .cli_common import conflicting_options

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
    except _PARSER_ERRORS as e:  # the parser's own usage errors (unknown option, bad choice, ...)
        message = " ".join(e.format_message().split()) or "say which command to run; they are listed above"
        return _fail(message, getattr(e, "exit_code", 2))
    except typer.Abort:
        return _fail("aborted", 130)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        return 1


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"flopscalc: error: {message}\n")
    return code


def main() -> None:
    sys.exit(run())
