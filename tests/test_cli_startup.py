"""Start-up (issue 18, item 2): what each command imports and builds, and that the lazy command table is the app.

`flopscalc.cli.COMMANDS` names each top-level command's module and its one-line help; the module is imported and
the command's parser built only when the command runs. These tests hold the table to the modules' own
registrations and docstrings, hold `--help` to what typer itself prints for the fully built app, and check in a
fresh interpreter (sys.modules) which modules each kind of command pulls in. Timings live in
benchmarks/bench_startup.py, not here.
"""

from __future__ import annotations

import importlib
import inspect

import pytest
import typer

from flopscalc.cli import COMMANDS, app, run
from tests.fresh_interpreter import ROOT, json_after

HEAVY = ("numpy", "pandas", "scipy", "matplotlib", "torch")


def _loaded_after(argv: list[str]) -> dict:
    """Exit code, top-level packages, every module and the flopscalc modules in sys.modules after `flopscalc ARGV`
    in a fresh interpreter."""
    after = json_after("from flopscalc.cli import run", f"code = run({argv!r})",
                       "{'code': code, 'all': sorted(sys.modules), 'stdlib': sorted(sys.stdlib_module_names)}")
    mods = after["all"]
    return {**after, "top": sorted({m.split(".")[0] for m in mods}),
            "flopscalc": [m for m in mods if m.startswith("flopscalc")]}


def _typer_help_text(command) -> str:
    """The first paragraph of a command's help, as typer's own group help shows it (rich_utils._make_command_help)."""
    return inspect.cleandoc(command.short_help or command.help or "").split("\n\n")[0].replace("\n", " ").strip()


def _eager_app() -> typer.Typer:
    """The app built the way it was before the lazy table: every module registered up front on a plain group."""
    from flopscalc.cli import HELP, HELP_OPTIONS
    from flopscalc.cli.group import _main

    eager = typer.Typer(name="flopscalc", help=HELP, no_args_is_help=True, add_completion=False,
                        pretty_exceptions_enable=False, context_settings=HELP_OPTIONS)
    eager.callback()(_main)
    for module in dict.fromkeys(module for module, _ in COMMANDS.values()):
        importlib.import_module(module).register(eager)
    return eager


# ------------------------------------------------------------------------------------------ the command table


def test_every_line_of_the_table_builds_its_command_with_that_help():
    group = typer.main.get_command(app)
    assert list(group.list_commands(None)) == list(COMMANDS)
    for name, (_, help_line) in COMMANDS.items():
        command = group.commands[name]
        assert command.name == name
        assert help_line == _typer_help_text(command), (
            f"update COMMANDS[{name!r}] in flopscalc/cli/__init__.py to the command's own help: {_typer_help_text(command)!r}")


def test_no_module_registers_a_command_the_table_does_not_list():
    for module in dict.fromkeys(module for module, _ in COMMANDS.values()):
        holder = typer.Typer()
        importlib.import_module(module).register(holder)
        registered = {c.name or typer.main.get_command_name(c.callback.__name__) for c in holder.registered_commands}
        registered |= {g.name for g in holder.registered_groups}
        assert registered, module
        for name in registered:
            assert COMMANDS.get(name, (None,))[0] == module, (module, name)


def test_every_command_module_is_in_the_table():
    """A face module with `register` but no line in COMMANDS would add commands nobody can run."""
    modules = {module for module, _ in COMMANDS.values()}
    registering = set()
    for path in sorted((ROOT / "flopscalc" / "cli").glob("*.py")):  # the faces' folder since commit 684e2e3
        name = f"flopscalc.cli.{path.stem}"
        if callable(getattr(importlib.import_module(name), "register", None)):
            assert name in modules, f"{name} has register() but no line in flopscalc.cli.COMMANDS"
            registering.add(name)
    assert registering == modules  # and the scan found every module the table names


def test_the_lazy_app_is_the_eager_app_command_by_command():
    """Same tree, same parameters, same help for every command and subcommand as building everything up front."""
    def tree(command, path=()):
        yield path, [(p.name, tuple(p.opts), tuple(p.secondary_opts), p.required, repr(p.default))
                     for p in command.params], command.help
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from tree(sub, (*path, name))

    lazy = {path: rest for path, *rest in tree(typer.main.get_command(app))}
    eager = {path: rest for path, *rest in tree(typer.main.get_command(_eager_app()))}
    assert lazy.keys() == eager.keys() and len(lazy) > len(COMMANDS)
    for path, expected in eager.items():
        assert lazy[path] == expected, path


def test_top_level_help_is_what_typer_prints_for_the_fully_built_app(capsys, monkeypatch):
    """The top-level help is drawn from the table without importing any command; typer's own renderer, given every
    command built, must print the same text."""
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.delenv("TERMINAL_WIDTH", raising=False)
    eager = typer.main.get_command(_eager_app())
    eager.commands = {name: eager.commands[name] for name in COMMANDS}  # the table's order
    for command in eager.commands.values():  # the table's one line each (typer would keep a hard line break)
        command.short_help = _typer_help_text(command)
    assert run(["--help"]) == 0
    ours = capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:  # typer's standalone path: help, then exit 0
        eager.main(["--help"], prog_name="flopscalc")
    assert exit_.value.code == 0
    typers = capsys.readouterr()
    assert ours.err == typers.err == ""
    assert "Commands" in ours.out and all(name in ours.out for name in COMMANDS)
    assert ours.out == typers.out


# ------------------------------------------------------------------------------ what each command imports


def test_help_imports_only_the_standard_library_and_rich():
    loaded = _loaded_after(["--help"])
    assert loaded["code"] == 0
    outside = {m for m in loaded["top"] if m not in loaded["stdlib"]}
    interpreter = {"__main__", "_distutils_hack", "sitecustomize", "usercustomize"}
    assert outside - interpreter == {"flopscalc", "rich"}, outside
    assert loaded["flopscalc"] == ["flopscalc", "flopscalc._lazy", "flopscalc.cli", "flopscalc.errors"]


def test_every_other_command_line_goes_through_typer():
    """Only a bare --help skips the parser: `--help` after anything else is typer's (with its usual suggestions)."""
    loaded = _loaded_after(["--version"])
    assert "typer" in loaded["top"] and "flopscalc.cli.group" in loaded["flopscalc"]


def test_no_command_prints_the_same_help_through_typer(capsys):
    """`flopscalc` alone reaches the help through typer's group (no_args_is_help) and prints what --help prints."""
    assert run(["--help"]) == 0
    fast = capsys.readouterr().out
    assert run([]) == 2
    out, err = capsys.readouterr()
    assert out == fast[:-1] and "say which command to run" in err  # less the blank line click's help echo adds


@pytest.mark.parametrize("argv", [
    ["models"], ["--version"], ["gpus"], ["gpus", "show", "h100"], ["plan", "--gpu", "4070ti", "--days", "365"],
    ["plan", "--gpu", "4070ti", "--days", "365", "--json"], ["plan", "--gpu", "h100", "--n-gpus", "64", "--days", "30"],
    ["flops", "--model", "gpt2-xl", "--tokens", "300B"],
])
def test_one_answer_commands_import_no_numerical_library(argv):
    """Numbers in, numbers out: the engines compute them in floats (`flopscalc.scalar`), so not even numpy loads
    (about half of `python -c "import numpy"` by itself; issue 18, item 2). The 64-GPU plan runs the layout search."""
    loaded = _loaded_after(argv)
    assert loaded["code"] == 0
    assert not set(HEAVY) & set(loaded["top"]), set(HEAVY) & set(loaded["top"])


def test_gpus_reads_the_database_without_the_engines():
    """The listing needs the rows and the renderer: not the FLOPs engine (report.common imports it where FLOPs are
    shown), and not importlib.resources (the packaged CSV is a file beside the module; resources only from a zip)."""
    loaded = _loaded_after(["gpus"])
    assert loaded["code"] == 0
    assert "flopscalc.flops" not in loaded["flopscalc"]
    assert "importlib.resources" not in loaded["all"]


def test_plan_without_a_profile_imports_no_calibration_module():
    """`planner.notes` imports `calibration` (numpy, a profile reader) only when a plan has a profile."""
    loaded = _loaded_after(["plan", "--gpu", "4070ti", "--days", "365"])
    assert loaded["code"] == 0
    assert "flopscalc.calibration" not in loaded["flopscalc"]
    assert "importlib.resources" not in loaded["all"]


@pytest.mark.parametrize("argv, not_loaded", [
    (["plan", "--gpu", "4070ti", "--days", "365"],
     # laws by name without the law files' JSON and atomic writer; no inference-aware solvers without
     # --inference-tokens; no GPU-table renderers; no emoji table (no report prints emoji codes); on one GPU no
     # memory fixes, batch growth or layout search (classes built at import)
     ["flopscalc.scaling.io", "flopscalc.atomic", "flopscalc.scaling.inference", "flopscalc.report.gpus",
      "rich._emoji_codes", "flopscalc.memory.advice", "flopscalc.planner.growth", "flopscalc.planner.layout"]),
    (["scaling", "laws"], ["numpy", "rich._emoji_codes"]),
    (["memory", "--model", "gpt2-xl", "--gpu", "4090"], ["rich._emoji_codes"]),
    (["finetune", "--model", "llama-3.1-8b", "--gpu", "4090", "--dataset-tokens", "50M"], ["rich._emoji_codes"]),
    (["gpus"], ["flopscalc.model", "flopscalc.flops", "rich._emoji_codes"]),
    (["models"], ["flopscalc.flops", "flopscalc.hardware", "rich._emoji_codes"]),
])
def test_commands_leave_unloaded_what_they_do_not_use(argv, not_loaded):
    """Each of these costs start-up time (issue 18, item 2); the command's output needs none of them."""
    loaded = _loaded_after(argv)
    assert loaded["code"] == 0
    assert not set(not_loaded) & set(loaded["all"]), set(not_loaded) & set(loaded["all"])


def test_plan_imports_and_builds_no_other_command():
    loaded = _loaded_after(["plan", "--gpu", "4070ti", "--days", "365"])
    assert loaded["code"] == 0
    faces = [m for m in loaded["flopscalc"] if m.startswith("flopscalc.cli")]
    assert sorted(faces) == ["flopscalc.cli", "flopscalc.cli.bounds", "flopscalc.cli.common", "flopscalc.cli.group",
                             "flopscalc.cli.output", "flopscalc.cli.plan"]
    assert not {"pandas", "matplotlib", "torch"} & set(loaded["top"])
