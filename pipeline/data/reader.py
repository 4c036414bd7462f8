"""Reading one bring-your-own table file whole, every text column as a string: its type told by
the suffix (CSV, TSV, parquet), its field separator, and its encoding.

A file in another Unicode encoding than `data.files.encoding` (a UTF-16 or UTF-32 file, a UTF-8
byte-order mark) is read as what it is, with a one-line note on stderr saying so; a UTF-8 file
declared latin-1 or cp1252 is refused rather than read as mojibake, and so is a file declared
latin-1 whose bytes 0x80-0x9F latin-1 would read as control characters (in Windows-1252, cp1252,
they are curly quotes, dashes, `€`). A file that is not valid UTF-8 is refused with the 8-bit
encoding that reads it. What the columns mean is `pipeline.data.files`' business.
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
        frame = pl.read_csv(source, separator=separator, infer_schema=False, encoding="utf8")
    except pl.exceptions.NoDataError:
        raise RecliError(
            f"{path} is empty: point {key} at a file with a header row and data"
        ) from None
    except pl.exceptions.PolarsError as error:
        if "utf-8" in str(error).lower() or "utf8" in str(error).lower():
            raise _not_utf8(file.read_bytes(), path, separator) from None
        raise RecliError(
            f"{path} could not be parsed ({_first_line(error)}): check data.files.separator "
            f"(now {separator!r}) and the file's quoting"
        ) from None
    # polars reads a header leniently, bad bytes as U+FFFD, where a data row would fail.
    if source == file and any("\ufffd" in column for column in frame.columns):
        data = file.read_bytes()
        try:
            data.split(b"\n", 1)[0].decode("utf-8")
        except UnicodeDecodeError:
            raise _not_utf8(data, path, separator) from None
    return frame


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
        _refuse_utf8_as_8bit(data, path, separator, encoding)
        return _decode_8bit(data, path, separator, encoding).encode("utf-8")
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


def _refuse_utf8_as_8bit(data: bytes, path: Path, separator: str, encoding: str) -> None:
    """Stop where a file declared latin-1 or cp1252 is UTF-8 with non-ASCII text.

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
    number, field = _field_at(data, start, separator)
    # Cutting at 60 bytes may split a character; `ignore` drops only that one.
    sample = field.decode("utf-8", errors="ignore")
    raise RecliError(
        f"{path} is UTF-8, but data.files.encoding is {encoding}, which would read line "
        f"{number}'s {sample!r} as "
        f"{sample.encode('utf-8').decode(encoding, errors='replace')!r}: "
        "set data.files.encoding: utf-8 in params.yaml"
    )


def _decode_8bit(data: bytes, path: Path, separator: str, encoding: str) -> str:
    """`data` decoded as `encoding` (latin-1 or cp1252), refused where that gives no text.

    Latin-1 reads the bytes 0x80-0x9F as C1 control characters, which no title means: they are
    what a Windows-1252 file's curly quotes, dashes and `€` become (`\\x93Quoted\\x94`). Such a
    file is refused with `cp1252` as the fix rather than read with a note: the setting then says
    what the file is, and a byte 0x80-0x9F may also be a letter of another code page (`é` is
    0x82 in DOS's cp850), which the message's example lets the user see before choosing.
    """
    if encoding == "cp1252":
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError as error:
            raise _no_8bit_reading(data, error.start, path) from None
    control = re.search(rb"[\x80-\x9f]", data)
    if control is None:
        return data.decode(encoding)
    try:
        data.decode("cp1252")
    except UnicodeDecodeError as error:
        raise _no_8bit_reading(data, error.start, path) from None
    number, field = _field_at(data, control.start(), separator)
    raise RecliError(
        f"{path} has bytes that latin-1 reads as control characters: line {number}'s "
        f"{field.decode('latin-1')!r} is {field.decode('cp1252')!r} in Windows-1252: "
        "set data.files.encoding: cp1252 in params.yaml"
    )


def _not_utf8(data: bytes, path: Path, separator: str) -> RecliError:
    """The error for a file declared UTF-8 that is not, naming the 8-bit encoding that reads it:
    latin-1 where no byte UTF-8 cannot read is in 0x80-0x9F (there latin-1 and cp1252 agree),
    cp1252 where such bytes are its printable characters, else neither; none for a file whose
    UTF-8 byte-order mark says it is UTF-8."""
    if data.startswith(codecs.BOM_UTF8):
        # The mark says UTF-8, so no 8-bit encoding is the fix: part of the file is not UTF-8.
        return RecliError(
            f"{path} starts with a UTF-8 byte-order mark but is not valid UTF-8 "
            "throughout: re-save the whole file as UTF-8"
        )
    # Each byte UTF-8 cannot read becomes one surrogate U+DC80-U+DCFF, in place.
    text = data.decode("utf-8", errors="surrogateescape")
    control = re.search("[\udc80-\udc9f]", text)
    if control is None:
        return RecliError(
            f"{path} is not valid UTF-8: set data.files.encoding: latin-1 in params.yaml"
        )
    try:
        data.decode("cp1252")
    except UnicodeDecodeError as error:
        return _no_8bit_reading(data, error.start, path, "is not valid UTF-8 and has")
    start = len(text[: control.start()].encode("utf-8", errors="surrogateescape"))
    number, field = _field_at(data, start, separator)
    return RecliError(
        f"{path} is not valid UTF-8; it reads as Windows-1252, where line {number} has "
        f"{field.decode('cp1252')!r} (latin-1 would read control characters there): "
        "set data.files.encoding: cp1252 in params.yaml"
    )


def _no_8bit_reading(data: bytes, start: int, path: Path, lead: str = "has") -> RecliError:
    """The error for byte `start`, one of 0x81, 0x8D, 0x8F, 0x90 and 0x9D: undefined in cp1252
    and a control character in latin-1, so no setting reads the file right; UTF-8 does, once the
    file is saved so."""
    number = data.count(b"\n", 0, start) + 1
    return RecliError(
        f"{path} {lead} byte 0x{data[start]:02X} on line {number}, a control character in "
        "latin-1 and undefined in Windows-1252 (cp1252), so no data.files.encoding reads it "
        "right: re-save the file as UTF-8"
    )


def _field_at(data: bytes, start: int, separator: str) -> tuple[int, bytes]:
    """The line number (1-based) and the field (at most 60 bytes, unquoted) holding byte
    `start` of `data`."""
    mark = separator.encode("utf-8")
    field_start = max(data.rfind(b"\n", 0, start), data.rfind(mark, 0, start)) + 1
    ends = [end for end in (data.find(b"\n", start), data.find(mark, start)) if end >= 0]
    field = data[field_start : min(ends, default=len(data))][:60]
    return data.count(b"\n", 0, start) + 1, field.strip().strip(b'"')


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
