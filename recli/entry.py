"""The `recli` console entry point: `recli recommend` without Typer, everything else with it.

`recli recommend USER_ID` is the command people run most, and importing Typer (with its own
copy of Click) is about a third of its start-up. So the entry point reads the command line
first, and when it is a plain `recommend` call, in a form it can read without doubt, runs the
function the Typer command runs (`recli.answer.recommend`). Anything else, or anything it is
not sure of, goes to the Typer app in `recli.cli` untouched: `--help`, usage errors, an option
given twice, `-k` spelled in a way Click reads but this reader does not, an id starting with
`-`. Both ways print the same bytes and exit with the same code, which
`tests/serving/test_entry.py` checks command line by command line against the Typer app
(and `tests/serving/test_cli.py` that a plain call imports no Typer).

Imports only the standard library, rich and the serving modules, never Typer.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from recli.answer import RecommendCall, recommend
from recli.contract import DEFAULT_ARTIFACTS
from recli.inputs import LARGEST

ARTIFACTS_ENV = "RECLI_ARTIFACTS"
"""Where the artifacts are when no `--artifacts` is given (as Typer reads it: set and not empty)."""
FLAGS = {
    "--json": ("as_json", True),
    "--explain": ("explain", True),
    "--by-interest": ("by_interest", True),
    "--whole-user": ("by_interest", False),
}
"""Each flag: the call's field it sets, and to what."""


def _value(arguments: list[str], at: int, name: str) -> tuple[str, int] | None:
    """The value of option `name` at `arguments[at]` (`--name VALUE` or `--name=VALUE`) and
    the index after it; None when the value is missing or looks like an option."""
    word = arguments[at]
    if word.startswith(name + "="):
        value, after = word[len(name) + 1 :], at + 1
    elif at + 1 < len(arguments):
        value, after = arguments[at + 1], at + 2
    else:
        return None
    return None if not value or value.startswith("-") else (value, after)


def read_recommend(arguments: list[str], environ: Mapping[str, str]) -> RecommendCall | None:
    """`arguments` (the command line after `recli`) as a plain `recommend` call, or None for
    anything else or anything read two ways: each option at most once, `-k` as digits only,
    the id one word not starting with `-`, nothing unknown."""
    at, root_artifacts = 0, None
    if at < len(arguments) and arguments[at].split("=", 1)[0] == "--artifacts":
        found = _value(arguments, at, "--artifacts")
        if found is None:
            return None
        root_artifacts, at = found
    if at >= len(arguments) or arguments[at] != "recommend":
        return None
    at += 1
    seen: dict[str, str | bool] = {}
    user_id = None
    while at < len(arguments):
        word = arguments[at]
        name = word.split("=", 1)[0]
        if name in FLAGS and word == name and FLAGS[name][0] not in seen:
            field, value = FLAGS[name]
            seen[field] = value
            at += 1
        elif (
            name in ("-k", "--k", "--artifacts")
            and name not in seen
            and not (name == "-k" and "=" in word)
        ):
            found = _value(arguments, at, name)
            if found is None:
                return None
            seen[name], at = found
        elif not word.startswith("-") and user_id is None:
            user_id, at = word, at + 1
        else:
            return None
    k_text = seen.get("-k", seen.get("--k", "10"))
    if user_id is None or ("-k" in seen and "--k" in seen):
        return None
    if not (isinstance(k_text, str) and k_text.isascii() and k_text.isdigit()):
        return None
    if len(k_text) > len(str(LARGEST)) or int(k_text) > LARGEST:
        return None  # Typer's refusal, without int()'s own limit of 4300 digits
    artifacts = seen.get("--artifacts") or root_artifacts or environ.get(ARTIFACTS_ENV) or None
    return RecommendCall(
        artifacts=Path(str(artifacts)) if artifacts else DEFAULT_ARTIFACTS,
        user_id=user_id,
        k=int(k_text),
        explain=bool(seen.get("explain")),
        by_interest=None if "by_interest" not in seen else bool(seen["by_interest"]),
        as_json=bool(seen.get("as_json")),
    )


def main() -> None:
    """Console entry point: a plain `recommend` call is answered here, the rest by Typer."""
    call = read_recommend(sys.argv[1:], os.environ)
    if call is None:
        from recli.cli import main as typer_main

        typer_main()
        return
    from recli import render
    from recli.errors import RecliError

    try:
        recommend(call)
    except RecliError as error:
        render.print_error(error)
        raise SystemExit(1) from None
    except (KeyboardInterrupt, EOFError):
        # As Click ends an interrupted command: a new line and "Aborted!" on stderr, exit 1.
        sys.stderr.write("\nAborted!\n")
        raise SystemExit(1) from None
