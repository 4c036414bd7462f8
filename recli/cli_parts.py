"""The Click pieces the `recli` Typer app (`recli.cli`) is built from: an integer type that echoes
what is not one short and refuses what SQLite cannot hold, and a command and a group whose help
stays readable on a narrow terminal, the group turning a `RecliError` into one red line.

Imports typer (for the click it uses), rich through `recli.render`, and stdlib-only recli modules.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from recli import render
from recli.errors import RecliError
from recli.inputs import SHOWN_CHARS, integer, shown, visible

CLICK = typer.BadParameter.__module__.rpartition(".")[0]
"""The click Typer uses: its own copy (`typer._click`) since Typer 0.28, `click` before."""
LONG_WORD = re.compile(rf"[^\s]{{{2 * SHOWN_CHARS + 1},}}")
"""A word of a usage error too long to echo whole (`recli.inputs.shown` cuts it); a value
Click quotes through `RecliInteger` is already short."""
USAGE_ERROR = sys.modules[f"{CLICK}.exceptions"].UsageError
"""Click's usage error (exit 2)."""


class RecliInteger(sys.modules[f"{CLICK}.types"].IntParamType):  # type: ignore[misc]
    """Click's integer, read as Click reads it (`recli.inputs.integer`), with what is not one
    echoed short, control characters visible, and one SQLite cannot hold refused with `fix`."""

    def __init__(self, fix: str) -> None:
        self.fix = fix

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        name = getattr(param, "name", None) or "value"
        if getattr(param, "param_type_name", "") == "option":
            name = param.opts[0]
        number = integer(str(value), name.replace("_", " "), self.fix)
        if number is None:
            self.fail(f"'{shown(str(value))}' is not a valid {self.name}.", param, ctx)
        return number


class NarrowHelp:
    """Help that stays readable on a narrow terminal (`recli.narrow_help`), for a command or a
    group: mixed in before the Typer class whose own help it falls back to."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        from recli.narrow_help import format_help  # only --help needs it

        format_help(self, ctx, formatter, super().format_help)  # type: ignore[misc]


class RecliCommand(NarrowHelp, TyperCommand):
    """A command whose help stays readable on a narrow terminal."""


class RecliGroup(NarrowHelp, TyperGroup):
    """Turns a `RecliError` from any command into one red line and exit code 1 (also under
    Typer's `CliRunner`, which calls the group directly rather than `main()`); its help, like
    its commands', stays readable on a narrow terminal."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except RecliError as error:
            render.print_error(error)
            raise typer.Exit(1) from None
        except USAGE_ERROR as error:
            # Click quotes most bad values with repr(), but not extra arguments: an ESC typed
            # there would reach the terminal raw, and a pasted megabyte would flood it.
            message = LONG_WORD.sub(lambda word: shown(word[0]), error.message)
            error.message = "\n".join(map(visible, message.split("\n")))
            raise
