"""Bring-your-own files' encodings: a file is read as what its bytes say (a byte-order mark,
UTF-16 or UTF-32 without one), or refused with the setting that fixes it, never read as
mojibake."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from byo_files import error_message, write

from pipeline.core.config import FilesSource, ItemColumns
from pipeline.data.files import load_files


def test_latin1_file_reads_with_latin1_encoding(tmp_path: Path) -> None:
    items = write(
        tmp_path / "items.csv", "item_id,title,genres\n1,Misérables (1995),Drama\n", "latin-1"
    )
    events = write(tmp_path / "events.csv", "user_id,item_id,rating,timestamp\na,1,4,10\n")
    raw = load_files(FilesSource(interactions=events, items=items, encoding="latin-1"))
    assert raw.items["title"].to_list() == ["Misérables (1995)"]

    message = error_message(FilesSource(interactions=events, items=items))
    assert str(items) in message
    assert "set data.files.encoding: latin-1" in message


def test_latin1_header_hints_at_the_encoding(tmp_path: Path) -> None:
    items = write(tmp_path / "items.csv", "item_id,títle,genres\n1,A,Drama\n", "latin-1")
    events = write(tmp_path / "events.csv", "user_id,item_id,rating,timestamp\na,1,4,10\n")
    message = error_message(
        FilesSource(interactions=events, items=items, item_columns=ItemColumns(title="títle"))
    )
    assert "data.files.encoding: latin-1" in message


TITLES = "item_id,title,genres\n1,Amélie (2001),Comedy\n2,Ça tourne à Manhattan (1993),Drama\n"
EVENTS = "user_id,item_id,rating,timestamp\nu1,1,4,978300760\nu1,2,3,978300761\n"


def write_pair(tmp_path: Path, encoding: str) -> FilesSource:
    return FilesSource(
        interactions=write(tmp_path / "events.csv", EVENTS, encoding),
        items=write(tmp_path / "items.csv", TITLES, encoding),
    )


@pytest.mark.parametrize(
    ("encoding", "name", "mark"),
    [
        ("utf-16", "UTF-16LE", True),  # Python writes a byte-order mark, then little-endian
        ("utf-16-le", "UTF-16LE", False),
        ("utf-16-be", "UTF-16BE", False),
        ("utf-32", "UTF-32LE", True),
        ("utf-32-le", "UTF-32LE", False),
        ("utf-32-be", "UTF-32BE", False),
    ],
)
@pytest.mark.parametrize("declared", ["utf-8", "latin-1"])
def test_utf16_and_utf32_files_are_read_with_a_note(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    encoding: str,
    name: str,
    mark: bool,
    declared: str,
) -> None:
    cfg = write_pair(tmp_path, encoding).model_copy(update={"encoding": declared})
    raw = load_files(cfg)
    assert raw.items["title"].to_list() == ["Amélie (2001)", "Ça tourne à Manhattan (1993)"]
    assert raw.interactions.row(0) == ("u1", "1", 4.0, 978300760)
    notes = capsys.readouterr().err.splitlines()
    how = f"starts with a {name} byte-order mark" if mark else f"is {name} (no byte-order mark)"
    assert f"data: {cfg.items} {how}: read as {name}, not as data.files.encoding ({declared})" in (
        notes
    )
    assert len(notes) == 2  # one line per file


def test_utf8_byte_order_mark_overrules_a_latin1_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_pair(tmp_path, "utf-8-sig").model_copy(update={"encoding": "latin-1"})
    raw = load_files(cfg)
    assert raw.items["title"].to_list()[0] == "Amélie (2001)"
    assert "starts with a UTF-8 byte-order mark: read as UTF-8" in capsys.readouterr().err


def test_files_as_declared_read_without_notes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # UTF-8 with or without a mark, and latin-1 declared latin-1: nothing to say.
    for encoding, declared in (("utf-8", "utf-8"), ("utf-8-sig", "utf-8"), ("latin-1", "latin-1")):
        cfg = write_pair(tmp_path, encoding).model_copy(update={"encoding": declared})
        assert load_files(cfg).items["title"].to_list()[0] == "Amélie (2001)"
    assert capsys.readouterr().err == ""


def test_utf8_file_declared_latin1_is_refused_not_read_as_mojibake(tmp_path: Path) -> None:
    cfg = write_pair(tmp_path, "utf-8").model_copy(update={"encoding": "latin-1"})
    message = error_message(cfg)
    assert message == (
        f"{cfg.items} is UTF-8, but data.files.encoding is latin-1, which would read line 2's "
        "'Amélie (2001)' as 'AmÃ©lie (2001)': set data.files.encoding: utf-8 in params.yaml"
    )


def test_ascii_file_declared_latin1_reads(tmp_path: Path) -> None:
    cfg = write_pair(tmp_path, "utf-8").model_copy(update={"encoding": "latin-1"})
    write(tmp_path / "items.csv", "item_id,title,genres\n1,Heat (1995),Crime\n2,Up,\n")
    assert load_files(cfg).items["title"].to_list() == ["Heat (1995)", "Up"]


def test_broken_utf16_names_what_it_looked_like(tmp_path: Path) -> None:
    cfg = write_pair(tmp_path, "utf-16")
    # A lone high surrogate: the mark says UTF-16, the bytes after it are not.
    write(tmp_path / "items.csv", "item_id,title\n1,A", "utf-16")
    (tmp_path / "items.csv").write_bytes((tmp_path / "items.csv").read_bytes() + b"\x00\xd8")
    message = error_message(cfg)
    assert message.startswith(f"{cfg.items} starts with a UTF-16LE byte-order mark but is not ")
    assert message.endswith("re-save it as UTF-8")


def test_utf8_mark_with_latin1_bytes_does_not_suggest_latin1(tmp_path: Path) -> None:
    cfg = write_pair(tmp_path, "utf-8")
    (tmp_path / "items.csv").write_bytes(
        codecs.BOM_UTF8 + "item_id,title,genres\n1,Misérables,Drama\n".encode("latin-1")
    )
    message = error_message(cfg)
    assert "latin-1" not in message
    assert message == (
        f"{cfg.items} starts with a UTF-8 byte-order mark but is not valid UTF-8 throughout: "
        "re-save the whole file as UTF-8"
    )
