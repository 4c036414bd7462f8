"""What a user can type wrong: an id the catalogue does not have, a `-k` out of range, or an
integer too large for SQLite.

Each check raises (or builds) a `RecliError` whose one line says what was wrong and what would be
right: the catalogue's id range and the closest valid ids, or the allowed `-k`. What a user typed
is echoed through `shown`: cut short and with control characters made visible, so a pasted
megabyte or an escape sequence cannot flood or drive the terminal. Standard library only:
`recli search` checks `-k` before it loads the encoder.
"""

from __future__ import annotations

from recli.errors import RecliError

SUGGESTIONS = 5
"""Closest valid ids offered when an id is unknown."""
LARGEST = 2**63 - 1
"""The largest integer SQLite holds: larger ids and counts are refused before any query."""
SHOWN_CHARS = 40
"""What a user typed is echoed in a message cut to this many characters."""
CLOSE_SPELLING = 0.6
"""The least `difflib` similarity at which a text id counts as a likely misspelling of a known
one (difflib's own default): below it two short ids share little more than a letter or two."""
KEPT_FORMAT = frozenset("\u200c\u200d")
"""Format characters left as they are: the zero-width (non-)joiners shape emoji and scripts and
move nothing on screen."""
NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def is_number(text: str) -> bool:
    """Whether `text` is a whole number as `int()` reads one (` -42 `, `1_000`, Arabic-Indic
    digits), however many digits it has: `int()` itself refuses more than 4300 of them."""
    if any(separator in text for separator in "\x1c\x1d\x1e\x1f"):
        return False  # str.strip() takes these for space; int() does not
    body = text.strip()
    if body[:1] in ("+", "-"):
        body = body[1:]
    if body.startswith("_") or body.endswith("_") or "__" in body:
        return False
    return body.replace("_", "").isdecimal()


def integer(text: str, name: str, fix: str) -> int | None:
    """`text` as an integer SQLite can hold (`LARGEST`), read as `int()` reads it; None when it
    is no integer at all. One beyond that range, however many digits, is refused in one line
    naming the parameter (`name`) and `fix`."""
    try:
        number = int(text)
    except ValueError:
        if not is_number(text):
            return None
        number = LARGEST + 1  # more digits than int() reads: beyond the range either way
    if not -LARGEST - 1 <= number <= LARGEST:
        raise RecliError(f"{name} {shown(text)} is out of range: {fix}")
    return number


def _escaped(char: str) -> str:
    """One character as it is safe to print: itself, or a backslash escape."""
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        # A byte that was not UTF-8, as the shell passed it to Python (surrogateescape).
        return f"\\x{code - 0xDC00:02x}"
    if char in NAMED:
        return NAMED[char]
    import unicodedata  # only text that is not plain printable gets here

    category = unicodedata.category(char)
    # Cc: C0, DEL and C1 controls (ESC, BEL, CSI...); Cf: bidi overrides and other invisible
    # format characters; Cs: lone surrogates; Zl/Zp: line and paragraph separators.
    if category in ("Cc", "Cs", "Zl", "Zp") or (category == "Cf" and char not in KEPT_FORMAT):
        if code <= 0xFF:
            return f"\\x{code:02x}"
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
    return char


def visible(text: str) -> str:
    """`text` with every character that would move the cursor, change colours, reorder the line
    or cannot be encoded shown as a backslash escape (`\\x1b`, `\\u202e`, `\\xff`); all else
    as written."""
    if text.isprintable():
        return text  # the common case, in one C-level pass
    return "".join(_escaped(char) for char in text)


def json_visible(text: str) -> str:
    """JSON text with every character `visible` would escape written as a JSON `\\u` escape.

    `json.dumps` escapes only the C0 controls; DEL, the C1 controls and bidi overrides would
    reach the terminal raw. Escaped, the JSON still decodes to exactly the same strings. A raw
    line break in JSON text is layout (one inside a string is already `\\n`), so it stays.
    """
    if text.replace("\n", "").isprintable():
        return text
    out = []
    for char in text:
        if char == "\n" or _escaped(char) == char:
            out.append(char)
        elif ord(char) > 0xFFFF:
            high, low = divmod(ord(char) - 0x10000, 0x400)
            out.append(f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}")
        else:
            out.append(f"\\u{ord(char):04x}")
    return "".join(out)


def shown(text: str, limit: int = SHOWN_CHARS) -> str:
    """What a user typed, ready to quote in a message: `visible`, and cut to `limit` characters
    with an ellipsis when longer (an escape is never cut in half)."""
    pieces: list[str] = []
    used = 0
    for char in text:
        pieces.append(_escaped(char))
        used += len(pieces[-1])
        if used > limit:
            break
    else:
        return "".join(pieces)
    kept: list[str] = []
    used = 0
    for piece in pieces:
        if used + len(piece) > limit - 1:
            break
        kept.append(piece)
        used += len(piece)
    return "".join(kept).rstrip() + "…"


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
        f"{kind} '{shown(given)}' is not valid UTF-8 text: pass it as the dataset spells it, "
        f"e.g. `{example}`"
    )


def check_k(
    k: int,
    limit: int,
    items: str = "",
    none_left: str = "the catalogue has no items: rebuild it with `dvc repro -f index`",
) -> None:
    """Raise unless `1 <= k <= limit`: Annoy would silently return fewer items.

    `limit` is the most the command can list and `items` what those are (by default the
    catalogue's items; `recli similar` never lists the item itself): the advice names a `-k` that
    is then accepted. With none at all, `none_left` says why instead of an empty range.
    """
    if k < 1:
        raise RecliError(
            f"-k must be at least 1 (got {k}): pass how many items to show, e.g. -k 10"
        )
    if k > limit:
        items = items or f"the catalogue's {limit} items"
        fix = f"use -k between 1 and {limit}" if limit > 0 else none_left
        raise RecliError(f"-k {k} is more than {items}: {fix}")


def unknown_id(kind: str, given: str, known: list[str], command: str) -> RecliError:
    """The error for an id not in the catalogue: what was wrong, and the closest valid ids.

    Numeric ids (MovieLens) are matched by value, so `999` finds the largest ids. Others are
    matched by spelling, and offered only when the spelling is close (`CLOSE_SPELLING`), so a
    typo finds the id that was meant and an unrelated word is not answered with unrelated ids.
    `command` is the `recli` command the example in the message uses.
    """
    count = f"{len(known)} {kind}s"
    numeric = bool(known) and all(is_number(value) for value in known)
    example = f"`recli {command} {shown(known[0])}`" if known else f"`recli {command} ID`"
    if not given.strip():
        return RecliError(
            f"empty {kind} id: pass one of the catalogue's {len(known)} {kind} ids, e.g. {example}"
        )
    if numeric:
        numbers = sorted(int(value) for value in known)
        span = f"ids {numbers[0]}–{numbers[-1]}"
        if not is_number(given):
            return RecliError(
                f"{kind} id '{shown(given)}' is not a number, but this catalogue's {count} have "
                f"numeric {span}: e.g. {example}"
            )
        try:
            target = int(given)
        except ValueError:  # too many digits for int(): beyond every id, on the side of its sign
            target = numbers[0] - 1 if given.strip().startswith("-") else numbers[-1] + 1
        nearest = sorted(known, key=lambda value: (abs(int(value) - target), int(value)))
        closest = f"; nearest: {', '.join(shown(value) for value in nearest[:SUGGESTIONS])}"
    else:
        import difflib

        span = f"e.g. {', '.join(shown(value) for value in known[:3])}"
        close = difflib.get_close_matches(given, known, n=SUGGESTIONS, cutoff=CLOSE_SPELLING)
        closest = f"; nearest: {', '.join(shown(value) for value in close)}" if close else ""
    return RecliError(
        f"unknown {kind} id '{shown(given)}': the catalogue has {count} ({span}){closest}"
    )
