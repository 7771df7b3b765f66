"""Each command-line option is declared once: commands that offer the same option (same flags, same help) share
one declaration from `flopscalc.cli.common` (or their module), so its help cannot drift between commands.

Walks the real app (`flopscalc.cli.group.app`, every command built) and reads the typer declaration behind each
click option from the command function's annotations.
"""

from __future__ import annotations

import collections
import typing

import typer

from flopscalc.cli.group import app


def _declarations():
    """(flags, help) -> {id of the typer OptionInfo declaring it: [command:parameter, ...]}."""
    found = collections.defaultdict(lambda: collections.defaultdict(list))

    def walk(command, path):
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, (*path, name))
        if command.callback is None:
            return
        hints = typing.get_type_hints(getattr(command.callback, "__wrapped__", command.callback), include_extras=True)
        for param in command.params:
            if type(param).__name__ != "TyperOption" or param.name not in hints:
                continue
            info = next(m for m in getattr(hints[param.name], "__metadata__", ()) if hasattr(m, "param_decls"))
            key = (tuple(sorted(param.opts + param.secondary_opts)), param.help)
            found[key][id(info)].append(f"{' '.join(path)}:{param.name}")

    walk(typer.main.get_command(app), ())
    return found


def test_an_option_offered_by_several_commands_is_declared_once():
    found = _declarations()
    shared = {key: decls for key, decls in found.items() if sum(map(len, decls.values())) > 1}
    assert len(shared) >= 20  # --json, the shape and architecture options, --gpu, --recompute, --zero, ...
    repeated = {key[0]: list(decls.values()) for key, decls in shared.items() if len(decls) > 1}
    assert not repeated, f"declared more than once (define it once in flopscalc/cli/common.py): {repeated}"
