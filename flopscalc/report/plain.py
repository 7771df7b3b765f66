"""Tables drawn as plain text when the output has no colour: the same characters rich prints, 3-9x faster.

Printing a report is most of what `flopscalc gpus` and `models` do, and rich lays a table out through a renderable
per cell (padding, segments, cropping; about 40 us a cell). Measured (CPU time, best of 80) on this project's
machine: the GPU table 20 ms with rich, 2.2 ms here; the presets at 100 columns (three tables) 3.7 ms and 1.3 ms.
Where the output carries no styles (piped, or a terminal without colour) only the characters matter, so `PlainTable`
draws them directly, through rich's public API only: the column widths are rich's own, read off the top border of a
stand-in table with the same columns and settings but only the cells that decide them (`PlainTable._column_widths`;
up to ~0.2 ms a table more than reusing rich's private width methods did); each cell's lines are `Text.wrap`'s, the
title and caption are rich's own rendering, and only the padding and joining of cells and borders (`Box.get_top` and the rest of
the public `Box`) is done here, as rich's `Table` lays them out. A table using anything this does not reproduce (a
fixed width, footers, row lines, leading, vertical alignment, a renderable other than text in a cell,
double-width characters) is drawn by rich instead (`drawn_by_rich`). `tests/test_report_plain.py` holds the output
to rich's, character for character, on every report and on random tables (checked on rich 13.7.1, the oldest
pyproject allows, and 15.0.0).
"""

from __future__ import annotations

import dataclasses

from rich import box as boxes
from rich.cells import cell_len, set_cell_size
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style
from rich.table import Column, Table
from rich.text import Text

Padding4 = tuple[int, int, int, int]  # top, right, bottom, left, as `Table.padding` gives them
# The stand-in table's box (`PlainTable._column_widths`): ASCII, so never substituted, with '+' between the columns
# of its top border and '-' along it, so the border reads as the column widths.
RULED = boxes.Box("+-++\n| ||\n+-++\n| ||\n+-++\n+-++\n| ||\n+-++\n", ascii=True)


class _Unsupported(Exception):
    """The table uses something `PlainTable` does not draw; rich draws it."""


def plain_tables(renderable, console: Console):
    """``renderable`` with every `Table` in it (itself, or inside Groups) drawn by `PlainTable` when ``console``
    prints no styles; unchanged otherwise. Groups are changed in place."""
    if console.color_system is not None:
        return renderable
    if isinstance(renderable, Table):
        return PlainTable(renderable)
    if isinstance(renderable, Group):
        parts = renderable.renderables  # rich keeps this list and renders from it
        parts[:] = [plain_tables(part, console) for part in parts]
    return renderable


class PlainTable:
    """A `Table` that prints its characters without rich's per-cell machinery (see the module docstring)."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._texts: dict = {}  # per console: a cell's Text and its (shortest, longest) width, once (`_text`)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.table)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        t = self.table
        try:
            _check(t)
            if not t.columns:
                yield Segment("\n")
                return
            cells = _cells(t)
            extra = _extra_width(t)
            widths = self._column_widths(console, options, cells, extra)
            render_options = options.update(width=sum(widths) + extra, highlight=t.highlight, height=None)
            lines = _body(t, console, render_options, widths, cells, self._text)
        except _Unsupported:
            yield from drawn_by_rich(t, console, options)
            return
        if t.title:  # as Table.__rich_console__ draws it
            title = (console.render_str(t.title, style=Style.pick_first(t.title_style, "table.title"), highlight=False)
                     if isinstance(t.title, str) else t.title)
            yield from console.render(title, options=render_options.update(justify=t.title_justify))
        newline = Segment.line()
        for line in lines:
            yield Segment(line)
            yield newline
        if t.caption:  # as Table.__rich_console__ draws it
            caption = (console.render_str(t.caption, style=Style.pick_first(t.caption_style, "table.caption"),
                                          highlight=False) if isinstance(t.caption, str) else t.caption)
            yield from console.render(caption, options=render_options.update(justify=t.caption_justify))

    def _text(self, console: Console, renderable, markup) -> tuple[Text, int, int] | None:
        """(Text, shortest, longest width) of a cell's str or Text (None for anything else), as `Measurement.get`
        and `Text.__rich_measure__` compute them: the widest word and the widest line."""
        key = (id(console), renderable if isinstance(renderable, str) else id(renderable), markup)
        found = self._texts.get(key)
        if found is None:
            if isinstance(renderable, str):
                text = console.render_str(renderable, markup=markup, highlight=False)
            elif isinstance(renderable, Text):
                text = renderable
            else:
                return None
            plain = text.plain
            longest = max((cell_len(line) for line in plain.splitlines()), default=0)
            shortest = max((cell_len(word) for word in plain.split()), default=longest)
            found = self._texts[key] = (text, shortest, longest)
        return found

    def _column_widths(self, console: Console, options: ConsoleOptions, cells, extra: int) -> list[int]:
        """The width rich gives each column (padding included, borders not) at ``options``.

        A column's width depends on its cells only through its measurement, the widest of their (shortest,
        longest) widths: the horizontal padding is the same down a column, and each step rich takes on a cell's
        measurement (add the padding, cap at the width) keeps the order of cells. So a stand-in table with the same
        columns and settings and two rows, each column's cell with the widest word and its cell with the widest
        line, gets the same widths from rich; drawn with `RULED` edges at the width that leaves it the same room
        inside its borders, its first line is its top border, '+---+--+', which rich yields before it draws any
        cell. Its cells are the `Text` each str cell renders to (`_text`), so rich does not parse their markup again.
        """
        t = self.table
        rows: tuple[list, list] = ([], [])
        headers = []
        for column, column_cells in zip(t.columns, cells):
            measured = []
            for renderable, _ in column_cells:
                found = self._text(console, renderable, options.markup)
                if found is None:
                    raise _Unsupported
                measured.append(found)
            if t.show_header:
                headers.append(measured.pop(0)[0])
            else:
                headers.append(column.header)
            if measured:
                rows[0].append(max(measured, key=lambda m: m[1])[0])
                rows[1].append(max(measured, key=lambda m: m[2])[0])
        stand_in = Table(*(_column_copy(c, h) for c, h in zip(t.columns, headers)), box=RULED, show_edge=True,
                         show_header=t.show_header, padding=t.padding, collapse_padding=t.collapse_padding,
                         pad_edge=t.pad_edge, expand=t.expand,
                         min_width=t.min_width, highlight=t.highlight)
        if rows[0]:
            stand_in.add_row(*rows[0])
            stand_in.add_row(*rows[1])
        room = options.max_width - extra + _extra_width(stand_in)
        top = ""
        for segment in console.render(stand_in, options.update_width(room)):
            if segment.text == "\n":
                break
            top += segment.text
        return [len(part) for part in top[1:-1].split("+")]


def drawn_by_rich(t: Table, console: Console, options: ConsoleOptions) -> RenderResult:
    """A table `PlainTable` leaves to rich, drawn by rich (the one way it does; the tests watch it)."""
    return t.__rich_console__(console, options)


def _column_copy(column: Column, header) -> Column:
    """``column``'s settings (its public fields) under ``header``, without its cells."""
    settings = {f.name: getattr(column, f.name) for f in dataclasses.fields(column)
                if f.init and not f.name.startswith("_")}
    return Column(**{**settings, "header": header})


def _extra_width(t: Table) -> int:
    """Characters of a row that are borders: an edge either side and a divider between columns, where drawn."""
    if not t.box:
        return 0
    return (2 if t.show_edge else 0) + len(t.columns) - 1


def _cells(t: Table) -> list[list[tuple[object, Padding4]]]:
    """Each column's cells (header first, where shown) with the padding rich puts around each: the table's
    ``padding``; with ``collapse_padding`` (`Table.grid`) a cell's left padding less the right padding of the cell
    before it, and its bottom padding as rich collapses it (top - bottom, not below 0) except in the last row; none
    outside the outer cells when ``pad_edge`` is off."""
    top, right, bottom, left = t.padding
    edge, collapse = t.pad_edge, t.collapse_padding
    last_column = len(t.columns) - 1
    out = []
    for i, column in enumerate(t.columns):
        raw = [*([column.header] if t.show_header else []), *column.cells]
        x_left = max(0, left - right) if collapse and i > 0 else left
        x_left, x_right = (x_left if edge or i > 0 else 0), (right if edge or i < last_column else 0)
        column_cells = []
        for k, renderable in enumerate(raw):
            first, last = k == 0, k == len(raw) - 1
            y_bottom = max(0, top - bottom) if collapse and not last else bottom
            column_cells.append((renderable, (top if edge or not first else 0, x_right,
                                              y_bottom if edge or not last else 0, x_left)))
        out.append(column_cells)
    return out


def _check(t: Table) -> None:
    if (t.width is not None or t.show_footer or t.show_lines or t.leading
            or any(row.end_section for row in t.rows)
            or any(column.vertical != "top" for column in t.columns)):
        raise _Unsupported


def _body(t: Table, console: Console, options: ConsoleOptions, widths: list[int], cells, texts) -> list[str]:
    """The table's lines below the title (``cells``: `_cells`), laid out as rich's `Table` draws them."""
    box = t.box.substitute(options, safe=t.safe_box if t.safe_box is not None else console.safe_box) if t.box else None
    box = box.get_plain_headed_box() if box and not t.show_header else box
    columns = t.columns
    rows = list(zip(*cells))
    out: list[str] = []
    if box and t.show_edge:
        out.append(box.get_top(widths))
    for index, row in enumerate(rows):
        first, last = index == 0, index == len(rows) - 1
        header = first and t.show_header
        drawn = [_cell_lines(console, options, cell, width, column, texts)
                 for cell, width, column in zip(row, widths, columns)]
        height = max(1, *(len(lines) for lines in drawn))
        for lines, width in zip(drawn, widths):  # headers sit at the bottom of their row, other cells at the top
            blank = [" " * width] * (height - len(lines))
            lines[:] = blank + lines if header else lines + blank
        if box:
            left, right, divider = ((box.head_left, box.head_right, box.head_vertical) if first else
                                    (box.foot_left, box.foot_right, box.foot_vertical) if last else
                                    (box.mid_left, box.mid_right, box.mid_vertical))
            edge = t.show_edge
            out += [(left if edge else "") + divider.join(line) + (right if edge else "") for line in zip(*drawn)]
        else:
            out += ["".join(line) for line in zip(*drawn)]
        if box and header:
            out.append(box.get_row(widths, "head", edge=t.show_edge))
    if box and t.show_edge:
        out.append(box.get_bottom(widths))
    return out


def _cell_lines(console: Console, options: ConsoleOptions, cell: tuple[object, Padding4], width: int, column,
                texts) -> list[str]:
    """One cell's lines, each ``width`` characters: its padding around its text wrapped as `Text.__rich_console__`
    wraps it, each line cropped or padded as `Console.render_lines` does."""
    if width < 1:  # rich renders nothing into no space (Console.render)
        return []
    renderable, (top, right, bottom, left) = cell
    found = texts(console, renderable, options.markup)  # its characters are those rich renders (highlight adds styles)
    if found is None:
        raise _Unsupported
    text = found[0]
    inner = width - left - right
    blank = " " * width
    if inner < 1:  # the padding fills the column: the text is not drawn, the padding's blank lines are
        return [blank] * (top + bottom)
    justify = text.justify or column.justify or "default"
    overflow = text.overflow or column.overflow or "fold"
    plain = text.plain
    if len(plain) <= inner and cell_len(plain) == len(plain) and "\n" not in plain and "\t" not in plain \
            and overflow != "ignore":  # one line that fits: what Text.wrap and Lines.justify make of it
        if justify in ("right", "center"):  # both strip the line's trailing spaces first
            core = plain.rstrip()
            gap = inner - len(core)
            line = " " * gap + core if justify == "right" else " " * (gap // 2) + core + " " * (gap - gap // 2)
        else:
            line = plain + " " * (inner - len(plain))
        return [blank] * top + [" " * left + line + " " * right] + [blank] * bottom
    tab_size = console.tab_size if text.tab_size is None else text.tab_size
    wrapped = text.wrap(console, inner, justify=justify, overflow=overflow, tab_size=tab_size or 8,
                        no_wrap=text.no_wrap if text.no_wrap is not None else bool(column.no_wrap))
    lines = []
    for line in wrapped:
        plain = line.plain
        if cell_len(plain) != len(plain) or "\n" in plain:  # double-width or zero-width characters: rich's cropping
            raise _Unsupported
        lines.append(" " * left + (plain + " " * (inner - len(plain)) if len(plain) <= inner
                                   else set_cell_size(plain, inner)) + " " * right)
    if not lines:
        raise _Unsupported
    return [blank] * top + lines + [blank] * bottom
