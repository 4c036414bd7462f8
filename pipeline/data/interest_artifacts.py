"""The stage contracts of interests: each user's interests, the interests cut from the
histories the evaluation reads, and the catalogue's topics (`pipeline.data.artifacts` re-exports
them with every other contract, so stages import from one place)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline.core import io
from pipeline.core.layout import Layout


# --------------------------------------------------------------------------------------------
# interests: several interests per user
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UserInterests:
    """Every user's interests (`pipeline.models.interest_labels.describe`), one row each, and
    their unit centroids in the item text space (rows in the same order)."""

    table: pl.DataFrame
    """`user_idx, interest, items, events, weight, medoid, first_timestamp, last_timestamp,
    label, group, terms` (JSON text)."""
    centroids: np.ndarray
    metrics: dict[str, Any] = field(default_factory=dict)


def write_interests(
    interests: UserInterests, config: dict[str, Any], layout: Layout, per_user: bool = True
) -> None:
    """The interests outputs; `per_user=False` leaves the tables and centroids of the served
    and the evaluated splits' interests to whoever wrote them already (the stage, from its
    partitions)."""
    if per_user:
        io.write_parquet(layout.interests / "user_interests.parquet", interests.table)
        io.write_npy(layout.interests / "centroids.npy", interests.centroids)
    io.write_json(layout.interests / "config.json", config)
    io.write_json(layout.metrics_file("interests"), interests.metrics)


def read_interests(layout: Layout) -> UserInterests:
    return UserInterests(
        table=io.read_parquet(layout.interests / "user_interests.parquet", "interests"),
        centroids=io.read_npy(layout.interests / "centroids.npy", "interests"),
        metrics=io.read_json(layout.metrics_file("interests"), "interests"),
    )


INTEREST_HISTORIES = ("validation", "test")
"""Interests are also cut from the history each evaluated split reads: the training split
(validation) and training + validation (test), for `fuse` and `evaluate` to score with."""


@dataclass(frozen=True)
class InterestSets:
    """Interests cut from one history: one row per (user, interest), heaviest first per user."""

    users: np.ndarray
    """int [n_interests]: whose interest each row is."""
    weights: np.ndarray
    """float [n_interests]: the interest's recency-decayed share of its user's events."""
    items: list[np.ndarray]
    """The interest's item indices, per row."""
    centroids: np.ndarray
    """float32 [n_interests, d]: unit centroids in the base encoder's item space."""

    @classmethod
    def from_table(cls, table: pl.DataFrame, centroids: np.ndarray) -> InterestSets:
        """From an `interests`-stage table (`user_idx, interest, items, weight, ...`)."""
        ordered = table.with_row_index("row").sort(["user_idx", "interest"])
        rows = ordered["row"].to_numpy()
        return cls(
            users=ordered["user_idx"].to_numpy().astype(np.int64),
            weights=ordered["weight"].to_numpy().astype(np.float64),
            items=[np.asarray(items, dtype=np.int64) for items in ordered["items"].to_list()],
            centroids=np.asarray(centroids, dtype=np.float32)[rows],
        )

    def rows_of(self, n_users: int) -> list[np.ndarray]:
        """Per user, the row numbers of their interests (heaviest first)."""
        bounds = np.searchsorted(self.users, np.arange(n_users + 1))
        return [np.arange(bounds[user], bounds[user + 1]) for user in range(n_users)]

    def means(self, item_vectors: np.ndarray) -> np.ndarray:
        """Per interest, the mean of its items' vectors in `item_vectors`' space."""
        if not self.items:
            return np.zeros((0, item_vectors.shape[1]), dtype=np.float32)
        return np.stack([item_vectors[items].mean(axis=0) for items in self.items]).astype(
            np.float32
        )


def _split_interest_files(layout: Layout, split: str) -> tuple[Path, Path]:
    if split not in INTEREST_HISTORIES:
        raise ValueError(f"no interests are cut for split {split!r}")
    return (
        layout.interests / f"user_interests_for_{split}.parquet",
        layout.interests / f"centroids_for_{split}.npy",
    )


def write_split_interests(
    split: str, table: pl.DataFrame, centroids: np.ndarray, layout: Layout
) -> None:
    table_file, centroids_file = _split_interest_files(layout, split)
    io.write_parquet(table_file, table)
    io.write_npy(centroids_file, centroids)


def read_split_interests(split: str, layout: Layout) -> tuple[pl.DataFrame, np.ndarray]:
    """The interests cut from the history `split` is predicted from, and their centroids."""
    table_file, centroids_file = _split_interest_files(layout, split)
    return (
        io.read_parquet(table_file, "interests"),
        io.read_npy(centroids_file, "interests"),
    )


@dataclass(frozen=True)
class Topics:
    """Groups of the catalogue's items, and how users move between them in training."""

    item_topic: np.ndarray
    """int [n_items]: each item's topic."""
    centroids: np.ndarray
    """float32 [n_topics, d]: unit centroids in the interests' item space."""
    profiles: list[dict[str, Any]]
    """Per topic: `topic, label, label_terms, size, medoid, terms`."""
    counts: np.ndarray
    """float [n_topics, n_topics]: take-ups of a topic after another (`recli.exploration`)."""
    adoptions: np.ndarray
    """float [n_topics]: take-ups of each topic."""
    smoothing: float


def write_topics(topics: Topics, layout: Layout) -> None:
    io.write_npy(layout.interests / "item_topics.npy", topics.item_topic.astype(np.int32))
    io.write_npy(layout.interests / "topic_centroids.npy", topics.centroids)
    io.write_json(
        layout.interests / "topics.json",
        {
            "profiles": topics.profiles,
            "transitions": {
                "counts": [[round(float(v), 6) for v in row] for row in topics.counts],
                "adoptions": [round(float(v), 6) for v in topics.adoptions],
                "smoothing": topics.smoothing,
            },
        },
    )


def read_topics(layout: Layout) -> Topics:
    record = io.read_json(layout.interests / "topics.json", "interests")
    transitions = record["transitions"]
    return Topics(
        item_topic=io.read_npy(layout.interests / "item_topics.npy", "interests").astype(np.int64),
        centroids=io.read_npy(layout.interests / "topic_centroids.npy", "interests"),
        profiles=record["profiles"],
        counts=np.asarray(transitions["counts"], dtype=np.float64),
        adoptions=np.asarray(transitions["adoptions"], dtype=np.float64),
        smoothing=float(transitions["smoothing"]),
    )
