"""Read the served catalogue: the SQL behind every lookup, and the rows parsed into results.

`Lookups` finds items, users, their history, the interest groups, a user's own interests and
the topics by their dataset ids (or internal indices) and turns each row into a `recli.results`
type. It knows SQLite and the catalogue's tables, nothing about the Annoy index or about how a
query is answered: the queries (`recli.queries`) are built on it, and `recli.serve.Served`, which
opens and checks the artifacts, is what a caller holds.

Kept apart so the SQL and its row parsing can be read (and changed with a schema) in one place.
Standard library and stdlib-only recli modules only: it is on `recli recommend`'s path.

A row that does not parse (bad JSON, a broken page) raises `RecliError` naming the catalogue and
the command that rebuilds it; an unknown id's error suggests the nearest ones.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recli import catalogue
from recli.catalogue import MetaKey
from recli.errors import RecliError
from recli.inputs import is_text, not_text, unknown_id
from recli.live import LiveStore
from recli.results import Cluster, HistoryEntry, Interest, Item, User

SHOWN_LIFT = 1.1
"""The least lift shown as "over-represented" (a group's or user's share of a term at least 10%
above everyone's): a term at ×1.01 is not something a group likes."""


def over_represented(terms: Any) -> list[dict[str, Any]]:
    """The terms whose lift reaches `SHOWN_LIFT` (terms without a recorded lift are kept)."""
    return [
        term
        for term in (terms if isinstance(terms, list) else [])
        if isinstance(term, dict) and (term.get("lift") is None or term["lift"] >= SHOWN_LIFT)
    ]


class Lookups:
    """Lookups on an open catalogue connection, which this object then owns (`close`).

    Reads the catalogue's meta on creation; a catalogue whose meta does not parse is closed and
    refused as corrupted.
    """

    def __init__(self, connection: sqlite3.Connection, catalogue_path: Path) -> None:
        self.connection = connection
        self.catalogue_path = catalogue_path
        try:
            self.meta = catalogue.read_meta(self.connection)
        except (json.JSONDecodeError, sqlite3.DatabaseError):
            self.connection.close()
            raise self._corrupted() from None
        self._items: dict[int, Item] = {}
        self._n_items: int | None = None
        self.live: LiveStore | None = None
        """Events added since the catalogue was built and the users they changed
        (`recli.live`), where any were (`recli.serve.Served` opens it)."""

    def close(self) -> None:
        """Close the catalogue connection (and the live store's)."""
        if self.live is not None:
            self.live.close()
            self.live = None
        self.connection.close()

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

    def meta_value(self, key: MetaKey) -> Any:
        """A meta key the catalogue must record (`recli.catalogue.meta_value`)."""
        return catalogue.meta_value(self.meta, key, self.catalogue_path)

    @property
    def n_items(self) -> int:
        """Items in the catalogue (cached: every query checks `-k` against it)."""
        if self._n_items is None:
            self._n_items = int(self._query("SELECT COUNT(*) FROM items")[0][0])
        return self._n_items

    @property
    def n_users(self) -> int:
        """Users in the catalogue, with or without history."""
        return int(self._query("SELECT COUNT(*) FROM users")[0][0])

    @property
    def search_k(self) -> int:
        """Annoy's `search_k` as the index stage tuned it (-1: Annoy's default)."""
        return int(self.meta.get(MetaKey.SEARCH_K, -1))

    # ---------------------------------------------------------------------------- items
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
        """An item by its dataset id; an unknown id's error suggests the nearest ones."""
        if not is_text(item_id):
            first = self._query("SELECT item_id FROM items ORDER BY item_idx LIMIT 1")
            raise not_text("item id", item_id, f"recli similar {first[0][0] if first else 'ID'}")
        rows = self._query("SELECT item_idx FROM items WHERE item_id = ?", (item_id,))
        if not rows:
            known = [row[0] for row in self._query("SELECT item_id FROM items ORDER BY item_idx")]
            raise unknown_id("item", item_id, known, "similar")
        return self.items([rows[0][0]])[rows[0][0]]

    # ---------------------------------------------------------------------------- users
    def user(self, user_id: str) -> User:
        """A user by their dataset id; an unknown id's error suggests the nearest ones."""
        if not is_text(user_id):
            raise not_text("user id", user_id, f"recli recommend {self.first_user_id()}")
        rows = self._query(
            "SELECT user_idx, user_id, cluster, events, vector, over_represented, search_vector "
            "FROM users WHERE user_id = ?",
            (user_id,),
        )
        added = None if self.live is None else self.live.user(user_id)
        if added is not None:
            # Events were added since the build: the vector is the one recomputed from all of
            # them; the group and the terms stay the build's.
            cluster, terms = None, []
            if rows:
                cluster, terms = rows[0][2], self._terms(rows[0][5])
            vector = catalogue.unpack_vector(added.vector)
            index_fits = rows[0][0] == added.user_idx if rows else added.user_idx >= self.n_users
            if len(vector) != self.meta.get(MetaKey.DIMENSION) or not index_fits:
                raise RecliError(
                    f"{self.live.path} does not fit the catalogue (user '{user_id}'): move it "
                    "aside and add its events again"
                )
            return User(
                added.user_idx,
                user_id,
                cluster,
                added.events,
                vector,
                over_represented(terms),
                None
                if added.search_vector is None
                else catalogue.unpack_vector(added.search_vector),
                live=True,
            )
        if not rows:
            known = [row[0] for row in self._query("SELECT user_id FROM users ORDER BY user_idx")]
            raise unknown_id("user", user_id, known, "recommend")
        user_idx, stored_id, cluster, events, blob, terms_text, searched = rows[0]
        return User(
            user_idx,
            stored_id,
            cluster,
            events,
            catalogue.unpack_vector(blob),
            over_represented(self._terms(terms_text)),
            None if searched is None else catalogue.unpack_vector(searched),
        )

    def _terms(self, text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise self._corrupted() from None

    def user_with_history(self, user_id: str) -> User:
        """A user there is something to recommend from: one with history (a non-zero vector)."""
        user = self.user(user_id)
        if not any(user.vector):
            raise RecliError(
                f"user '{user.user_id}' has no history, so there is nothing to recommend "
                'from: describe their taste instead with `recli search "..."`'
            )
        return user

    def first_user_id(self) -> str:
        """The first user (by internal index) with history: one `recommend` can serve."""
        users = self.user_ids(1)
        if not users:
            raise RecliError(
                f"{self.catalogue_path} has no users with history: run `dvc repro -f index`"
            )
        return users[0]

    def user_ids(self, limit: int | None = None, with_history: bool = True) -> list[str]:
        """User ids by internal index; by default only those with history."""
        where = " WHERE events > 0" if with_history else ""
        sql = f"SELECT user_id FROM users{where} ORDER BY user_idx"
        rows = self._query(sql + " LIMIT ?", (limit,)) if limit else self._query(sql)
        return [row[0] for row in rows]

    def history(self, user_idx: int, limit: int | None = None) -> list[HistoryEntry]:
        """Every event, newest first (equal timestamps keep the pipeline's seeded order)."""
        rows = self._events(user_idx, limit)
        items = self.items([row[0] for row in rows])
        return [HistoryEntry(items[row[0]], row[1], row[2]) for row in rows if row[0] in items]

    def history_indices(self, user_idx: int) -> list[int]:
        """Every item in the user's history, newest first: what `recommend` leaves out
        and picks its `because` items from (the most recent `explain.WHY_HISTORY_ITEMS`)."""
        return [row[0] for row in self._events(user_idx)]

    def _events(self, user_idx: int, limit: int | None = None) -> list[tuple[Any, ...]]:
        """`(item_idx, timestamp, rating)` of the user's events, newest first: the catalogue's
        and, where events were added since the build (`recli.live`), those, one per item (the
        most recent, as the pipeline keeps)."""
        sql = (
            "SELECT item_idx, timestamp, rating FROM history WHERE user_idx = ? "
            "ORDER BY timestamp DESC, rowid DESC"
        )
        added = [] if self.live is None else self.live.history(user_idx)
        if not added:
            if limit:
                return self._query(sql + " LIMIT ?", (user_idx, limit))
            return self._query(sql, (user_idx,))
        # Added events are newer than the build's unless `--at` said otherwise: merge by time
        # (a stable sort: the later-added first among equal times), then one per item.
        merged = sorted(
            [*reversed(added), *self._query(sql, (user_idx,))],
            key=lambda row: -1 if row[1] is None else row[1],
            reverse=True,
        )
        seen: set[int] = set()
        rows = [row for row in merged if not (row[0] in seen or seen.add(row[0]))]
        return rows[:limit] if limit else rows

    # ---------------------------------------------------------------------------- groups
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
            top_terms=over_represented(profile.get("top_terms")),
            exemplars=list(profile.get("exemplars") or []),
            top_items=list(profile.get("top_items") or []),
        )

    def clusters(self) -> list[Cluster]:
        """Every interest group by id; a profile without a `share` gets its share of users."""
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
        """One interest group; an unknown id's error gives the range of valid ones."""
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

    def user_cluster(self, user: User) -> Cluster | None:
        """The user's interest group, None when they have none or it has no profile."""
        if user.cluster is None:
            return None
        try:
            return self.cluster(user.cluster)
        except RecliError:
            return None  # a profile-less cluster id: show the user without one

    def cluster_members(self, cluster_id: int, limit: int) -> list[str]:
        """A sample of member user ids: the first `limit` by internal index (stable); 0: none."""
        if limit < 0:
            raise RecliError(
                f"--members must be at least 0 (got {limit}): pass how many member ids to show, "
                "e.g. --members 10 (0 shows none)"
            )
        rows = self._query(
            "SELECT user_id FROM users WHERE cluster = ? ORDER BY user_idx LIMIT ?",
            (cluster_id, limit),
        )
        return [row[0] for row in rows]

    # ---------------------------------------------------------------------------- interests
    def interests(self, user_idx: int) -> list[Interest]:
        """The user's own interests, heaviest first (none in catalogues built without them)."""
        rows = self._query(
            "SELECT interest, label, weight, events, medoid, first_timestamp, last_timestamp, "
            "cluster, items FROM user_interests WHERE user_idx = ? ORDER BY interest",
            (user_idx,),
        )
        medoids = self.items([row[4] for row in rows])
        found = []
        for interest, label, weight, events, medoid, first, last, cluster, items in rows:
            try:
                members = json.loads(items)
            except json.JSONDecodeError:
                raise self._corrupted() from None
            found.append(
                Interest(
                    interest=interest,
                    label=label,
                    weight=float(weight),
                    events=events,
                    medoid=medoids.get(medoid),
                    first_timestamp=first,
                    last_timestamp=last,
                    cluster=cluster,
                    items=len(members) if isinstance(members, list) else 0,
                )
            )
        return found

    def interest_search_means(self, user_idx: int) -> dict[int, list[float]]:
        """Each of the user's interests' mean in the index's search space, where it is narrower
        than the fused one (`interest_vectors` has the fused means)."""
        rows = self._query(
            "SELECT interest, search_mean FROM user_interests WHERE user_idx = ? "
            "AND search_mean IS NOT NULL",
            (user_idx,),
        )
        return {interest: catalogue.unpack_vector(blob) for interest, blob in rows}

    def search_basis(self) -> list[list[float]]:
        """The basis of the index's search space by rows (one per fused dimension): a fused
        vector's image there is the sum of the rows weighted by its entries."""
        rows = self._query("SELECT vector FROM search_basis ORDER BY dimension", ())
        return [catalogue.unpack_vector(blob) for (blob,) in rows]

    def interest_vectors(self, user_idx: int) -> list[tuple[int, float, list[float], list[float]]]:
        """(interest, weight, centroid in the base encoder's space, mean fused item vector)
        of each of the user's interests, heaviest first (none in catalogues without them)."""
        rows = self._query(
            "SELECT interest, weight, centroid, mean FROM user_interests WHERE user_idx = ? "
            "AND centroid IS NOT NULL AND mean IS NOT NULL ORDER BY interest",
            (user_idx,),
        )
        return [
            (
                interest,
                float(weight),
                catalogue.unpack_vector(centroid),
                catalogue.unpack_vector(mean),
            )
            for interest, weight, centroid, mean in rows
        ]

    # ---------------------------------------------------------------------------- topics
    def item_topics(self) -> dict[int, int]:
        """The topic of every item that has one, by internal index."""
        return dict(self._query("SELECT item_idx, topic FROM items WHERE topic IS NOT NULL"))

    def topic_records(self) -> tuple[dict[int, str], dict[int, str | None], list[list[float]]]:
        """Every topic's label, exemplar title and centroid (in topic order)."""
        rows = self._query("SELECT topic, label, profile, centroid FROM topics ORDER BY topic")
        try:
            exemplars = {
                topic: json.loads(profile).get("medoid_title") for topic, _, profile, _ in rows
            }
        except (json.JSONDecodeError, AttributeError):
            raise self._corrupted() from None
        labels = {topic: label for topic, label, _, _ in rows}
        return labels, exemplars, [catalogue.unpack_vector(blob) for *_, blob in rows]
