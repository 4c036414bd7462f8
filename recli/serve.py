"""Answer queries from the served artifacts: the SQLite catalogue and the Annoy index.

`recli recommend` must start fast, so this module imports only the standard library, `annoy` and
the catalogue contract (`recli.catalogue`): no numpy. Vectors come out of the catalogue as plain
lists and Annoy takes and returns lists; the few dot products done here (a user's text and
collaborative shares of a score) are short enough for pure Python.

Everything a user can get wrong (an unknown id, a bad `-k`, missing, stale or corrupted
artifacts) raises `RecliError` with one line naming the problem and the fix.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from annoy import AnnoyIndex

from recli import catalogue
from recli.errors import RecliError

DEFAULT_ARTIFACTS = Path("data")
"""The pipeline's output folder: `index/` (catalogue + Annoy index) and `finetune/model`."""
INDEX_DIR = "index"
ENCODER_DIR = Path("finetune") / "model"

WHY_HISTORY_ITEMS = 50
"""Recent history items compared with each recommendation for the "because" column: recent taste
explains best, and 50 × k `get_distance` calls stay well under a millisecond."""
RECENT_SHOWN = 5
"""History titles shown in the `recommend` header."""
SUGGESTIONS = 5
"""Nearest valid ids offered when an id is unknown."""
TAG_PREFIX = "#"
"""Same convention as the cluster profiles: tags read `#dark comedy`, genres read `Drama`."""


# --------------------------------------------------------------------------------------------
# What queries return
# --------------------------------------------------------------------------------------------
class Item(NamedTuple):
    item_idx: int
    item_id: str
    title: str
    year: int | None
    genres: list[str]
    tags: list[str]
    cold: bool
    """Held out of training: only the text side can score it."""
    train_count: int

    def to_json(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "title": self.title, "genres": self.genres}


class HistoryEntry(NamedTuple):
    item: Item
    timestamp: int | None
    rating: float | None

    @property
    def date(self) -> str:
        """`YYYY-MM-DD` (UTC) for Unix-second or -millisecond timestamps, `—` without one."""
        if self.timestamp is None:
            return "—"
        seconds = self.timestamp / 1000 if self.timestamp > 10**11 else self.timestamp
        return time.strftime("%Y-%m-%d", time.gmtime(seconds))


class Cluster(NamedTuple):
    cluster: int
    label: str
    size: int
    share: float | None
    top_terms: list[dict[str, Any]]
    """Over-represented genres/tags, highest lift first (`term`, `kind`, `lift`, …)."""
    exemplars: list[dict[str, Any]]
    """Items the group liked that set it apart (`item_idx`, `item_id`, `title`, …)."""
    top_items: list[dict[str, Any]]
    """Items the group over-represents most (`item_idx`, `item_id`, `title`, `lift`, …)."""

    def term_names(self, limit: int | None = None) -> list[str]:
        return [term_text(term) for term in self.top_terms[:limit] if "term" in term]

    def to_json(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "label": self.label,
            "size": self.size,
            "share": self.share,
            "top_terms": self.term_names(),
        }


class User(NamedTuple):
    user_idx: int
    user_id: str
    cluster: int | None
    train_count: int
    vector: list[float]
    interests: list[dict[str, Any]]
    """The genres/tags/eras the user's own history over-represents, highest lift first
    (`term`, `kind`, `lift`, `share`, `share_overall`, `interactions`)."""

    def interest_names(self, limit: int | None = None, with_lift: bool = False) -> list[str]:
        return [
            f"{term_text(term)} ×{term['lift']:.1f}" if with_lift else term_text(term)
            for term in self.interests[:limit]
        ]


class Because(NamedTuple):
    """The history item most similar to a recommendation (largest dot product)."""

    item: Item
    similarity: float


class Recommendation(NamedTuple):
    rank: int
    item: Item
    score: float
    """The fused dot product: `text_score + collaborative_score`."""
    text_score: float
    collaborative_score: float
    because: Because | None
    cluster_lift: float | None
    """How much more the user's cluster liked this item than everyone did (when profiled)."""
    cluster_terms: list[str]
    """The item's genres/tags that the user's cluster over-represents."""

    def to_json(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            **self.item.to_json(),
            "score": round(self.score, 6),
            "text_score": round(self.text_score, 6),
            "collaborative_score": round(self.collaborative_score, 6),
            "because": None
            if self.because is None
            else {
                "item_id": self.because.item.item_id,
                "title": self.because.item.title,
                "similarity": round(self.because.similarity, 6),
            },
            "cluster_lift": self.cluster_lift,
            "cluster_terms": self.cluster_terms,
        }


class Recommendations(NamedTuple):
    user: User
    cluster: Cluster | None
    recent: list[HistoryEntry]
    """The user's most recent training events, newest first."""
    items: list[Recommendation]
    text_weight: float | None
    """Share of the fused score that comes from the text side (meta `text_weight`)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "user": self.user.user_id,
            "interests": self.user.interest_names(),
            "cluster": None if self.cluster is None else self.cluster.to_json(),
            "text_weight": self.text_weight,
            "recommendations": [recommendation.to_json() for recommendation in self.items],
        }


class Neighbour(NamedTuple):
    rank: int
    item: Item
    score: float


class UserProfile(NamedTuple):
    user: User
    cluster: Cluster | None
    history: list[HistoryEntry]
    """A sample of training events, newest first."""
    top_genres: list[tuple[str, int]]
    """The user's own most frequent genres over their whole training history, with counts."""
    top_tags: list[tuple[str, int]]


class Check(NamedTuple):
    """One line of `recli doctor`."""

    name: str
    status: str
    """`ok`, `problem` (serving is wrong or impossible), `warning` or `skipped`."""
    detail: str


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def term_text(term: dict[str, Any]) -> str:
    return f"{TAG_PREFIX}{term['term']}" if term.get("kind") == "tag" else str(term["term"])


def _dot(left: Sequence[float], right: Sequence[float]) -> float:
    return sum(a * b for a, b in zip(left, right, strict=False))


def _is_number(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def file_digest(path: Path) -> str:
    """The file's sha256 in hex (the index stage records a prefix of it), read in 1 MiB blocks."""
    import hashlib  # only `recli doctor` hashes: keep its import (OpenSSL) off the query path

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Annoy's C++ prints its own copy of a load error on file descriptor 2; ours is enough."""
    try:
        sys.stderr.flush()
        saved: int | None = os.dup(2)
    except (OSError, ValueError):  # no usable stderr: nothing to silence
        saved = None
    if saved is None:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def check_k(k: int, n_items: int) -> None:
    if k < 1:
        raise RecliError(
            f"-k must be at least 1 (got {k}): pass how many items to show, e.g. -k 10"
        )
    if k > n_items:
        raise RecliError(
            f"-k {k} is more than the catalogue's {n_items} items: use -k between 1 and {n_items}"
        )


def _unknown_id(kind: str, given: str, known: list[str], command: str) -> RecliError:
    """The error for an id not in the catalogue: what was wrong, and the nearest valid ids."""
    count = f"{len(known)} {kind}s"
    numeric = bool(known) and all(_is_number(value) for value in known)
    if not given.strip():
        example = f" e.g. `recli {command} {known[0]}`" if known else ""
        return RecliError(
            f"empty {kind} id: pass one of the catalogue's {len(known)} {kind} ids,{example}"
        )
    if numeric:
        numbers = sorted(int(value) for value in known)
        span = f"ids {numbers[0]}–{numbers[-1]}"
        if not _is_number(given.strip()):
            return RecliError(
                f"{kind} id '{given}' is not a number, but this catalogue's {count} have numeric "
                f"{span}: e.g. `recli {command} {known[0]}`"
            )
        target = int(given.strip())
        nearest = sorted(known, key=lambda value: (abs(int(value) - target), int(value)))
    else:
        import difflib

        span = f"e.g. {', '.join(known[:3])}"
        nearest = difflib.get_close_matches(given, known, n=SUGGESTIONS, cutoff=0.0)
    suggestions = ", ".join(nearest[:SUGGESTIONS])
    return RecliError(
        f"unknown {kind} id '{given}': the catalogue has {count} ({span}); nearest: {suggestions}"
    )


# --------------------------------------------------------------------------------------------
# The served artifacts
# --------------------------------------------------------------------------------------------
class Served:
    """An open catalogue plus its Annoy index (loaded on first use, with cheap integrity checks).

    Usage: `with Served(Path("data")) as served: served.recommend("1", k=10)`.
    """

    def __init__(self, artifacts: Path = DEFAULT_ARTIFACTS) -> None:
        self.artifacts = Path(artifacts)
        if not self.artifacts.is_dir():
            raise RecliError(
                f"artifacts folder {self.artifacts} not found: run `dvc repro` to build it, "
                "or pass --artifacts PATH"
            )
        self.catalogue_path = self.artifacts / INDEX_DIR / catalogue.CATALOGUE_FILE
        self.index_path = self.artifacts / INDEX_DIR / catalogue.INDEX_FILE
        self.connection = catalogue.connect(self.catalogue_path)
        try:
            self.meta = catalogue.read_meta(self.connection)
        except (json.JSONDecodeError, sqlite3.DatabaseError):
            raise self._corrupted() from None
        self._index: AnnoyIndex | None = None
        self._items: dict[int, Item] = {}
        self._n_items: int | None = None

    def close(self) -> None:
        if self._index is not None:
            self._index.unload()
            self._index = None
        self.connection.close()

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------- low level
    def _corrupted(self) -> RecliError:
        return RecliError(
            f"{self.catalogue_path} is corrupted or incomplete: run `dvc repro -f index`"
        )

    def _query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.connection.execute(sql, parameters).fetchall()
        except sqlite3.DatabaseError:
            raise self._corrupted() from None

    def _meta(self, key: str) -> Any:
        if key not in self.meta:
            raise RecliError(
                f"{self.catalogue_path} has no '{key}' in its meta table: run `dvc repro -f index`"
            )
        return self.meta[key]

    @property
    def n_items(self) -> int:
        if self._n_items is None:
            self._n_items = int(self._query("SELECT COUNT(*) FROM items")[0][0])
        return self._n_items

    @property
    def n_users(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM users")[0][0])

    @property
    def search_k(self) -> int:
        return int(self.meta.get("search_k", -1))

    @property
    def index(self) -> AnnoyIndex:
        """The Annoy index, checked cheaply: it loads, and has the catalogue's dimension and items.

        The full sha256 check reads the whole file, so it lives in `recli doctor` instead.
        """
        if self._index is None:
            self._index = self._load_index()
        return self._index

    def _load_index(self) -> AnnoyIndex:
        path = self.index_path
        rebuild = "run `dvc repro -f index`"
        if not path.exists():
            raise RecliError(f"{path} not found: run `dvc repro` to build the index and catalogue")
        size = path.stat().st_size
        expected_size = self.meta.get("index_bytes")
        if size == 0 or (expected_size is not None and size != int(expected_size)):
            raise RecliError(f"{path} is truncated ({size} bytes): {rebuild}")
        dimension = int(self._meta("dimension"))
        metric = str(self.meta.get("metric", "dot"))
        try:
            index = AnnoyIndex(dimension, metric)
        except ValueError:
            raise RecliError(
                f"{self.catalogue_path} names an unknown metric '{metric}': {rebuild}"
            ) from None
        try:
            with _native_stderr_silenced():
                index.load(str(path))
        except OSError:
            raise RecliError(f"{path} is truncated or corrupted: {rebuild}") from None
        n_indexed = index.get_n_items()
        if n_indexed != self.n_items:
            index.unload()
            raise RecliError(
                f"{path} holds {n_indexed} items but the catalogue has {self.n_items}: "
                f"the index is truncated or stale, {rebuild}"
            )
        return index

    # ---------------------------------------------------------------------------- lookups
    def items(self, item_indices: Sequence[int]) -> dict[int, Item]:
        """Items by internal index, fetched in one query and cached."""
        missing = sorted({int(i) for i in item_indices} - self._items.keys())
        # In chunks: old SQLite builds allow at most 999 parameters per statement.
        for start in range(0, len(missing), 900):
            chunk = missing[start : start + 900]
            for row in self._query(
                "SELECT item_idx, item_id, title, year, genres, tags, cold, train_count "
                f"FROM items WHERE item_idx IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                try:
                    genres, tags = json.loads(row[4]), json.loads(row[5])
                except (TypeError, json.JSONDecodeError):
                    raise self._corrupted() from None
                self._items[row[0]] = Item(
                    item_idx=row[0],
                    item_id=row[1],
                    title=row[2],
                    year=row[3],
                    genres=genres,
                    tags=tags,
                    cold=bool(row[6]),
                    train_count=row[7],
                )
        return {int(i): self._items[int(i)] for i in item_indices if int(i) in self._items}

    def item(self, item_id: str) -> Item:
        rows = self._query("SELECT item_idx FROM items WHERE item_id = ?", (item_id,))
        if not rows:
            known = [row[0] for row in self._query("SELECT item_id FROM items ORDER BY item_idx")]
            raise _unknown_id("item", item_id, known, "similar")
        return self.items([rows[0][0]])[rows[0][0]]

    def user(self, user_id: str) -> User:
        rows = self._query(
            "SELECT user_idx, user_id, cluster, train_count, vector, interests FROM users "
            "WHERE user_id = ?",
            (user_id,),
        )
        if not rows:
            known = [row[0] for row in self._query("SELECT user_id FROM users ORDER BY user_idx")]
            raise _unknown_id("user", user_id, known, "recommend")
        user_idx, stored_id, cluster, train_count, blob, interests_text = rows[0]
        try:
            interests = json.loads(interests_text)
        except json.JSONDecodeError:
            raise self._corrupted() from None
        return User(
            user_idx,
            stored_id,
            cluster,
            train_count,
            catalogue.unpack_vector(blob),
            interests if isinstance(interests, list) else [],
        )

    def first_user_id(self) -> str:
        """The first user (by internal index) with training history: one `recommend` can serve."""
        users = self.user_ids(1)
        if not users:
            raise RecliError(
                f"{self.catalogue_path} has no users with history: run `dvc repro -f index`"
            )
        return users[0]

    def user_ids(self, limit: int | None = None, with_history: bool = True) -> list[str]:
        """User ids by internal index; by default only those with training history."""
        where = " WHERE train_count > 0" if with_history else ""
        sql = f"SELECT user_id FROM users{where} ORDER BY user_idx"
        rows = self._query(sql + " LIMIT ?", (limit,)) if limit else self._query(sql)
        return [row[0] for row in rows]

    def history(self, user_idx: int, limit: int | None = None) -> list[HistoryEntry]:
        """Training events, newest first (equal timestamps keep the pipeline's seeded order)."""
        sql = (
            "SELECT item_idx, timestamp, rating FROM history WHERE user_idx = ? "
            "ORDER BY timestamp DESC, rowid DESC"
        )
        rows = (
            self._query(sql + " LIMIT ?", (user_idx, limit))
            if limit
            else self._query(sql, (user_idx,))
        )
        items = self.items([row[0] for row in rows])
        return [HistoryEntry(items[row[0]], row[1], row[2]) for row in rows if row[0] in items]

    def _history_indices(self, user_idx: int) -> list[int]:
        """Every item in the user's training history, newest first."""
        rows = self._query(
            "SELECT item_idx FROM history WHERE user_idx = ? ORDER BY timestamp DESC, rowid DESC",
            (user_idx,),
        )
        return [row[0] for row in rows]

    def _cluster_from_row(self, row: tuple[Any, ...]) -> Cluster:
        cluster_id, label, size, profile_text = row
        try:
            profile = json.loads(profile_text)
        except json.JSONDecodeError:
            raise self._corrupted() from None
        profile = profile if isinstance(profile, dict) else {}
        return Cluster(
            cluster=cluster_id,
            label=label,
            size=size,
            share=profile.get("share"),
            top_terms=list(profile.get("top_terms") or []),
            exemplars=list(profile.get("exemplars") or []),
            top_items=list(profile.get("top_items") or []),
        )

    def clusters(self) -> list[Cluster]:
        rows = self._query("SELECT cluster, label, size, profile FROM clusters ORDER BY cluster")
        clusters = [self._cluster_from_row(row) for row in rows]
        total = sum(cluster.size for cluster in clusters) or 1
        return [
            cluster
            if cluster.share is not None
            else cluster._replace(share=round(cluster.size / total, 4))
            for cluster in clusters
        ]

    def cluster(self, cluster_id: int) -> Cluster:
        rows = self._query(
            "SELECT cluster, label, size, profile FROM clusters WHERE cluster = ?", (cluster_id,)
        )
        if not rows:
            ids = [row[0] for row in self._query("SELECT cluster FROM clusters ORDER BY cluster")]
            if not ids:
                raise RecliError(
                    f"{self.catalogue_path} has no interest clusters: run `dvc repro cluster index`"
                )
            raise RecliError(
                f"unknown cluster {cluster_id}: the catalogue has {len(ids)} clusters, "
                f"ids {ids[0]}–{ids[-1]} (see `recli clusters`)"
            )
        return self._cluster_from_row(rows[0])

    def cluster_members(self, cluster_id: int, limit: int) -> list[str]:
        """A sample of member user ids: the first `limit` by internal index (stable)."""
        rows = self._query(
            "SELECT user_id FROM users WHERE cluster = ? ORDER BY user_idx LIMIT ?",
            (cluster_id, limit),
        )
        return [row[0] for row in rows]

    def _user_cluster(self, user: User) -> Cluster | None:
        if user.cluster is None:
            return None
        try:
            return self.cluster(user.cluster)
        except RecliError:
            return None  # a profile-less cluster id: show the user without one

    # ---------------------------------------------------------------------------- queries
    def recommend(self, user_id: str, k: int = 10) -> Recommendations:
        """The user's top-k unseen items from the index, each with the history item behind it.

        Asks Annoy for k + |history| neighbours of the user's fused vector and drops the history,
        which is exactly the query whose recall the index stage measures.
        """
        check_k(k, self.n_items)
        user = self.user(user_id)
        if not any(user.vector):
            raise RecliError(
                f"user '{user.user_id}' has no training history, so there is nothing to recommend "
                'from: describe their taste instead with `recli search "..."`'
            )
        seen_order = self._history_indices(user.user_idx)
        seen = set(seen_order)
        index = self.index
        wanted = min(k + len(seen), self.n_items)
        neighbours, scores = index.get_nns_by_vector(
            user.vector, wanted, search_k=self.search_k, include_distances=True
        )
        chosen = [(i, s) for i, s in zip(neighbours, scores, strict=True) if i not in seen][:k]

        recent = seen_order[:WHY_HISTORY_ITEMS]
        text_dimension = int(self.meta.get("text_dimension", 0))
        because_of: dict[int, tuple[int, float]] = {}
        for item, _ in chosen:
            if recent:
                similarity, source = max((index.get_distance(item, r), r) for r in recent)
                because_of[item] = (source, similarity)
        items = self.items(
            [i for i, _ in chosen]
            + [source for source, _ in because_of.values()]
            + recent[:RECENT_SHOWN]
        )
        cluster = self._user_cluster(user)
        lifts = _item_lifts(cluster)
        terms = _cluster_term_set(cluster)
        text_user = user.vector[:text_dimension]

        results = []
        for rank, (item_idx, score) in enumerate(chosen, start=1):
            item = items[item_idx]
            text_score = _dot(text_user, index.get_item_vector(item_idx)[:text_dimension])
            because = None
            if item_idx in because_of:
                source, similarity = because_of[item_idx]
                because = Because(items[source], similarity)
            results.append(
                Recommendation(
                    rank=rank,
                    item=item,
                    score=score,
                    text_score=text_score,
                    collaborative_score=score - text_score,
                    because=because,
                    cluster_lift=lifts.get(item.item_id),
                    cluster_terms=_matching_terms(item, terms),
                )
            )
        recent_entries = self.history(user.user_idx, RECENT_SHOWN)
        text_weight = self.meta.get("text_weight")
        return Recommendations(
            user=user,
            cluster=cluster,
            recent=recent_entries,
            items=results,
            text_weight=None if text_weight is None else float(text_weight),
        )

    def similar(self, item_id: str, k: int = 10) -> tuple[Item, list[Neighbour]]:
        """Items nearest to an item in the fused space (dot product)."""
        check_k(k, self.n_items)
        item = self.item(item_id)
        neighbours, scores = self.index.get_nns_by_item(
            item.item_idx, k + 1, search_k=self.search_k, include_distances=True
        )
        pairs = [(i, s) for i, s in zip(neighbours, scores, strict=True) if i != item.item_idx]
        return item, self._neighbours(pairs[:k])

    def search(self, text_vector: Sequence[float], k: int = 10) -> list[Neighbour]:
        """Cold start: items nearest to a text embedding, with an empty collaborative part."""
        check_k(k, self.n_items)
        query = self.text_query(text_vector)
        neighbours, scores = self.index.get_nns_by_vector(
            query, k, search_k=self.search_k, include_distances=True
        )
        return self._neighbours(list(zip(neighbours, scores, strict=True)))

    def text_query(self, text_vector: Sequence[float]) -> list[float]:
        """[text_scale · text, zeros]: a user with no collaborative history, as a fused vector."""
        text_dimension = int(self._meta("text_dimension"))
        dimension = int(self._meta("dimension"))
        if len(text_vector) != text_dimension:
            raise RecliError(
                f"the encoder gives {len(text_vector)}-d vectors but the index was built from "
                f"{text_dimension}-d text vectors: use the encoder the index was built with "
                "(`dvc repro` rebuilds both)"
            )
        scale = float(self._meta("text_scale"))
        return [scale * float(value) for value in text_vector] + [0.0] * (
            dimension - text_dimension
        )

    def _neighbours(self, pairs: list[tuple[int, float]]) -> list[Neighbour]:
        items = self.items([i for i, _ in pairs])
        return [
            Neighbour(rank, items[i], score)
            for rank, (i, score) in enumerate(pairs, start=1)
            if i in items
        ]

    def user_profile(self, user_id: str, history_limit: int = 10) -> UserProfile:
        if history_limit < 1:
            raise RecliError(f"--history must be at least 1 (got {history_limit})")
        user = self.user(user_id)
        every_item = self.items(self._history_indices(user.user_idx)).values()
        genres = Counter(genre for item in every_item for genre in item.genres)
        tags = Counter(tag for item in every_item for tag in item.tags)
        return UserProfile(
            user=user,
            cluster=self._user_cluster(user),
            history=self.history(user.user_idx, history_limit),
            top_genres=genres.most_common(5),
            top_tags=tags.most_common(5),
        )

    def encoder_path(self, override: Path | None = None) -> Path:
        """The encoder `recli search` loads: `--encoder`, else `<artifacts>/finetune/model`."""
        path = Path(override) if override is not None else self.artifacts / ENCODER_DIR
        if not path.exists():
            raise RecliError(
                f"no encoder at {path}: run `dvc repro finetune` (or pass --encoder PATH)"
            )
        return path


def _item_lifts(cluster: Cluster | None) -> dict[str, float]:
    if cluster is None:
        return {}
    return {
        str(entry["item_id"]): float(entry["lift"])
        for entry in cluster.top_items
        if "item_id" in entry and entry.get("lift") is not None
    }


def _cluster_term_set(cluster: Cluster | None) -> set[tuple[str | None, str]]:
    if cluster is None:
        return set()
    return {(term.get("kind"), str(term["term"])) for term in cluster.top_terms if "term" in term}


def _matching_terms(item: Item, terms: set[tuple[str | None, str]]) -> list[str]:
    """The item's genres and tags that its user's cluster over-represents."""
    matches = [
        genre for genre in item.genres if ("genre", genre) in terms or (None, genre) in terms
    ]
    matches += [TAG_PREFIX + tag for tag in item.tags if ("tag", tag) in terms]
    return matches


# --------------------------------------------------------------------------------------------
# recli doctor
# --------------------------------------------------------------------------------------------
def doctor(artifacts: Path = DEFAULT_ARTIFACTS) -> list[Check]:
    """Every check the served artifacts can fail, including the full-file hashes."""
    checks: list[Check] = []
    artifacts = Path(artifacts)
    if not artifacts.is_dir():
        return [Check("artifacts folder", "problem", f"{artifacts} not found: run `dvc repro`")]
    checks.append(Check("artifacts folder", "ok", str(artifacts)))
    try:
        served = Served(artifacts)
    except RecliError as error:
        checks.append(Check("catalogue", "problem", str(error)))
        return checks
    with served:
        meta = served.meta
        checks.append(
            Check(
                "catalogue",
                "ok",
                f"schema {meta.get('schema_version')}, {served.n_users} users, "
                f"{served.n_items} items, {len(served.clusters())} clusters",
            )
        )
        missing = [
            key
            for key in ("dimension", "text_dimension", "metric", "text_scale", "index_sha256")
            if key not in meta
        ]
        checks.append(
            Check(
                "catalogue meta",
                "problem",
                f"missing {', '.join(missing)}: run `dvc repro -f index`",
            )
            if missing
            else Check(
                "catalogue meta",
                "ok",
                f"{meta['dimension']}-d ({meta['text_dimension']} text), metric {meta['metric']}, "
                f"text weight {meta.get('text_weight')}",
            )
        )
        try:
            index = served.index
            checks.append(Check("index", "ok", f"{index.get_n_items()} items, {index.f}-d"))
        except RecliError as error:
            checks.append(Check("index", "problem", str(error)))
        checks.append(_hash_check(served))
        checks.extend(_upstream_checks(served))
        if not any(check.status == "problem" for check in checks):
            checks.append(_query_check(served))
    encoder = artifacts / ENCODER_DIR
    checks.append(
        Check("encoder", "ok", str(encoder))
        if encoder.exists()
        else Check(
            "encoder",
            "warning",
            f"{encoder} not found: only `recli search` needs it (`dvc repro finetune`)",
        )
    )
    return checks


def _hash_check(served: Served) -> Check:
    expected = served.meta.get("index_sha256")
    if not served.index_path.exists():
        return Check("index sha256", "skipped", "no index file")
    if expected is None:
        return Check("index sha256", "warning", "the catalogue records no index_sha256")
    actual = file_digest(served.index_path)
    expected = str(expected)
    if not expected or not actual.startswith(expected):
        return Check(
            "index sha256",
            "problem",
            f"{actual[: len(expected) or 16]} but the catalogue expects {expected}: the index and "
            "catalogue are from different runs, run `dvc repro -f index`",
        )
    return Check("index sha256", "ok", f"{expected} matches")


def _upstream_checks(served: Served) -> list[Check]:
    built_from = served.meta.get("built_from") or {}
    if not isinstance(built_from, dict) or not built_from:
        return [Check("upstream files", "skipped", "the catalogue records no built_from digests")]
    stale, checked, absent = [], 0, 0
    # Keys are paths relative to the artifacts folder: digests of the files the index was built
    # from, which tell a stale catalogue from a fresh one.
    for relative, expected in built_from.items():
        path = served.artifacts / relative
        if not path.exists():
            absent += 1
            continue
        checked += 1
        if not expected or not file_digest(path).startswith(str(expected)):
            stale.append(relative)
    if stale:
        return [
            Check(
                "upstream files",
                "problem",
                f"changed since the index was built ({', '.join(stale)}): run `dvc repro`",
            )
        ]
    if not checked:
        return [Check("upstream files", "skipped", "none of the pipeline's files are present")]
    note = f" ({absent} not present)" if absent else ""
    return [Check("upstream files", "ok", f"{checked} match the catalogue{note}")]


def _query_check(served: Served) -> Check:
    user_id = served.first_user_id()
    started = time.perf_counter()
    try:
        result = served.recommend(user_id, min(10, served.n_items))
    except RecliError as error:
        return Check("test query", "problem", str(error))
    elapsed = 1000 * (time.perf_counter() - started)
    return Check(
        "test query",
        "ok",
        f"recommend {user_id}: {len(result.items)} items in {elapsed:.1f} ms",
    )
