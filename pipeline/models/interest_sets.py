"""Cutting one user's history into interests: the grouping the `interests` stage describes and
the evaluation re-derives from the training split.

Each user's distinct items (the most recent `max_items`) are grouped by Ward linkage on their
unit text vectors and the tree is cut at `distance_threshold`, so a user has as many interests as
their history shows (at most `max_interests`); groups of fewer than `min_items` items join the
nearest larger one. A sparse history (fewer than `sparse_items` items: Ward's distance between
groups of a few items rarely reaches a threshold set for long histories, and below
`2 * min_items` no two groups fit at all) is grouped by links instead: two items share an
interest when a chain of cosines of at least `linked_similarity` joins them, so an item far from
all the others is an interest of its own (`calibrate_linked_similarity` reads that bar off the
data).

An interest's weight is its share of the user's events with each event counted
`0.5 ** (age / half_life)`, age being its position from the user's latest event; its medoid is
the member closest on average to the others.

A library, not a stage: the `interests` stage groups the whole history (what is served), the
`interests` stage also groups the training split and the history up to the test event (what the
`fuse` and `evaluate` stages score multi-interest retrieval from), all with this one function.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any

import numpy as np
import polars as pl
from pydantic import Field
from scipy.cluster.hierarchy import fcluster, linkage

from pipeline.core.parallel import in_processes
from pipeline.core.sections import InterestsConfig
from pipeline.data.interactions import unit_rows


class InterestSettings(InterestsConfig):
    """One grouping's settings: the `interests` section's (`InterestsConfig`, where each is
    described and checked) and the linking bar for sparse histories, read off the data."""

    linked_similarity: Annotated[float, Field(ge=-1, le=1)] | None = None
    """Sparse histories: the cosine at or above which two items are linked into one interest
    (single linkage; `calibrate_linked_similarity`). None: a history of fewer than
    `2 * min_items` items is one interest."""


def _linked_groups(vectors: np.ndarray, settings: InterestSettings) -> np.ndarray:
    """Interest number (0..) per row of a sparse history: single linkage cut where cosines fall
    below `linked_similarity` (at most `max_interests` parts), numbered by first row."""
    n = len(vectors)
    if settings.linked_similarity is None or n < 2 or not np.linalg.norm(vectors, axis=1).all():
        return np.zeros(n, dtype=np.int64)
    tree = linkage(vectors, method="single", metric="cosine")
    labels = fcluster(tree, 1.0 - settings.linked_similarity, criterion="distance")
    _, first, labels = np.unique(labels, return_index=True, return_inverse=True)
    labels = np.argsort(np.argsort(first))[labels]  # parts numbered by their first row
    if labels.max() >= settings.max_interests:
        # The largest parts stay (the earlier on ties); each item of the others joins the
        # kept part whose centroid is closest.
        sizes = np.bincount(labels)
        kept = sorted(np.argsort(-sizes, kind="stable")[: settings.max_interests].tolist())
        centroids = np.stack([vectors[labels == part].mean(axis=0) for part in kept])
        nearest = np.asarray(kept)[np.argmax(vectors @ centroids.T, axis=1)]
        labels = np.where(np.isin(labels, kept), labels, nearest)
        labels = np.unique(labels, return_inverse=True)[1]
    return labels.astype(np.int64)


def calibrate_linked_similarity(
    before: pl.DataFrame, after: pl.DataFrame, item_vectors: np.ndarray, quantile: float
) -> float | None:
    """The linking bar for sparse histories, read off the data: how close a user's next item
    (`after`, e.g. the validation events) is to the closest item of their history (`before`,
    the training events), at its `quantile` over users. An item of a history less close than
    this to every other item is further from the rest than most next steps are from the past:
    it stands for an interest of its own. None without a user who has both."""
    closest = closest_similarities(before, after, item_vectors)
    return linking_quantile(closest, quantile)


def linking_quantile(closest: np.ndarray, quantile: float) -> float | None:
    """`calibrate_linked_similarity` from every user's `closest_similarities` (concatenated
    over partitions: a quantile does not depend on the order of the values)."""
    if closest.size == 0:
        return None
    return round(float(np.quantile(closest, quantile)), 4)


def closest_similarities(
    before: pl.DataFrame, after: pl.DataFrame, item_vectors: np.ndarray
) -> np.ndarray:
    """Per user with events in both: the cosine of their first event of `after` to the closest
    item of their `before` events (in no particular order of users)."""
    unit = unit_rows(item_vectors)
    nxt = after.group_by("user_idx").agg(pl.col("item_idx").first().alias("next"))
    pairs = before.select("user_idx", "item_idx").join(nxt, on="user_idx")
    if pairs.height == 0:
        return np.zeros(0, dtype=np.float32)
    cosine = np.einsum(
        "ij,ij->i", unit[pairs["item_idx"].to_numpy()], unit[pairs["next"].to_numpy()]
    )
    return (
        pairs.select("user_idx")
        .with_columns(pl.Series("cosine", cosine))
        .group_by("user_idx")
        .agg(pl.col("cosine").max())["cosine"]
        .to_numpy()
    )


def _groups(vectors: np.ndarray, settings: InterestSettings) -> np.ndarray:
    """Interest number (0..) per row of `vectors`, with small groups merged into larger ones."""
    n = len(vectors)
    if n < settings.sparse_items and settings.linked_similarity is not None:
        return _linked_groups(vectors, settings)
    if n < 2 * settings.min_items:
        return np.zeros(n, dtype=np.int64)
    tree = linkage(vectors, method="ward")
    labels = fcluster(tree, settings.distance_threshold, criterion="distance")
    if labels.max() > settings.max_interests:
        labels = fcluster(tree, settings.max_interests, criterion="maxclust")
    sizes = np.bincount(labels)
    large = [label for label in np.unique(labels) if sizes[label] >= settings.min_items]
    if len(large) <= 1:
        return np.zeros(n, dtype=np.int64)
    centroids = np.stack([vectors[labels == label].mean(axis=0) for label in large])
    nearest = np.argmax(vectors @ centroids.T, axis=1)
    keep = np.isin(labels, large)
    position = {label: index for index, label in enumerate(large)}
    return np.where(keep, [position.get(label, -1) for label in labels], nearest)


def _medoid(vectors: np.ndarray) -> int:
    """Row of the member with the highest mean cosine to the others.

    A row's summed cosine to every member is its dot product with the members' sum, so no
    members × members matrix is formed (linear, not quadratic, in the group's size)."""
    return int(np.argmax(vectors @ vectors.sum(axis=0)))


PARALLEL_MIN_USERS = 5000
"""Fewer users than this are grouped in this process: a worker's start-up would cost more."""


def _user_rows(
    users: np.ndarray,
    items: np.ndarray,
    times: np.ndarray,
    unit: np.ndarray,
    settings: InterestSettings,
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """The interests of each user in `users, items, times` (sorted by user, then time), as
    table rows and unit centroids, users in order."""
    bounds = np.flatnonzero(np.diff(users)) + 1
    rows: list[dict[str, Any]] = []
    centroids: list[np.ndarray] = []
    for start, stop in zip(np.r_[0, bounds], np.r_[bounds, users.size], strict=True):
        if stop == start:
            continue
        user_items, user_times = items[start:stop], times[start:stop]
        age = np.arange(stop - start)[::-1]  # 0 for the latest event
        decay = 0.5 ** (age / settings.half_life)
        # Distinct items, most recent event of each, newest `max_items` kept.
        _, last = np.unique(user_items[::-1], return_index=True)
        last = np.sort((stop - start - 1) - last)[::-1][: settings.max_items]
        distinct = user_items[last]
        group_of_item = dict(
            zip(distinct.tolist(), _groups(unit[distinct], settings).tolist(), strict=True)
        )
        event_group = np.array([group_of_item.get(item, -1) for item in user_items.tolist()])
        total = decay[event_group >= 0].sum()
        for group in sorted(set(group_of_item.values())):
            members = distinct[[group_of_item[item] == group for item in distinct.tolist()]]
            mask = event_group == group
            vectors = unit[members]
            centre = vectors.mean(axis=0)
            centroids.append(centre / max(float(np.linalg.norm(centre)), 1e-12))
            rows.append(
                {
                    "user_idx": int(users[start]),
                    "items": members.astype(np.int32).tolist(),
                    "events": int(mask.sum()),
                    "weight": float(decay[mask].sum() / total),
                    "medoid": int(members[_medoid(vectors)]),
                    "first_timestamp": int(user_times[mask].min()),
                    "last_timestamp": int(user_times[mask].max()),
                }
            )
    return rows, centroids


def user_interest_sets(
    history: pl.DataFrame, item_vectors: np.ndarray, settings: InterestSettings, workers: int = 1
) -> tuple[pl.DataFrame, np.ndarray]:
    """Every user's interests from `history` (`user_idx, item_idx, timestamp`, any order).

    Returns one row per (user, interest), heaviest first within a user: `user_idx, interest,
    items` (item indices, newest first), `events, weight, medoid, first_timestamp,
    last_timestamp`; and the interests' unit centroids (rows in the same order). With
    `workers` > 1 and many users, contiguous ranges of users are grouped in that many
    processes; the result is the same.
    """
    unit = unit_rows(item_vectors)
    ordered = history.sort(["user_idx", "timestamp"], maintain_order=True)
    users = ordered["user_idx"].to_numpy()
    items = ordered["item_idx"].to_numpy()
    times = ordered["timestamp"].to_numpy()
    starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
    pieces = max(1, min(workers, starts.size // PARALLEL_MIN_USERS))
    cuts = [*starts[np.linspace(0, starts.size, pieces, endpoint=False).astype(int)], users.size]
    parts = in_processes(
        _user_rows,
        [(users[a:b], items[a:b], times[a:b], unit, settings) for a, b in itertools.pairwise(cuts)],
        pieces,
    )
    rows = [row for part_rows, _ in parts for row in part_rows]
    centroids = [centre for _, part_centroids in parts for centre in part_centroids]
    table = pl.DataFrame(
        rows,
        schema={
            "user_idx": pl.Int32,
            "items": pl.List(pl.Int32),
            "events": pl.Int32,
            "weight": pl.Float64,
            "medoid": pl.Int32,
            "first_timestamp": pl.Int64,
            "last_timestamp": pl.Int64,
        },
    )
    matrix = np.stack(centroids) if centroids else np.zeros((0, unit.shape[1]), np.float32)
    # Heaviest first within a user, numbered in that order.
    order = table.with_row_index("row").sort(
        ["user_idx", "weight", "last_timestamp"], descending=[False, True, True]
    )
    table = order.drop("row").with_columns(
        pl.int_range(pl.len()).over("user_idx").cast(pl.Int32).alias("interest")
    )
    columns = ["user_idx", "interest", "items", "events", "weight", "medoid"]
    table = table.select(*columns, "first_timestamp", "last_timestamp")
    return table, matrix[order["row"].to_numpy()].astype(np.float32)
