"""Tables drawn as plain text when the output has no colour: the same characters rich prints, 4-9x faster.

Printing a report is most of what `flopscalc gpus` and `models` do, and rich lays a table out through a renderable
per cell (padding, segments, cropping; about 40 us a cell). Measured best of 15 on this project's machine: the GPU
table 19 ms with rich, 2.2 ms here; the presets at 100 columns (folded) 22 ms and 4.9 ms. Where the output carries no
styles (piped, or a terminal without colour) only the characters matter, so `PlainTable` draws them directly: the
column widths, each cell's wrapped lines and the title come from rich itself (`Table._calculate_column_widths`,
`Text.wrap`, the title's own rendering), and only the padding and joining of cells and borders is done here, as
`rich.table.Table._render` does it. A table using anything this does not reproduce (footers, row lines, captions,
vertical alignment, a renderable other than text in a cell, double-width characters) is drawn by rich instead.
`tests/test_report_plain.py` holds the output to rich's, character for character, on every report and on random
tables.
"""

from __future__ import annotations

import contextlib

from rich.cells import cell_len, set_cell_size
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.measure import Measurement
from rich.padding import Padding
from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text


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
        self._cells: dict = {}  # per console: each column's cells with their padding (`Table._get_cells`), once
        self._widths: dict = {}  # per console: a column's widest word and line and its padding (`_column_text_widths`)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        with self._measuring(console):
            return Measurement.get(console, options, self.table)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        t = self.table
        try:
            _check(t)
            if not t.columns:
                yield Segment("\n")
                return
            with self._measuring(console):
                widths = t._calculate_column_widths(console, options.update_width(options.max_width - t._extra_width))
            render_options = options.update(width=sum(widths) + t._extra_width, highlight=t.highlight, height=None)
            lines = _body(t, console, render_options, widths, self._text, self._column_cells)
        except (_Unsupported, AttributeError, TypeError):  # a rich whose private table API moved or changed its
            yield from t.__rich_console__(console, options)  # signatures (checked on 13.7.1, 15.0.0: test_report_plain)
            return
        if t.title:  # as Table.__rich_console__ draws it
            title = (console.render_str(t.title, style=Style.pick_first(t.title_style, "table.title"), highlight=False)
                     if isinstance(t.title, str) else t.title)
            yield from console.render(title, options=render_options.update(justify=t.title_justify))
        newline = Segment.line()
        for line in lines:
            yield Segment(line)
            yield newline

    @contextlib.contextmanager
    def _measuring(self, console: Console):
        """While inside, the table measures its columns with `_measure_column` below (rich's own method is shadowed
        on this instance only)."""
        self.table._measure_column = lambda console, options, column: self._measure_column(console, options, column)
        try:
            yield
        finally:
            del self.table._measure_column

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

    def _column_cells(self, console: Console, column) -> list:
        """``column``'s cells as `Table._get_cells` makes them (header first), made once per console."""
        key = (id(console), column._index)
        if key not in self._cells:
            self._cells[key] = list(self.table._get_cells(console, column._index, column))
        return self._cells[key]

    def _measure_column(self, console: Console, options: ConsoleOptions, column) -> Measurement:
        """`Table._measure_column` with each cell's widths computed once (`_text`) and rich's normalisation steps
        (`Measurement.get` around `Padding.__rich_measure__` around `Text.__rich_measure__`) applied to them."""
        t = self.table
        max_width = options.max_width
        if max_width < 1:
            return Measurement(0, 0)
        padding_width = t._get_padding_width(column._index)
        if column.width is not None:
            return Measurement(column.width + padding_width, column.width + padding_width).with_maximum(max_width)
        widths = self._column_text_widths(console, column, options.markup)
        if widths is not None:  # text cells with one padding: the steps below, done once on the widest of them
            low, high, extra = widths
            measurement = (Measurement(max_width, max_width) if max_width - extra < 1 else
                           Measurement(min(low + extra, max_width), min(high + extra, max_width)))
            return measurement.with_maximum(max_width).clamp(
                None if column.min_width is None else column.min_width + padding_width,
                None if column.max_width is None else column.max_width + padding_width)
        shortest, longest = [], []
        for cell in self._column_cells(console, column):
            low, high = self._cell_measure(console, options, cell.renderable)
            shortest.append(low)
            longest.append(high)
        measurement = Measurement(max(shortest) if shortest else 1, max(longest) if longest else max_width)
        return measurement.with_maximum(max_width).clamp(
            None if column.min_width is None else column.min_width + padding_width,
            None if column.max_width is None else column.max_width + padding_width)

    def _column_text_widths(self, console: Console, column, markup) -> tuple[int, int, int] | None:
        """(widest word, widest line, padding left + right) over a column whose cells are all text with the same
        horizontal padding; None otherwise. Each step of `_cell_measure` (min with the width, add the padding, min
        with the width) keeps the order of cells, so the column's widest cell comes out of them as the widest word
        and line went in."""
        key = (id(console), column._index, markup)
        if key not in self._widths:
            self._widths[key] = None
            low = high = 0
            extras = set()
            cells = self._column_cells(console, column)
            for cell in cells:
                renderable, extra = cell.renderable, 0
                if isinstance(renderable, Padding):
                    renderable, extra = renderable.renderable, renderable.left + renderable.right
                found = self._text(console, renderable, markup)
                if found is None:
                    return None
                extras.add(extra)
                low, high = max(low, found[1]), max(high, found[2])
            if cells and len(extras) == 1:
                self._widths[key] = (low, high, extras.pop())
        return self._widths[key]

    def _cell_measure(self, console: Console, options: ConsoleOptions, renderable) -> Measurement:
        max_width = options.max_width
        if max_width < 1:
            return Measurement(0, 0)
        extra = 0
        if isinstance(renderable, Padding):
            extra = renderable.left + renderable.right
            if max_width - extra < 1:
                return _normalized(Measurement(max_width, max_width), max_width)
            inner = renderable.renderable
        else:
            inner = renderable
        found = self._text(console, inner, options.markup)
        if found is None:
            return Measurement.get(console, options, renderable)
        measured = _normalized(Measurement(found[1], found[2]), max_width)  # Measurement.get of the text
        if extra:  # Padding.__rich_measure__, then Measurement.get of the padding
            measured = _normalized(Measurement(measured.minimum + extra, measured.maximum + extra)
                                   .with_maximum(max_width), max_width)
        return measured


def _normalized(m: Measurement, max_width: int) -> Measurement:
    """What `Measurement.get` returns for a renderable that measured ``m``."""
    m = m.normalize().with_maximum(max_width)
    return Measurement(0, 0) if m.maximum < 1 else m.normalize()


def _check(t: Table) -> None:
    if (t.width is not None or t.show_footer or t.show_lines or t.leading or t.caption is not None
            or any(row.end_section for row in t.rows)):
        raise _Unsupported


def _body(t: Table, console: Console, options: ConsoleOptions, widths: list[int], texts, column_cells) -> list[str]:
    """The table's lines below the title, as `Table._render` lays them out."""
    box = t.box.substitute(options, safe=t.safe_box if t.safe_box is not None else console.safe_box) if t.box else None
    box = box.get_plain_headed_box() if box and not t.show_header else box
    columns = t.columns
    rows = list(zip(*(column_cells(console, column) for column in columns)))
    out: list[str] = []
    if box and t.show_edge:
        out.append(box.get_top(widths))
    for index, row in enumerate(rows):
        first, last = index == 0, index == len(rows) - 1
        header = first and t.show_header
        cells = [_cell_lines(console, options, cell, width, column, texts)
                 for cell, width, column in zip(row, widths, columns)]
        height = max(1, *(len(lines) for lines in cells))
        for lines, width in zip(cells, widths):  # headers sit at the bottom of their row, other cells at the top
            blank = [" " * width] * (height - len(lines))
            lines[:] = blank + lines if header else lines + blank
        if box:
            left, right, divider = ((box.head_left, box.head_right, box.head_vertical) if first else
                                    (box.foot_left, box.foot_right, box.foot_vertical) if last else
                                    (box.mid_left, box.mid_right, box.mid_vertical))
            edge = t.show_edge
            out += [(left if edge else "") + divider.join(line) + (right if edge else "") for line in zip(*cells)]
        else:
            out += ["".join(line) for line in zip(*cells)]
        if box and header:
            out.append(box.get_row(widths, "head", edge=t.show_edge))
    if box and t.show_edge:
        out.append(box.get_bottom(widths))
    return out


def _cell_lines(console: Console, options: ConsoleOptions, cell, width: int, column, texts) -> list[str]:
    """One cell's lines, each ``width`` characters: its padding around its text wrapped as `Text.__rich_console__`
    wraps it, each line cropped or padded as `Console.render_lines` does."""
    if cell.vertical != "top":
        raise _Unsupported
    if width < 1:  # rich renders nothing into no space (Console.render)
        return []
    renderable, top, right, bottom, left = cell.renderable, 0, 0, 0, 0
    if isinstance(renderable, Padding):
        if not renderable.expand:
            raise _Unsupported
        top, right, bottom, left = renderable.top, renderable.right, renderable.bottom, renderable.left
        renderable = renderable.renderable
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
