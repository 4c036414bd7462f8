"""The cluster stage's per-user work, one user partition at a time (`Engine.map` runs each
function here, or as a Ray task per partition).

A user's vector, the centroid nearest to it and the user's own over-represented terms need only
that user's events, given what is bounded by the catalogue and k: the items' IDF-weighted
vectors, the fitted KMeans, everyone's share of each term. Each partition's users come back as
one small parquet piece beside the output, which `concatenate` sorts into one file in user
order; the stage's process sees the users' vectors only for the seeded sample KMeans is fitted
on (`fit_sample`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline.core.sections import ClusterConfig
from pipeline.data.interactions import interaction_matrix
from pipeline.engine.partitions import local_matrix, read_partition
from pipeline.models.terms import over_represented_terms
from recli.errors import RecliError

ASSIGNMENTS = "assignments"
OVER_REPRESENTED = "over_represented"
"""The per-user outputs (`.parquet` under `data/cluster/`) assembled from pieces."""

N_INIT = 10
"""KMeans restarts per k; the lowest-inertia run is kept (10 is scikit-learn's classic default)."""
SILHOUETTE_SAMPLE = 5_000
"""Silhouette is O(n²) in time and memory: score a seeded sample of at most this many users."""


# --------------------------------------------------------------------------------------------
# What a user's taste vector is
# --------------------------------------------------------------------------------------------
def idf_items(item_vectors: np.ndarray, item_users: np.ndarray, n_users: int) -> np.ndarray:
    """The item vectors weighted by IDF (log of users ÷ users who interacted with the item):
    what a taste vector averages. `item_users`: each item's distinct training users.

    IDF lets the films that set a user apart speak louder than the blockbusters nearly everyone
    saw, which would otherwise pull every history towards the same popular centre.
    """
    users = np.asarray(item_users, dtype=np.float32)
    idf = np.log(max(n_users, 1) / np.maximum(users, 1.0)).astype(np.float32)
    return item_vectors * idf[:, None]


def taste_rows(matrix: Any, weighted_items: np.ndarray) -> np.ndarray:
    """Unit rows of `matrix` (users × items, binary) @ `weighted_items` (`idf_items`): each
    user's IDF-weighted mean item vector (a zero row for a user without history)."""
    vectors = np.asarray(matrix @ weighted_items, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def taste_vectors(train: pl.DataFrame, item_vectors: np.ndarray, n_users: int) -> np.ndarray:
    """Every user's taste vector from the whole training split (`taste_rows`)."""
    matrix = interaction_matrix(train, n_users, len(item_vectors))
    item_users = np.asarray(matrix.sum(axis=0)).ravel()
    return taste_rows(matrix, idf_items(item_vectors, item_users, n_users))


# --------------------------------------------------------------------------------------------
# KMeans and the choice of k (in the stage's process, on the sample)
# --------------------------------------------------------------------------------------------
def _population(n_distinct: int, n_total: int) -> str:
    if n_distinct == n_total:
        return f"the number of users ({n_distinct})"
    return f"the number of users with a distinct, non-zero vector ({n_distinct} of {n_total})"


def _candidate_ks(cfg: ClusterConfig, n_distinct: int, n_total: int) -> list[int]:
    """The k values to try; KMeans and the silhouette both need 2 <= k < distinct points."""
    if cfg.k != "auto":
        if cfg.k >= n_distinct:
            raise RecliError(
                f"cluster.k ({cfg.k}) must be below {_population(n_distinct, n_total)}: "
                "lower cluster.k"
            )
        return [cfg.k]
    low, high = cfg.k_range
    high = min(high, n_distinct - 1)
    if high < 2:
        raise RecliError(
            f"cluster.k_range needs at least 3 users with distinct, non-zero vectors to form 2 "
            f"clusters, got {n_distinct} of {n_total}: add users or check the embed stage"
        )
    # A range above the population is clipped rather than refused: `auto` means "pick for me".
    return list(range(min(low, high), high + 1))


def _silhouette_sample(n: int, seed: int) -> np.ndarray:
    if n <= SILHOUETTE_SAMPLE:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=SILHOUETTE_SAMPLE, replace=False))


def _fit(
    vectors: np.ndarray, ks: list[int], seed: int
) -> tuple[Any, float | None, dict[int, float | None]]:
    """Fit KMeans for every k; return (model, silhouette, silhouette per k) of the best.

    The silhouette uses cosine distance because the vectors are compared by cosine everywhere
    else in the project; one sample and one distance matrix serve every k, so the scores are
    comparable and the matrix is computed once.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from sklearn.metrics.pairwise import cosine_distances

    sample = _silhouette_sample(len(vectors), seed)
    distances = cosine_distances(vectors[sample])
    best: tuple[Any, float | None] | None = None
    by_k: dict[int, float | None] = {}
    for k in ks:
        model = KMeans(n_clusters=k, n_init=N_INIT, random_state=seed).fit(vectors)
        labels = model.labels_
        # A sample can miss clusters of a huge population; the score needs two labels in it.
        if len(np.unique(labels[sample])) >= 2:
            score: float | None = float(
                silhouette_score(distances, labels[sample], metric="precomputed")
            )
        else:
            score = None
        by_k[k] = score
        # Strictly greater: on a tie the smaller, more readable k wins.
        if best is None or (score is not None and (best[1] is None or score > best[1])):
            best = (model, score)
    assert best is not None  # ks is never empty
    return best[0], best[1], by_k


def order_by_size(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clusters renumbered largest first (ties by KMeans id) so ids are stable and meaningful:
    (new id of each KMeans cluster, KMeans cluster of each new id)."""
    order = np.lexsort((np.arange(len(sizes)), -sizes))
    new_id = np.empty_like(order)
    new_id[order] = np.arange(len(order))
    return new_id, order


def fit_groups(
    vectors: np.ndarray, n_total: int, cfg: ClusterConfig
) -> tuple[Any, float | None, dict[int, float | None], list[int]]:
    """KMeans on `vectors` (the users it is fitted on, with history, in user order), k as
    `cluster.k` says: (model, silhouette, silhouette per k tried, the ks tried)."""
    # Identical vectors (users with the same recent history) count once: KMeans cannot split them.
    n_distinct = len(np.unique(vectors, axis=0)) if len(vectors) else 0
    ks = _candidate_ks(cfg, n_distinct, n_total)
    model, silhouette, by_k = _fit(vectors, ks, cfg.seed)
    return model, silhouette, by_k, ks


# --------------------------------------------------------------------------------------------
# One partition
# --------------------------------------------------------------------------------------------
def census_partition(path: Path, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """One partition's distinct training users per item and events per item (every event):
    summed over the partitions, the IDF and everyone's term shares."""
    events = read_partition(path)
    train = events.filter(pl.col("split") == "train").unique(["user_idx", "item_idx"])
    item_users = np.bincount(train["item_idx"].to_numpy(), minlength=n_items)
    served = np.bincount(events["item_idx"].to_numpy(), minlength=n_items)
    return item_users.astype(np.int64), served.astype(np.int64)


def partition_vectors(
    events: pl.DataFrame, n_items: int, source: np.ndarray | Path
) -> tuple[np.ndarray, np.ndarray]:
    """A partition's users (in the order of their first event) and their vectors: taste vectors
    from their training events when `source` is the IDF-weighted items (`idf_items`), else rows
    of the user vectors' `.npy` at `source` (`cluster.representation: recent`)."""
    users = events["user_idx"].unique(maintain_order=True).to_numpy()
    if isinstance(source, Path):
        vectors = np.asarray(np.load(source, mmap_mode="r", allow_pickle=False)[users])
        vectors = vectors.astype(np.float32)
    else:
        train = events.filter(pl.col("split") == "train")
        trained, matrix = local_matrix(train, n_items)
        vectors = np.zeros((len(users), source.shape[1]), dtype=np.float32)
        order = np.argsort(users)
        vectors[order[np.searchsorted(users, trained, sorter=order)]] = taste_rows(matrix, source)
    if not np.isfinite(vectors).all():
        raise RecliError("user embeddings contain NaN or infinite values: run `dvc repro -f embed`")
    return users, vectors


def sample_partition(
    path: Path, n_items: int, source: np.ndarray | Path, sample: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """The users of one partition with history that are in `sample` (None: every user), and
    their vectors: the partition's share of what KMeans is fitted on."""
    users, vectors = partition_vectors(read_partition(path), n_items, source)
    keep = np.any(vectors != 0, axis=1)
    if sample is not None:
        keep &= np.isin(users, sample)
    return users[keep], vectors[keep]


def assign_partition(
    path: Path,
    part: int,
    items: pl.DataFrame,
    source: np.ndarray | Path,
    fitted: Any,
    fit: tuple[np.ndarray, np.ndarray],
    overall: pl.DataFrame,
    top_terms: int,
    out: Path,
) -> np.ndarray:
    """One partition's pieces of `assignments` (`user_idx, cluster, distance`, the cluster in
    KMeans' own numbering) and of `over_represented` (`terms.over_represented_terms` over every
    event, against `overall`); returns how many of its users each KMeans cluster has.

    `fitted`: the KMeans model; `fit`: the users it was fitted on (sorted) and their labels,
    which those users keep; any other user with history goes to the nearest centroid."""
    events = read_partition(path)
    users, vectors = partition_vectors(events, items.height, source)
    centroids = np.asarray(fitted.cluster_centers_, dtype=np.float32)
    has_history = np.any(vectors != 0, axis=1)
    labels = np.full(len(users), -1, dtype=np.int64)
    clustered = np.flatnonzero(has_history)
    fit_users, fit_labels = fit
    position = np.searchsorted(fit_users, users[clustered])
    was_fitted = np.zeros(len(clustered), dtype=bool)
    inside = position < len(fit_users)
    was_fitted[inside] = fit_users[position[inside]] == users[clustered][inside]
    labels[clustered[was_fitted]] = fit_labels[position[was_fitted]]
    if (~was_fitted).any():
        labels[clustered[~was_fitted]] = fitted.predict(vectors[clustered[~was_fitted]])
    distance = np.full(len(users), np.nan, dtype=np.float32)
    distance[clustered] = np.linalg.norm(
        vectors[clustered] - centroids[labels[clustered]], axis=1
    ).astype(np.float32)
    piece = pl.DataFrame(
        {
            "user_idx": users.astype(np.int32),
            "cluster": pl.Series(labels.astype(np.int32)).set(~pl.Series(has_history), None),
            "distance": pl.Series(distance).set(~pl.Series(has_history), None),
        }
    )
    piece.write_parquet(piece_file(out, ASSIGNMENTS, part))
    terms = over_represented_terms(events, items, top_terms, overall)
    terms.write_parquet(piece_file(out, OVER_REPRESENTED, part))
    return np.bincount(labels[clustered], minlength=len(centroids))


# --------------------------------------------------------------------------------------------
# The pieces into one file
# --------------------------------------------------------------------------------------------
def piece_file(folder: Path, name: str, part: int) -> Path:
    path = Path(folder) / f"{name}.piece-{part:05d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def fit_sample(n_users: int, fit_users: int, seed: int) -> np.ndarray | None:
    """The users KMeans is fitted on (sorted): every user (None) when there are at most
    `fit_users`, else a seeded sample of that many (those without history then drop out)."""
    if n_users <= fit_users:
        return None
    return np.sort(np.random.default_rng(seed).choice(n_users, size=fit_users, replace=False))


def concatenate(
    folder: Path, name: str, destination: Path, by: list[str], relabel: np.ndarray | None = None
) -> None:
    """Every piece of `name` under `folder` as one parquet sorted by `by` (stable: a user's rows
    keep their order), streamed, not collected; `relabel[c]` is the stored id of the pieces'
    cluster c. Removes the pieces."""
    pieces = sorted(Path(folder).glob(f"{name}.piece-*.parquet"))
    frame = pl.scan_parquet(pieces)
    if relabel is not None:
        new = pl.Series(relabel.astype(np.int32))
        frame = frame.with_columns(pl.col("cluster").replace_strict(np.arange(len(new)), new))
    destination.parent.mkdir(parents=True, exist_ok=True)
    frame.sort(by, maintain_order=True).sink_parquet(destination)
    for path in pieces:
        path.unlink()
