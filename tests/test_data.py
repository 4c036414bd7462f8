"""Raw-data loading: exact normalised output on tiny fixtures, and one clear error per problem."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipeline import data
from pipeline.config import DataConfig, FileColumns, FilesSource, ItemColumns, TagColumns
from pipeline.data import (
    INTERACTIONS_SCHEMA,
    ITEMS_SCHEMA,
    RawData,
    load_files,
    load_movielens_100k,
    load_source,
    parse_ml100k_grouplens,
    parse_ml100k_recbole,
)
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


def error_message(cfg: FilesSource) -> str:
    with pytest.raises(RecliError) as caught:
        load_files(cfg)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------------------------
# Bring-your-own files
# --------------------------------------------------------------------------------------------
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
    raw = load_files(FilesSource(interactions=events, items=items))
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
        ("u1,1,4,2021-03-01", "timestamp", "2021-03-01", "data.files.columns.timestamp"),
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


def test_load_source_dispatches_to_files() -> None:
    cfg = DataConfig(source="files", files=fixture_config())
    assert load_source(cfg).interactions.height == 7


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
# MovieLens-100K parsers (synthetic content in the real formats; nothing is downloaded)
# --------------------------------------------------------------------------------------------
RECBOLE_INTER = (
    b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    b"196\t242\t3\t881250949\n186\t1412\t3\t891717742\n22\t267\t1\t878887116\n"
)
RECBOLE_ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "242\tMisérables, Les\t1995\tDrama Musical\n"
    "1412\tLand Before Time III: The Time of the Great Giving (1995)\tV\tAnimation Children's\n"
    "267\tunkonwn\tunkonwn\tunknown\n"
).encode()
RECBOLE_USER = (
    b"user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
    b"196\t49\tM\twriter\t55105\n186\t39\tF\texecutive\t00000\n22\t25\tM\twriter\t40206\n"
)
GROUPLENS_DATA = b"196\t242\t3\t881250949\n186\t1412\t3\t891717742\n22\t267\t1\t878887116\n"


CHILDREN = "Children's"


def flags(*genres: str) -> str:
    return "|".join("1" if name in genres else "0" for name in data.ML100K_GENRES)


GROUPLENS_ITEM = (
    f"242|Misérables, Les (1995)|01-Jan-1995||http://us.imdb.com/x|{flags('Drama', 'Musical')}\n"
    "1412|Land Before Time III: The Time of the Great Giving (1995) (V)|V||"
    f"http://us.imdb.com/y|{flags('Animation', CHILDREN)}\n"
    f"267|unknown||||{flags('unknown')}\n"
).encode("latin-1")
GROUPLENS_USER = b"196|49|M|writer|55105\n186|39|F|executive|00000\n22|25|M|writer|40206\n"
EXPECTED_ML100K_ITEMS = pl.DataFrame(
    {
        "item_id": ["242", "1412", "267"],
        "title": [
            "Misérables, Les (1995)",
            "Land Before Time III: The Time of the Great Giving (1995) (V)",
            "unknown",
        ],
        "year": [1995, 1995, None],
        "genres": [["Drama", "Musical"], ["Animation", "Children's"], []],
        "tags": [[], [], []],
        "description": [None, None, None],
    },
    schema=ITEMS_SCHEMA,
)


def test_recbole_parser() -> None:
    raw = parse_ml100k_recbole(RECBOLE_INTER, RECBOLE_ITEM, RECBOLE_USER)
    assert raw.interactions.schema == INTERACTIONS_SCHEMA
    assert raw.interactions.row(0) == ("196", "242", 3.0, 881250949)
    # Titles regain their parenthesised year; the `V` year falls back to the title's (1995).
    assert_frame_equal(raw.items, EXPECTED_ML100K_ITEMS)
    assert raw.users is not None
    assert raw.users.schema == pl.Schema(
        {"user_id": pl.String, "age": pl.Int32, "gender": pl.String, "occupation": pl.String}
    )
    assert raw.users.row(1) == ("186", 39, "F", "executive")
    assert "recbole 1.2.1" in raw.source


def test_grouplens_parser_matches_recbole() -> None:
    raw = parse_ml100k_grouplens(GROUPLENS_DATA, GROUPLENS_ITEM, GROUPLENS_USER)
    recbole = parse_ml100k_recbole(RECBOLE_INTER, RECBOLE_ITEM, RECBOLE_USER)
    assert_frame_equal(raw.items, EXPECTED_ML100K_ITEMS)
    assert_frame_equal(raw.interactions, recbole.interactions)
    assert recbole.users is not None
    assert raw.users is not None
    assert_frame_equal(raw.users, recbole.users)


def test_grouplens_year_falls_back_to_release_date() -> None:
    item = f"5|Copycat|01-Jan-1995||url|{flags('Crime')}\n6|Odd|V||url|{flags()}\n".encode(
        "latin-1"
    )
    raw = parse_ml100k_grouplens(b"1\t5\t3\t1\n", item, b"1|20|M|none|0\n")
    assert raw.items["year"].to_list() == [1995, None]


# --------------------------------------------------------------------------------------------
# MovieLens-100K acquisition and cache (network and pip replaced by stubs)
# --------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_ml100k(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the tiny synthetic content pass the checksum and size checks."""
    monkeypatch.setattr(data, "ML100K_INTER_SHA256", hashlib.sha256(RECBOLE_INTER).hexdigest())
    monkeypatch.setattr(data, "ML100K_COUNTS", {"interactions": 3, "users": 3, "items": 3})


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def refuse_url(*args: object, **kwargs: object) -> None:
        calls.append("grouplens")
        raise OSError("network disabled in tests")

    def refuse_pip(*args: object, **kwargs: object) -> None:
        calls.append("pip")
        raise OSError("pip disabled in tests")

    monkeypatch.setattr(data.urllib.request, "urlopen", refuse_url)
    monkeypatch.setattr(data.subprocess, "run", refuse_pip)
    monkeypatch.delenv(data.OFFLINE_ENV, raising=False)
    return calls


def make_wheel(path: Path, inter: bytes = RECBOLE_INTER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as bundle:
        for kind, content in (("inter", inter), ("item", RECBOLE_ITEM), ("user", RECBOLE_USER)):
            bundle.writestr(f"{data.RECBOLE_ML100K_DIR}/ml-100k.{kind}", content)
    return path


@pytest.mark.usefixtures("tiny_ml100k")
def test_cached_wheel_is_used_without_network(tmp_path: Path, no_network: list[str]) -> None:
    make_wheel(tmp_path / "wheels" / "recbole-1.2.1-py3-none-any.whl")
    raw = load_movielens_100k(tmp_path)
    assert_frame_equal(raw.items, EXPECTED_ML100K_ITEMS)
    assert no_network == []


@pytest.mark.usefixtures("tiny_ml100k")
def test_tampered_wheel_fails_the_checksum(tmp_path: Path, no_network: list[str]) -> None:
    make_wheel(tmp_path / "wheels" / "recbole-1.2.1-py3-none-any.whl", b"x\n")
    with pytest.raises(RecliError, match="delete it"):
        load_movielens_100k(tmp_path)


@pytest.mark.usefixtures("tiny_ml100k")
def test_hand_placed_files_win(tmp_path: Path, no_network: list[str]) -> None:
    placed = tmp_path / "ml-100k"
    placed.mkdir()
    (placed / "u.data").write_bytes(GROUPLENS_DATA)
    (placed / "u.item").write_bytes(GROUPLENS_ITEM)
    (placed / "u.user").write_bytes(GROUPLENS_USER)
    raw = load_movielens_100k(tmp_path)
    assert "grouplens" in raw.source
    assert no_network == []

    (placed / "u.user").unlink()
    with pytest.raises(RecliError, match=r"lacks u\.user"):
        load_movielens_100k(tmp_path)


@pytest.mark.usefixtures("tiny_ml100k")
def test_wrong_sized_data_is_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(
        data, "ML100K_COUNTS", {"interactions": 100_000, "users": 943, "items": 1_682}
    )
    make_wheel(tmp_path / "wheels" / "recbole-1.2.1-py3-none-any.whl")
    with pytest.raises(RecliError, match="does not look like MovieLens-100K"):
        load_movielens_100k(tmp_path)


@pytest.mark.usefixtures("tiny_ml100k")
def test_grouplens_download_is_extracted_and_cached(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_network: list[str]
) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("ml-100k/u.data", GROUPLENS_DATA)
        bundle.writestr("ml-100k/u.item", GROUPLENS_ITEM)
        bundle.writestr("ml-100k/u.user", GROUPLENS_USER)
    downloads: list[str] = []

    def serve(url: str, timeout: float) -> io.BytesIO:
        downloads.append(url)
        assert timeout <= 10
        return io.BytesIO(archive.getvalue())

    monkeypatch.setattr(data.urllib.request, "urlopen", serve)
    first = load_movielens_100k(tmp_path)
    second = load_movielens_100k(tmp_path)
    assert downloads == [data.ML100K_URL]
    assert_frame_equal(first.items, second.items)
    assert (tmp_path / "ml-100k" / "u.data").read_bytes() == GROUPLENS_DATA


@pytest.mark.usefixtures("tiny_ml100k")
def test_falls_back_to_the_wheel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_network: list[str]
) -> None:
    def pip_download(command: list[str], **kwargs: object) -> object:
        no_network.append("pip")
        assert "recbole==1.2.1" in command and "--no-deps" in command
        make_wheel(Path(command[command.index("-d") + 1]) / "recbole-1.2.1-py3-none-any.whl")
        return type("Completed", (), {"returncode": 0, "stdout": "", "stderr": ""})()

    monkeypatch.setattr(data.subprocess, "run", pip_download)
    raw = load_movielens_100k(tmp_path)
    assert no_network == ["grouplens", "pip"]
    assert "recbole" in raw.source
    load_movielens_100k(tmp_path)
    assert no_network == ["grouplens", "pip"]


def test_offline_and_unfetchable_says_where_to_put_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_network: list[str]
) -> None:
    monkeypatch.setenv(data.OFFLINE_ENV, "1")
    with pytest.raises(RecliError) as caught:
        load_movielens_100k(tmp_path)
    message = str(caught.value)
    assert no_network == ["pip"]
    assert "u.data, u.item and u.user" in message
    assert str(tmp_path / "ml-100k") in message
    assert "\n" not in message


def test_raw_data_is_frozen() -> None:
    raw = RawData(pl.DataFrame(), pl.DataFrame(), None, "x")
    with pytest.raises(AttributeError):
        raw.source = "y"  # type: ignore[misc]
