"""Answer the CLI's queries from the catalogue's lookups and the Annoy index.

`Queries` adds to `recli.lookups.Lookups` what the commands ask: `recommend` (with its reasons,
see `recli.explain`, and its `--by-interest` lists), `explore`, `similar`, `search` and
`user_profile`. Each retrieval is `recli.ann_index.retrieve` (the top-k unseen items of one query
vector); the multi-interest merge and the exploration ranking are `recli.exploration`'s rules.
Opening the artifacts and loading the index is `recli.serve.Served`'s job: `index` here is the
one thing a subclass must provide.

Apart from the lookups so each query reads as the steps it takes, not as the SQL under them.
Standard library, `annoy` and stdlib-only recli modules only (vectors are plain lists): it is on
`recli recommend`'s path. `recli.exploration` is imported by the queries that use it, so a plain
`recli recommend` does not load it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from recli import explain
from recli.ann_index import rescored, retrieve
from recli.catalogue import MetaKey
from recli.contract import dot, fuse_parts
from recli.errors import RecliError
from recli.inputs import check_k
from recli.lookups import Lookups
from recli.results import (
    Because,
    Exploration,
    Interest,
    Item,
    Neighbour,
    Recommendation,
    Recommendations,
    TopicSuggestion,
    User,
    UserProfile,
)

if TYPE_CHECKING:
    from annoy import AnnoyIndex

RECENT_SHOWN = 5
"""History titles shown in the `recommend` header."""
OVERALL_TASTE = "overall taste"
"""What `--by-interest` calls the whole-user vector's list."""


class Queries(Lookups):
    """The queries the CLI answers, over the lookups and an index the subclass provides."""

    @property
    def index(self) -> AnnoyIndex:
        """The Annoy index over the fused item vectors (`recli.serve.Served` loads and checks
        it): every item's vector, and what the queries search unless `search_index` is another."""
        raise NotImplementedError

    @property
    def search_index(self) -> AnnoyIndex:
        """The Annoy index the queries search: `index`, or the one over a narrower search space
        where the catalogue records one (`MetaKey.SEARCH_DIMENSION`)."""
        return self.index

    @property
    def narrower_search(self) -> bool:
        """Whether the index searches a narrower space than the fused one."""
        return self.meta.get(MetaKey.SEARCH_DIMENSION) is not None

    @property
    def user_rows(self) -> bool:
        """Whether `index` holds every served user's fused vector after the items'."""
        return bool(self.meta.get(MetaKey.USER_ROWS))

    def user_row(self, user: User) -> int | None:
        """The user's row in `index` (None where it holds items only)."""
        if not self.user_rows or user.live:  # a live user's vector is newer than the index
            return None
        return self.n_items + user.user_idx

    def find(
        self,
        query: Sequence[float],
        searched: Sequence[float] | None,
        seen: set[int],
        k: int,
        row: int | None = None,
    ) -> list[tuple[int, float]]:
        """The top-k unseen items of a fused `query`, as (item, fused dot product), best first.

        Where the index searches a narrower space, `searched` is the query there (None: made
        from `query` with the catalogue's basis); the search asks for the catalogue's `rescore`
        × k candidates, which the fused vectors rank (`recli.ann_index.rescored`), so the order
        and every score shown are the fused model's own. `row`: where `query` is the vector
        `index` holds at that row (an item's, or a user's: `user_row`), Annoy scores the
        candidates in its own code instead of a dot product here.
        """
        if not self.narrower_search:
            return retrieve(self.index, query, seen, k, self.search_k)
        if searched is None:
            searched = self.to_search(query)
        index = self.index
        if row is None:

            def score(item: int) -> float:
                return dot(query, index.get_item_vector(item))

        else:
            score = partial(index.get_distance, row)
        rescore = int(self.meta.get(MetaKey.SEARCH_RESCORE, 1))
        return rescored(self.search_index, searched, seen, k, self.search_k, rescore, score)

    def to_search(self, vector: Sequence[float]) -> list[float]:
        """A fused vector's image in the search space: the basis rows weighted by its entries
        (skipping zeros, so a text query costs only its text part)."""
        basis = self.search_basis()
        image = [0.0] * (len(basis[0]) if basis else 0)
        for value, row in zip(vector, basis, strict=True):
            if value:
                image = [total + value * entry for total, entry in zip(image, row, strict=True)]
        return image

    # ---------------------------------------------------------------------------- recommend
    def recommend(
        self, user_id: str, k: int = 10, by_interest: bool | None = None
    ) -> Recommendations:
        """The user's top-k unseen items from the index, each with the history item behind it.

        Asks Annoy for k + |history| neighbours of the user's fused vector and drops the history,
        which is exactly the query whose recall the index stage measures. `by_interest`: one
        query per interest besides the whole-user one, the slots dealt by weight; rows are
        grouped by the list they serve and scored by its query (`_by_interest`), ranks 1..k down
        the groups. None: as the catalogue serves by default (`by_interest_default`).
        """
        by_default = by_interest is None
        if by_interest is None:
            by_interest = self.by_interest_default
        user = self.user_with_history(user_id)
        seen_order = self.history_indices(user.user_idx)
        seen = set(seen_order)
        unseen = self.n_items - len(seen)
        check_k(
            k,
            unseen,
            f"the {unseen} items user '{user.user_id}' has not interacted with",
            f"user '{user.user_id}' has interacted with every item, so none is left to recommend: "
            f"see their history with `recli user {user.user_id}`",
        )
        interests = self.interests(user.user_idx)
        if by_interest:
            found = self._by_interest(user, interests, seen, k)
        else:
            found = [
                (item, score, None, user.vector, None)
                for item, score in self.find(
                    user.vector, user.search_vector, seen, k, self.user_row(user)
                )
            ]
        index = self.index
        because_of = explain.closest_history(index, [entry[0] for entry in found], seen_order)
        items = self.items(
            [entry[0] for entry in found]
            + [source for source, _ in because_of.values()]
            + seen_order[:RECENT_SHOWN]
        )
        cluster = self.user_cluster(user)
        lifts = explain.item_lifts(cluster)
        terms = explain.cluster_terms(cluster)
        text_dimension = int(self.meta.get(MetaKey.TEXT_DIMENSION, 0))

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
        text_weight = self.meta.get(MetaKey.TEXT_WEIGHT)
        return Recommendations(
            user=user,
            cluster=cluster,
            recent=recent_entries,
            items=results,
            text_weight=None if text_weight is None else float(text_weight),
            interests=interests,
            by_interest=by_interest,
            by_default=by_default,
        )

    @property
    def by_interest_default(self) -> bool:
        """Whether `recommend` serves one list per interest unless told otherwise: the `fuse`
        stage chose so where those lists were more accurate on validation than the single
        vector (`multi_interest.by_default` in the catalogue's meta)."""
        return bool((self.meta.get(MetaKey.MULTI_INTEREST) or {}).get("by_default"))

    def _by_interest(
        self, user: User, interests: list[Interest], seen: set[int], k: int
    ) -> list[tuple[int, float, str, list[float], int]]:
        """(item, score, label of the list it serves, that list's query, place in the dealing):
        the whole-user list and one per interest, dealt by weight as `index` tuned it, then
        grouped by list (lists in the order first dealt from, each in its own order), so every
        group reads best first and ranks can count straight down the groups. The score is the
        item's dot product with the query that found it: what ranked it in its list."""
        from recli import exploration  # only --by-interest and explore use its rules

        settings = self.meta.get(MetaKey.MULTI_INTEREST) or {}
        share = float(settings.get("whole_user_share", 1.0))
        pull = float(settings.get("pull", 0.0))
        labels = {interest.interest: interest.label for interest in interests}
        searched_means = self.interest_search_means(user.user_idx) if self.narrower_search else {}
        queries = [(OVERALL_TASTE, share, user.vector, user.search_vector, self.user_row(user))]
        for interest, weight, _, mean in self.interest_vectors(user.user_idx):
            searched = searched_means.get(interest)
            queries.append(
                (
                    labels.get(interest, f"interest {interest + 1}"),
                    (1.0 - share) * weight,
                    exploration.interest_query(user.vector, mean, pull),
                    None  # the same blend in the search space: the map is linear
                    if searched is None or user.search_vector is None
                    else exploration.interest_query(user.search_vector, searched, pull),
                    None,  # a blend: no row holds it
                )
            )
        lists = [
            dict(self.find(query, searched, seen, k, row)) for _, _, query, searched, row in queries
        ]
        merged = exploration.merge_by_weight(
            [list(found) for found in lists], [weight for _, weight, _, _, _ in queries], k
        )
        # Lists in the order they were first dealt from; within a list, the order of dealing.
        group: dict[int, int] = {}
        for _, source in merged:
            group.setdefault(source, len(group))
        shown = sorted(range(len(merged)), key=lambda dealt: (group[merged[dealt][1]], dealt))
        found = []
        for dealt in shown:
            item, source = merged[dealt]
            label, _, query, _, _ = queries[source]
            found.append((item, lists[source][item], label, query, dealt + 1))
        return found

    # ---------------------------------------------------------------------------- explore
    def explore(self, user_id: str, k: int = 5, topics: int = 3) -> Exploration:
        """Topics the user has not engaged with, the likeliest next new interest first, each
        with its `k` items the user would enjoy most (`recli.exploration`)."""
        from recli import exploration  # only --by-interest and explore use its rules

        check_k(k, self.n_items)
        if topics < 1:
            raise RecliError(
                f"--topics must be at least 1 (got {topics}): pass how many topics to suggest, "
                "e.g. --topics 3"
            )
        user = self.user_with_history(user_id)
        settings = self.meta.get(MetaKey.EXPLORE)
        recorded = self.meta.get(MetaKey.TOPIC_TRANSITIONS)
        if not settings or not recorded:
            raise RecliError(
                f"{self.catalogue_path} has no topics to explore: run `dvc repro interests index`"
            )
        topic_of = self.item_topics()
        seen_order = self.history_indices(user.user_idx)
        weights = exploration.topic_weights(
            [topic_of[item] for item in seen_order if item in topic_of],
            float(settings["half_life"]),
        )
        labels, exemplars, centroids = self.topic_records()
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
        from recli import exploration

        index = self.index
        scored = sorted(
            (
                (
                    exploration.explore_score(
                        dot(user.vector, index.get_item_vector(item)),
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

    # ---------------------------------------------------------------------------- items
    def similar(self, item_id: str, k: int = 10) -> tuple[Item, list[Neighbour]]:
        """The `k` items nearest to an item in the fused space (dot product), never the item
        itself: at most the catalogue's other items, and exactly `k` (`retrieve`)."""
        others = self.n_items - 1
        other_items = f"the {others} other items in the catalogue"
        check_k(k, others, other_items, "it has no item to compare with")
        item = self.item(item_id)
        vector = self.index.get_item_vector(item.item_idx)
        searched = (
            self.search_index.get_item_vector(item.item_idx) if self.narrower_search else None
        )
        return item, self._neighbours(
            self.find(vector, searched, {item.item_idx}, k, item.item_idx)
        )

    def search(self, text_vector: Sequence[float], k: int = 10) -> list[Neighbour]:
        """Cold start: the `k` items nearest to a text embedding, with an empty collaborative
        part; exactly `k` (`retrieve`)."""
        check_k(k, self.n_items)
        # The query is built (and its dimension checked) before the index is loaded.
        query = self.text_query(text_vector)
        return self._neighbours(self.find(query, None, set(), k))

    def text_query(self, text_vector: Sequence[float]) -> list[float]:
        """[text_scale · text, zeros]: a user with no collaborative history, as a fused vector."""
        text_dimension = int(self.meta_value(MetaKey.TEXT_DIMENSION))
        dimension = int(self.meta_value(MetaKey.DIMENSION))
        if len(text_vector) != text_dimension:
            raise RecliError(
                f"the encoder gives {len(text_vector)}-d vectors but the index was built from "
                f"{text_dimension}-d text vectors: use the encoder the index was built with "
                "(`dvc repro` rebuilds both)"
            )
        scale = float(self.meta_value(MetaKey.TEXT_SCALE))
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

    # ---------------------------------------------------------------------------- users
    def user_profile(self, user_id: str, history_limit: int = 10) -> UserProfile:
        """What `recli user` shows: the recent history, and the genres and tags the whole
        history counts most often (the interests say what it over-represents)."""
        if history_limit < 1:
            raise RecliError(
                f"--history must be at least 1 (got {history_limit}): pass how many events to "
                "show, e.g. --history 10"
            )
        user = self.user(user_id)
        every_item = self.items(self.history_indices(user.user_idx)).values()
        genres = Counter(genre for item in every_item for genre in item.genres)
        tags = Counter(tag for item in every_item for tag in item.tags)
        return UserProfile(
            user=user,
            cluster=self.user_cluster(user),
            history=self.history(user.user_idx, history_limit),
            top_genres=genres.most_common(5),
            top_tags=tags.most_common(5),
            interests=self.interests(user.user_idx),
        )
