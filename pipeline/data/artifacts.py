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
from pipeline.data.interactions import SampledRows, UserItemVectors
from pipeline.data.interest_artifacts import (
    INTEREST_HISTORIES as INTEREST_HISTORIES,
)
from pipeline.data.interest_artifacts import (
    InterestSets as InterestSets,
)
from pipeline.data.interest_artifacts import (
    Topics as Topics,
)
from pipeline.data.interest_artifacts import (
    UserInterests as UserInterests,
)
from pipeline.data.interest_artifacts import (
    read_interests as read_interests,
)
from pipeline.data.interest_artifacts import (
    read_split_interests as read_split_interests,
)
from pipeline.data.interest_artifacts import (
    read_topics as read_topics,
)
from pipeline.data.interest_artifacts import (
    write_interests as write_interests,
)
from pipeline.data.interest_artifacts import (
    write_split_interests as write_split_interests,
)
from pipeline.data.interest_artifacts import (
    write_topics as write_topics,
)
from pipeline.engine.partitions import by_user, by_user_folder, write_partitions

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
    """`item_idx`, `item_id`, title, year, genres, tags, description, text, train_count, cold."""
    users: pl.DataFrame
    """`user_idx`, `user_id`, `train_count`, demographics when the source has them."""
    summary: dict[str, int | str] = field(default_factory=dict)
    """Rows read, kept and dropped by reason (`metrics/preprocess.json`)."""

    def split(self, name: str) -> pl.DataFrame:
        """One of `SPLITS`, or `cold`."""
        if name not in (*SPLITS, "cold"):
            raise KeyError(name)
        return getattr(self, name)

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


def write_processed(processed: Processed, layout: Layout, partitions: int | None = 16) -> None:
    """The splits, tables and summary; every event again in `partitions` user-hash partitions
    (None: the stage wrote them already, partition by partition)."""
    splits = {name: processed.split(name) for name in (*SPLITS, "cold")}
    for name, frame in splits.items():
        io.write_parquet(layout.processed / f"{name}.parquet", frame)
    if partitions is not None:
        write_partitions(by_user(splits, processed.users), by_user_folder(layout), partitions)
    io.write_parquet(layout.processed / "items.parquet", processed.items)
    io.write_parquet(layout.processed / "users.parquet", processed.users)
    io.write_json(layout.metrics_file("preprocess"), processed.summary)


def read_items(layout: Layout) -> pl.DataFrame:
    """The item table alone (the catalogue, without any event)."""
    return io.read_parquet(layout.processed / "items.parquet", "preprocess")


def user_count(layout: Layout) -> int:
    """How many users the split holds, read from the user table's metadata alone."""
    users = io.require(layout.processed / "users.parquet", "preprocess")
    return int(pl.scan_parquet(users).select(pl.len()).collect().item())


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


def embedding_paths(layout: Layout, variant: str) -> dict[str, Path]:
    """Where `write_embeddings` puts each of a variant's arrays, by `UserItemVectors` field."""
    return _paths(*_embedding_files(layout, variant))


def _paths(users: Path, items: Path) -> dict[str, Path]:
    """A vector pair's files by `UserItemVectors` field (the users' variants may not exist)."""
    at_test, served = _suffixed(users, AT_TEST_SUFFIX), _suffixed(users, SERVED_SUFFIX)
    return {"users": users, "items": items, "users_at_test": at_test, "users_served": served}


def read_user_rows(paths: dict[str, Path], stage: str, users: np.ndarray | None) -> UserItemVectors:
    """The item vectors and the rows of `users` of the user vectors a split is scored with (the
    training history's and, where derived, the test-time history's): what evaluating some users
    reads. The rows are read through memory maps (`SampledRows`, indexed by the user's index
    among every user); None (every user is evaluated): the whole arrays. The served users are
    not read."""
    at_test = paths["users_at_test"]

    def rows(path: Path) -> np.ndarray | SampledRows:
        if users is None:
            return io.read_npy(path, stage)
        return SampledRows.read(io.require(path, stage), users)

    return UserItemVectors(
        users=rows(paths["users"]),
        items=io.read_npy(paths["items"], stage),
        users_at_test=rows(at_test) if at_test.exists() else None,
    )


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


def factor_paths(layout: Layout) -> dict[str, Path]:
    """Where `write_factors` puts each array, by `UserItemVectors` field."""
    return _paths(layout.factorize / "user_factors.npy", layout.factorize / "item_factors.npy")


def item_factors_file(layout: Layout) -> Path:
    return layout.factorize / "item_factors.npy"


def linear_files(layout: Layout) -> tuple[Path, Path]:
    """The reduced-rank EASE user and item vectors' files (`write_linear`)."""
    return (
        layout.factorize / "linear_user_vectors.npy",
        layout.factorize / "linear_item_vectors.npy",
    )


def write_linear(
    vectors: UserItemVectors | None,
    record: dict[str, Any],
    layout: Layout,
    projection: np.ndarray | None = None,
) -> None:
    """The reduced-rank EASE vectors (`pipeline.models.linear`) beside the factors, with B·Q
    (`projection`, which gives any new history's vector), or only the record of why there are
    none (too many items)."""
    if vectors is not None:
        _write_vectors(vectors, *linear_files(layout))
    if projection is not None:
        io.write_npy(linear_projection_file(layout), projection)
    io.write_json(layout.factorize / "linear.json", record)


def linear_projection_file(layout: Layout) -> Path:
    """Where `write_linear` put B·Q (items × rank)."""
    return layout.factorize / "linear_projection.npy"


def linear_paths(layout: Layout) -> dict[str, Path] | None:
    """Where `write_linear` put each array, by `UserItemVectors` field; None where there are
    none."""
    users, items = linear_files(layout)
    return _paths(users, items) if users.exists() else None


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


def sequence_paths(model: str, layout: Layout) -> dict[str, Path]:
    """Where `write_sequence_vectors` puts each array, by `UserItemVectors` field."""
    return _paths(*_sequence_files(layout, model))


def read_sequence_vectors(model: str, layout: Layout) -> UserItemVectors:
    return _read_vectors(*_sequence_files(layout, model), "sequence")


def sequence_model_file(model: str, layout: Layout) -> Path:
    """Where a sequence model's trained weights are (`write_sequence_model`)."""
    _sequence_files(layout, model)  # refuses an unknown model
    return layout.sequence / f"{model}_model.safetensors"


def write_sequence_model(model: str, weights: dict[str, np.ndarray], layout: Layout) -> None:
    """A sequence model's trained weights (`FittedSequence.weights`), as safetensors (plain
    tensors, no pickle): with the stage's `config.json`, what a new history's state needs."""
    from safetensors.numpy import save_file

    path = sequence_model_file(model, layout)
    with io.atomic_path(path) as temporary:
        save_file({name: np.ascontiguousarray(array) for name, array in weights.items()}, temporary)


def read_sequence_model(model: str, layout: Layout) -> dict[str, np.ndarray]:
    """The weights `write_sequence_model` wrote."""
    from safetensors.numpy import load_file

    return load_file(io.require(sequence_model_file(model, layout), "sequence"))


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


def write_clustering(
    clustering: Clustering, config: dict[str, Any], layout: Layout, per_user: bool = True
) -> None:
    """The cluster outputs; `per_user=False` leaves `assignments.parquet` and
    `over_represented.parquet` to whoever wrote them already (the stage, from its partitions)."""
    if per_user:
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


def fused_paths(layout: Layout) -> dict[str, Path]:
    """Where the fused vectors go, by `UserItemVectors` field."""
    return _paths(layout.fuse / "fused_user_vectors.npy", layout.fuse / "fused_item_vectors.npy")


def served_fused_users_file(layout: Layout) -> Path:
    """Every user's served fused vector (read by rows: `export` never loads them all)."""
    return _suffixed(layout.fuse / "fused_user_vectors.npy", SERVED_SUFFIX)


def fused_files(layout: Layout) -> list[Path]:
    """The fuse outputs the serving catalogue is built from (their digests are recorded)."""
    return [layout.fuse / "fused_item_vectors.npy", layout.fuse / "retrieval.json"]


def write_retrieval(settings: dict[str, Any], layout: Layout) -> None:
    """What `fuse` chose (`fusion`: weights, scales, the text part's width; `multi_interest`;
    `explore`): `index` serves it, `evaluate` scores it."""
    io.write_json(layout.fuse / "retrieval.json", settings)


def read_retrieval(layout: Layout) -> dict[str, Any]:
    return io.read_json(layout.fuse / "retrieval.json", "fuse")
