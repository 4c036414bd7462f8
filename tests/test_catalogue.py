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
