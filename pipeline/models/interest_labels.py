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

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from pipeline.data.artifacts import Topics
from pipeline.models.interest_sets import InterestSettings, user_interest_sets
from pipeline.models.phrases import (
    PHRASE,
    Phrases,
    PhraseTotals,
    capitalised,
    distinct_labels,
    group_weights,
    item_phrases,
    phrase_label,
    ranked_phrases,
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
    scored: Scored | None = None,
) -> pl.DataFrame:
    """Terms each group of events (`keyed`: `key, item_idx`) over-represents against all of
    `events`: `key, term, kind, lift, share, share_overall, interactions`.

    Genres, tags and eras (`pipeline.models.terms.item_terms`), highest lift first; where the
    data has none of those for a group, phrases of its items' titles and descriptions, scored
    against the other such groups and re-ranked around the group's centroid in `item_vectors`
    (`pipeline.models.phrases`), in the order a label names them. `scored`: what everyone's
    events and groups sum to, when `events` are only some users' (one partition's).
    """
    overall = None if scored is None else scored.overall
    ranked = supported_terms(events, keyed, items, keep, overall)
    keys, weights = bare_groups(ranked, keyed, len(items))
    if keys.size:
        phrases = item_phrases(items) if scored is None else scored.phrases
        totals = None if scored is None else scored.totals
        ranked = pl.concat(
            [ranked, phrase_terms(ranked, keys, weights, phrases, item_vectors, keep, totals)]
        )
    return ranked


@dataclass(frozen=True)
class Scored:
    """What a partition's interests are scored against, summed over every partition: everyone's
    term shares (`pipeline.models.terms.overall_shares`), the catalogue's phrases and the
    c-TF-IDF totals of every interest described by phrases."""

    overall: pl.DataFrame
    phrases: Phrases
    totals: PhraseTotals


def supported_terms(
    events: pl.DataFrame,
    keyed: pl.DataFrame,
    items: pl.DataFrame,
    keep: int = TERMS_KEPT,
    overall: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The genres, tags and eras each group of `keyed` over-represents (`keyed_terms` without
    phrases); `overall`: everyone's shares when `events` are only some users'."""
    return ranked_terms(
        events,
        keyed,
        items,
        keep,
        by="key",
        min_interactions=MIN_USER_TERM_INTERACTIONS,
        overall=overall,
    )


def bare_groups(
    ranked: pl.DataFrame, keyed: pl.DataFrame, n_items: int
) -> tuple[np.ndarray, sp.csr_matrix]:
    """The keys no genre, tag or era describes (sorted) and their events per item, one row
    each: the groups phrases describe."""
    bare = keyed.filter(~pl.col("key").is_in(ranked["key"].unique().implode()))
    keys = bare["key"].unique().sort()
    rows = bare.join(pl.DataFrame({"key": keys, "row": np.arange(keys.len())}), on="key").sort(
        "row", "item_idx"
    )
    return keys.to_numpy(), group_weights(rows["row"], rows["item_idx"], keys.len(), n_items)


def phrase_terms(
    ranked: pl.DataFrame,
    keys: np.ndarray,
    weights: sp.csr_matrix,
    phrases: Phrases,
    item_vectors: np.ndarray | None,
    keep: int = TERMS_KEPT,
    totals: PhraseTotals | None = None,
) -> pl.DataFrame:
    """The phrases of the groups `keys` (`bare_groups`), in `ranked`'s columns."""
    found = ranked_phrases(phrases, weights, item_vectors, totals=totals)
    return pl.DataFrame(
        [
            {"key": key, **{name: term[name] for name in ranked.columns if name != "key"}}
            for key, terms in zip(keys.tolist(), found, strict=True)
            for term in terms[:keep]
        ],
        schema=ranked.schema,
    )


def interest_terms(
    history: pl.DataFrame,
    items: pl.DataFrame,
    interests: pl.DataFrame,
    keep: int = TERMS_KEPT,
    item_vectors: np.ndarray | None = None,
    scored: Scored | None = None,
) -> pl.DataFrame:
    """Terms each interest's events over-represent against everyone's (`keyed_terms`):
    `user_idx, interest, term, kind, lift, share, share_overall, interactions`, highest lift
    first (phrases: in the order a label names them). `scored`: everyone's, when `history`
    is only some users' (`Scored`)."""
    events = history.select(pl.col("user_idx").cast(pl.Int32), pl.col("item_idx").cast(pl.Int32))
    keyed = _event_keys(history, interests)
    ranked = keyed_terms(events, keyed, items, keep, item_vectors, scored)
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


def phrase_totals(
    history: pl.DataFrame,
    items: pl.DataFrame,
    interests: pl.DataFrame,
    overall: pl.DataFrame,
    phrases: Phrases,
) -> PhraseTotals:
    """The c-TF-IDF totals of the interests in `interests` that phrases describe (no genre, tag
    or era is over-represented by their events, against everyone's `overall` shares): one
    partition's share of what every phrase-described interest is scored against."""
    events = history.select(pl.col("user_idx").cast(pl.Int32), pl.col("item_idx").cast(pl.Int32))
    keyed = _event_keys(history, interests)
    ranked = supported_terms(events, keyed, items, TERMS_KEPT, overall)
    return PhraseTotals.of(phrases, bare_groups(ranked, keyed, len(items))[1])


def group_counts(history: pl.DataFrame, assignments: pl.DataFrame) -> pl.DataFrame:
    """`cluster, item_idx, events`: the events of each global group's members on each item
    (summed over partitions: every group's; `group_centroids`)."""
    joined = history.select("user_idx", "item_idx").join(
        assignments.select("user_idx", "cluster"), on="user_idx"
    )
    return joined.group_by("cluster", "item_idx").agg(pl.len().cast(pl.Int64).alias("events"))


def group_centroids(
    counts: pl.DataFrame, item_vectors: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(group ids, unit centroids): each global group's events averaged in the item space, from
    `group_counts` (the rows of several partitions are summed)."""
    counts = counts.group_by("cluster", "item_idx").agg(pl.col("events").sum())
    clusters = counts["cluster"].to_numpy()
    groups = np.unique(clusters)
    # Events per (group, item), then one product: an event-by-event sum would be the slow part
    # of the stage on millions of events.
    matrix = sp.csr_matrix(
        (
            counts["events"].to_numpy().astype(np.float64),
            (np.searchsorted(groups, clusters), counts["item_idx"].to_numpy()),
        ),
        shape=(groups.size, len(item_vectors)),
    )
    sums = np.asarray(matrix @ item_vectors.astype(np.float64))
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

    `workers`: processes the users' histories are grouped in (`user_interest_sets`); the rest is
    `label_interests`'.
    """
    table, centroids = user_interest_sets(history, item_vectors, settings, workers)
    groups = group_centroids(group_counts(history, assignments), item_vectors)
    described = label_interests(table, centroids, history, items, item_vectors, groups, topics)
    return described, centroids


def label_interests(
    table: pl.DataFrame,
    centroids: np.ndarray,
    history: pl.DataFrame,
    items: pl.DataFrame,
    item_vectors: np.ndarray,
    groups: tuple[np.ndarray, np.ndarray],
    topics: Topics | None = None,
    scored: Scored | None = None,
) -> pl.DataFrame:
    """`table` (`user_interest_sets`' interests of the users of `history`) with each interest's
    `label`, `label_terms`, `group` (the nearest of `groups`: ids and unit centroids,
    `group_centroids`) and `terms`. `scored`: what everyone's events and interests sum to, when
    `history` is only some users' (`Scored`).

    A user's labels are distinct: a repeated one gets its medoid's title appended. An interest
    whose items over-represent no term and share no phrase (a film or two whose titles have no
    word in common) is named by the label terms of its medoid's topic in `topics`, the items
    around it, rather than by the medoid's title; without `topics`, or where the topic has
    none, the title.
    """
    terms = interest_terms(history, items, table, item_vectors=item_vectors, scored=scored)
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
    ids, group_vectors = groups
    nearest = (
        ids[np.argmax(centroids @ group_vectors.T, axis=1)]
        if len(centroids) and ids.size
        else np.full(len(centroids), -1)
    )
    return table.with_columns(
        pl.Series("label", labels, dtype=pl.String),
        pl.Series("label_terms", label_terms, dtype=pl.String),
        pl.Series("group", nearest, dtype=pl.Int32),
        pl.Series("terms", term_lists, dtype=pl.String),
    )


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
