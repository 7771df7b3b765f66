"""`report.plain.PlainTable` prints the characters rich prints (issue 18: the faster table drawing of piped output).

The reference is rich itself: every table of the reports below, and random tables, printed by rich's `Table` and
by `PlainTable` on a console without colour, at the natural width and narrower ones, must give the same text to the
character (trailing spaces included). Tables with features PlainTable leaves to rich must still print the same.
"""

from __future__ import annotations

import copy
import io

from hypothesis import given, settings
from hypothesis import strategies as st
from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from flopscalc.cli import output
from flopscalc.cli import run as cli_run
from flopscalc.report import plain
from flopscalc.report.plain import PlainTable, plain_tables

WIDTHS = (output.MEASURE_WIDTH, 160, 100, 80, 60, 40, 24)
COMMANDS = [
    ["plan", "--gpu", "4070ti", "--days", "365"],
    ["plan", "--gpu", "h100", "--n-gpus", "64", "--days", "30"],
    ["plan", "--gpu", "a100-80gb", "--days", "7", "--family", "llama"],
    ["gpus"], ["gpus", "show", "h100"], ["models"],
    ["flops", "--model", "gpt2-xl", "--tokens", "300B"],
    ["memory", "--model", "gpt2-xl", "--gpu", "4090"],
    ["step", "--model", "gpt2-xl", "--gpu", "h100"],
    ["infer", "--model", "llama-3.1-8b", "--gpu", "h100", "--context", "4096"],
    ["runs"], ["scaling", "laws"],
]


def _printed(renderable, width: int) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, **output.CONSOLE_SETTINGS)
    assert console.color_system is None  # the case PlainTable serves
    console.print(renderable)
    return out.getvalue()


def _both(renderable, width: int, monkeypatch=None) -> tuple[str, str]:
    """(rich's text, PlainTable's text) of one renderable at one width. With ``monkeypatch``, PlainTable may not
    hand any table back to rich."""
    theirs = _printed(copy.deepcopy(renderable), width)
    console = Console(file=io.StringIO(), width=width, **output.CONSOLE_SETTINGS)
    ours = plain_tables(copy.deepcopy(renderable), console)
    if monkeypatch is None:
        return theirs, _printed(ours, width)
    with monkeypatch.context() as m:
        m.setattr(plain, "drawn_by_rich", _refused)
        return theirs, _printed(ours, width)


def _refused(*_):
    raise AssertionError("PlainTable handed a report table back to rich")


def _reports(monkeypatch) -> dict[str, object]:
    """The renderable each command of COMMANDS hands to `emit`, caught in each command module (imported first, so
    that none binds the stand-in as its own `emit`)."""
    import importlib

    shown = {}
    modules = [importlib.import_module(m) for m in ("flopscalc.cli.plan", "flopscalc.cli.catalog",
                                                     "flopscalc.cli.flops", "flopscalc.cli.memory",
                                                     "flopscalc.cli.step", "flopscalc.cli.infer", "flopscalc.cli.runs",
                                                     "flopscalc.cli.scaling")]
    for argv in COMMANDS:
        def capture(renderable, data, as_json, argv=argv):
            shown[" ".join(argv)] = renderable

        for module in modules:
            if hasattr(module, "emit"):
                monkeypatch.setattr(module, "emit", capture)
        assert cli_run(argv) == 0, argv
    return shown


def _tables(renderable):
    if isinstance(renderable, Table):
        yield renderable
    elif isinstance(renderable, Group):
        for part in renderable.renderables:
            yield from _tables(part)


def test_every_report_prints_as_rich_prints_it(monkeypatch):
    reports = _reports(monkeypatch)
    assert len(reports) == len(COMMANDS)
    n_tables = 0
    for name, renderable in reports.items():
        n_tables += len(list(_tables(renderable)))
        for fold in (False, True):  # piped output folds long words (cli.output._fold_tables); a terminal does not
            r = copy.deepcopy(renderable)
            if fold:
                output._fold_tables(r)
            for width in WIDTHS:
                theirs, ours = _both(r, width, monkeypatch)  # every report table is drawn by PlainTable
                assert ours == theirs, (name, fold, width)
    assert n_tables >= 25  # the reports above hold this many tables between them


def test_plain_tables_leaves_a_coloured_console_to_rich():
    t = Table("a")
    console = Console(file=io.StringIO(), force_terminal=True, color_system="truecolor")
    assert plain_tables(t, console) is t
    plain = Console(file=io.StringIO())
    assert isinstance(plain_tables(t, plain), PlainTable)


words = st.text(alphabet="abcdefghij XYZ0123456789,.-:()/'", min_size=0, max_size=40)
boxes = st.sampled_from([None, box.SIMPLE_HEAD, box.HEAVY_HEAD, box.ROUNDED, box.ASCII, box.SIMPLE, box.MINIMAL])


@st.composite
def tables(draw):
    t = Table(title=draw(st.one_of(st.none(), words)), title_justify=draw(st.sampled_from(["left", "center", "right"])),
              box=draw(boxes), show_header=draw(st.booleans()), show_edge=draw(st.booleans()),
              pad_edge=draw(st.booleans()), expand=draw(st.booleans()), collapse_padding=draw(st.booleans()),
              padding=draw(st.sampled_from([(0, 1), (0, 1, 0, 0), (0, 0), (1, 2), (0, 2, 1, 0)])),
              show_lines=draw(st.booleans()) and draw(st.booleans()),  # sometimes: left to rich
              caption=draw(st.one_of(st.none(), st.none(), words)))
    n_columns = draw(st.integers(1, 5))
    for _ in range(n_columns):
        t.add_column(draw(words), justify=draw(st.sampled_from(["default", "left", "right", "center", "full"])),
                     no_wrap=draw(st.booleans()), overflow=draw(st.sampled_from(["fold", "ellipsis", "crop"])),
                     ratio=draw(st.one_of(st.none(), st.integers(1, 3))), min_width=draw(st.one_of(st.none(),
                                                                                                st.integers(1, 8))),
                     vertical=draw(st.sampled_from(["top", "top", "bottom"])))
    for _ in range(draw(st.integers(0, 6))):
        t.add_row(*[Text(draw(words)) if draw(st.booleans()) else draw(words) for _ in range(n_columns)],
                  end_section=draw(st.booleans()) and draw(st.booleans()))
    return t


@settings(max_examples=400, deadline=None)
@given(table=tables(), width=st.integers(8, 140), in_group=st.booleans())
def test_random_tables_print_as_rich_prints_them(table, width, in_group):
    renderable = Group(Text("before"), table, Text()) if in_group else table
    theirs, ours = _both(renderable, width)
    assert ours == theirs


def test_plain_uses_only_rich_public_api():
    """PlainTable is built on rich's public API (a private method can change in any release): no import from a rich
    module whose name starts with '_', and no attribute starting with '_' read off anything but PlainTable itself."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(plain))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rich"):
            assert not any(part.startswith("_") for part in node.module.split(".")), node.module
            assert not any(alias.name.startswith("_") for alias in node.names), ast.unparse(node)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            assert isinstance(node.value, ast.Name) and node.value.id == "self", ast.unparse(node)
