"""Properties of the bring-your-own reader on small generated tables, written in every encoding,
separator and timestamp unit it reads: it keeps every row with the same ids and the same instant,
round-trips text exactly, says what it converted, and fails only with a one-line `RecliError`."""

from __future__ import annotations

import contextlib
import csv
import io
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipeline.core.config import FileColumns, FilesSource
from pipeline.core.sections import PreprocessConfig, SplitConfig
from pipeline.data.files import load_files
from pipeline.data.raw import RawData
from pipeline.preprocess import clean
from recli.errors import RecliError

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# (codec the file is written in, data.files.encoding, note expected): Python's `utf-16` and
# `utf-32` write a byte-order mark, the `-le`/`-be` codecs do not.
ENCODINGS = [
    ("utf-8", "utf-8", False),
    ("utf-8-sig", "utf-8", False),
    ("utf-8-sig", "latin-1", True),
    ("latin-1", "latin-1", False),
    ("utf-16", "utf-8", True),
    ("utf-16-le", "utf-8", True),
    ("utf-16-be", "latin-1", True),
    ("utf-32", "utf-8", True),
    ("utf-32-le", "latin-1", True),
    ("utf-32-be", "utf-8", True),
]
# (separator written, file suffix, data.files.separator)
SEPARATORS = [
    (",", ".csv", None),
    ("\t", ".tsv", None),
    (";", ".csv", ";"),
    ("|", ".txt", "|"),
    ("\t", ".csv", "\\t"),
]
UNITS = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
UNIT_NAMES = {"ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
# 1973-03-03 to 2096-10-02: every unit's values lie in one band of the reader's unit detection.
INSTANTS = st.integers(min_value=10**8, max_value=4 * 10**9)
MISSING_ID_CELLS = ("", "NaN", "nan", "  ")

ID_CHARACTERS = "0123456789abcXYZéß_-.,;|\"'"


def ids(latin1: bool) -> st.SearchStrategy[str]:
    """Ids with leading zeros, accents, quotes and separators (`NaN` is a missing id, drawn
    among `MISSING_ID_CELLS`)."""
    alphabet = ID_CHARACTERS if latin1 else ID_CHARACTERS + "日ő"
    return st.text(alphabet=alphabet, min_size=1, max_size=5).filter(
        lambda text: text not in ("NaN", "nan")
    )


def titles(latin1: bool) -> st.SearchStrategy[str]:
    """Titles of any printable text (and line breaks, which quoting keeps), from the characters
    the file's encoding can hold."""
    characters = st.characters(
        max_codepoint=255 if latin1 else None,
        exclude_categories=("Cs", "Cc"),
        include_characters="\n\r\t",
    )
    return st.text(alphabet=characters, max_size=12)


@dataclass(frozen=True)
class Table:
    codec: str
    declared: str
    note_expected: bool
    separator: str
    suffix: str
    setting: str | None
    unit: str
    # (user cell, item cell, rating, instant in seconds or None, sub-second offset in the unit)
    events: list[tuple[str, str, float | None, int | None, int]]
    # (item id, title)
    items: list[tuple[str, str]]

    def stamp(self, instant: int | None, offset: int) -> str:
        if instant is None:
            return ""
        if self.unit == "iso":
            return datetime.fromtimestamp(instant, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.unit == "fraction":
            return f"{instant}.{offset % 1000:03d}"
        return str(instant * UNITS[self.unit] + offset % UNITS[self.unit])

    def write(self, folder: Path) -> FilesSource:
        events = self._write_rows(
            folder / f"events{self.suffix}",
            ["user_id", "item_id", "rating", "timestamp"],
            [
                [user, item, "" if rating is None else repr(rating), self.stamp(instant, offset)]
                for user, item, rating, instant, offset in self.events
            ],
        )
        items = self._write_rows(
            folder / f"items{self.suffix}",
            ["item_id", "title", "genres"],
            [[item, title, ""] for item, title in self.items],
        )
        return FilesSource(
            interactions=events,
            items=items,
            separator=self.setting,
            encoding=self.declared,  # type: ignore[arg-type]
        )

    def _write_rows(self, path: Path, header: list[str], rows: list[list[str]]) -> Path:
        text = io.StringIO()
        writer = csv.writer(text, delimiter=self.separator, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        path.write_bytes(text.getvalue().encode(self.codec))
        return path


@st.composite
def tables(draw: st.DrawFn, units: tuple[str, ...] = ("s", "ms", "us", "ns", "iso", "fraction")):
    codec, declared, note_expected = draw(st.sampled_from(ENCODINGS))
    separator, suffix, setting = draw(st.sampled_from(SEPARATORS))
    latin1 = codec == "latin-1"
    catalogue = draw(
        st.lists(
            st.tuples(ids(latin1), titles(latin1)),
            min_size=1,
            max_size=6,
            unique_by=lambda row: row[0],
        )
    )
    known = [item for item, _ in catalogue]
    user = st.one_of(ids(latin1), st.sampled_from(MISSING_ID_CELLS))
    # Mostly items the catalogue has, sometimes one it lacks, so preprocess has events to drop.
    item = st.one_of(st.sampled_from(known), st.sampled_from(known), ids(latin1))
    rating = st.one_of(st.none(), st.floats(min_value=0, max_value=10, allow_nan=False))
    events = draw(
        st.lists(
            st.tuples(
                user,
                item,
                rating,
                st.one_of(st.none(), INSTANTS),
                st.integers(min_value=0, max_value=10**9 - 1),
            ),
            min_size=1,
            max_size=12,
        )
    )
    unit = draw(st.sampled_from(units))
    return Table(
        codec, declared, note_expected, separator, suffix, setting, unit, events, catalogue
    )


def expected_id(cell: str) -> str | None:
    return None if cell.strip() in ("", "NaN", "nan") else cell


def read(table: Table) -> tuple[RawData | RecliError, str]:
    """What the reader makes of `table`, and what it said on stderr."""
    with tempfile.TemporaryDirectory() as folder:
        cfg = table.write(Path(folder))
        notes = io.StringIO()
        with contextlib.redirect_stderr(notes):
            try:
                result: RawData | RecliError = load_files(cfg)
            except RecliError as error:
                result = error
    return result, notes.getvalue()


def refused_as_utf8(table: Table) -> bool:
    """A latin-1 file whose accented text happens to be valid UTF-8 (like `Ã©`) is refused as a
    UTF-8 file declared latin-1, by design: the only reads allowed to fail."""
    if table.codec != "latin-1":
        return False
    data = "".join(title for _, title in table.items).encode("latin-1")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not data.isascii()


@SETTINGS
@given(tables())
def test_every_row_is_kept_with_the_same_ids_instant_and_text(table: Table) -> None:
    result, notes = read(table)
    if isinstance(result, RecliError):
        assert refused_as_utf8(table), str(result)
        assert "set data.files.encoding: utf-8" in str(result)
        assert "\n" not in str(result)
        return
    events = result.interactions
    assert events.height == len(table.events)
    for row, (user, item, rating, instant, _) in zip(
        events.iter_rows(named=True), table.events, strict=True
    ):
        assert row["user_id"] == expected_id(user)
        assert row["item_id"] == expected_id(item)
        assert row["rating"] == rating
        assert row["timestamp"] == instant
    assert result.items["item_id"].to_list() == [item for item, _ in table.items]
    assert result.items["title"].to_list() == [title.strip() or None for _, title in table.items]

    # Every line on stderr is one of the reader's notes, and each thing it did is said.
    lines = notes.splitlines()
    assert all(line.startswith("data: ") for line in lines)
    encoding_notes = [line for line in lines if "byte-order mark" in line]
    assert len(encoding_notes) == (2 if table.note_expected else 0)
    converted = table.unit in UNIT_NAMES and any(event[3] is not None for event in table.events)
    unit_notes = [line for line in lines if "converted to seconds" in line]
    assert len(unit_notes) == int(converted)
    if converted:
        assert f"holds {UNIT_NAMES[table.unit]} since 1970" in unit_notes[0]


@SETTINGS
@given(tables())
def test_rows_preprocess_drops_are_counted(table: Table) -> None:
    result, _ = read(table)
    assume(not isinstance(result, RecliError))
    cfg = PreprocessConfig(
        min_user_interactions=1,
        min_item_interactions=1,
        max_unknown_item_share=1.0,
        split=SplitConfig(strategy="random_holdout"),
    )
    try:
        events, _, counts = clean(result, cfg)
    except RecliError as error:
        # Only "nothing left" may stop it, and then every event was dropped for a counted reason.
        assert str(error).startswith("no interactions left")
        return
    assert counts["raw_interactions"] == len(table.events)
    dropped = sum(
        value
        for key, value in counts.items()
        if key.startswith("dropped_")
        and key not in ("dropped_duplicate_items", "dropped_sparse_users")
    )
    assert events.height + dropped == len(table.events)
    # What is kept is one of the input rows, as the reader read it.
    read_rows = set(result.interactions.iter_rows())
    assert set(events.select(result.interactions.columns).iter_rows()) <= read_rows


@SETTINGS
@given(st.permutations(list(UNITS)), INSTANTS, INSTANTS)
def test_mixed_units_are_refused_and_a_told_unit_reads_them(
    units: list[str], first: int, second: int
) -> None:
    """Two events whose instants are in different units: refused with the setting that decides,
    and read in that unit once it is set."""
    unit, other = units[0], units[1]
    with tempfile.TemporaryDirectory() as folder:
        events = Path(folder) / "events.csv"
        events.write_text(
            f"user_id,item_id,timestamp\nu,1,{first * UNITS[unit]}\nu,1,{second * UNITS[other]}\n",
            encoding="utf-8",
        )
        items = Path(folder) / "items.csv"
        items.write_text("item_id,title,genres\n1,T,\n", encoding="utf-8")
        cfg = FilesSource(interactions=events, items=items, columns=FileColumns(rating=None))
        with pytest.raises(RecliError) as caught:
            load_files(cfg)
        message = str(caught.value)
        assert "\n" not in message
        assert "mixes time units" in message
        assert "data.files.timestamp_unit" in message
        told = cfg.model_copy(update={"timestamp_unit": unit})
        with contextlib.redirect_stderr(io.StringIO()):
            stamps = load_files(told).interactions["timestamp"].to_list()
    assert stamps == [first, second * UNITS[other] // UNITS[unit]]


cells = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(cells, cells, cells, cells), min_size=1, max_size=5),
    st.sampled_from(ENCODINGS),
    st.sampled_from(SEPARATORS),
    st.binary(max_size=16),
)
def test_anything_reads_or_fails_with_one_line(
    rows: list[tuple[str, str, str, str]],
    encoding: tuple[str, str, bool],
    separator: tuple[str, str, str | None],
    tail: bytes,
) -> None:
    """Arbitrary cells (control characters, quotes, separators) and arbitrary trailing bytes: the
    reader returns data or a one-line `RecliError`, never another exception."""
    codec, declared, _ = encoding
    mark, suffix, setting = separator
    text = io.StringIO()
    writer = csv.writer(text, delimiter=mark, lineterminator="\n")
    writer.writerow(["user_id", "item_id", "rating", "timestamp"])
    writer.writerows(rows)
    with tempfile.TemporaryDirectory() as folder:
        events = Path(folder) / f"events{suffix}"
        try:
            events.write_bytes(text.getvalue().encode(codec) + tail)
        except UnicodeEncodeError:
            events.write_bytes(text.getvalue().encode("utf-8") + tail)
        items = Path(folder) / "items.csv"
        items.write_text("item_id,title,genres\n1,A,\n", encoding="utf-8")
        cfg = FilesSource(
            interactions=events,
            items=items,
            separator=setting,
            encoding=declared,  # type: ignore[arg-type]
        )
        with contextlib.redirect_stderr(io.StringIO()):
            try:
                load_files(cfg)
            except RecliError as error:
                assert "\n" not in str(error)
