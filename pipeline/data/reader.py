"""Reading one bring-your-own table file whole, every text column as a string: its type told by
the suffix (CSV, TSV, parquet), its field separator, and its encoding.

A file in another Unicode encoding than `data.files.encoding` (a UTF-16 or UTF-32 file, a UTF-8
byte-order mark) is read as what it is, with a one-line note on stderr saying so; a UTF-8 file
declared latin-1 is refused rather than read as mojibake. What the columns mean is
`pipeline.data.files`' business.
"""

from __future__ import annotations

import codecs
import re
import sys
from pathlib import Path

import polars as pl

from pipeline.core.config import FilesSource
from recli.errors import RecliError

TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": None, ".dat": None}
SEPARATOR_ALIASES = {"\\t": "\t", "tab": "\t"}

# Byte-order marks with the codec that reads what follows and the name a note shows. UTF-32LE's
# mark starts with UTF-16LE's, so it is tried first.
BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32LE"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32BE"),
    (codecs.BOM_UTF8, "utf-8", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16LE"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16BE"),
)
# A multiple of 4, so a UTF-32 sniff never cuts a character.
SNIFF_BYTES = 4096


def read_table(path: Path, root: Path, key: str, cfg: FilesSource) -> pl.DataFrame:
    """Read `root / path` whole, every text column as a string (typing is done per column later);
    messages show `path`, the value of `key`."""
    file = Path(root) / path
    if not file.is_file():
        raise RecliError(f"{path} not found: set {key} in params.yaml to an existing file")
    if file.stat().st_size == 0:
        raise RecliError(f"{path} is empty: point {key} at a file with a header row and data")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            return pl.read_parquet(file)
        except (pl.exceptions.PolarsError, OSError) as error:
            raise RecliError(
                f"{path} is not a readable parquet file ({_first_line(error)}): re-export it"
            ) from None
    if suffix not in TEXT_SUFFIXES:
        raise RecliError(
            f"{path}: unsupported file type '{suffix}': "
            f"point {key} at a .csv, .tsv, .txt, .dat or .parquet file"
        )
    # YAML's single quotes keep `'\t'` as two characters; accept it as the tab it means.
    separator = SEPARATOR_ALIASES.get(cfg.separator or "", cfg.separator) or TEXT_SUFFIXES[suffix]
    if separator is None:
        raise RecliError(
            f"{path}: cannot tell the field separator of a {suffix} file: set data.files.separator"
        )
    if len(separator.encode("utf-8")) != 1:
        raise RecliError(f"data.files.separator must be one character, got {separator!r}")
    source = _utf8_source(file, path, cfg.encoding, separator)
    try:
        # Ids stay strings (`007` keeps its zeros) because nothing is inferred.
        return pl.read_csv(source, separator=separator, infer_schema=False, encoding="utf8")
    except pl.exceptions.NoDataError:
        raise RecliError(
            f"{path} is empty: point {key} at a file with a header row and data"
        ) from None
    except pl.exceptions.PolarsError as error:
        if "utf-8" in str(error).lower() or "utf8" in str(error).lower():
            if _sniff(file).startswith(codecs.BOM_UTF8):
                # The mark says UTF-8, so latin-1 is not the fix: part of the file is not UTF-8.
                raise RecliError(
                    f"{path} starts with a UTF-8 byte-order mark but is not valid UTF-8 "
                    "throughout: re-save the whole file as UTF-8"
                ) from None
            raise RecliError(
                f"{path} is not valid UTF-8: set data.files.encoding: latin-1 in params.yaml"
            ) from None
        raise RecliError(
            f"{path} could not be parsed ({_first_line(error)}): check data.files.separator "
            f"(now {separator!r}) and the file's quoting"
        ) from None


def note(message: str) -> None:
    """Say on stderr what the reader did that the settings did not spell out."""
    print(f"data: {message}", file=sys.stderr)


def _sniff(file: Path) -> bytes:
    with file.open("rb") as handle:
        return handle.read(SNIFF_BYTES)


def _unicode_encoding(head: bytes) -> tuple[str, str, bytes] | None:
    """(codec, name, byte-order mark) of a file that starts with `head`, where its bytes say which
    Unicode encoding it is: a byte-order mark, or the NUL bytes of UTF-16 or UTF-32 text without
    one. None for a file with neither (UTF-8 or an 8-bit encoding)."""
    for mark, codec, name in BYTE_ORDER_MARKS:
        if head.startswith(mark):
            return codec, name, mark
    if b"\x00" not in head:
        # Text in UTF-8 or an 8-bit encoding has no NUL bytes; UTF-16 or UTF-32 with ASCII has.
        return None
    best: tuple[int, str, str] | None = None
    for codec, name in (
        ("utf-32-le", "UTF-32LE"),
        ("utf-32-be", "UTF-32BE"),
        ("utf-16-le", "UTF-16LE"),
        ("utf-16-be", "UTF-16BE"),
    ):
        try:
            # Incremental, so a character cut at the end of the sniff is no error.
            text = codecs.getincrementaldecoder(codec)().decode(head, final=False)
        except UnicodeDecodeError:
            continue
        # The wrong byte order reads a line break as U+0A00 (unassigned), and UTF-8 bytes with a
        # stray NUL read as unrelated characters, so neither has line breaks or much ASCII; the
        # right one reads the header, the ids and the numbers as ASCII.
        if "\n" not in text or "\x00" in text:
            continue
        ascii_count = sum(" " <= char <= "~" or char in "\t\r\n" for char in text)
        if 10 * ascii_count > len(text) and (best is None or ascii_count > best[0]):
            best = (ascii_count, codec, name)
    return None if best is None else (best[1], best[2], b"")


def _utf8_source(file: Path, path: Path, encoding: str, separator: str) -> Path | bytes:
    """What polars reads for `file`: the file itself where it is UTF-8 as `encoding` says, else its
    text re-encoded as UTF-8, with a note where the file's own bytes overrule `encoding`."""
    found = _unicode_encoding(_sniff(file))
    if found is None:
        if encoding == "utf-8":
            return file
        data = file.read_bytes()
        _refuse_utf8_as_latin1(data, path, separator)
        return data.decode("latin-1").encode("utf-8")
    codec, name, mark = found
    if codec == "utf-8" and encoding == "utf-8":
        # polars skips a UTF-8 byte-order mark itself: the file is what the settings say.
        return file
    data = file.read_bytes()[len(mark) :]
    how = f"starts with a {name} byte-order mark" if mark else f"is {name} (no byte-order mark)"
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as error:
        raise RecliError(
            f"{path} {how} but is not valid {name} (byte {error.start + len(mark)}): "
            "re-save it as UTF-8"
        ) from None
    note(f"{path} {how}: read as {name}, not as data.files.encoding ({encoding})")
    return text.encode("utf-8")


def _refuse_utf8_as_latin1(data: bytes, path: Path, separator: str) -> None:
    """Stop where a file declared latin-1 is UTF-8 with non-ASCII text.

    Read as latin-1, every such character would become two or three others (`é` → `Ã©`) in every
    title and tag, baked into the catalogue with nothing failing; a warning scrolls past in a
    pipeline's output, and the fix is one setting. Latin-1 text whose accented letters happen to
    form valid UTF-8 needs letter pairs like `Ã©` at every one of them, so a real latin-1 file is
    all but never refused; if one is, saving it as UTF-8 reads it right.
    """
    if data.isascii():
        return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return
    start = re.search(rb"[\x80-\xff]", data).start()  # type: ignore[union-attr]
    # Show the field that holds the first accented character, as read both ways.
    mark = separator.encode("utf-8")
    field_start = max(data.rfind(b"\n", 0, start), data.rfind(mark, 0, start)) + 1
    ends = [end for end in (data.find(b"\n", start), data.find(mark, start)) if end >= 0]
    field = data[field_start : min(ends, default=len(data))][:60]
    # Cutting at 60 bytes may split a character; `ignore` drops only that one.
    sample = field.decode("utf-8", errors="ignore").strip().strip('"')
    number = data.count(b"\n", 0, start) + 1
    raise RecliError(
        f"{path} is UTF-8, but data.files.encoding is latin-1, which would read line "
        f"{number}'s {sample!r} as "
        f"{sample.encode('utf-8').decode('latin-1')!r}: set data.files.encoding: utf-8 "
        "in params.yaml"
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
