"""The serving catalogue: one SQLite file the CLI reads without polars, numpy or torch.

Written by the `index` stage next to the Annoy index, it holds everything `recli` shows: items and
their text fields and topic, each user's history, fused user vectors, interest clusters and their
profiles, each user's own interests (`user_interests`, with each interest's centroid in the base
encoder's space and the mean of its items' fused vectors), the topics exploration suggests, id
maps back to the original ids, and the versions of the artifacts it was built from.

The schema, each table's column order (`ITEM_COLUMNS` ...), every meta key (`MetaKey`) and the
writer (`create_schema`, `insert_meta`, `insert_items` ...) live here, next to the readers, so the
index stage that writes the file and the CLI that reads it cannot drift apart: the stage only
turns its frames and arrays into plain rows. Standard library only (no numpy: vectors arrive as
`pack_vector` bytes), so reading it costs a few milliseconds. Where the file lives is part of
the serving contract (`recli.contract.INDEX_DIR` / `CATALOGUE_FILE`).
"""

from __future__ import annotations

import array
import json
import sqlite3
import sys
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

from recli.errors import RecliError

SCHEMA_VERSION = 8
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
    events INTEGER NOT NULL, vector BLOB NOT NULL, over_represented TEXT NOT NULL,
    search_vector BLOB
);
CREATE TABLE history (
    user_idx INTEGER NOT NULL, item_idx INTEGER NOT NULL, timestamp INTEGER, rating REAL
);
CREATE INDEX history_by_user ON history (user_idx);
CREATE TABLE user_interests (
    user_idx INTEGER NOT NULL, interest INTEGER NOT NULL, label TEXT NOT NULL,
    weight REAL NOT NULL, events INTEGER NOT NULL, medoid INTEGER NOT NULL,
    first_timestamp INTEGER, last_timestamp INTEGER, cluster INTEGER, items TEXT NOT NULL,
    terms TEXT NOT NULL, centroid BLOB, mean BLOB, search_mean BLOB,
    PRIMARY KEY (user_idx, interest)
);
CREATE TABLE search_basis (dimension INTEGER PRIMARY KEY, vector BLOB NOT NULL);
"""


ITEM_COLUMNS = (
    "item_idx",
    "item_id",
    "title",
    "year",
    "genres",
    "tags",
    "cold",
    "train_count",
    "topic",
)
"""`items` row order for `insert_items`: genres and tags are lists of strings (stored as JSON),
cold 0 or 1, topic None where the catalogue has no topics."""
TOPIC_COLUMNS = ("topic", "label", "size", "profile", "centroid")
"""`topics` row order for `insert_topics`: profile a JSON-able dict, centroid `pack_vector`
bytes."""
CLUSTER_COLUMNS = ("cluster", "label", "size", "profile")
"""`clusters` row order for `insert_clusters`: profile a JSON-able dict."""
USER_COLUMNS = (
    "user_idx",
    "user_id",
    "cluster",
    "events",
    "vector",
    "over_represented",
    "search_vector",
)
"""`users` row order for `insert_users`: cluster None for a user without one, vector
`pack_vector` bytes, over_represented a JSON-able list of the user's own profile rows,
search_vector the vector in the index's search space as `pack_vector` bytes (None where the
index searches the fused vectors)."""
HISTORY_COLUMNS = ("user_idx", "item_idx", "timestamp", "rating")
"""`history` row order for `insert_history`: one row per event, inserted in the order given
(readers break equal timestamps by that order)."""
USER_INTEREST_COLUMNS = (
    "user_idx",
    "interest",
    "label",
    "weight",
    "events",
    "medoid",
    "first_timestamp",
    "last_timestamp",
    "cluster",
    "items",
    "terms",
    "centroid",
    "mean",
    "search_mean",
)
"""`user_interests` row order for `insert_user_interests`: items a JSON-able list of item
indices, terms text, centroid, mean and search_mean (the mean in the index's search space)
`pack_vector` bytes or None."""
SEARCH_BASIS_COLUMNS = ("dimension", "vector")
"""`search_basis` row order for `insert_search_basis`: one row per dimension of the fused space,
its image in the search space as `pack_vector` bytes (the basis matrix by rows; no rows where the
index searches the fused vectors)."""

TABLE_COLUMNS = {
    "items": ITEM_COLUMNS,
    "topics": TOPIC_COLUMNS,
    "clusters": CLUSTER_COLUMNS,
    "users": USER_COLUMNS,
    "history": HISTORY_COLUMNS,
    "user_interests": USER_INTEREST_COLUMNS,
    "search_basis": SEARCH_BASIS_COLUMNS,
}
"""Every data table's columns in `SCHEMA` order (the tests hold the two together)."""
_JSON_COLUMNS = {
    "items": ("genres", "tags"),
    "topics": ("profile",),
    "clusters": ("profile",),
    "users": ("over_represented",),
    "user_interests": ("items",),
}
"""Columns stored as JSON text: the writer encodes them, the readers decode them."""


class MetaKey(StrEnum):
    """Every key of the `meta` table, named once: the index stage writes them, recli reads them.

    Each value is stored JSON-encoded. A key's member is its own string (`StrEnum`), so it
    indexes the decoded meta dict directly.
    """

    SCHEMA_VERSION = "schema_version"
    """`SCHEMA_VERSION` of the writer; `connect` refuses any other."""
    DIMENSION = "dimension"
    """Width of the fused vectors (the Annoy index's dimension)."""
    TEXT_DIMENSION = "text_dimension"
    """Width of the text part of a fused vector (`recli.contract.text_slice`)."""
    METRIC = "metric"
    """Annoy's metric ("dot")."""
    SEARCH_K = "search_k"
    """Annoy's search effort the index stage tuned."""
    TEXT_WEIGHT = "text_weight"
    """The text side's share of the fused score."""
    SEQUENCE_SHARE = "sequence_share"
    """The sequence model's share of the behaviour side."""
    SEQUENCE_MODEL = "sequence_model"
    """Which sequence model the behaviour side holds (None: ALS alone)."""
    LINEAR_SHARE = "linear_share"
    """Reduced-rank EASE's share of the behaviour side."""
    TEXT_SCALE = "text_scale"
    """Multiplier of the text vectors in the fused ones (`recli search` scales its query)."""
    CF_SCALE = "cf_scale"
    """Multiplier of the behaviour vectors in the fused ones."""
    INDEX_SHA256 = "index_sha256"
    """Truncated sha256 of the Annoy index written with this catalogue."""
    INDEX_BYTES = "index_bytes"
    """Size of that index: another size means a truncated copy."""
    USER_ROWS = "user_rows"
    """Where true, the Annoy index over the fused vectors holds every served user's vector
    after the items' (user u at row items + u), so a user's query ranks candidates found in a
    narrower space in Annoy's own code (`get_distance`); absent or false: items only."""
    SEARCH_DIMENSION = "search_dimension"
    """Width of the space the index searches, where narrower than the fused one (absent: the
    fused vectors are searched, in the Annoy index over them)."""
    SEARCH_INDEX_SHA256 = "search_index_sha256"
    """Truncated sha256 of the Annoy index over that space."""
    SEARCH_INDEX_BYTES = "search_index_bytes"
    """Size of that index."""
    SEARCH_RESCORE = "search_rescore"
    """Candidates that search asks for per result wanted, ranked then on the fused vectors
    (absent: 1)."""
    BUILT_FROM = "built_from"
    """Truncated sha256 of each upstream file, by path relative to the artifacts folder."""
    ENCODER = "encoder"
    """Where the encoder `recli search` loads lives."""
    MULTI_INTEREST = "multi_interest"
    """`recommend --by-interest` settings: whole_user_share and pull."""
    EXPLORE = "explore"
    """`recommend --explore` settings: weights, score scale and half-life."""
    TOPIC_TRANSITIONS = "topic_transitions"
    """Topic transition counts, adoptions and smoothing for exploration."""


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
    version = int(rows.get(MetaKey.SCHEMA_VERSION, "0"))
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


def meta_value(meta: dict[str, Any], key: MetaKey, path: Path) -> Any:
    """A value the catalogue at `path` must record: its absence means an older or partial build."""
    if key not in meta:
        raise RecliError(f"{path} has no '{key}' in its meta table: run `dvc repro -f index`")
    return meta[key]


def create_schema(connection: sqlite3.Connection) -> None:
    """Create every table and index of `SCHEMA` on an empty database."""
    connection.executescript(SCHEMA)


def insert_meta(connection: sqlite3.Connection, meta: Mapping[str, Any]) -> None:
    """Write `meta`, each value JSON-encoded. Every key must be a `MetaKey` (a misspelt key
    would be a value no reader finds) and the schema version this module's `SCHEMA_VERSION`
    (the tables written are this module's `SCHEMA`)."""
    keys = [MetaKey(key) for key in meta]  # ValueError on a key no reader knows
    if meta.get(MetaKey.SCHEMA_VERSION) != SCHEMA_VERSION:
        raise ValueError(
            f"meta records schema version {meta.get(MetaKey.SCHEMA_VERSION)!r}, "
            f"the schema written is version {SCHEMA_VERSION}"
        )
    connection.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [(str(key), json.dumps(value)) for key, value in zip(keys, meta.values(), strict=True)],
    )


def _insert(connection: sqlite3.Connection, table: str, rows: Iterable[Sequence[Any]]) -> None:
    """Insert `rows` (tuples in `TABLE_COLUMNS[table]` order) by column name, JSON-encoding the
    table's JSON columns; rows are consumed lazily, so a long history is never a list."""
    columns = TABLE_COLUMNS[table]
    encoded = [columns.index(column) for column in _JSON_COLUMNS.get(table, ())]

    def checked(row: Sequence[Any]) -> Sequence[Any]:
        if len(row) != len(columns):
            raise ValueError(
                f"a {table} row has {len(row)} values, the table has {len(columns)} columns: "
                f"{', '.join(columns)}"
            )
        if not encoded:
            return row
        values = list(row)
        for position in encoded:
            values[position] = json.dumps(values[position])
        return values

    connection.executemany(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        map(checked, rows),
    )


def insert_items(connection: sqlite3.Connection, rows: Iterable[Sequence[Any]]) -> None:
    """Write the `items` table from rows in `ITEM_COLUMNS` order."""
    _insert(connection, "items", rows)


def insert_topics(connection: sqlite3.Connection, rows: Iterable[Sequence[Any]]) -> None:
    """Write the `topics` table from rows in `TOPIC_COLUMNS` order."""
    _insert(connection, "topics", rows)


def insert_clusters(connection: sqlite3.Connection, rows: Iterable[Sequence[Any]]) -> None:
    """Write the `clusters` table from rows in `CLUSTER_COLUMNS` order."""
    _insert(connection, "clusters", rows)


def insert_users(connection: sqlite3.Connection, rows: Iterable[Sequence[Any]]) -> None:
    """Write the `users` table from rows in `USER_COLUMNS` order."""
    _insert(connection, "users", rows)


def insert_history(connection: sqlite3.Connection, rows: Iterable[Sequence[Any]]) -> None:
    """Write the `history` table from rows in `HISTORY_COLUMNS` order."""
    _insert(connection, "history", rows)


def insert_user_interests(connection: sqlite3.Connection, rows: Iterable[Sequence[Any]]) -> None:
    """Write the `user_interests` table from rows in `USER_INTEREST_COLUMNS` order."""
    _insert(connection, "user_interests", rows)


def insert_search_basis(connection: sqlite3.Connection, rows: Iterable[Sequence[Any]]) -> None:
    """Write the `search_basis` table from rows in `SEARCH_BASIS_COLUMNS` order."""
    _insert(connection, "search_basis", rows)
