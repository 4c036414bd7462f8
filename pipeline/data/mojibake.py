"""Text that was double-encoded before it reached the reader: UTF-8 bytes once read as
Windows-1252 (cp1252) or latin-1 and saved again, so `Café` arrives as `CafÃ©` and `It’s` as
`Itâ€™s`. The file itself is valid, so nothing fails; the reader says how many texts look like
that, and keeps them as they are (the fix is re-exporting the file, not guessing here).

A text is counted only where undoing the double encoding works on the whole of it: every
non-ASCII character maps back to one byte (as cp1252 or latin-1 wrote it), and those bytes are
valid UTF-8. Real accented text almost never passes: `São` gives the byte `0xE3` alone, and UTF-8
needs every byte from `0x80` up in a lead-and-continuation sequence (`Ã` then `£` for `ã`).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline.data.reader import note

# cp1252 reads bytes 0x80-0x9F as printable characters (`€`, `’`, `–`, …) where latin-1 has C1
# controls; mapping them back to those controls lets one latin-1 encode undo either reading.
_CP1252_BYTES = {}
for _byte in range(0x80, 0xA0):
    try:
        _CP1252_BYTES[bytes([_byte]).decode("cp1252")] = chr(_byte)
    except UnicodeDecodeError:
        continue  # 0x81, 0x8D, 0x8F, 0x90, 0x9D: undefined in cp1252, read as C1 by latin-1
TO_LATIN1 = str.maketrans(_CP1252_BYTES)

# A UTF-8 lead byte (0xC2-0xF4) followed by a continuation byte (0x80-0xBF), each as cp1252 or
# latin-1 shows it: every double-encoded non-ASCII character starts so. Only a quick filter;
# `undo` decides.
_LEADS = "".join(chr(byte) for byte in range(0xC2, 0xF5))
_CONTINUATIONS = "".join(chr(byte) for byte in range(0x80, 0xC0)) + "".join(_CP1252_BYTES)
SUSPECT_PATTERN = "[{}][{}]".format(
    *("".join(f"\\x{{{ord(char):X}}}" for char in chars) for chars in (_LEADS, _CONTINUATIONS))
)
# Plural names of the texts a note counts.
PLURALS = {"title": "titles", "description": "descriptions", "tag": "tags"}
EXAMPLE_CHARS = 40


def undo(text: str) -> str | None:
    """`text` with its double encoding undone (`CafÃ©` → `Café`), or None where it does not look
    double-encoded: ASCII, a character no 8-bit reading gives, or bytes that are not UTF-8."""
    if text.isascii():
        return None
    try:
        fixed = text.translate(TO_LATIN1).encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return None
    # Valid UTF-8 joins every byte from 0x80 up into a character of two to four bytes.
    return fixed if len(fixed) < len(text) else None


def double_encoded(texts: pl.Series) -> pl.Series:
    """Whether each text looks double-encoded (`undo` succeeds); null texts are not."""
    suspect = texts.str.contains(SUSPECT_PATTERN).fill_null(False)
    flagged = [False] * len(texts)
    for row in suspect.arg_true().to_list():
        flagged[row] = undo(texts[row]) is not None
    return pl.Series(values=flagged, dtype=pl.Boolean)


def note_double_encoded(path: Path, texts: dict[str, pl.Series]) -> None:
    """Note how many of `path`'s texts look double-encoded, by kind (`title`, `description`,
    `tag`: row-aligned with the file), with the first as an example; the texts stay as they are."""
    counts: list[str] = []
    total = 0
    example: tuple[int, str, str] | None = None
    for kind, column in texts.items():
        flagged = double_encoded(column)
        count = int(flagged.sum())
        if not count:
            continue
        total += count
        counts.append(f"{count} {kind if count == 1 else PLURALS[kind]}")
        if example is None:
            row = int(flagged.arg_max() or 0)
            text = column[row]
            example = (row, text, undo(text) or text)
    if example is None:
        return
    row, text, fixed = example
    verb = "looks" if total == 1 else "look"
    where = f"row {row + 1}" if path.suffix.lower() == ".parquet" else f"line {row + 2}"
    note(
        f"{path}: {' and '.join(counts)} {verb} double-encoded (UTF-8 once read as Windows-1252 "
        f"or latin-1 and saved again), e.g. {where}'s {_shorten(text)!r}, meant as "
        f"{_shorten(fixed)!r}: kept unchanged; re-export the file as plain UTF-8"
    )


def _shorten(text: str) -> str:
    return text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 1] + "…"
