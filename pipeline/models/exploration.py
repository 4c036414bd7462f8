"""Multi-interest retrieval and exploration as models the evaluation protocol can rank.

The rules are `recli.exploration`'s (what serving runs); this module applies them to whole
batches of users with numpy so that `fuse` can tune them on validation and `evaluate` can
report them on test, each model reading the history its split allows:

- `InterestSets`: every user's interests cut from one history (the training split for
  validation, training + validation for test, everything for serving), as the `interests`
  stage writes them.
- `multi_interest_scorer`: the whole-user list and one list per interest from the fused
  vectors, dealt by weight (`recli.exploration.merge_by_weight`).
- `topic_weight_matrix`, `transition_counts`, `topic_scores`: the topics users engaged with,
  how users move between topics on the training timelines, and each user's ranking of the
  topics they have not engaged with (`recli.exploration.rank_topics`).
- `explore_scorer`: items of those topics by fused score plus their topic's score; items of
  topics already engaged with come after them all.
- `novel_events`: the events whose item's topic the user had not engaged with before it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from pipeline.core.layout import Layout
from pipeline.data.artifacts import (
    INTEREST_HISTORIES,
    InterestSets,
    Processed,
    Topics,
    read_split_interests,
    read_topics,
)
from pipeline.data.interactions import unit_rows
from pipeline.evaluation.metrics import Scorer, standard_error, top_k
from pipeline.evaluation.protocol import spread_sample
from recli.exploration import Transitions, merge_by_weight, rank_topics

ENGAGED_OFFSET = 1.0e4
"""Subtracted from the explore score of items in topics the user already engaged with: they
come after every item of a topic new to the user, still ordered among themselves."""


def _masked(
    scores: np.ndarray, users: np.ndarray, seen: sp.csr_matrix, excluded: np.ndarray
) -> np.ndarray:
    """`scores` (one row per entry of `users`) with each user's `seen` items and every
    `excluded` item set to -inf, in place."""
    rows = seen[users]
    row_of_entry = np.repeat(np.arange(users.size), np.diff(rows.indptr))
    scores[row_of_entry, rows.indices] = -np.inf
    scores[:, excluded] = -np.inf
    return scores


def interest_queries(user: np.ndarray, means: np.ndarray, pull: float) -> np.ndarray:
    """`recli.exploration.interest_query` for one user and each of their interests' means."""
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    scale = np.where(norms > 0, pull * np.linalg.norm(user) / np.maximum(norms, 1e-30), 0.0)
    return (user[None, :] + scale * means).astype(np.float32)


INTEREST_QUERY_USERS = 256
"""Users whose interest queries are scored in one product (about 4 interests each, so at most a
few thousand rows × items in memory)."""


def multi_interest_scorer(
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    sets: InterestSets,
    seen: sp.csr_matrix,
    candidates: np.ndarray,
    whole_user_share: float,
    pull: float,
    depth: int,
) -> Scorer:
    """Scores whose top `depth` is the merged multi-interest list (unseen candidates only);
    below it every other item in the whole-user vector's order. A user without interests gets
    the whole-user list."""
    rows_of = sets.rows_of(len(user_vectors))
    means = sets.means(item_vectors)
    excluded = ~candidates
    depth = min(depth, int(candidates.sum()))

    def score(users: np.ndarray) -> np.ndarray:
        base = user_vectors[users] @ item_vectors.T
        whole = top_k(_masked(base.copy(), users, seen, excluded), depth)
        out = base.astype(np.float64)
        for start in range(0, users.size, INTEREST_QUERY_USERS):
            part = users[start : start + INTEREST_QUERY_USERS]
            rows = [rows_of[user] for user in part.tolist()]
            counts = np.array([r.size for r in rows], dtype=np.int64)
            if not counts.any():
                continue
            # Every interest query of these users in one product, one row per interest.
            owner = np.repeat(np.arange(part.size), counts)
            queries = np.vstack(
                [
                    interest_queries(user_vectors[user], means[r], pull)
                    for user, r in zip(part.tolist(), rows, strict=True)
                    if r.size
                ]
            )
            lists = top_k(_masked(queries @ item_vectors.T, part[owner], seen, excluded), depth)
            bounds = np.r_[0, np.cumsum(counts)]
            for offset, user_rows in enumerate(rows):
                if user_rows.size == 0:
                    continue
                position = start + offset
                own = [whole[position], *lists[bounds[offset] : bounds[offset + 1]]]
                weights = [whole_user_share, *((1.0 - whole_user_share) * sets.weights[user_rows])]
                merged = merge_by_weight([entries.tolist() for entries in own], weights, depth)
                top = float(np.max(out[position])) + 1.0
                for rank, (item, _) in enumerate(merged):
                    out[position, item] = top + (depth - rank)
        return out

    return score


def topic_weight_matrix(
    history: pl.DataFrame, topic_of: np.ndarray, n_users: int, n_topics: int, half_life: float
) -> np.ndarray:
    """[n_users, n_topics]: `recli.exploration.topic_weights` of every user's history
    (`user_idx, item_idx, timestamp`; equal timestamps keep the table's order)."""
    ordered = history.select("user_idx", "item_idx", "timestamp").with_row_index("row")
    ordered = ordered.sort(["user_idx", "timestamp", "row"])
    users = ordered["user_idx"].to_numpy().astype(np.int64)
    topics = topic_of[ordered["item_idx"].to_numpy()]
    # age: events after this one, within the user
    last = np.r_[np.flatnonzero(np.diff(users)), users.size - 1]
    end_of_user = np.repeat(last, np.diff(np.r_[-1, last]))
    age = end_of_user - np.arange(users.size)
    weights = np.zeros((n_users, n_topics), dtype=np.float64)
    np.add.at(weights, (users, topics), 0.5 ** (age / half_life))
    totals = weights.sum(axis=1, keepdims=True)
    return np.divide(weights, totals, out=np.zeros_like(weights), where=totals > 0)


def transition_counts(
    history: pl.DataFrame, topic_of: np.ndarray, n_topics: int
) -> tuple[np.ndarray, np.ndarray]:
    """(`counts`, `adoptions`) for `recli.exploration.Transitions`, from the timelines in
    `history` (`user_idx, item_idx, timestamp`): walking each user's events in time, every first
    event in a topic after the user's first event is a take-up, split over the topics the user
    had engaged with before it."""
    ordered = history.select("user_idx", "item_idx", "timestamp").with_row_index("row")
    ordered = ordered.sort(["user_idx", "timestamp", "row"])
    counts = np.zeros((n_topics, n_topics), dtype=np.float64)
    adoptions = np.zeros(n_topics, dtype=np.float64)
    users = ordered["user_idx"].to_numpy()
    topics = topic_of[ordered["item_idx"].to_numpy()]
    bounds = np.r_[0, np.flatnonzero(np.diff(users)) + 1, users.size]
    for start, stop in itertools.pairwise(bounds):
        # first event of each topic, in time order
        _, first = np.unique(topics[start:stop], return_index=True)
        sequence = topics[start:stop][np.sort(first)]
        for position in range(1, sequence.size):
            counts[sequence[:position], sequence[position]] += 1.0 / position
            adoptions[sequence[position]] += 1.0
    return counts, adoptions


def closest_similarity_matrix(
    sets: InterestSets, topic_centroids: np.ndarray, n_users: int
) -> np.ndarray:
    """[n_users, n_topics]: `recli.exploration.closest_similarity` for every user (0 for a user
    without interests)."""
    similarity = np.zeros((n_users, len(topic_centroids)), dtype=np.float64)
    if len(sets.users) == 0:
        return similarity
    cosine = unit_rows(sets.centroids.astype(np.float64)) @ unit_rows(topic_centroids).T
    similarity[:] = -np.inf
    np.maximum.at(similarity, sets.users, cosine)
    similarity[~np.isfinite(similarity)] = 0.0
    return similarity


def topic_scores(
    weights: np.ndarray,
    transitions: Transitions,
    similarity: np.ndarray,
    similarity_weight: float,
) -> np.ndarray:
    """[n_users, n_topics]: each user's `rank_topics` score per topic, -inf for the topics the
    user has engaged with."""
    scores = np.full(weights.shape, -np.inf)
    for user, row in enumerate(weights):
        engaged = {int(topic): float(row[topic]) for topic in np.flatnonzero(row > 0)}
        for entry in rank_topics(engaged, transitions, similarity[user], similarity_weight):
            scores[user, entry.topic] = entry.score
    return scores


def explore_scorer(
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    topic_of: np.ndarray,
    scores_by_topic: np.ndarray,
    score_scale: float,
    topic_weight: float,
) -> Scorer:
    """`recli.exploration.explore_score` for every item of a topic new to the user; items of
    engaged topics follow, by fused score."""

    def score(users: np.ndarray) -> np.ndarray:
        fused = (user_vectors[users] @ item_vectors.T).astype(np.float64) / score_scale
        by_topic = scores_by_topic[users][:, topic_of]
        engaged = ~np.isfinite(by_topic)
        # The inner `where`: a topic weight of 0 times an engaged topic's -inf would be NaN.
        return np.where(
            engaged, fused - ENGAGED_OFFSET, fused + topic_weight * np.where(engaged, 0, by_topic)
        )

    return score


def novel_events(
    relevant: sp.csr_matrix, engaged: np.ndarray, topic_of: np.ndarray
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(`novel`, `familiar`): the events of `relevant` whose item's topic the user had not /
    had engaged with in the history the prediction reads (`engaged`)."""
    coo = relevant.tocoo()
    new = ~engaged[coo.row, topic_of[coo.col]]

    def part(mask: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=relevant.shape)

    return part(new), part(~new)


def score_scale(
    user_vectors: np.ndarray, item_vectors: np.ndarray, seed: int, pool: np.ndarray | None = None
) -> float:
    """Standard deviation of fused scores over a seeded sample of users (of `pool`, the
    evaluated ones, when given) × every item."""
    sample = spread_sample(len(user_vectors), seed, pool)
    return max(float(np.std(user_vectors[sample] @ item_vectors.T)), 1e-12)


@dataclass(frozen=True)
class ExplorationInputs:
    """Topics, transitions and each evaluated split's interests and topic weights: what the
    multi-interest and explore models read, built once for `fuse` (tuning) and `evaluate`."""

    item_topic: np.ndarray
    topic_centroids: np.ndarray
    transitions: Transitions
    sets: dict[str, InterestSets]
    """Per split ("validation", "test"): the interests cut from the history it reads."""
    weights: dict[str, np.ndarray]
    """Per split: [n_users, n_topics] topic weights of the history it reads."""
    similarity: dict[str, np.ndarray]
    """Per split: [n_users, n_topics] closest cosine of each topic to the user's interests."""

    @classmethod
    def build(
        cls,
        histories: dict[str, pl.DataFrame],
        interests: dict[str, tuple[pl.DataFrame, np.ndarray]],
        item_topic: np.ndarray,
        topic_centroids: np.ndarray,
        transitions: Transitions,
        n_users: int,
        half_life: float,
    ) -> ExplorationInputs:
        """`histories` and `interests` per split: the events the split is predicted from and
        the interests cut from them."""
        n_topics = len(topic_centroids)
        sets = {split: InterestSets.from_table(*pair) for split, pair in interests.items()}
        return cls(
            item_topic=item_topic,
            topic_centroids=topic_centroids,
            transitions=transitions,
            sets=sets,
            weights={
                split: topic_weight_matrix(history, item_topic, n_users, n_topics, half_life)
                for split, history in histories.items()
            },
            similarity={
                split: closest_similarity_matrix(sets[split], topic_centroids, n_users)
                for split in histories
            },
        )

    def novel(self, relevant: sp.csr_matrix, split: str) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """(novel, familiar) events of `relevant`, judged from the history `split` reads."""
        return novel_events(relevant, self.weights[split] > 0, self.item_topic)

    def topic_scores(self, split: str, similarity_weight: float) -> np.ndarray:
        return topic_scores(
            self.weights[split], self.transitions, self.similarity[split], similarity_weight
        )

    def explore(
        self,
        split: str,
        user_vectors: np.ndarray,
        item_vectors: np.ndarray,
        scale: float,
        topic_weight: float,
        similarity_weight: float,
    ) -> Scorer:
        return explore_scorer(
            user_vectors,
            item_vectors,
            self.item_topic,
            self.topic_scores(split, similarity_weight),
            scale,
            topic_weight,
        )

    def multi_interest(
        self,
        split: str,
        user_vectors: np.ndarray,
        item_vectors: np.ndarray,
        seen: sp.csr_matrix,
        candidates: np.ndarray,
        whole_user_share: float,
        pull: float,
        depth: int,
    ) -> Scorer:
        return multi_interest_scorer(
            user_vectors,
            item_vectors,
            self.sets[split],
            seen,
            candidates,
            whole_user_share,
            pull,
            depth,
        )


def exploration_inputs(
    processed: Processed,
    layout: Layout,
    half_life: float,
    topics: Topics | None = None,
    splits: tuple[str, ...] = INTEREST_HISTORIES,
) -> ExplorationInputs:
    """Topics, transitions and the interests of the history each evaluated split of `splits`
    reads (`fuse` tunes on validation alone)."""
    topics = read_topics(layout) if topics is None else topics
    transitions = Transitions(topics.counts.tolist(), topics.adoptions.tolist(), topics.smoothing)
    histories = {"validation": lambda: processed.train, "test": lambda: processed.history_at_test}
    return ExplorationInputs.build(
        histories={split: histories[split]() for split in splits},
        interests={split: read_split_interests(split, layout) for split in splits},
        item_topic=topics.item_topic,
        topic_centroids=topics.centroids,
        transitions=transitions,
        n_users=processed.users.height,
        half_life=half_life,
    )


def novel_topic_ranks(
    inputs: ExplorationInputs, split: str, novel: sp.csr_matrix, similarity_weight: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """For every novel event of `novel`: the rank (1 = first) of its item's topic among the
    topics new to the user, by `rank_topics` with `similarity_weight` (None: by how often each
    topic is taken up at all, the prior), and how many topics were new to the user."""
    coo = novel.tocoo()
    ranks, candidates = [], []
    for user, item in zip(coo.row.tolist(), coo.col.tolist(), strict=True):
        row = inputs.weights[split][user]
        engaged = {int(topic): float(row[topic]) for topic in np.flatnonzero(row > 0)}
        if similarity_weight is None:
            left = [t for t in range(inputs.transitions.n_topics) if t not in engaged]
            order = sorted(left, key=lambda t: (-inputs.transitions.prior[t], t))
        else:
            scored = rank_topics(
                engaged, inputs.transitions, inputs.similarity[split][user], similarity_weight
            )
            order = [entry.topic for entry in scored]
        ranks.append(order.index(int(inputs.item_topic[item])) + 1)
        candidates.append(len(order))
    return np.asarray(ranks), np.asarray(candidates)


def topic_rank_summary(ranks: np.ndarray, candidates: np.ndarray) -> dict[str, float | int]:
    """Mean rank, MRR and hit@3 of the true next topics, next to a random order's."""
    if ranks.size == 0:
        return {"events": 0}
    return {
        "events": int(ranks.size),
        "mean_rank": round(float(ranks.mean()), 3),
        "mrr": round(float((1.0 / ranks).mean()), 4),
        "hit@3": round(float((ranks <= 3).mean()), 4),
        "hit@3_standard_error": round(standard_error(ranks <= 3), 4),
        "random_mean_rank": round(float(((candidates + 1) / 2).mean()), 3),
        "random_hit@3": round(float(np.minimum(3, candidates).sum() / candidates.sum()), 4),
    }
