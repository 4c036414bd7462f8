"""The stage contracts: every artifact the stages hand each other, where it lives, what it holds,
and how it is written and read.

Stages import this module, never each other: a stage's code then depends only on what it reads,
and `dvc.yaml`'s `deps` can say exactly that (a test derives each stage's imports and checks).

Where each artifact lives is `pipeline.core.layout.Layout`. What: one frozen dataclass per stage
output (`Processed`, `Clustering`) or the shared vector pair (`UserItemVectors` for text
embeddings, factors and fused vectors, with the user vectors of the training history and, as
`*_at_test.npy`, of the training + validation history), each with a `write_*` and a `read_*`.
Reads name the stage to re-run when an artifact is missing or damaged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline.core import io
from pipeline.core.layout import Layout
from pipeline.data.interactions import UserItemVectors

SPLITS = ("train", "validation", "test")
"""The evaluation splits; `cold` (events of held-out items) is written beside them."""
INTERACTION_SCHEMA = {
    "user_idx": pl.Int32,
    "item_idx": pl.Int32,
    "rating": pl.Float32,
    "timestamp": pl.Int64,
}
"""Columns and types of every interaction table (train, validation, test, cold)."""
EMBEDDING_VARIANTS = {"finetuned": "", "zero_shot": "zero_shot_"}
"""Text vectors come from two encoders: the fine-tuned one and the base model (file prefix)."""


# --------------------------------------------------------------------------------------------
# preprocess
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Processed:
    """The cleaned, re-indexed, split interactions and the item and user tables."""

    train: pl.DataFrame
    validation: pl.DataFrame
    test: pl.DataFrame
    cold: pl.DataFrame
    """Every event with a cold item (never in train/validation/test): the cold-item slice."""
    items: pl.DataFrame
    """`item_idx`, `item_id`, title, year, genres, tags, description, `text`, `train_count`,
    `cold`."""
    users: pl.DataFrame
    """`user_idx`, `user_id`, `train_count`, demographics when the source has them."""
    summary: dict[str, int | str] = field(default_factory=dict)
    """Rows read, kept and dropped by reason (written as `metrics/preprocess.json`)."""

    def split(self, name: str) -> pl.DataFrame:
        return {
            "train": self.train,
            "validation": self.validation,
            "test": self.test,
            "cold": self.cold,
        }[name]

    @property
    def history_at_test(self) -> pl.DataFrame:
        """Each user's events before the test event: training then validation, in time order."""
        return pl.concat([self.train, self.validation]).sort(
            "user_idx", "timestamp", maintain_order=True
        )

    @property
    def history_served(self) -> pl.DataFrame:
        """Every event of every user, in time order: the splits and the cold-item events. What
        serving knows (the splits exist for measuring, not to hide events from users)."""
        return pl.concat([self.train, self.validation, self.test, self.cold]).sort(
            "user_idx", "timestamp", maintain_order=True
        )


def write_processed(processed: Processed, layout: Layout) -> None:
    for name in (*SPLITS, "cold"):
        io.write_parquet(layout.processed / f"{name}.parquet", processed.split(name))
    io.write_parquet(layout.processed / "items.parquet", processed.items)
    io.write_parquet(layout.processed / "users.parquet", processed.users)
    io.write_json(layout.metrics_file("preprocess"), processed.summary)


def read_processed(layout: Layout) -> Processed:
    tables = {
        name: io.read_parquet(layout.processed / f"{name}.parquet", "preprocess")
        for name in (*SPLITS, "cold", "items", "users")
    }
    return Processed(**tables)


# --------------------------------------------------------------------------------------------
# embed: text vectors of users and items, per encoder
# --------------------------------------------------------------------------------------------
Embeddings = UserItemVectors
"""Text vectors, float32 unit rows (a zero row for a user without history)."""


AT_TEST_SUFFIX = "_at_test"
"""File-name suffix of user vectors derived from the training + validation history."""
SERVED_SUFFIX = "_served"
"""File-name suffix of user vectors derived from every event (what serving uses)."""


def _write_vectors(vectors: UserItemVectors, users: Path, items: Path) -> None:
    io.write_npy(users, vectors.users)
    io.write_npy(items, vectors.items)
    if vectors.users_at_test is not None:
        io.write_npy(_suffixed(users, AT_TEST_SUFFIX), vectors.users_at_test)
    if vectors.users_served is not None:
        io.write_npy(_suffixed(users, SERVED_SUFFIX), vectors.users_served)


def _read_vectors(users: Path, items: Path, stage: str) -> UserItemVectors:
    at_test, served = _suffixed(users, AT_TEST_SUFFIX), _suffixed(users, SERVED_SUFFIX)
    return UserItemVectors(
        users=io.read_npy(users, stage),
        items=io.read_npy(items, stage),
        users_at_test=io.read_npy(at_test, stage) if at_test.exists() else None,
        users_served=io.read_npy(served, stage) if served.exists() else None,
    )


def _suffixed(users: Path, suffix: str) -> Path:
    return users.with_name(users.stem + suffix + users.suffix)


def _embedding_files(layout: Layout, variant: str) -> tuple[Path, Path]:
    if variant not in EMBEDDING_VARIANTS:
        raise ValueError(f"unknown embedding variant {variant!r}: use {list(EMBEDDING_VARIANTS)}")
    prefix = EMBEDDING_VARIANTS[variant]
    return (
        layout.embed / f"{prefix}user_embeddings.npy",
        layout.embed / f"{prefix}item_embeddings.npy",
    )


def write_embeddings(variant: str, embeddings: Embeddings, layout: Layout) -> None:
    _write_vectors(embeddings, *_embedding_files(layout, variant))


def read_embeddings(variant: str, layout: Layout) -> Embeddings:
    return _read_vectors(*_embedding_files(layout, variant), "embed")


def item_embeddings_file(layout: Layout) -> Path:
    """The fine-tuned item vectors' file (the index records its digest)."""
    return _embedding_files(layout, "finetuned")[1]


# --------------------------------------------------------------------------------------------
# factorize
# --------------------------------------------------------------------------------------------
Factors = UserItemVectors
"""ALS/BPR factors: float32 [n_users, d] and [n_items, d]; a score is their dot product."""


def write_factors(factors: Factors, config: dict[str, Any], layout: Layout) -> None:
    _write_vectors(
        factors, layout.factorize / "user_factors.npy", layout.factorize / "item_factors.npy"
    )
    io.write_json(layout.factorize / "config.json", config)


def read_factors(layout: Layout) -> Factors:
    return _read_vectors(
        layout.factorize / "user_factors.npy", layout.factorize / "item_factors.npy", "factorize"
    )


def item_factors_file(layout: Layout) -> Path:
    return layout.factorize / "item_factors.npy"


def linear_files(layout: Layout) -> tuple[Path, Path]:
    """The reduced-rank EASE user and item vectors' files (`write_linear`)."""
    return (
        layout.factorize / "linear_user_vectors.npy",
        layout.factorize / "linear_item_vectors.npy",
    )


def write_linear(vectors: UserItemVectors | None, record: dict[str, Any], layout: Layout) -> None:
    """The reduced-rank EASE vectors (`pipeline.models.linear`) beside the factors, or only the
    record of why there are none (too many items)."""
    if vectors is not None:
        _write_vectors(vectors, *linear_files(layout))
    io.write_json(layout.factorize / "linear.json", record)


def read_linear(layout: Layout) -> UserItemVectors | None:
    """The reduced-rank EASE vectors, None where the factorize stage skipped them."""
    users, items = linear_files(layout)
    return _read_vectors(users, items, "factorize") if users.exists() else None


# --------------------------------------------------------------------------------------------
# sequence: order-aware user models
# --------------------------------------------------------------------------------------------
SEQUENCE_MODELS = ("sasrec", "text")
"""The SASRec peer (item ids only) and recli's text-based sequence model."""


def _sequence_files(layout: Layout, model: str) -> tuple[Path, Path]:
    if model not in SEQUENCE_MODELS:
        raise ValueError(f"unknown sequence model {model!r}: use {list(SEQUENCE_MODELS)}")
    return (
        layout.sequence / f"{model}_user_vectors.npy",
        layout.sequence / f"{model}_item_vectors.npy",
    )


def write_sequence_vectors(model: str, vectors: UserItemVectors, layout: Layout) -> None:
    _write_vectors(vectors, *_sequence_files(layout, model))


def read_sequence_vectors(model: str, layout: Layout) -> UserItemVectors:
    return _read_vectors(*_sequence_files(layout, model), "sequence")


# --------------------------------------------------------------------------------------------
# cluster
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Clustering:
    """Interest groups of users and each user's own over-represented terms."""

    assignments: pl.DataFrame
    """`user_idx` Int32, `cluster` Int32, `distance` Float32 (Euclidean distance to the centroid,
    the quantity KMeans minimises); null cluster and distance for users without history."""
    centroids: np.ndarray
    """float32 [k, d]: KMeans centroids (means of unit vectors, so their norm is below 1)."""
    profiles: list[dict[str, Any]]
    """One JSON-ready profile per cluster, ordered by cluster id."""
    metrics: dict[str, Any]
    over_represented: pl.DataFrame
    """Each user's own over-represented terms, for every user with history."""


def write_clustering(clustering: Clustering, config: dict[str, Any], layout: Layout) -> None:
    io.write_parquet(layout.cluster / "assignments.parquet", clustering.assignments)
    io.write_parquet(layout.cluster / "over_represented.parquet", clustering.over_represented)
    io.write_npy(layout.cluster / "centroids.npy", clustering.centroids)
    io.write_json(layout.cluster / "profiles.json", clustering.profiles)
    io.write_json(layout.cluster / "config.json", config)
    io.write_json(layout.metrics_file("cluster"), clustering.metrics)
    io.write_json(
        layout.plot_file("cluster_sizes"),
        [{"cluster": p["label"], "users": p["size"]} for p in clustering.profiles],
    )


def read_clustering(layout: Layout) -> Clustering:
    return Clustering(
        assignments=io.read_parquet(layout.cluster / "assignments.parquet", "cluster"),
        centroids=io.read_npy(layout.cluster / "centroids.npy", "cluster"),
        profiles=io.read_json(layout.cluster / "profiles.json", "cluster"),
        metrics=io.read_json(layout.metrics_file("cluster"), "cluster"),
        over_represented=io.read_parquet(layout.cluster / "over_represented.parquet", "cluster"),
    )


def clustering_files(layout: Layout) -> list[Path]:
    """The cluster outputs the serving catalogue is built from (their digests are recorded)."""
    return [layout.cluster / "assignments.parquet", layout.cluster / "over_represented.parquet"]


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


def write_interests(interests: UserInterests, config: dict[str, Any], layout: Layout) -> None:
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


# --------------------------------------------------------------------------------------------
# fuse: the fused vectors the Annoy index holds, and the settings chosen with them
# --------------------------------------------------------------------------------------------
def write_fused(fused: UserItemVectors, layout: Layout) -> None:
    _write_vectors(
        fused, layout.fuse / "fused_user_vectors.npy", layout.fuse / "fused_item_vectors.npy"
    )


def read_fused(layout: Layout) -> UserItemVectors:
    """The fused vectors: what `index` serves and `evaluate` scores as "fused"."""
    return _read_vectors(
        layout.fuse / "fused_user_vectors.npy", layout.fuse / "fused_item_vectors.npy", "fuse"
    )


def fused_files(layout: Layout) -> list[Path]:
    """The fuse outputs the serving catalogue is built from (their digests are recorded)."""
    return [layout.fuse / "fused_item_vectors.npy", layout.fuse / "retrieval.json"]


def write_retrieval(settings: dict[str, Any], layout: Layout) -> None:
    """What `fuse` chose (`fusion`: weights, scales, the text part's width; `multi_interest`;
    `explore`): `index` serves it, `evaluate` scores it."""
    io.write_json(layout.fuse / "retrieval.json", settings)


def read_retrieval(layout: Layout) -> dict[str, Any]:
    return io.read_json(layout.fuse / "retrieval.json", "fuse")
