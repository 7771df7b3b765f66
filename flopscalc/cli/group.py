"""The typer side of the command line: the top-level group, whose commands `flopscalc.cli.COMMANDS` names and
which it imports and builds only when they run, and the version option. `flopscalc.cli.run` imports this module
for every command line but a bare `--help`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import Annotated

import typer
from typer.core import TyperGroup

from . import COMMANDS, HELP, HELP_OPTIONS, VERSION_HELP, print_help
from .common import ListingGroup, parser_exception
from .output import write_stdout


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


class LazyGroup(ListingGroup):
    """typer's group, with the commands of `COMMANDS` imported and built on demand and its own top-level help."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.commands = _LazyCommands(self.commands)

    def list_commands(self, ctx) -> list[str]:
        return list(self.commands)

    def format_help(self, ctx, formatter) -> None:
        """typer's layout, drawn from the parameters and `COMMANDS` without building a command (`print_help`)."""
        options = [(",".join(o for o in p.opts if "--" in o), ",".join(o for o in p.opts if "--" not in o),
                    p.help or "") for p in self.get_params(ctx) if not getattr(p, "hidden", False)]
        names = self.list_commands(ctx)
        print_help(self.get_usage(ctx), self.help or "", options,
                   [(n, COMMANDS[n][1] if n in COMMANDS else self.commands[n].short_help or "") for n in names])


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
        from .. import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        write_stdout(f"flopscalc {_version()}\n")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, help=VERSION_HELP)] = False,
) -> None:
    """Compute-budget planner and FLOPs calculator for training GPT-style language models."""


def _parser_errors() -> type[Exception]:
    """The parser's usage-error base class: typer's own since typer vendored click (0.2x), click's before."""
    if hasattr(typer, "TyperException"):
        return typer.TyperException
    import click

    return click.ClickException


PARSER_ERRORS = _parser_errors()


# An unknown option's suggestions (house rule: a lookup suggests what is near, never unrelated names). click offers
# difflib's matches at its default cutoff 0.6 on the names *with* their '--', which counts the dashes as agreement:
# `plan --usd` was offered --hours, --n-gpus, --seq. Here a suggestion is an option that has every word typed as a
# whole word of its name (--usd: --budget-usd, --usd-per-gpu-hour, --usd-per-kwh), then a close spelling.
# Close: at most max(len, 3) // 3 edits (insert, delete, substitute, swap two neighbours) from the name typed, as
# rustc's find_best_match_for_name (rustc_span/src/edit_distance.rs); one edit covers most typing slips (Damerau
# 1964, CACM 7(3) p. 171: over 80% of misspellings are one such edit). difflib's ratio would miss the swap
# (--dyas: 0.75 to 'days') while passing --gpus -> --gpu-csv (0.73), so the edit count is used, not difflib.
MAX_SUGGESTED_OPTIONS = 5  # one readable line; as many as GpuTable's "did you mean"


def edit_distance(a: str, b: str) -> int:
    """Damerau's edit distance (optimal string alignment): insertions, deletions, substitutions, adjacent swaps."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[-1]


def suggest_options(typed: str, names: list[str]) -> list[str]:
    """The options of ``names`` (long, '--x-y') near ``typed``: those with every word of it, then close spellings."""
    word = typed.lstrip("-").lower()
    if not word or not typed.startswith("--"):  # a short option is one letter: nothing to compare
        return []
    words = set(word.split("-")) - {""}
    whole = [n for n in names if words <= set(n.lstrip("-").split("-"))]
    limit = max(len(word), 3) // 3  # rustc_span/src/edit_distance.rs, find_best_match_for_name
    close = sorted((d, n) for n in names if (d := edit_distance(word, n.lstrip("-"))) <= limit)
    return list(dict.fromkeys([*whole, *(n for _, n in close)]))[:MAX_SUGGESTED_OPTIONS]


def _long_options(ctx) -> list[str]:
    """The long option names a command's help shows, in its order (hidden options are not offered)."""
    return [o for p in ctx.command.get_params(ctx) if not getattr(p, "hidden", False)
            for o in (*p.opts, *getattr(p, "secondary_opts", ())) if o.startswith("--")]


def _ancestors(ctx) -> list:
    """The contexts of the groups above ``ctx`` (nearest first), the top-level one included."""
    found = []
    while ctx.parent is not None:
        ctx = ctx.parent
        found.append(ctx)
    return found


# Groups whose options belong to the group's own run and that refuse them before a subcommand (cli/train.py: 'train'
# trains; 'train prepare' writes token files and takes none of its options), so "give it before the subcommand" is no
# advice there.
GROUP_OPTIONS_WITHOUT_SUBCOMMAND = frozenset({"train"})  # command paths below the program name


def parser_error_line(e: Exception) -> str:
    """The one line for a parser's usage error; an unknown option names the options near it, else the help."""
    if isinstance(e, parser_exception("NoSuchOption")) and e.ctx is not None:
        argument = next((p for p in e.ctx.command.get_params(e.ctx) if p.param_type_name == "argument"
                         and p.name == e.option_name.lstrip("-").replace("-", "_")), None)
        if argument is not None:  # `train prepare --out DIR`: the command takes it as its argument
            name = argument.name.upper()
            return (f"{e.option_name} is not an option of '{e.ctx.command_path}': give {name} as its argument, "
                    f"without {e.option_name} ({e.ctx.command_path} {name} ...)")
        owner = next((c for c in _ancestors(e.ctx) if e.option_name in _long_options(c)), None)
        if owner is not None and owner.command_path.partition(" ")[2] in GROUP_OPTIONS_WITHOUT_SUBCOMMAND:
            return (f"{e.option_name} is an option of '{owner.command_path}' itself, which "
                    f"'{e.ctx.command_path}' does not take (see '{e.ctx.command_path} -h')")
        if owner is not None:  # `gpus show 4090 --gpu-csv F`: the group's option, typed after its subcommand
            sub = next(c for c in [e.ctx, *_ancestors(e.ctx)] if c.parent is owner).info_name
            return (f"{e.option_name} is an option of '{owner.command_path}', not of '{e.ctx.command_path}': give it "
                    f"before '{sub}' ({owner.command_path} {e.option_name} ... {sub} ...)")
        found = suggest_options(e.option_name, _long_options(e.ctx))
        where = f"'{e.ctx.command_path} --help' lists the options"
        if found:
            listed = ", ".join(found[:-1]) + " or " + found[-1] if len(found) > 1 else found[0]
            return f"{e.message}; did you mean {listed}? ({where})"
        return f"{e.message}; no option is close to it: {where}"
    param = getattr(e, "param", None)
    if isinstance(e, parser_exception("MissingParameter")) and e.ctx is not None and getattr(param, "help", None):
        # click's bare "Missing option '--context'." says neither what to give nor how: its help says both
        what = " ".join(param.help.split()).rstrip(".")
        what = what[:1].lower() + what[1:] if what[1:2].islower() else what  # "Prompt tokens" -> "prompt", "GPU" kept
        return (f"{' '.join(e.format_message().split()).rstrip('.')}: {what} "
                f"(see '{e.ctx.command_path} --help')")
    return " ".join(e.format_message().split()) or "say which command to run; they are listed above"
