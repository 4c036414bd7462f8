"""The serving catalogue's format: vectors as float32 bytes, and what `connect` refuses."""

from __future__ import annotations

import json
import sqlite3
import struct
from pathlib import Path

import numpy as np
import pytest

from recli import catalogue
from recli.errors import RecliError


def _write_catalogue(path: Path, meta: dict[str, object]) -> Path:
    """An empty catalogue with the real schema and the given meta table."""
    connection = sqlite3.connect(path)
    connection.executescript(catalogue.SCHEMA)
    connection.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [(key, json.dumps(value)) for key, value in meta.items()],
    )
    connection.commit()
    connection.close()
    return path


# --------------------------------------------------------------------------------------------
# Vectors
# --------------------------------------------------------------------------------------------
def test_pack_vector_writes_little_endian_float32() -> None:
    # 1.0 is 0x3f800000 and -2.5 is 0xc0200000 as IEEE float32; least significant byte first.
    assert catalogue.pack_vector([1.0, -2.5, 0.0]) == (
        b"\x00\x00\x80\x3f" + b"\x00\x00\x20\xc0" + b"\x00\x00\x00\x00"
    )


def test_pack_vector_takes_numpy_arrays_and_lists_alike() -> None:
    values = [0.25, -1.5, 3.0, 1e-3]
    expected = struct.pack("<4f", *values)
    assert catalogue.pack_vector(values) == expected
    assert catalogue.pack_vector(np.array(values, dtype=np.float64)) == expected
    assert catalogue.pack_vector(np.array(values, dtype=np.float32)) == expected


def test_round_trip_keeps_float32_values() -> None:
    values = [0.1, -0.2, 123.456, 0.0, -1e-30]
    unpacked = catalogue.unpack_vector(catalogue.pack_vector(values))
    assert isinstance(unpacked, list) and all(isinstance(value, float) for value in unpacked)
    # Exactly the float32 nearest each value: what Annoy stores too.
    assert unpacked == list(struct.unpack("<5f", struct.pack("<5f", *values)))
    assert unpacked == pytest.approx(values, rel=1e-6)
    assert unpacked[0] != 0.1  # float32, not float64: 0.1 is not representable


def test_empty_vector_round_trips() -> None:
    assert catalogue.pack_vector([]) == b""
    assert catalogue.unpack_vector(b"") == []


# --------------------------------------------------------------------------------------------
# connect(): what it refuses, with the fix in the message
# --------------------------------------------------------------------------------------------
def test_connect_opens_a_current_catalogue_read_only(tmp_path: Path) -> None:
    path = _write_catalogue(
        tmp_path / "catalogue.sqlite",
        {"schema_version": catalogue.SCHEMA_VERSION, "text_weight": 0.5, "built_from": {"a": "b"}},
    )
    connection = catalogue.connect(path)
    try:
        meta = catalogue.read_meta(connection)
        assert meta == {
            "schema_version": catalogue.SCHEMA_VERSION,
            "text_weight": 0.5,
            "built_from": {"a": "b"},
        }
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            connection.execute("DELETE FROM meta")
    finally:
        connection.close()


def _refusal(path: Path) -> str:
    """The message of the `RecliError` that `connect(path)` raises."""
    with pytest.raises(RecliError) as caught:
        catalogue.connect(path)
    return str(caught.value)


def test_connect_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "index" / "catalogue.sqlite"
    assert _refusal(path) == f"{path} not found: run `dvc repro` to build the index and catalogue"


def test_connect_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    assert _refusal(path) == f"{path} is corrupted or not a catalogue: run `dvc repro -f index`"


def test_connect_sqlite_without_a_meta_table(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.sqlite"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE other (x INTEGER)")
    connection.commit()
    connection.close()
    assert "is corrupted or not a catalogue" in _refusal(path)


@pytest.mark.parametrize("version", [1, catalogue.SCHEMA_VERSION + 1, 99])
def test_connect_wrong_schema_version(tmp_path: Path, version: int) -> None:
    path = _write_catalogue(tmp_path / "catalogue.sqlite", {"schema_version": version})
    assert _refusal(path) == (
        f"{path} has schema version {version}, this recli reads {catalogue.SCHEMA_VERSION}: "
        "run `dvc repro index` to rebuild it"
    )


def test_connect_without_a_schema_version_reads_as_version_0(tmp_path: Path) -> None:
    path = _write_catalogue(tmp_path / "catalogue.sqlite", {"text_weight": 0.5})
    assert "has schema version 0, this recli reads" in _refusal(path)


# --------------------------------------------------------------------------------------------
# meta_value()
# --------------------------------------------------------------------------------------------
def test_meta_value_names_the_missing_key_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.sqlite"
    assert catalogue.meta_value({"dimension": 36}, "dimension", path) == 36
    assert catalogue.meta_value({"metric": None}, "metric", path) is None  # present, even if null
    with pytest.raises(RecliError) as caught:
        catalogue.meta_value({"dimension": 36}, "text_scale", path)
    assert str(caught.value) == (
        f"{path} has no 'text_scale' in its meta table: run `dvc repro -f index`"
    )


# --------------------------------------------------------------------------------------------
# The writer: column orders, meta keys, and a round trip through the readers
# --------------------------------------------------------------------------------------------
def test_column_constants_follow_the_schema() -> None:
    connection = sqlite3.connect(":memory:")
    catalogue.create_schema(connection)
    tables = {
        name
        for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    assert tables == {"meta", *catalogue.TABLE_COLUMNS}
    for table, columns in catalogue.TABLE_COLUMNS.items():
        declared = tuple(row[1] for row in connection.execute(f"PRAGMA table_info({table})"))
        assert columns == declared, table  # `SELECT *` readers see the documented order


def test_meta_keys_are_their_own_strings() -> None:
    assert catalogue.MetaKey.SCHEMA_VERSION == "schema_version"
    assert len({str(key) for key in catalogue.MetaKey}) == len(catalogue.MetaKey)
    assert json.dumps({catalogue.MetaKey.TEXT_SCALE: 1.5}) == '{"text_scale": 1.5}'
    path = Path("catalogue.sqlite")
    with pytest.raises(RecliError, match="has no 'text_scale' in its meta table"):
        catalogue.meta_value({}, catalogue.MetaKey.TEXT_SCALE, path)


def test_insert_meta_refuses_unknown_keys_and_other_versions() -> None:
    connection = sqlite3.connect(":memory:")
    catalogue.create_schema(connection)
    current = {catalogue.MetaKey.SCHEMA_VERSION: catalogue.SCHEMA_VERSION}
    with pytest.raises(ValueError, match="text_wieght"):
        catalogue.insert_meta(connection, {**current, "text_wieght": 0.5})
    with pytest.raises(ValueError, match="schema version 4"):
        catalogue.insert_meta(connection, {catalogue.MetaKey.SCHEMA_VERSION: 4})
    with pytest.raises(ValueError, match="schema version None"):
        catalogue.insert_meta(connection, {catalogue.MetaKey.TEXT_WEIGHT: 0.5})
    catalogue.insert_meta(connection, {**current, "text_weight": 0.5})  # plain strings are fine
    assert catalogue.read_meta(connection) == {
        "schema_version": catalogue.SCHEMA_VERSION,
        "text_weight": 0.5,
    }


def test_a_row_of_the_wrong_width_is_refused() -> None:
    connection = sqlite3.connect(":memory:")
    catalogue.create_schema(connection)
    with pytest.raises(ValueError, match="a clusters row has 3 values, the table has 4 columns"):
        catalogue.insert_clusters(connection, [(0, "label", 3)])


def test_written_rows_read_back_through_the_lookups(tmp_path: Path) -> None:
    from recli.lookups import Lookups

    path = tmp_path / "catalogue.sqlite"
    connection = sqlite3.connect(path)
    catalogue.create_schema(connection)
    catalogue.insert_meta(
        connection,
        {catalogue.MetaKey.SCHEMA_VERSION: catalogue.SCHEMA_VERSION, catalogue.MetaKey.SEARCH_K: 7},
    )
    catalogue.insert_items(
        connection,
        [
            (0, "a", "A (1999)", 1999, ["Drama"], ["slow"], 0, 5, 0),
            (1, "b", "B", None, [], [], 1, 0, None),
        ],
    )
    catalogue.insert_topics(
        connection, [(0, "Drama", 1, {"medoid_title": "A (1999)"}, catalogue.pack_vector([1.0]))]
    )
    catalogue.insert_clusters(connection, [(0, "Drama fans", 1, {"share": 1.0, "top_terms": []})])
    terms = [{"term": "Drama", "lift": 2.0}]
    vector, searched = catalogue.pack_vector([0.5, 2.0]), catalogue.pack_vector([1.5])
    catalogue.insert_users(connection, [(0, "u", 0, 1, vector, terms, searched)])
    catalogue.insert_history(connection, iter([(0, 0, 100, 4.0)]))  # any iterable, read lazily
    centroid, searched_mean = catalogue.pack_vector([1.0]), catalogue.pack_vector([0.25])
    catalogue.insert_user_interests(
        connection,
        [(0, 0, "Drama", 1.0, 1, 0, 100, 100, 0, [0], "Drama", centroid, None, searched_mean)],
    )
    catalogue.insert_search_basis(connection, [(0, catalogue.pack_vector([1.0])), (1, vector)])
    connection.commit()
    connection.close()

    lookups = Lookups(catalogue.connect(path), path)
    try:
        assert lookups.search_k == 7
        item = lookups.item("a")
        assert (item.genres, item.tags, item.cold, item.year) == (["Drama"], ["slow"], False, 1999)
        assert lookups.item("b").cold and lookups.item("b").year is None
        user = lookups.user("u")
        assert (user.cluster, user.events, user.vector, user.over_represented) == (
            0,
            1,
            [0.5, 2.0],
            terms,
        )
        assert user.search_vector == [1.5]
        assert lookups.interest_search_means(0) == {0: [0.25]}
        assert lookups.search_basis() == [[1.0], [0.5, 2.0]]
        assert [entry.item.item_id for entry in lookups.history(0)] == ["a"]
        assert [cluster.label for cluster in lookups.clusters()] == ["Drama fans"]
        [interest] = lookups.interests(0)
        assert (interest.label, interest.items, interest.medoid.item_id) == ("Drama", 1, "a")
        assert lookups.interest_vectors(0) == []  # no mean recorded
        assert lookups.item_topics() == {0: 0}
        assert lookups.topic_records() == ({0: "Drama"}, {0: "A (1999)"}, [[1.0]])
    finally:
        lookups.close()
