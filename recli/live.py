"""The live store: events added after the pipeline ran, and the served vectors they changed.

One SQLite file, `<artifacts>/live/events.sqlite` (`recli.contract.LIVE_DIR` / `LIVE_FILE`):

- `events` is the append-only log of every event `recli add` and `recli ingest` accepted, by the
  dataset's own ids. The pipeline reads it on the next `dvc repro` (`preprocess` joins it to the
  source, and DVC sees the file change), so nothing added is lost when the catalogue is rebuilt.
  Each event also records the item and user index it was resolved to in the build it was added
  against (`built_for`: that catalogue's index digest).
- `users` holds, per user touched since that build, the served vector recomputed from every event
  the user has (the catalogue's history and the events added since), by the pipeline's own rules
  (`pipeline.live`); a user the catalogue does not know gets an index after its users.
- `batches` records each accepted call: where the events came from and how many.

A batch is one transaction: its events, its users' new vectors and its record are committed
together or not at all (a writer killed midway leaves the previous state, and SQLite rolls the
journal back on the next open). Readers (`recli recommend`) see the state before a batch or
after it, never half of one: the file keeps SQLite's rollback journal, so a reader waits for a
commit in progress (`BUSY_SECONDS`) instead of reading around it.

Rows added against another build are history: once the pipeline has re-run, the catalogue holds
those events itself, and `LiveStore` serves only what was added against the catalogue it opened.

Standard library only: `recli recommend` reads it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recli.contract import LIVE_DIR, LIVE_FILE
from recli.errors import RecliError

SCHEMA_VERSION = 1
"""Bumped whenever a table changes meaning: `LiveStore` refuses any other version."""
BUSY_SECONDS = 10.0
"""How long a reader or writer waits for another's commit before giving up."""

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE batches (
    batch INTEGER PRIMARY KEY, source TEXT NOT NULL, events INTEGER NOT NULL,
    users INTEGER NOT NULL, built_for TEXT NOT NULL, added_at TEXT NOT NULL
);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY, batch INTEGER NOT NULL, user_id TEXT NOT NULL,
    item_id TEXT NOT NULL, timestamp INTEGER NOT NULL, rating REAL, built_for TEXT NOT NULL,
    user_idx INTEGER NOT NULL, item_idx INTEGER NOT NULL
);
CREATE INDEX events_by_user ON events (built_for, user_idx);
CREATE TABLE users (
    built_for TEXT NOT NULL, user_id TEXT NOT NULL, user_idx INTEGER NOT NULL,
    events INTEGER NOT NULL, vector BLOB NOT NULL, search_vector BLOB, batch INTEGER NOT NULL,
    PRIMARY KEY (built_for, user_id)
);
CREATE UNIQUE INDEX users_by_index ON users (built_for, user_idx);
"""
LOG_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
"""What the pipeline reads of the log (`events_for_pipeline`), in the source's column names."""


FOLDER_README = (
    "Events added with `recli add` and `recli ingest` are kept here (`events.sqlite`): the next\n"
    "`dvc repro` joins them to the source's (see docs/live.md). Do not delete the file to undo\n"
    "them: it is the only copy.\n"
)
"""What the live folder's README says: `dvc repro` needs the folder (a dependency of
`preprocess`) before anything was ever added, and the README keeps it in git."""


def live_path(artifacts: Path) -> Path:
    """Where the live store of an artifacts folder is."""
    return Path(artifacts) / LIVE_DIR / LIVE_FILE


def make_folder(artifacts: Path) -> Path:
    """The live folder of `artifacts`, made with its README where it is missing."""
    folder = Path(artifacts) / LIVE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    readme = folder / "README.md"
    if not readme.exists():
        readme.write_text(FOLDER_README, encoding="utf-8")
    return folder


@dataclass(frozen=True)
class LiveUser:
    """A user's served state as the live store holds it."""

    user_idx: int
    events: int
    """Every event the user has: the catalogue's and those added since."""
    vector: bytes
    """`recli.catalogue.pack_vector` bytes of the fused vector."""
    search_vector: bytes | None
    """The same in the index's search space (None where the fused vectors are searched)."""


@dataclass(frozen=True)
class LiveEvent:
    """One event to add, resolved against the catalogue it is added to."""

    user_id: str
    item_id: str
    timestamp: int
    rating: float | None
    user_idx: int
    item_idx: int


def _connect(path: Path) -> sqlite3.Connection:
    try:
        connection = sqlite3.connect(
            f"file:{path}?mode=rw", uri=True, timeout=BUSY_SECONDS, isolation_level=None
        )
        rows = dict(connection.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError:
        raise RecliError(
            f"{path} is corrupted or not a live store: move it aside, then re-add its events"
        ) from None
    version = int(rows.get("schema_version", "0"))
    if version != SCHEMA_VERSION:
        connection.close()
        raise RecliError(
            f"{path} has live store version {version}, this recli reads {SCHEMA_VERSION}: "
            "use the recli that wrote it, or run `dvc repro` and move it aside"
        )
    return connection


class LiveStore:
    """An open live store, tied to the catalogue it serves (`built_for`: its index digest)."""

    def __init__(self, connection: sqlite3.Connection, path: Path, built_for: str) -> None:
        self.connection, self.path, self.built_for = connection, path, built_for
        self._read: dict[int, list[tuple[int, int, float | None]]] = {}
        """Each user's added events as `user` read them, by user index."""

    @classmethod
    def open(cls, artifacts: Path, built_for: str) -> LiveStore | None:
        """The store of `artifacts` for reading, None where nothing was ever added."""
        path = live_path(artifacts)
        if not path.exists():
            return None
        return cls(_connect(path), path, built_for)

    @classmethod
    def create(cls, artifacts: Path, built_for: str) -> LiveStore:
        """The store of `artifacts` for writing, made empty where there is none."""
        path = live_path(artifacts)
        if not path.exists():
            make_folder(artifacts)
            temporary = path.with_name(f".{path.name}.new")
            temporary.unlink(missing_ok=True)
            connection = sqlite3.connect(temporary)
            try:
                connection.executescript(SCHEMA)
                connection.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                connection.commit()
            finally:
                connection.close()
            temporary.replace(path)  # never a half-made store under the real name
        return cls(_connect(path), path, built_for)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> LiveStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------ reading
    def user(self, user_id: str) -> LiveUser | None:
        """The user's live state against this build, None where nothing was added for them.

        The state and the user's added events are read in one read transaction and kept, so
        `history` then answers from the same moment: a batch committed in between is seen by
        neither or (by the next `LiveStore`) by both."""
        self.connection.execute("BEGIN")
        try:
            row = self.connection.execute(
                "SELECT user_idx, events, vector, search_vector FROM users "
                "WHERE built_for = ? AND user_id = ?",
                (self.built_for, user_id),
            ).fetchone()
            if row is not None:
                self._read[row[0]] = self._history(row[0])
        finally:
            self.connection.execute("COMMIT")
        return None if row is None else LiveUser(*row)

    def index_of(self, user_id: str) -> int | None:
        """The index a user new to the build was given when their first events were added."""
        row = self.connection.execute(
            "SELECT user_idx FROM users WHERE built_for = ? AND user_id = ?",
            (self.built_for, user_id),
        ).fetchone()
        return None if row is None else int(row[0])

    def history(self, user_idx: int) -> list[tuple[int, int, float | None]]:
        """`(item_idx, timestamp, rating)` of the events added for the user against this build,
        in the order they were added (as `user` read them, where it did)."""
        if user_idx in self._read:
            return self._read[user_idx]
        return self._history(user_idx)

    def _history(self, user_idx: int) -> list[tuple[int, int, float | None]]:
        return self.connection.execute(
            "SELECT item_idx, timestamp, rating FROM events WHERE built_for = ? AND user_idx = ? "
            "ORDER BY seq",
            (self.built_for, user_idx),
        ).fetchall()

    def next_user_idx(self, catalogue_users: int) -> int:
        """The index a user new to this build gets: past the catalogue's and the live ones."""
        row = self.connection.execute(
            "SELECT MAX(user_idx) FROM users WHERE built_for = ?", (self.built_for,)
        ).fetchone()
        return max(catalogue_users, -1 if row[0] is None else int(row[0]) + 1)

    def counts(self) -> dict[str, int]:
        """Events and users added against this build, and events in the whole log."""
        added, users = self.connection.execute(
            "SELECT (SELECT COUNT(*) FROM events WHERE built_for = ?), "
            "(SELECT COUNT(*) FROM users WHERE built_for = ?)",
            (self.built_for, self.built_for),
        ).fetchone()
        logged = self.connection.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        return {"events": int(added), "users": int(users), "logged": int(logged)}

    # ------------------------------------------------------------------------------ writing
    @contextmanager
    def batch(self, source: str) -> Iterator[Batch]:
        """One transaction: everything written through the yielded `Batch` is committed when
        the block ends, or nothing is (an exception, or the process killed)."""
        self.connection.execute("BEGIN IMMEDIATE")  # the write lock, before anything is read
        try:
            number = self.connection.execute(
                "SELECT COALESCE(MAX(batch), 0) + 1 FROM batches"
            ).fetchone()[0]
            batch = Batch(self, int(number))
            yield batch
            self.connection.execute(
                "INSERT INTO batches (batch, source, events, users, built_for, added_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    batch.number,
                    source,
                    batch.added_events,
                    len(batch.updated_users),
                    self.built_for,
                    datetime.now(UTC).isoformat(timespec="seconds"),
                ),
            )
            self.connection.execute("COMMIT")
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise


class Batch:
    """What one call adds, inside its transaction (`LiveStore.batch`)."""

    def __init__(self, store: LiveStore, number: int) -> None:
        self.store, self.number = store, number
        self.added_events = 0
        self.updated_users: set[str] = set()

    def add_events(self, events: Sequence[LiveEvent]) -> None:
        """Append `events` to the log, in the order given."""
        self.store.connection.executemany(
            "INSERT INTO events (batch, user_id, item_id, timestamp, rating, built_for, "
            "user_idx, item_idx) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    self.number,
                    event.user_id,
                    event.item_id,
                    event.timestamp,
                    event.rating,
                    self.store.built_for,
                    event.user_idx,
                    event.item_idx,
                )
                for event in events
            ],
        )
        self.added_events += len(events)

    def set_user(self, user_id: str, state: LiveUser) -> None:
        """The user's served state from now on (against this build)."""
        self.store.connection.execute(
            "INSERT OR REPLACE INTO users (built_for, user_id, user_idx, events, vector, "
            "search_vector, batch) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                self.store.built_for,
                user_id,
                state.user_idx,
                state.events,
                state.vector,
                state.search_vector,
                self.number,
            ),
        )
        self.updated_users.add(user_id)


def events_for_pipeline(path: Path) -> list[tuple[Any, ...]]:
    """Every logged event as `LOG_COLUMNS` rows, in the order they were added: what the pipeline
    joins to its source. An absent store has none."""
    if not path.exists():
        return []
    connection = _connect(path)
    try:
        return connection.execute(
            f"SELECT {', '.join(LOG_COLUMNS)} FROM events ORDER BY seq"
        ).fetchall()
    finally:
        connection.close()
