"""Answer queries from the served artifacts: the SQLite catalogue and the Annoy index.

`Served` opens both (the index on first use), checks them cheaply (present, the schema this recli
reads, the index's size, dimension and item count agree with the catalogue), looks up items,
users and clusters by their dataset ids, and answers the CLI's queries: `recommend` (with its
reasons, see `recli.explain`), `similar`, `search` and `user_profile`. The full-file hashes are
`recli doctor`'s (`recli.doctor`); what a query returns is in `recli.results`.

`recli recommend` must start fast, so this module imports only the standard library, `annoy` and
the recli modules that do the same: no numpy. Vectors come out of the catalogue as plain lists
and Annoy takes and returns lists.

Everything a user can get wrong (an unknown id, a bad `-k`, missing, stale or corrupted
artifacts) raises `RecliError` with one line naming the problem and the fix.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from annoy import AnnoyIndex

from recli import catalogue, explain, exploration, integrity, transaction
from recli.ann_index import REBUILD, load_index
from recli.contract import (
    CATALOGUE_FILE,
    DEFAULT_ARTIFACTS,
    ENCODER_DIR,
    INDEX_DIR,
    INDEX_FILE,
    fuse_parts,
)
from recli.errors import RecliError
from recli.inputs import check_k, is_text, not_text, unknown_id
from recli.results import (
    Because,
    Cluster,
    Exploration,
    HistoryEntry,
    Interest,
    Item,
    Neighbour,
    Recommendation,
    Recommendations,
    TopicSuggestion,
    User,
    UserProfile,
)

RECENT_SHOWN = 5
"""History titles shown in the `recommend` header."""
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


OVERALL_TASTE = "overall taste"
"""What `--by-interest` calls the whole-user vector's list."""


def _dot(left: Sequence[float], right: Sequence[float]) -> float:
    return sum(a * b for a, b in zip(left, right, strict=True))


def _finish_interrupted_swaps(artifacts: Path) -> None:
    """Put in place the outputs a stage committed but was killed before moving (all of them)."""
    pending = transaction.committed(artifacts)
    if not pending:
        return
    try:
        transaction.roll_forward(artifacts)
    except OSError as error:
        raise RecliError(
            f"stage {pending[0]} was interrupted while putting its new outputs in place and they "
            f"cannot be moved now ({error.strerror}): run `dvc repro {pending[0]}`"
        ) from None


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
        _finish_interrupted_swaps(self.artifacts)
        self.catalogue_path = self.artifacts / INDEX_DIR / CATALOGUE_FILE
        self.index_path = self.artifacts / INDEX_DIR / INDEX_FILE
        self.connection = catalogue.connect(self.catalogue_path)
        try:
            # What is served is what the index stage built: size and sampled digest (cheap).
            integrity.check_sampled(self.artifacts, [self.catalogue_path])
        except RecliError:
            self.connection.close()
            raise
        try:
            self.meta = catalogue.read_meta(self.connection)
        except (json.JSONDecodeError, sqlite3.DatabaseError):
            self.connection.close()
            raise self._corrupted() from None
        self._index: AnnoyIndex | None = None
        self._items: dict[int, Item] = {}
        self._n_items: int | None = None

    def close(self) -> None:
        """Unmap the index and close the catalogue (a `with` block does this)."""
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
        if self.index_path.exists():
            integrity.check_sampled(self.artifacts, [self.index_path])
        index = load_index(self.index_path, self.meta, self.catalogue_path)
        n_indexed = index.get_n_items()
        if n_indexed != self.n_items:
            index.unload()
            raise RecliError(
                f"{self.index_path} holds {n_indexed} items but the catalogue has {self.n_items}: "
                f"the index is truncated or stale, {REBUILD}"
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
        """An item by its dataset id; an unknown id's error suggests the nearest ones."""
        if not is_text(item_id):
            first = self._query("SELECT item_id FROM items ORDER BY item_idx LIMIT 1")
            raise not_text("item id", item_id, f"recli similar {first[0][0] if first else 'ID'}")
        rows = self._query("SELECT item_idx FROM items WHERE item_id = ?", (item_id,))
        if not rows:
            known = [row[0] for row in self._query("SELECT item_id FROM items ORDER BY item_idx")]
            raise unknown_id("item", item_id, known, "similar")
        return self.items([rows[0][0]])[rows[0][0]]

    def user(self, user_id: str) -> User:
        """A user by their dataset id; an unknown id's error suggests the nearest ones."""
        if not is_text(user_id):
            raise not_text("user id", user_id, f"recli recommend {self.first_user_id()}")
        rows = self._query(
            "SELECT user_idx, user_id, cluster, events, vector, interests FROM users "
            "WHERE user_id = ?",
            (user_id,),
        )
        if not rows:
            known = [row[0] for row in self._query("SELECT user_id FROM users ORDER BY user_idx")]
            raise unknown_id("user", user_id, known, "recommend")
        user_idx, stored_id, cluster, events, blob, interests_text = rows[0]
        try:
            interests = json.loads(interests_text)
        except json.JSONDecodeError:
            raise self._corrupted() from None
        return User(
            user_idx,
            stored_id,
            cluster,
            events,
            catalogue.unpack_vector(blob),
            over_represented(interests),
        )

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

    def history_indices(self, user_idx: int) -> list[int]:
        """Every item in the user's history, newest first: what `recommend` leaves out
        and picks its `because` items from (the most recent `explain.WHY_HISTORY_ITEMS`)."""
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

    def _user_cluster(self, user: User) -> Cluster | None:
        if user.cluster is None:
            return None
        try:
            return self.cluster(user.cluster)
        except RecliError:
            return None  # a profile-less cluster id: show the user without one

    def _retrieve(self, vector: Sequence[float], seen: set[int], k: int) -> list[tuple[int, float]]:
        """The top-k unseen items of one query: Annoy asked for k + |seen| neighbours, the
        history dropped (the query whose recall the index stage measures). An approximate
        search can come back short; then every leaf is visited (exact)."""
        index = self.index
        wanted = min(k + len(seen), self.n_items)
        chosen: list[tuple[int, float]] = []
        for effort in (self.search_k, index.get_n_trees() * self.n_items):
            neighbours, scores = index.get_nns_by_vector(
                vector, wanted, search_k=effort, include_distances=True
            )
            chosen = [(i, s) for i, s in zip(neighbours, scores, strict=True) if i not in seen][:k]
            if len(chosen) == k:
                break
        return chosen

    def _history_user(self, user_id: str) -> User:
        user = self.user(user_id)
        if not any(user.vector):
            raise RecliError(
                f"user '{user.user_id}' has no history, so there is nothing to recommend "
                'from: describe their taste instead with `recli search "..."`'
            )
        return user

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

    def _by_interest(
        self, user: User, interests: list[Interest], seen: set[int], k: int
    ) -> list[tuple[int, float, str, list[float], int]]:
        """(item, score, label of the list it serves, that list's query, place in the dealing):
        the whole-user list and one per interest, dealt by weight as `index` tuned it, then
        grouped by list (lists in the order first dealt from, each in its own order), so every
        group reads best first and ranks can count straight down the groups. The score is the
        item's dot product with the query that found it: what ranked it in its list."""
        settings = self.meta.get("multi_interest") or {}
        share = float(settings.get("whole_user_share", 1.0))
        pull = float(settings.get("pull", 0.0))
        labels = {interest.interest: interest.label for interest in interests}
        queries = [(OVERALL_TASTE, share, user.vector)]
        for interest, weight, _, mean in self.interest_vectors(user.user_idx):
            queries.append(
                (
                    labels.get(interest, f"interest {interest + 1}"),
                    (1.0 - share) * weight,
                    exploration.interest_query(user.vector, mean, pull),
                )
            )
        lists = [dict(self._retrieve(query, seen, k)) for _, _, query in queries]
        merged = exploration.merge_by_weight(
            [list(found) for found in lists], [weight for _, weight, _ in queries], k
        )
        # Lists in the order they were first dealt from; within a list, the order of dealing.
        group: dict[int, int] = {}
        for _, source in merged:
            group.setdefault(source, len(group))
        shown = sorted(range(len(merged)), key=lambda dealt: (group[merged[dealt][1]], dealt))
        found = []
        for dealt in shown:
            item, source = merged[dealt]
            label, _, query = queries[source]
            found.append((item, lists[source][item], label, query, dealt + 1))
        return found

    # ---------------------------------------------------------------------------- queries
    def recommend(self, user_id: str, k: int = 10, by_interest: bool = False) -> Recommendations:
        """The user's top-k unseen items from the index, each with the history item behind it.

        Asks Annoy for k + |history| neighbours of the user's fused vector and drops the history,
        which is exactly the query whose recall the index stage measures. `by_interest`: one
        query per interest besides the whole-user one, the slots dealt by weight; rows are
        grouped by the list they serve and scored by its query (`_by_interest`), ranks 1..k down
        the groups.
        """
        check_k(k, self.n_items)
        user = self._history_user(user_id)
        seen_order = self.history_indices(user.user_idx)
        seen = set(seen_order)
        unseen = self.n_items - len(seen)
        if k > unseen:
            raise RecliError(
                f"-k {k} is more than the {unseen} items user '{user.user_id}' has not interacted "
                f"with: use -k between 1 and {unseen}"
            )
        interests = self.interests(user.user_idx)
        if by_interest:
            found = self._by_interest(user, interests, seen, k)
        else:
            found = [
                (item, score, None, user.vector, None)
                for item, score in self._retrieve(user.vector, seen, k)
            ]
        index = self.index
        because_of = explain.closest_history(index, [entry[0] for entry in found], seen_order)
        items = self.items(
            [entry[0] for entry in found]
            + [source for source, _ in because_of.values()]
            + seen_order[:RECENT_SHOWN]
        )
        cluster = self._user_cluster(user)
        lifts = explain.item_lifts(cluster)
        terms = explain.cluster_terms(cluster)
        text_dimension = int(self.meta.get("text_dimension", 0))

        results = []
        for rank, (item_idx, score, serves, query, dealt) in enumerate(found, start=1):
            item = items[item_idx]
            text_score = explain.text_score(query, index.get_item_vector(item_idx), text_dimension)
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
                    cluster_terms=explain.matching_terms(item, terms),
                    serves=serves,
                    dealt=dealt,
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
            interests=interests,
            by_interest=by_interest,
        )

    def _topic_records(self) -> tuple[dict[int, str], dict[int, str | None], list[list[float]]]:
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

    def explore(self, user_id: str, k: int = 5, topics: int = 3) -> Exploration:
        """Topics the user has not engaged with, the likeliest next new interest first, each
        with its `k` items the user would enjoy most (`recli.exploration`)."""
        check_k(k, self.n_items)
        if topics < 1:
            raise RecliError(f"--topics must be at least 1 (got {topics})")
        user = self._history_user(user_id)
        settings = self.meta.get("explore")
        recorded = self.meta.get("topic_transitions")
        if not settings or not recorded:
            raise RecliError(
                f"{self.catalogue_path} has no topics to explore: run `dvc repro interests index`"
            )
        topic_of = dict(self._query("SELECT item_idx, topic FROM items WHERE topic IS NOT NULL"))
        seen_order = self.history_indices(user.user_idx)
        weights = exploration.topic_weights(
            [topic_of[item] for item in seen_order if item in topic_of],
            float(settings["half_life"]),
        )
        labels, exemplars, centroids = self._topic_records()
        interest_labels = {i.interest: i.label for i in self.interests(user.user_idx)}
        own = self.interest_vectors(user.user_idx)
        own_centroids = [centroid for _, _, centroid, _ in own]
        transitions = exploration.Transitions(
            recorded["counts"], recorded["adoptions"], float(recorded["smoothing"])
        )
        ranked = exploration.rank_topics(
            weights,
            transitions,
            exploration.closest_similarity(own_centroids, centroids),
            float(settings["similarity_weight"]),
        )
        seen = set(seen_order)
        unseen_in: dict[int, list[int]] = {}
        for item, topic in topic_of.items():
            if item not in seen:
                unseen_in.setdefault(topic, []).append(item)
        suggestions = []
        for entry in ranked[:topics]:
            nearest = exploration.nearest(own_centroids, centroids[entry.topic])
            suggestions.append(
                TopicSuggestion(
                    topic=entry.topic,
                    label=labels[entry.topic],
                    probability=entry.probability,
                    similarity=entry.similarity,
                    because=[labels[topic] for topic in entry.because],
                    closest_interest=None
                    if nearest is None
                    else interest_labels.get(own[nearest][0]),
                    exemplar=exemplars.get(entry.topic),
                    items=self._explored_items(
                        user, unseen_in.get(entry.topic, []), entry.score, settings, k
                    ),
                    unseen=len(unseen_in.get(entry.topic, [])),
                )
            )
        engaged = sorted(weights.items(), key=lambda pair: (-pair[1], pair[0]))
        return Exploration(
            user=user,
            engaged=[(labels[topic], weight) for topic, weight in engaged],
            suggestions=suggestions,
            topics_left=len(ranked),
            k=k,
            topics_asked=topics,
        )

    def _explored_items(
        self,
        user: User,
        candidates: list[int],
        topic_score: float,
        settings: dict[str, Any],
        k: int,
    ) -> list[Neighbour]:
        """The `k` best of one topic's unseen items by `recli.exploration.explore_score`: all of
        them when it has fewer than `k` (`TopicSuggestion.unseen` says how many it has)."""
        index = self.index
        scored = sorted(
            (
                (
                    exploration.explore_score(
                        _dot(user.vector, index.get_item_vector(item)),
                        float(settings["score_scale"]),
                        topic_score,
                        float(settings["topic_weight"]),
                    ),
                    item,
                )
                for item in candidates
            ),
            key=lambda pair: (-pair[0], pair[1]),
        )[:k]
        found = self.items([item for _, item in scored])
        return [
            Neighbour(rank, found[item], score)
            for rank, (score, item) in enumerate(scored, start=1)
            if item in found
        ]

    def similar(self, item_id: str, k: int = 10) -> tuple[Item, list[Neighbour]]:
        """The `k` items nearest to an item in the fused space (dot product), never the item
        itself: at most the catalogue's other items, and exactly `k` (`_retrieve`)."""
        check_k(k, self.n_items)
        others = self.n_items - 1
        if k > others:
            raise RecliError(
                f"-k {k} is more than the {others} other items in the catalogue: "
                + (f"use -k between 1 and {others}" if others else "it has no item to compare with")
            )
        item = self.item(item_id)
        vector = self.index.get_item_vector(item.item_idx)
        return item, self._neighbours(self._retrieve(vector, {item.item_idx}, k))

    def search(self, text_vector: Sequence[float], k: int = 10) -> list[Neighbour]:
        """Cold start: the `k` items nearest to a text embedding, with an empty collaborative
        part; exactly `k` (`_retrieve`)."""
        check_k(k, self.n_items)
        return self._neighbours(self._retrieve(self.text_query(text_vector), set(), k))

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
        return fuse_parts(
            [scale * float(value) for value in text_vector], [0.0] * (dimension - text_dimension)
        )

    def _neighbours(self, pairs: list[tuple[int, float]]) -> list[Neighbour]:
        items = self.items([i for i, _ in pairs])
        return [
            Neighbour(rank, items[i], score)
            for rank, (i, score) in enumerate(pairs, start=1)
            if i in items
        ]

    def user_profile(self, user_id: str, history_limit: int = 10) -> UserProfile:
        """What `recli user` shows: the recent history, and the genres and tags the whole
        history counts most often (the interests say what it over-represents)."""
        if history_limit < 1:
            raise RecliError(f"--history must be at least 1 (got {history_limit})")
        user = self.user(user_id)
        every_item = self.items(self.history_indices(user.user_idx)).values()
        genres = Counter(genre for item in every_item for genre in item.genres)
        tags = Counter(tag for item in every_item for tag in item.tags)
        return UserProfile(
            user=user,
            cluster=self._user_cluster(user),
            history=self.history(user.user_idx, history_limit),
            top_genres=genres.most_common(5),
            top_tags=tags.most_common(5),
            interests=self.interests(user.user_idx),
        )

    def encoder_path(self, override: Path | None = None) -> Path:
        """The encoder `recli search` loads: `--encoder`, else `<artifacts>/ENCODER_DIR`."""
        path = Path(override) if override is not None else self.artifacts / ENCODER_DIR
        if not path.exists():
            raise RecliError(
                f"no encoder at {path}: run `dvc repro finetune` (or pass --encoder PATH)"
            )
        return path
