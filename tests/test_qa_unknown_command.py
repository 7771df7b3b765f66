"""An unknown command with no near match names the commands there are (house rule: what was wrong, what is accepted),
at the top level and in each command group; a near match keeps typer's 'Did you mean'. Found by trying
`flopscalc scaling allocate` (the group's help says 'allocate a FLOP budget'): "No such command 'allocate'." and
nothing else."""

from __future__ import annotations

import pytest

from flopscalc.cli import run


@pytest.mark.parametrize(("argv", "group"), [
    (["scaling", "allocate"], "scaling"),
    (["nosuch"], None),
    (["plot", "nosuch"], "plot"),
    (["gpus", "nosuch"], "gpus"),
    (["train", "nosuch"], "train"),
])
def test_an_unknown_command_lists_the_commands(capsys, argv, group):
    import typer

    from flopscalc.cli.group import app

    top = typer.main.get_command(app)
    ctx = top.make_context("flopscalc", [group or "plan"], resilient_parsing=True)
    listed = top.list_commands(ctx) if group is None else top.get_command(ctx, group).list_commands(ctx)
    assert run(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"No such command '{argv[-1]}'" in err[0]
    assert err[0].endswith(f"the commands are {', '.join(listed)} (flopscalc{' ' + group if group else ''} --help)")
    assert "Traceback" not in err[0]


@pytest.mark.parametrize(("argv", "suggested"), [(["plna"], "plan"), (["gpus", "shwo"], "show")])
def test_a_near_match_is_still_suggested(capsys, argv, suggested):
    assert run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"Did you mean '{suggested}'?") and "the commands are" not in err
