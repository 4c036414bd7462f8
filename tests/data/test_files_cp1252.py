"""Windows-1252 (cp1252) files: its bytes 0x80-0x9F are curly quotes, dashes, `€`, … where
latin-1 has control characters, so a cp1252 file is pointed at `cp1252`, and a file declared
latin-1 that would give control characters is refused rather than read with them."""

from __future__ import annotations

from pathlib import Path

import pytest
from byo_files import error_message, write

from pipeline.core.config import FilesSource
from pipeline.data.files import load_files

EVENTS = "user_id,item_id,rating,timestamp\nu1,1,4,978300760\nu1,2,3,978300761\n"
TITLES = "item_id,title,genres\n1,Amélie (2001),Comedy\n2,“Quoted” – Film (1999),Drama\n"


def write_pair(tmp_path: Path, titles: str | bytes, encoding: str) -> FilesSource:
    items = tmp_path / "items.csv"
    items.write_bytes(titles if isinstance(titles, bytes) else titles.encode("cp1252"))
    return FilesSource(
        interactions=write(tmp_path / "events.csv", EVENTS), items=items, encoding=encoding
    )


def test_cp1252_file_reads_with_cp1252_encoding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = load_files(write_pair(tmp_path, TITLES, "cp1252"))
    assert raw.items["title"].to_list() == ["Amélie (2001)", "“Quoted” – Film (1999)"]
    assert capsys.readouterr().err == ""


def test_cp1252_file_read_as_utf8_suggests_cp1252_not_latin1(tmp_path: Path) -> None:
    cfg = write_pair(tmp_path, TITLES, "utf-8")
    assert error_message(cfg) == (
        f"{cfg.items} is not valid UTF-8; it reads as Windows-1252, where line 3 has "
        "'“Quoted” – Film (1999)' (latin-1 would read control characters there): "
        "set data.files.encoding: cp1252 in params.yaml"
    )


def test_cp1252_header_suggests_cp1252(tmp_path: Path) -> None:
    # polars reads a header leniently (bad bytes become U+FFFD), so the reader checks it.
    cfg = write_pair(tmp_path, "item_id,title,genres,Notes – misc\n1,Heat,Crime,x\n", "utf-8")
    message = error_message(cfg)
    assert message.startswith(f"{cfg.items} is not valid UTF-8; it reads as Windows-1252")
    assert "line 1 has 'Notes – misc'" in message
    assert message.endswith("set data.files.encoding: cp1252 in params.yaml")


def test_latin1_file_read_as_utf8_still_suggests_latin1(tmp_path: Path) -> None:
    # No byte in 0x80-0x9F: latin-1 and cp1252 read it alike, and latin-1 is the plainer name.
    cfg = write_pair(tmp_path, "item_id,title\n1,Amélie (2001)\n", "utf-8")
    assert error_message(cfg) == (
        f"{cfg.items} is not valid UTF-8: set data.files.encoding: latin-1 in params.yaml"
    )


def test_cp1252_file_declared_latin1_is_refused_not_read_with_control_characters(
    tmp_path: Path,
) -> None:
    cfg = write_pair(tmp_path, TITLES, "latin-1")
    assert error_message(cfg) == (
        f"{cfg.items} has bytes that latin-1 reads as control characters: line 3's "
        "'\\x93Quoted\\x94 \\x96 Film (1999)' is '“Quoted” – Film (1999)' in Windows-1252: "
        "set data.files.encoding: cp1252 in params.yaml"
    )


@pytest.mark.parametrize("declared", ["utf-8", "latin-1", "cp1252"])
def test_a_byte_neither_latin1_nor_cp1252_reads_asks_for_utf8(
    tmp_path: Path, declared: str
) -> None:
    # 0x81 is a control character in latin-1 and undefined in cp1252 (in cp850, it is `ü`).
    titles = b"item_id,title\n1,Amelie\n2,Br\x81ck\n"
    cfg = write_pair(tmp_path, titles, declared)
    message = error_message(cfg)
    assert "byte 0x81 on line 3" in message
    assert message.endswith("re-save the file as UTF-8")
    assert "set data.files.encoding" not in message


def test_utf8_file_declared_cp1252_is_refused_not_read_as_mojibake(tmp_path: Path) -> None:
    cfg = write_pair(tmp_path, TITLES.encode("utf-8"), "cp1252")
    assert error_message(cfg) == (
        f"{cfg.items} is UTF-8, but data.files.encoding is cp1252, which would read line 2's "
        "'Amélie (2001)' as 'AmÃ©lie (2001)': set data.files.encoding: utf-8 in params.yaml"
    )


def test_utf16_file_declared_cp1252_is_read_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_pair(tmp_path, TITLES.encode("utf-16"), "cp1252")
    assert load_files(cfg).items["title"].to_list()[1] == "“Quoted” – Film (1999)"
    assert (
        f"data: {cfg.items} starts with a UTF-16LE byte-order mark: read as UTF-16LE, not as "
        "data.files.encoding (cp1252)"
    ) in capsys.readouterr().err


def test_utf8_mark_with_a_cp1252_header_does_not_suggest_an_8bit_encoding(tmp_path: Path) -> None:
    titles = b"\xef\xbb\xbfitem_id,title,genres,Notes \x96 misc\n1,Heat,Crime,x\n"
    cfg = write_pair(tmp_path, titles, "utf-8")
    assert error_message(cfg) == (
        f"{cfg.items} starts with a UTF-8 byte-order mark but is not valid UTF-8 throughout: "
        "re-save the whole file as UTF-8"
    )
