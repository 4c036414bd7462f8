"""Bring-your-own files: exact normalised output on tiny fixtures, one clear error per problem,
and paths read under the project root but shown as `params.yaml` spells them."""

from __future__ import annotations

import codecs
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipeline.core.config import (
    FileColumns,
    FilesSource,
    ItemColumns,
    PreprocessConfig,
    SplitConfig,
    TagColumns,
)
from pipeline.data.files import load_files
from pipeline.data.raw import INTERACTIONS_SCHEMA, ITEMS_SCHEMA
from pipeline.preprocess import run
from recli.errors import RecliError

FIXTURES = Path(__file__).parent / "fixtures" / "byo"
ML_LATEST_SMALL = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small"
MOVIELENS_COLUMNS = {
    "columns": FileColumns(user="userId", item="movieId"),
    "item_columns": ItemColumns(item="movieId"),
    "tag_columns": TagColumns(item="movieId"),
}


def fixture_config(**overrides: object) -> FilesSource:
    settings: dict[str, object] = {
        "interactions": FIXTURES / "interactions.csv",
        "items": FIXTURES / "items.csv",
        "tags": FIXTURES / "tags.csv",
        **MOVIELENS_COLUMNS,
    }
    return FilesSource(**{**settings, **overrides})


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def error_message(cfg: FilesSource, root: Path = Path(".")) -> str:
    with pytest.raises(RecliError) as caught:
        load_files(cfg, root)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_fixture_interactions_keep_duplicates_and_missing_ids() -> None:
    raw = load_files(fixture_config())
    expected = pl.DataFrame(
        {
            "user_id": ["u1", "u1", None, "u2", "u2", "u3", "u3"],
            "item_id": ["007", "007", "10", "10", "20", "30", "40"],
            "rating": [4.5, 4.5, 3.0, 5.0, None, 2.5, 1.0],
            "timestamp": [978300760, 978300760, 978300761, 978300762, 978300763, None, 978300765],
        },
        schema=INTERACTIONS_SCHEMA,
    )
    assert_frame_equal(raw.interactions, expected)
    assert raw.users is None
    assert raw.source == "files: interactions.csv, items.csv, tags.csv"


def test_fixture_items_are_normalised() -> None:
    raw = load_files(fixture_config())
    expected = pl.DataFrame(
        {
            "item_id": ["007", "10", "20", "30", "40"],
            "title": [
                "GoldenEye (1995)",
                "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)",
                "Untitled Project",
                "Fawlty Towers (1975-1979)",
                None,
            ],
            "year": [1995, 2001, None, 1975, None],
            "genres": [
                ["Action", "Adventure", "Thriller"],
                ["Comedy", "Romance"],
                [],
                ["Comedy"],
                ["Drama"],
            ],
            # Lowercased, de-duplicated, most used first: "quirky" 3 times beats "paris" twice.
            "tags": [["bond", "spy"], ["quirky", "paris"], [], [], []],
            "description": [None] * 5,
        },
        schema=ITEMS_SCHEMA,
    )
    assert_frame_equal(raw.items, expected)


def test_optional_columns_absent_give_nulls_and_empty_lists() -> None:
    cfg = fixture_config(
        tags=None,
        columns=FileColumns(user="userId", item="movieId", rating=None, timestamp=None),
        item_columns=ItemColumns(item="movieId", genres=None),
    )
    raw = load_files(cfg)
    assert raw.interactions.schema == INTERACTIONS_SCHEMA
    assert raw.interactions["rating"].null_count() == raw.interactions.height
    assert raw.interactions["timestamp"].null_count() == raw.interactions.height
    assert raw.items.schema == ITEMS_SCHEMA
    assert raw.items["genres"].to_list() == [[]] * 5
    assert raw.items["tags"].to_list() == [[]] * 5
    assert raw.source == "files: interactions.csv, items.csv"


def test_description_and_custom_list_separator(tmp_path: Path) -> None:
    items = write(
        tmp_path / "items.tsv",
        "id\tname\tkinds\tblurb\n1\tHeat (1995)\tCrime; Drama ;\t A heist. \n2\tUp\t\t\n",
    )
    events = write(tmp_path / "events.tsv", "user_id\titem_id\trating\ttimestamp\na\t1\t4\t10\n")
    cfg = FilesSource(
        interactions=events,
        items=items,
        item_columns=ItemColumns(
            item="id", title="name", genres="kinds", description="blurb", list_separator=";"
        ),
    )
    raw = load_files(cfg)
    assert raw.items.to_dicts() == [
        {
            "item_id": "1",
            "title": "Heat (1995)",
            "year": 1995,
            "genres": ["Crime", "Drama"],
            "tags": [],
            "description": "A heist.",
        },
        {
            "item_id": "2",
            "title": "Up",
            "year": None,
            "genres": [],
            "tags": [],
            "description": None,
        },
    ]


def test_txt_file_with_separator_and_tab_alias(tmp_path: Path) -> None:
    events = write(tmp_path / "events.txt", "user_id\titem_id\trating\ttimestamp\na\t1\t4\t10\n")
    items = write(tmp_path / "items.dat", "item_id\ttitle\tgenres\n1\tHeat (1995)\tCrime\n")
    # `'\t'` in single-quoted YAML arrives as a backslash and a t.
    raw = load_files(FilesSource(interactions=events, items=items, separator="\\t"))
    assert raw.interactions.row(0) == ("a", "1", 4.0, 10)


def test_parquet_float_ids_and_datetime_timestamps(tmp_path: Path) -> None:
    events = tmp_path / "events.parquet"
    pl.DataFrame(
        {
            "user_id": [1.0, 2.0, None],
            "item_id": [7, 8, 7],
            "rating": [4, 5, 3],
            "timestamp": pl.Series(
                ["1970-01-01 00:00:10", "2001-01-01 00:00:00", None]
            ).str.to_datetime(),
        }
    ).write_parquet(events)
    items = tmp_path / "items.parquet"
    pl.DataFrame(
        {"item_id": [7, 8], "title": ["A (1999)", "B"], "genres": [["X", "(no genres listed)"], []]}
    ).write_parquet(items)
    raw = load_files(FilesSource(interactions=events, items=items))
    assert raw.interactions.to_dict(as_series=False) == {
        "user_id": ["1", "2", None],
        "item_id": ["7", "8", "7"],
        "rating": [4.0, 5.0, 3.0],
        "timestamp": [10, 978307200, None],
    }
    assert raw.items["genres"].to_list() == [["X"], []]
    assert raw.items["year"].to_list() == [1999, None]


def test_float_timestamps_and_huge_integers(tmp_path: Path) -> None:
    events = write(
        tmp_path / "e.csv",
        "user_id,item_id,rating,timestamp\na,1,nan,12.7\na,2, 3 ,9007199254740993\n",
    )
    items = write(tmp_path / "i.csv", "item_id,title,genres\n1,A,\n2,B,\n")
    # Numbers this far apart are no one unit of time; `s` takes them as they are.
    raw = load_files(FilesSource(interactions=events, items=items, timestamp_unit="s"))
    # Integers beyond 2**53 survive exactly; fractional seconds are floored; NaN is missing.
    assert raw.interactions["timestamp"].to_list() == [12, 9007199254740993]
    assert raw.interactions["rating"].to_list() == [None, 3.0]


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


@pytest.mark.parametrize(
    ("which", "key"),
    [
        ("interactions", "data.files.interactions"),
        ("items", "data.files.items"),
        ("tags", "data.files.tags"),
    ],
)
def test_missing_file_names_path_and_key(tmp_path: Path, which: str, key: str) -> None:
    missing = tmp_path / "nowhere.csv"
    message = error_message(fixture_config(**{which: missing}))
    assert str(missing) in message
    assert key in message


@pytest.mark.parametrize("content", ["", "userId,movieId,rating,timestamp\n"])
def test_empty_interactions_file(tmp_path: Path, content: str) -> None:
    path = write(tmp_path / "events.csv", content)
    message = error_message(fixture_config(interactions=path))
    assert str(path) in message
    assert "data.files.interactions" in message


@pytest.mark.parametrize(
    ("file", "override", "column", "key"),
    [
        (
            "interactions",
            {"columns": FileColumns(user="uid", item="movieId")},
            "uid",
            "data.files.columns.user",
        ),
        (
            "interactions",
            {"columns": FileColumns(user="userId", item="movieId", rating="stars")},
            "stars",
            "data.files.columns.rating",
        ),
        (
            "interactions",
            {"columns": FileColumns(user="userId", item="movieId", timestamp="when")},
            "when",
            "data.files.columns.timestamp",
        ),
        (
            "items",
            {"item_columns": ItemColumns(item="movieId", title="name")},
            "name",
            "data.files.item_columns.title",
        ),
        ("items", {"item_columns": ItemColumns(item="id")}, "id", "data.files.item_columns.item"),
        (
            "tags",
            {"tag_columns": TagColumns(item="movieId", tag="label")},
            "label",
            "data.files.tag_columns.tag",
        ),
    ],
)
def test_missing_column_names_column_found_columns_and_key(
    file: str, override: dict[str, object], column: str, key: str
) -> None:
    message = error_message(fixture_config(**override))
    assert f"'{column}'" in message
    assert key in message
    found = {
        "interactions": "userId, movieId, rating, timestamp",
        "items": "movieId, title, genres",
    }
    assert found.get(file, "userId, movieId, tag, timestamp") in message


def test_wrong_separator_is_hinted(tmp_path: Path) -> None:
    events = write(tmp_path / "events.csv", "user_id;item_id;rating;timestamp\na;1;4;10\n")
    message = error_message(fixture_config(interactions=events, columns=FileColumns()))
    assert "data.files.separator" in message


@pytest.mark.parametrize(
    ("row", "column", "bad", "key"),
    [
        ("u1,1,four,10", "rating", "four", "data.files.columns.rating"),
        ("u1,1,4,2021-13-45", "timestamp", "2021-13-45", "data.files.columns.timestamp"),
    ],
)
def test_non_numeric_values(tmp_path: Path, row: str, column: str, bad: str, key: str) -> None:
    events = write(tmp_path / "events.csv", f"userId,movieId,rating,timestamp\nu1,1,4,9\n{row}\n")
    message = error_message(fixture_config(interactions=events))
    assert f"'{column}'" in message
    assert repr(bad) in message
    assert "line 3" in message
    assert key in message


def test_text_file_without_separator(tmp_path: Path) -> None:
    events = write(tmp_path / "events.txt", "user_id\titem_id\n")
    message = error_message(fixture_config(interactions=events))
    assert "set data.files.separator" in message


def test_unsupported_extension_and_corrupt_parquet(tmp_path: Path) -> None:
    odd = write(tmp_path / "events.xlsx", "x")
    assert ".xlsx" in error_message(fixture_config(interactions=odd))
    corrupt = write(tmp_path / "events.parquet", "not parquet")
    assert str(corrupt) in error_message(fixture_config(interactions=corrupt))


@pytest.mark.skipif(not ML_LATEST_SMALL.exists(), reason="../shared/data/ml-latest-small absent")
def test_ml_latest_small() -> None:
    # The expected sizes come from the dataset's own README, so either published version passes
    # (2016: 100,004 ratings by 671 users on 9,125 movies; 2018: 100,836 / 610 / 9,742).
    readme = (ML_LATEST_SMALL / "README.txt").read_text(encoding="utf-8")
    documented = re.search(
        r"contains (\d+) ratings and (\d+) tag applications across (\d+) movies\. "
        r"These data were created by (\d+) users",
        readme,
    )
    assert documented is not None
    ratings, tag_rows, movies, users = (int(value) for value in documented.groups())
    raw = load_files(
        FilesSource(
            interactions=ML_LATEST_SMALL / "ratings.csv",
            items=ML_LATEST_SMALL / "movies.csv",
            tags=ML_LATEST_SMALL / "tags.csv",
            **MOVIELENS_COLUMNS,
        )
    )
    assert raw.interactions.height == ratings
    assert raw.interactions["user_id"].n_unique() == users
    assert raw.items.height == movies
    assert raw.interactions.null_count().row(0) == (0, 0, 0, 0)
    tagged = raw.items.filter(pl.col("tags").list.len() > 0)
    assert 0 < tagged.height <= tag_rows
    assert raw.items.filter(pl.col("item_id") == "1")["year"].item() == 1995


# --------------------------------------------------------------------------------------------
# Paths: read under the project root, shown as written
# --------------------------------------------------------------------------------------------
@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder holding the fixtures under `input/`, while the current directory is
    another folder."""
    root = tmp_path / "project"
    shutil.copytree(FIXTURES, root / "input")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return root


def relative_config(**overrides: object) -> FilesSource:
    """The fixtures as a project's params.yaml names them: relative to the project folder."""
    relative = {name: Path("input") / f"{name}.csv" for name in ("interactions", "items", "tags")}
    return fixture_config(**{**relative, **overrides})


def test_relative_paths_are_read_under_the_root(project: Path) -> None:
    raw = load_files(relative_config(), project)
    expected = load_files(fixture_config())
    assert_frame_equal(raw.interactions, expected.interactions)
    assert_frame_equal(raw.items, expected.items)
    assert raw.source == expected.source


def test_absolute_paths_ignore_the_root(project: Path) -> None:
    raw = load_files(fixture_config(), project / "unrelated")
    assert raw.interactions.height == 7


@pytest.mark.parametrize(
    ("override", "written"),
    [
        ({"interactions": Path("input/nowhere.csv")}, "input/nowhere.csv not found"),
        (
            {"item_columns": ItemColumns(item="movieId", title="name")},
            "input/items.csv: column 'name' not found",
        ),
    ],
)
def test_messages_show_the_path_as_written(
    project: Path, override: dict[str, object], written: str
) -> None:
    message = error_message(relative_config(**override), project)
    assert message.startswith(written)
    assert str(project) not in message


# --------------------------------------------------------------------------------------------
# Encodings: a file is read as what its bytes say, or refused with the setting that fixes it
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# Timestamps: one unit, seconds, said where converted
# --------------------------------------------------------------------------------------------
# 2021-01-01 00:00:00 UTC plus half a second, and a day later, in each unit.
NEW_YEAR = 1609459200


def timestamp_events(tmp_path: Path, stamps: list[str], users: list[str] | None = None) -> Path:
    users = users or ["u1"] * len(stamps)
    rows = "".join(f"{user},1,4,{stamp}\n" for user, stamp in zip(users, stamps, strict=True))
    return write(tmp_path / "events.csv", "user_id,item_id,rating,timestamp\n" + rows)


def items_file(tmp_path: Path) -> Path:
    return write(tmp_path / "items.csv", "item_id,title,genres\n1,A,\n")


@pytest.mark.parametrize(
    ("unit", "name", "factor"),
    [("ms", "milliseconds", 10**3), ("us", "microseconds", 10**6), ("ns", "nanoseconds", 10**9)],
)
def test_sub_second_units_are_told_by_size_and_converted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], unit: str, name: str, factor: int
) -> None:
    stamps = [str(NEW_YEAR * factor + factor // 2), str((NEW_YEAR + 86400) * factor)]
    events = timestamp_events(tmp_path, stamps)
    raw = load_files(FilesSource(interactions=events, items=items_file(tmp_path)))
    assert raw.interactions["timestamp"].to_list() == [NEW_YEAR, NEW_YEAR + 86400]
    assert capsys.readouterr().err == (
        f"data: {events}: column 'timestamp' holds {name} since 1970 (2021-01-01 to 2021-01-02), "
        "told by their size (set data.files.timestamp_unit if that is wrong): "
        "converted to seconds\n"
    )


def test_parquet_milliseconds_are_converted(tmp_path: Path) -> None:
    events = tmp_path / "events.parquet"
    pl.DataFrame(
        {"user_id": ["a", "b"], "item_id": ["1", "1"], "timestamp": [NEW_YEAR * 1000, None]}
    ).write_parquet(events)
    cfg = FilesSource(
        interactions=events, items=items_file(tmp_path), columns=FileColumns(rating=None)
    )
    assert load_files(cfg).interactions["timestamp"].to_list() == [NEW_YEAR, None]


def test_seconds_are_kept_without_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = timestamp_events(tmp_path, ["874965758", "12.7", "", "2021-01-01"])
    raw = load_files(FilesSource(interactions=events, items=items_file(tmp_path)))
    assert raw.interactions["timestamp"].to_list() == [874965758, 12, None, NEW_YEAR]
    assert capsys.readouterr().err == ""


def test_collapsed_order_within_a_second_is_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ms = NEW_YEAR * 1000
    # u1's first two events were 300 ms apart and now share a second; u2's event shares that
    # second with u1's, which changes no one's order; u1's third event was already tied.
    events = timestamp_events(
        tmp_path, [str(ms + 100), str(ms + 400), str(ms + 400), str(ms)], ["u1", "u1", "u1", "u2"]
    )
    load_files(FilesSource(interactions=events, items=items_file(tmp_path)))
    assert (
        capsys.readouterr()
        .err.rstrip("\n")
        .endswith(
            "converted to seconds; 3 events now share their second with an event of the same user "
            "at another instant (preprocess orders such ties by preprocess.split.seed)"
        )
    )


def test_mixed_units_are_refused_with_the_setting(tmp_path: Path) -> None:
    events = timestamp_events(tmp_path, [str(NEW_YEAR), "5", str(NEW_YEAR * 10**6)])
    message = error_message(FilesSource(interactions=events, items=items_file(tmp_path)))
    assert message == (
        f"{events}: column 'timestamp' mixes time units: {NEW_YEAR} (line 2) looks like seconds, "
        f"{NEW_YEAR * 10**6} (line 4) looks like microseconds: make the column one unit, or set "
        "data.files.timestamp_unit to its unit (s, ms, us or ns; s keeps every number as it is)"
    )


def test_told_unit_converts_every_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A zero placeholder among milliseconds is "mixed" by size; the setting settles it.
    events = timestamp_events(tmp_path, ["0", str(NEW_YEAR * 1000 + 999)])
    cfg = FilesSource(interactions=events, items=items_file(tmp_path), timestamp_unit="ms")
    assert load_files(cfg).interactions["timestamp"].to_list() == [0, NEW_YEAR]
    assert "as data.files.timestamp_unit says: converted to seconds" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["inf", "-inf", "1e400", "9223372036854775808"])
def test_timestamps_that_are_no_time_are_refused(tmp_path: Path, value: str) -> None:
    events = timestamp_events(tmp_path, [str(NEW_YEAR), value])
    message = error_message(FilesSource(interactions=events, items=items_file(tmp_path)))
    assert message == (
        f"{events}: column 'timestamp' has {value!r}, not a time (line 3): fix the file, "
        "or set data.files.columns.timestamp to a numeric column or null"
    )


def test_parquet_infinite_timestamp_is_refused(tmp_path: Path) -> None:
    events = tmp_path / "events.parquet"
    pl.DataFrame({"user_id": ["a"], "item_id": ["1"], "timestamp": [float("inf")]}).write_parquet(
        events
    )
    cfg = FilesSource(
        interactions=events, items=items_file(tmp_path), columns=FileColumns(rating=None)
    )
    assert "not a time (line 2)" in error_message(cfg)


def test_splits_see_seconds_whatever_unit_the_file_had(tmp_path: Path) -> None:
    """The conversion happens in the reader, so splits, interest periods and everything after
    them see the same seconds from a millisecond file as from a second one."""
    users = [f"u{user}" for user in range(4) for _ in range(5)]
    items = [str(item) for _ in range(4) for item in range(5)]
    seconds = [NEW_YEAR + 3600 * index for index in range(20)]
    items_path = write(
        tmp_path / "items.csv", "item_id,title,genres\n" + "".join(f"{i},T{i},\n" for i in range(5))
    )
    processed = {}
    for unit, factor in (("s", 1), ("ms", 1000)):
        rows = "".join(
            f"{user},{item},4,{stamp * factor}\n"
            for user, item, stamp in zip(users, items, seconds, strict=True)
        )
        events = write(tmp_path / f"events_{unit}.csv", "user_id,item_id,rating,timestamp\n" + rows)
        raw = load_files(FilesSource(interactions=events, items=items_path))
        for strategy in ("leave_last_out", "temporal"):
            cfg = PreprocessConfig(
                min_user_interactions=3,
                cold_item_fraction=0.0,
                split=SplitConfig(strategy=strategy),
            )
            processed[unit, strategy] = run(raw, cfg)
    for strategy in ("leave_last_out", "temporal"):
        seconds_run, ms_run = processed["s", strategy], processed["ms", strategy]
        for name in ("train", "validation", "test"):
            assert_frame_equal(getattr(ms_run, name), getattr(seconds_run, name))
        kept = pl.concat([seconds_run.train, seconds_run.validation, seconds_run.test])
        assert set(kept["timestamp"].to_list()) <= set(seconds)
