"""How the CLI's output reaches the terminal, and the pieces its views are laid out with.

A console per command, stdout written so a closed pipe or a full disk ends the command as a Unix
tool would (`writing`), errors as one line on stderr, and the layout pieces the views in
`recli.views` and `recli.metrics_view` are built from: `Hanging` (a `label: value` line that
wraps under its value, not at the left edge), `Grid` (a table that a terminal narrower than
`NARROW` shows as stacked records), titled tables and header panels. Titles, labels and ids are
data and are escaped (`escape`): a `[bold]` or `:x:` in a title is shown as written, and a
control character (an ESC, a carriage return, a bidi override) is shown as a backslash escape
instead of reaching the terminal. Colour is added explicitly; rich's automatic highlighting is
off.

Apart from the views so what every command relies on (and `--help` and the error paths need)
is small and read in one place; the views only decide what to show.

Imports only rich and stdlib-only recli modules (no Annoy): `--help` and the error paths stay
light.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from rich.cells import cell_len
from rich.console import Console, Group
from rich.markup import escape as escape_markup
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from recli.errors import RecliError
from recli.inputs import json_visible, shown, visible

NARROW = 70
"""Terminals narrower than this (columns) get each table as stacked records: a squeezed table
wraps every cell to a few letters."""
TITLE_CHARS = 60
"""A query echoed in a title is cut to this many characters."""


# --------------------------------------------------------------------------------------------
# Consoles
# --------------------------------------------------------------------------------------------
def console(stderr: bool = False) -> Console:
    """A console for one command's output.

    Built per command, not at import: a Console reads the terminal width (and COLUMNS) when
    created. No emoji codes or automatic highlighting: titles are data (a `:x:` or a number in a
    title is not ours to restyle); colour is added explicitly.
    """
    return Console(stderr=stderr, emoji=False, highlight=False)


def error_console() -> Console:
    """stderr, for errors and progress (stdout stays clean for `--json` and pipes)."""
    return console(stderr=True)


def print_error(error: RecliError) -> None:
    """A project error as one red line on stderr (control characters in it made visible: a
    message can quote catalogue text)."""
    error_console().print(
        f"[red]error:[/] {escape_markup(visible(str(error)))}", highlight=False, soft_wrap=True
    )


def escape(text: str) -> str:
    """Data as rich markup that prints it as written: markup escaped, control characters shown
    as backslash escapes (`recli.inputs.visible`)."""
    return escape_markup(visible(text))


def _discard_stdout() -> None:
    """Point stdout at the null device, so the interpreter's own flush at exit does not fail a
    second time (with a traceback of its own) on what could not be written."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (a test runner's buffer): nothing is flushed at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, descriptor)
    finally:
        os.close(devnull)


def output_fault(error: OSError) -> NoReturn:
    """End the command after stdout failed to take its answer, as a Unix tool does: a closed
    pipe (`recli recommend 1 | head -1`) quietly with exit code 1, any other fault (a full disk,
    `> /dev/full`, an I/O error) as one error line."""
    _discard_stdout()
    if error.errno == errno.EPIPE:
        raise SystemExit(1) from None
    raise RecliError(
        f"cannot write the output: {error.strerror or error}; free some space or write elsewhere"
    ) from None


@contextmanager
def writing() -> Iterator[None]:
    """Write a command's answer on stdout (flushed at the end); an output fault becomes
    `output_fault`'s exit instead of a traceback."""
    try:
        yield
        sys.stdout.flush()
    except OSError as error:
        output_fault(error)


def print_json(value: Any) -> None:
    """`value` as indented JSON on stdout, characters that could drive the terminal escaped
    (`recli.inputs.json_visible`); the same strings when decoded."""
    import json  # only --json answers need it

    with writing():
        sys.stdout.write(json_visible(json.dumps(value, ensure_ascii=False, indent=2)) + "\n")


def show(parts: Iterable[Any]) -> None:
    """Print a view's parts (panels, tables, paragraphs) in order on stdout; on a terminal
    narrower than `NARROW` columns, tables are printed as stacked records."""
    out = console()
    with writing():
        for part in parts:
            out.print(part.stacked() if isinstance(part, Grid) and out.width < NARROW else part)


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------
class Hanging:
    """`label value` as one line whose wrapped continuation lines start under `value` (not at
    the left edge), `indent` columns in. Both are markup.

    Wrapped here at render time, to whatever width the panel or console leaves. A one-row
    table would do the same, but every table is measured and laid out on its own, once per
    header line, on the path whose start-up `benchmarks/recommend.py` holds to its target.
    """

    def __init__(self, label: str, value: str, indent: int = 0) -> None:
        self.label, self.value, self.indent = label, value, indent

    def _parts(self) -> tuple[Text, Text]:
        head = Text.from_markup(self.label, emoji=False)
        head.append(" ")
        return head, Text.from_markup(self.value, emoji=False)

    def __rich_console__(self, console: Console, options: Any) -> Iterator[Text]:
        head, body = self._parts()
        hang = self.indent + head.cell_len
        lines = body.wrap(console, max(options.max_width - hang, 8))
        for number, line in enumerate(lines):
            prefix = Text(" " * self.indent) + head if number == 0 else Text(" " * hang)
            yield prefix + line

    def __rich_measure__(self, console: Console, options: Any) -> Measurement:
        head, body = self._parts()
        words = [cell_len(word) for word in body.plain.split()] or [0]
        hang = self.indent + head.cell_len
        widest = max(cell_len(line) for line in body.plain.split("\n"))
        return Measurement(hang + max(words), hang + widest).clamp(max_width=options.max_width)


def labelled(label: str, value: str, indent: int = 0) -> Hanging:
    """`label value`, wrapped continuation lines under `value` (`Hanging`)."""
    return Hanging(label, value, indent)


class Grid(Table):
    """A rich table that remembers its headers and cells, so a narrow terminal can show it as
    stacked records (`stacked`) instead of columns a few letters wide."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.headers: list[str] = []
        self.records: list[list[str]] = []

    def add_column(self, header: Any = "", *args: Any, **kwargs: Any) -> None:
        self.headers.append(str(header))
        super().add_column(header, *args, **kwargs)

    def add_row(self, *cells: Any, **kwargs: Any) -> None:
        self.records.append([cell if isinstance(cell, str) else "" for cell in cells])
        super().add_row(*cells, **kwargs)

    def stacked(self) -> Group:
        """Each row as a block: its first cell in bold (`#3`, `id 4`), then one `header: value`
        line per other cell, indented, a long or multi-line value continuing under itself;
        each block ends with a blank line, so the next part never reads as part of it."""
        parts: list[Any] = [f"[bold]{self.title}[/]", ""] if self.title else []
        first = self.headers[0] if self.headers else ""
        for record in self.records:
            if not record:
                continue
            heading = f"#{record[0]}" if first == "#" else f"{escape(first)} {record[0]}".strip()
            parts.append(f"[bold]{heading}[/]")
            for header, cell in zip(self.headers[1:], record[1:], strict=False):
                parts.append(labelled(f"{escape(header)}:", cell, indent=2))
            parts.append("")
        return Group(*parts)


def shortened(text: str, limit: int = TITLE_CHARS) -> str:
    """`text` on one line, control characters visible, cut to `limit` characters with an
    ellipsis (for titles)."""
    return shown(" ".join(text.split()), limit)


def titled_table(title: str) -> Grid:
    """An empty `Grid` with a bold header and `title` at its top left (how the views start one)."""
    return Grid(title=title, header_style="bold", title_justify="left")


Line = str | tuple[str, str]
"""A header line: markup, or (label, value) markup that wraps under its value."""


def panel(lines: list[Line], title: str) -> Any:
    """A header box titled `title`: one line per entry, a (label, value) pair wrapping under
    its value (`labelled`)."""
    from rich.panel import Panel  # only the views with a header need it

    body = [line if isinstance(line, str) else labelled(*line) for line in lines]
    return Panel(Group(*body), title=title, title_align="left", expand=False)
