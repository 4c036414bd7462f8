"""What each of a user's interests is about: the terms its events over-represent, a short label
from them, the global interest group nearest to it, and how well the labels describe the items.

An interest (`pipeline.models.interest_sets`: a group of the user's items) is described by the
terms its items' events over-represent against everyone's events, ranked by lift as the cluster
profiles rank them (`pipeline.models.terms`), and, on data without genres or tags, by phrases
of the items' titles and descriptions (`pipeline.models.phrases`); an interest whose items
share neither (a film or two whose titles have no word in common) by its medoid's topic's
label terms, what the items around it share. Its label names its
LABEL_TERMS leading terms, where a release era leads only when no genre or tag is
over-represented (era terms otherwise group users by *when* they watched). Its group is the
cluster whose members' events, averaged in the same item space, point closest to the interest's
centroid.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from pipeline.data.artifacts import Topics
from pipeline.models.interest_sets import InterestSettings, user_interest_sets
from pipeline.models.phrases import (
    PHRASE,
    capitalised,
    distinct_labels,
    group_weights,
    item_phrases,
    phrase_label,
    ranked_phrases,
    whole_share,
)
from pipeline.models.profiles import LABEL_SEPARATOR
from pipeline.models.terms import MIN_USER_TERM_INTERACTIONS, ranked_terms

KEY_STRIDE = 1 << 16
"""(user, interest) pairs are keyed `user * KEY_STRIDE + interest` for the term tables."""
LABEL_TERMS = 2
"""Terms joined into an interest's label."""
TERMS_KEPT = 5
"""Over-represented terms kept per interest."""


def _event_keys(history: pl.DataFrame, interests: pl.DataFrame) -> pl.DataFrame:
    """`key, item_idx` for every event of a user on an item of one of their interests."""
    membership = interests.select(
        "user_idx", "interest", pl.col("items").alias("item_idx")
    ).explode("item_idx")
    return (
        history.select(pl.col("user_idx").cast(pl.Int32), pl.col("item_idx").cast(pl.Int32))
        .join(membership, on=["user_idx", "item_idx"])
        .select(
            (pl.col("user_idx").cast(pl.Int64) * KEY_STRIDE + pl.col("interest")).alias("key"),
            "item_idx",
        )
    )


def keyed_terms(
    events: pl.DataFrame,
    keyed: pl.DataFrame,
    items: pl.DataFrame,
    keep: int = TERMS_KEPT,
    item_vectors: np.ndarray | None = None,
) -> pl.DataFrame:
    """Terms each group of events (`keyed`: `key, item_idx`) over-represents against all of
    `events`: `key, term, kind, lift, share, share_overall, interactions`.

    Genres, tags and eras (`pipeline.models.terms.item_terms`), highest lift first; where the
    data has none of those for a group, phrases of its items' titles and descriptions, scored
    against the other such groups and re-ranked around the group's centroid in `item_vectors`
    (`pipeline.models.phrases`), in the order a label names them.
    """
    ranked = ranked_terms(
        events, keyed, items, keep, by="key", min_interactions=MIN_USER_TERM_INTERACTIONS
    )
    covered = ranked["key"].unique()
    bare = keyed.filter(~pl.col("key").is_in(covered.implode()))
    if bare.height:
        keys = bare["key"].unique().sort()
        rows = bare.join(pl.DataFrame({"key": keys, "row": np.arange(keys.len())}), on="key").sort(
            "row", "item_idx"
        )
        weights = group_weights(rows["row"], rows["item_idx"], keys.len(), len(items))
        phrases = ranked_phrases(item_phrases(items), weights, item_vectors)
        found = pl.DataFrame(
            [
                {"key": key, **{name: term[name] for name in ranked.columns if name != "key"}}
                for key, terms in zip(keys.to_list(), phrases, strict=True)
                for term in terms[:keep]
            ],
            schema=ranked.schema,
        )
        ranked = pl.concat([ranked, found])
    return ranked


def interest_terms(
    history: pl.DataFrame,
    items: pl.DataFrame,
    interests: pl.DataFrame,
    keep: int = TERMS_KEPT,
    item_vectors: np.ndarray | None = None,
) -> pl.DataFrame:
    """Terms each interest's events over-represent against everyone's (`keyed_terms`):
    `user_idx, interest, term, kind, lift, share, share_overall, interactions`, highest lift
    first (phrases: in the order a label names them)."""
    events = history.select(pl.col("user_idx").cast(pl.Int32), pl.col("item_idx").cast(pl.Int32))
    ranked = keyed_terms(events, _event_keys(history, interests), items, keep, item_vectors)
    table = ranked.select(
        (pl.col("key") // KEY_STRIDE).cast(pl.Int32).alias("user_idx"),
        (pl.col("key") % KEY_STRIDE).cast(pl.Int32).alias("interest"),
        pl.exclude("key"),
    )
    phrased = pl.col("kind") == PHRASE
    if not table.select(phrased.any()).item():
        return table.sort(["user_idx", "interest", "lift"], descending=[False, False, True])
    # Phrases keep the order their re-ranking gave them; no interest has both kinds.
    return pl.concat(
        [
            table.filter(~phrased).sort(
                ["user_idx", "interest", "lift"], descending=[False, False, True]
            ),
            table.filter(phrased),
        ]
    )


def label(
    terms: list[dict[str, Any]], medoid_title: str, size: int = LABEL_TERMS
) -> tuple[str, list[str]]:
    """An interest's label and the terms in it: its `size` most over-represented
    genre/tag/word terms; an era only when there is nothing else; the medoid's title when no
    term is over-represented."""
    named = [term["term"] for term in terms if term["kind"] != "era"][:size]
    if not named:
        named = [term["term"] for term in terms][:1]
    if not named:
        return f"Like {medoid_title}", []
    return LABEL_SEPARATOR.join(capitalised(term) for term in named), named


def group_centroids(
    history: pl.DataFrame, assignments: pl.DataFrame, item_vectors: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(group ids, unit centroids): each global group's events averaged in the item space."""
    joined = history.select("user_idx", "item_idx").join(
        assignments.select("user_idx", "cluster"), on="user_idx"
    )
    groups = np.unique(joined["cluster"].to_numpy())
    # Events per (group, item), then one product: an event-by-event sum would be the slow part
    # of the stage on millions of events.
    counts = sp.csr_matrix(
        (
            np.ones(joined.height),
            (np.searchsorted(groups, joined["cluster"].to_numpy()), joined["item_idx"].to_numpy()),
        ),
        shape=(groups.size, len(item_vectors)),
    )
    sums = np.asarray(counts @ item_vectors.astype(np.float64))
    unit = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return groups, unit.astype(np.float32)


def describe(
    history: pl.DataFrame,
    items: pl.DataFrame,
    item_vectors: np.ndarray,
    assignments: pl.DataFrame,
    settings: InterestSettings,
    workers: int = 1,
    topics: Topics | None = None,
) -> tuple[pl.DataFrame, np.ndarray]:
    """Every user's interests with their terms, label and nearest global group (one row per
    interest, `terms` and `label_terms` as JSON text), and the interests' unit centroids.

    A user's labels are distinct: a repeated one gets its medoid's title appended. `workers`:
    processes the users' histories are grouped in (`user_interest_sets`). An interest whose
    items over-represent no term and share no phrase (a film or two whose titles have no word
    in common) is named by the label terms of its medoid's topic in `topics`, the items around
    it, rather than by the medoid's title; without `topics`, or where the topic has none, the
    title.
    """
    table, centroids = user_interest_sets(history, item_vectors, settings, workers)
    terms = interest_terms(history, items, table, item_vectors=item_vectors)
    by_interest: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for row in terms.iter_rows(named=True):
        key = (row.pop("user_idx"), row.pop("interest"))
        by_interest.setdefault(key, []).append(row)
    phrased = _phrase_labels(by_interest)
    titles = dict(items.select("item_idx", "title").iter_rows())
    labels, label_terms, term_lists = [], [], []
    used: dict[int, set[str]] = {}
    for user, interest, medoid in table.select("user_idx", "interest", "medoid").iter_rows():
        own = by_interest.get((user, interest), [])
        title = titles.get(medoid, f"item {medoid}")
        if (user, interest) in phrased:
            chosen = phrased[(user, interest)]
            text, named = phrase_label(chosen, LABEL_SEPARATOR), [t["term"] for t in chosen]
            if text in used.setdefault(user, set()):
                # A phrase label never carries a product's title.
                text = f"{text} (interest {interest + 1})"
        elif not own and (around := _topic_terms(topics, medoid)):
            text, named = LABEL_SEPARATOR.join(capitalised(t) for t in around), around
        else:
            text, named = label(own, title)
        if text in used.setdefault(user, set()):
            text = f"{text} (like {title})"
        used[user].add(text)
        labels.append(text)
        label_terms.append(json.dumps(named, ensure_ascii=False))
        term_lists.append(json.dumps(own, ensure_ascii=False))
    groups, group_vectors = group_centroids(history, assignments, item_vectors)
    nearest = (
        groups[np.argmax(centroids @ group_vectors.T, axis=1)]
        if len(centroids) and groups.size
        else np.full(len(centroids), -1)
    )
    described = table.with_columns(
        pl.Series("label", labels, dtype=pl.String),
        pl.Series("label_terms", label_terms, dtype=pl.String),
        pl.Series("group", nearest, dtype=pl.Int32),
        pl.Series("terms", term_lists, dtype=pl.String),
    )
    return described, centroids


def _topic_terms(topics: Topics | None, item: int) -> list[str]:
    """The label terms of `item`'s topic (none without topics)."""
    if topics is None:
        return []
    return list(topics.profiles[int(topics.item_topic[item])]["label_terms"])


def _phrase_labels(
    by_interest: dict[tuple[int, int], list[dict[str, Any]]],
) -> dict[tuple[int, int], list[dict[str, Any]]]:
    """The phrases each phrase-described interest's label names, distinct among its user's
    (`pipeline.models.phrases.distinct_labels`)."""
    per_user: dict[int, list[tuple[int, int]]] = {}
    for key, own in by_interest.items():
        if own and own[0]["kind"] == PHRASE:
            per_user.setdefault(key[0], []).append(key)
    chosen: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for keys in per_user.values():
        keys.sort()
        for key, terms in zip(keys, distinct_labels([by_interest[k] for k in keys]), strict=True):
            chosen[key] = terms
    return chosen


def _agreement(table: pl.DataFrame, carried: dict[int, set[str]]) -> float | None:
    shares = []
    for members, named in table.select("items", "label_terms").iter_rows():
        wanted = set(json.loads(named))
        if wanted:
            shares.append(np.mean([bool(carried.get(item, set()) & wanted) for item in members]))
    return float(np.mean(shares)) if shares else None


def _shuffled(table: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Each user's interest items dealt at random across their interests (sizes kept)."""
    rng = np.random.default_rng(seed)
    dealt: list[list[int]] = []
    if table.height == 0:
        return table
    # A user's rows are contiguous in the interests table (it is sorted by user).
    users = table["user_idx"].to_numpy()
    members = table["items"].to_list()
    starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1, users.size]
    for start, stop in itertools.pairwise(starts.tolist()):
        own = members[start:stop]
        pooled = rng.permutation(np.concatenate([np.asarray(group) for group in own]))
        cuts = np.cumsum([len(group) for group in own])[:-1]
        dealt.extend(part.tolist() for part in np.split(pooled, cuts))
    return table.with_columns(pl.Series("items", dealt, dtype=pl.List(pl.Int32)))


def interest_metrics(
    table: pl.DataFrame, carried: dict[int, set[str]], n_users: int, seed: int
) -> dict[str, Any]:
    """How many interests users have and how well the labels describe their items (`carried`:
    every term and phrase each item carries)."""
    per_user = table.group_by("user_idx").len()["len"].to_numpy()
    distribution = np.bincount(per_user)
    era_led = [
        bool(json.loads(named)) and json.loads(named)[0].endswith(" films")
        for named in table["label_terms"]
    ]
    top_weight = table.filter(pl.col("interest") == 0)["weight"].to_numpy()
    agreement = _agreement(table, carried)
    floor = _agreement(_shuffled(table, seed), carried)
    return {
        "users": int(per_user.size),
        "users_without_events": int(n_users - per_user.size),
        "interests": int(table.height),
        "interests_per_user_median": float(np.median(per_user)) if per_user.size else None,
        "interests_per_user_mean": round(float(per_user.mean()), 3) if per_user.size else None,
        "users_by_interest_count": {
            str(count): int(users) for count, users in enumerate(distribution) if count and users
        },
        "top_interest_weight_median": round(float(np.median(top_weight)), 4)
        if top_weight.size
        else None,
        "label_agreement": None if agreement is None else round(agreement, 4),
        "label_agreement_shuffled_interests": None if floor is None else round(floor, 4),
        "labels_led_by_an_era": round(float(np.mean(era_led)), 4) if era_led else None,
        "labels_from_a_title": round(float((table["label_terms"] == "[]").mean()), 4)
        if table.height
        else None,
        "labels_from_the_topic": round(
            float(((table["terms"] == "[]") & (table["label_terms"] != "[]")).mean()), 4
        )
        if table.height
        else None,
        "labels_distinct": int(table["label"].n_unique()),
        "labels_distinct_share": round(table["label"].n_unique() / table.height, 4)
        if table.height
        else None,
        "label_terms_whole_words": whole_share(
            [term for named in table["label_terms"] for term in json.loads(named)]
        ),
    }
