"""What a user can type wrong: an id the catalogue does not have, or a `-k` out of range.

Each check raises (or builds) a `RecliError` whose one line says what was wrong and what would be
right: the catalogue's id range and the nearest valid ids, or the allowed `-k`. Standard library
only: `recli search` checks `-k` before it loads the encoder.
"""

from __future__ import annotations

from recli.errors import RecliError

SUGGESTIONS = 5
"""Nearest valid ids offered when an id is unknown."""


def _is_number(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def printable(text: str) -> str:
    """`text` as it can always be printed: bytes that are not UTF-8 (a shell passes them to
    Python as lone surrogates) shown as `\\xff` escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_text(given: str) -> bool:
    """Whether `given` is valid text. Ids and queries are matched as UTF-8; bytes that are not
    (`recli recommend $'\\xff'`) can match nothing and cannot even be looked up."""
    try:
        given.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def not_text(kind: str, given: str, example: str) -> RecliError:
    """The error for an argument that is not valid UTF-8; `example` is a command that works."""
    return RecliError(
        f"{kind} '{printable(given)}' is not valid UTF-8 text: pass it as the dataset spells it, "
        f"e.g. `{example}`"
    )


def check_k(k: int, n_items: int) -> None:
    """Raise unless `1 <= k <= n_items`: Annoy would silently return fewer items."""
    if k < 1:
        raise RecliError(
            f"-k must be at least 1 (got {k}): pass how many items to show, e.g. -k 10"
        )
    if k > n_items:
        raise RecliError(
            f"-k {k} is more than the catalogue's {n_items} items: use -k between 1 and {n_items}"
        )


def unknown_id(kind: str, given: str, known: list[str], command: str) -> RecliError:
    """The error for an id not in the catalogue: what was wrong, and the nearest valid ids.

    Numeric ids (MovieLens) are matched by value, others by spelling, so a typo still finds
    the id that was meant. `command` is the `recli` command the example in the message uses.
    """
    count = f"{len(known)} {kind}s"
    numeric = bool(known) and all(_is_number(value) for value in known)
    if not given.strip():
        example = f" e.g. `recli {command} {known[0]}`" if known else ""
        return RecliError(
            f"empty {kind} id: pass one of the catalogue's {len(known)} {kind} ids,{example}"
        )
    if numeric:
        numbers = sorted(int(value) for value in known)
        span = f"ids {numbers[0]}–{numbers[-1]}"
        if not _is_number(given.strip()):
            return RecliError(
                f"{kind} id '{given}' is not a number, but this catalogue's {count} have numeric "
                f"{span}: e.g. `recli {command} {known[0]}`"
            )
        target = int(given.strip())
        nearest = sorted(known, key=lambda value: (abs(int(value) - target), int(value)))
    else:
        import difflib

        span = f"e.g. {', '.join(known[:3])}"
        nearest = difflib.get_close_matches(given, known, n=SUGGESTIONS, cutoff=0.0)
    suggestions = ", ".join(nearest[:SUGGESTIONS])
    return RecliError(
        f"unknown {kind} id '{given}': the catalogue has {count} ({span}); nearest: {suggestions}"
    )
