"""`--help` on a narrow terminal: plain stacked text with every option and command name whole.

Typer's rich help panels cut option names to fit their columns, which on a terminal narrower
than `recli.render.NARROW` leaves names a reader cannot type. `format_help` prints Typer's panels
on a wide terminal and `narrow_help`'s text on a narrow one; `recli.cli_parts.NarrowHelp`
calls it for every command and the group.

Apart from the commands because only `--help` needs it: `recli.cli` imports it when help is
shown, so the commands that answer never load it. Imports only the standard library and
`recli.render`.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable
from typing import Any

from recli import render


def narrow_help(command: Any, ctx: Any) -> str | None:
    """Help as plain stacked text where the terminal is narrower than `render.NARROW`: each
    option or command name on a line of its own, in full, its help wrapped below it (rich's
    help panels cut names to fit their columns). None on a wider terminal."""
    width = render.console().width
    if width >= render.NARROW:
        return None
    wrap = max(width - 1, 20)

    def block(text: str, indent: int) -> list[str]:
        paragraphs = [" ".join(part.split()) for part in inspect.cleandoc(text).split("\n\n")]
        lines: list[str] = []
        for paragraph in filter(None, paragraphs):
            if lines:
                lines.append("")
            # Never break an option name (`--by-interest`) across lines, nor cut one.
            lines += textwrap.wrap(
                paragraph,
                wrap,
                initial_indent=" " * indent,
                subsequent_indent=" " * indent,
                break_on_hyphens=False,
                break_long_words=False,
            )
        return lines

    lines = textwrap.wrap(
        command.get_usage(ctx),
        wrap,
        subsequent_indent="  ",
        break_on_hyphens=False,
        break_long_words=False,
    )
    if command.help:
        lines += ["", *block(command.help, 2)]
    records: dict[str, list[tuple[str, str]]] = {"Arguments": [], "Options": []}
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is not None:
            section = "Arguments" if param.param_type_name == "argument" else "Options"
            records[section].append(record)
    if hasattr(command, "list_commands"):
        records["Commands"] = [
            (name, sub.get_short_help_str(limit=1000))
            for name in command.list_commands(ctx)
            if (sub := command.get_command(ctx, name)) is not None and not sub.hidden
        ]
    for section, entries in records.items():
        if entries:
            lines += ["", f"{section}:"]
            for term, text in entries:
                lines.append(f"  {term}")
                lines += block(text, 6) if text else []
    return "\n".join(lines)


def format_help(command: Any, ctx: Any, formatter: Any, rich_help: Callable[..., None]) -> None:
    """Print `command`'s help: `rich_help` (Typer's panels), or `narrow_help`'s text on a
    narrow terminal; an output fault (`--help > /dev/full`) ends as `render.writing` says."""
    with render.writing():
        narrow = narrow_help(command, ctx)
        if narrow is None:
            rich_help(ctx, formatter)
        else:
            render.console().print(narrow, markup=False, highlight=False, soft_wrap=True, end="")
