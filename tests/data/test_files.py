"""Bring-your-own files: exact normalised output on tiny fixtures, one clear error per problem,
and paths read under the project root but shown as `params.yaml` spells them. Encodings are in
`test_files_encodings.py`, timestamps' units in `test_files_timestamps.py`."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from byo_files import error_message, write
from polars.testing import assert_frame_equal

from pipeline.core.config import FileColumns, FilesSource, ItemColumns, TagColumns
from pipeline.data.files import load_files
from pipeline.data.raw import INTERACTIONS_SCHEMA, ITEMS_SCHEMA

FIXTURES = Path(__file__).parents[1] / "fixtures" / "byo"
ML_LATEST_SMALL = Path(__file__).resolve().parents[3] / "shared" / "data" / "ml-latest-small"
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
