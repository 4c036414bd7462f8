"""The serving catalogue: one SQLite file the CLI reads without polars, numpy or torch.

Written by the `index` stage next to the Annoy index, it holds everything `recli` shows: items and
their text fields and topic, each user's history, fused user vectors, interest clusters and their
profiles, each user's own interests (`user_interests`, with each interest's centroid in the base
encoder's space and the mean of its items' fused vectors), the topics exploration suggests, id
maps back to the original ids, and the versions of the artifacts it was built from.
Standard library only, so reading it costs a few milliseconds. Where the file lives is part of
the serving contract (`recli.contract.INDEX_DIR` / `CATALOGUE_FILE`).
"""

from __future__ import annotations

import array
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

from recli.errors import RecliError

SCHEMA_VERSION = 5
"""Bumped whenever a table or meta key changes meaning: `connect` refuses any other version."""

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE items (
    item_idx INTEGER PRIMARY KEY, item_id TEXT NOT NULL UNIQUE, title TEXT NOT NULL,
    year INTEGER, genres TEXT NOT NULL, tags TEXT NOT NULL, cold INTEGER NOT NULL,
    train_count INTEGER NOT NULL, topic INTEGER
);
CREATE INDEX items_by_topic ON items (topic);
CREATE TABLE topics (
    topic INTEGER PRIMARY KEY, label TEXT NOT NULL, size INTEGER NOT NULL, profile TEXT NOT NULL,
    centroid BLOB NOT NULL
);
CREATE TABLE clusters (
    cluster INTEGER PRIMARY KEY, label TEXT NOT NULL, size INTEGER NOT NULL, profile TEXT NOT NULL
);
CREATE TABLE users (
    user_idx INTEGER PRIMARY KEY, user_id TEXT NOT NULL UNIQUE, cluster INTEGER,
    events INTEGER NOT NULL, vector BLOB NOT NULL, interests TEXT NOT NULL
);
CREATE TABLE history (
    user_idx INTEGER NOT NULL, item_idx INTEGER NOT NULL, timestamp INTEGER, rating REAL
);
CREATE INDEX history_by_user ON history (user_idx);
CREATE TABLE user_interests (
    user_idx INTEGER NOT NULL, interest INTEGER NOT NULL, label TEXT NOT NULL,
    weight REAL NOT NULL, events INTEGER NOT NULL, medoid INTEGER NOT NULL,
    first_timestamp INTEGER, last_timestamp INTEGER, cluster INTEGER, items TEXT NOT NULL,
    terms TEXT NOT NULL, centroid BLOB, mean BLOB, PRIMARY KEY (user_idx, interest)
);
"""


def pack_vector(values: Any) -> bytes:
    """float32 little-endian bytes (numpy arrays and plain sequences alike)."""
    if hasattr(values, "astype") and hasattr(values, "tobytes"):
        # A numpy array (duck-typed: this module never imports numpy): the same bytes as the
        # loop below, each value rounded to the nearest float32, without a Python float per value.
        return values.astype("<f4").tobytes()
    packed = array.array("f", [float(value) for value in values])
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def unpack_vector(blob: bytes) -> list[float]:
    """The inverse of `pack_vector`, as a plain list (Annoy takes lists; no numpy needed)."""
    unpacked = array.array("f")
    unpacked.frombytes(blob)
    if sys.byteorder != "little":
        unpacked.byteswap()
    return unpacked.tolist()


def connect(path: Path) -> sqlite3.Connection:
    """Open a catalogue read-only, checking it exists, is SQLite, and has our schema version."""
    if not path.exists():
        raise RecliError(f"{path} not found: run `dvc repro` to build the index and catalogue")
    connection: sqlite3.Connection | None = None
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        rows = dict(connection.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError:
        if connection is not None:
            connection.close()
        raise RecliError(
            f"{path} is corrupted or not a catalogue: run `dvc repro -f index`"
        ) from None
    version = int(rows.get("schema_version", "0"))
    if version != SCHEMA_VERSION:
        connection.close()
        raise RecliError(
            f"{path} has schema version {version}, this recli reads {SCHEMA_VERSION}: "
            "run `dvc repro index` to rebuild it"
        )
    return connection


def read_meta(connection: sqlite3.Connection) -> dict[str, Any]:
    """The meta table, each value JSON-decoded (the index stage writes them as JSON)."""
    return {
        key: json.loads(value) for key, value in connection.execute("SELECT key, value FROM meta")
    }


def meta_value(meta: dict[str, Any], key: str, path: Path) -> Any:
    """A value the catalogue at `path` must record: its absence means an older or partial build."""
    if key not in meta:
        raise RecliError(f"{path} has no '{key}' in its meta table: run `dvc repro -f index`")
    return meta[key]
