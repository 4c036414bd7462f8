"""Stage `cluster`: group users by their taste vectors and describe each group readably.

KMeans (scikit-learn) runs on unit user vectors built from `embed`'s outputs. By default
(`cluster.representation: taste`) a user is the IDF-weighted mean of the text vectors of every
item in their training history: what they like, all of it. `recent` uses the embed stage's user
vector instead (the encoded titles of their last few items, built to predict the next one), which
groups users as much by when they were active as by taste. `cluster.k: auto` tries every k in
`cluster.k_range` and keeps the best cosine silhouette. Each cluster is then profiled from what
its users did in training (`pipeline.models.profiles`): the genres and tags it over-represents (lift
against the whole population, ranked by share × ln(lift)), recognisable exemplar items (the liked
items furthest along the direction from everyone's mean to the cluster's centroid), and a unique
short label made of the first of those terms, so the terms shown beside a label lead with its
own (on a catalogue without genres or tags: phrases of the items' text). How well the profiles
describe their members is measured (`label_agreement`) against random membership.

This module holds the stage itself: what a user's vector is, KMeans and the choice of k, `run`
and `main`; describing the groups is `pipeline.models.profiles`' job.

Outputs (under `data/cluster/`): `assignments.parquet` (`user_idx, cluster, distance`),
`centroids.npy` (float32 [k, d]), `profiles.json` (one profile per cluster, by cluster id),
`over_represented.parquet` (each user's own over-represented terms, the same lift per user,
over every event the user has: what `recli user` shows) and
`config.json` (the effective config); `metrics/cluster.json` and the plot data
`metrics/plots/cluster_sizes.json`.

Cluster ids are ordered by size, largest first, so cluster 0 is always the biggest group. Users
without history (an all-zero vector) carry no taste signal: they are left out of the fit and
their `cluster` and `distance` are null.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import polars as pl

from pipeline.core import io
from pipeline.core.config import load_params
from pipeline.core.layout import Layout, writes
from pipeline.core.sections import ClusterConfig
from pipeline.data.artifacts import (
    Clustering,
    Processed,
    read_embeddings,
    read_processed,
    write_clustering,
)
from pipeline.data.interactions import UserItemVectors, interaction_matrix
from pipeline.models.phrases import PHRASE, item_phrases, user_phrase_shares, whole_share
from pipeline.models.profiles import LABEL_SEPARATOR, cluster_profiles, label_agreement
from pipeline.models.terms import item_terms, over_represented_terms, user_events, user_term_shares
from recli.errors import RecliError

N_INIT = 10
"""KMeans restarts per k; the lowest-inertia run is kept (10 is scikit-learn's classic default)."""
SILHOUETTE_SAMPLE = 5_000
"""Silhouette is O(n²) in time and memory: score a seeded sample of at most this many users."""


# --------------------------------------------------------------------------------------------
# What a user's taste vector is
# --------------------------------------------------------------------------------------------
def taste_vectors(train: pl.DataFrame, item_vectors: np.ndarray, n_users: int) -> np.ndarray:
    """Unit vectors of users' whole training histories: the IDF-weighted mean of their items'
    text vectors (a zero row for a user without history).

    IDF (log of users ÷ users who interacted with the item) lets the films that set a user apart
    speak louder than the blockbusters nearly everyone saw, which would otherwise pull every
    history towards the same popular centre.
    """
    matrix = interaction_matrix(train, n_users, len(item_vectors))
    item_users = np.asarray(matrix.sum(axis=0)).ravel()
    idf = np.log(max(n_users, 1) / np.maximum(item_users, 1.0)).astype(np.float32)
    vectors = np.asarray(matrix @ (item_vectors * idf[:, None]), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def user_vectors(
    embeddings: UserItemVectors, processed: Processed, cfg: ClusterConfig
) -> np.ndarray:
    """The vectors KMeans groups, as `cluster.representation` says."""
    if cfg.representation == "recent":
        return embeddings.users
    return taste_vectors(processed.train, embeddings.items, processed.users.height)


# --------------------------------------------------------------------------------------------
# KMeans and the choice of k
# --------------------------------------------------------------------------------------------
def _check_inputs(user_vectors: np.ndarray, item_vectors: np.ndarray, processed: Processed) -> None:
    for name, vectors, expected in (
        ("user", user_vectors, processed.users.height),
        ("item", item_vectors, processed.items.height),
    ):
        if vectors.ndim != 2 or vectors.shape[0] != expected:
            raise RecliError(
                f"{name} embeddings have shape {vectors.shape} but data/processed has {expected} "
                f"{name}s: run `dvc repro embed` so both come from the same preprocess run"
            )
        if not np.isfinite(vectors).all():
            raise RecliError(
                f"{name} embeddings contain NaN or infinite values: run `dvc repro -f embed`"
            )
    if user_vectors.shape[1] != item_vectors.shape[1]:
        raise RecliError(
            f"user embeddings have {user_vectors.shape[1]} dimensions but item embeddings "
            f"{item_vectors.shape[1]}: run `dvc repro -f embed` so both use one encoder"
        )


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
) -> tuple[np.ndarray, np.ndarray, float | None, dict[int, float | None]]:
    """Fit KMeans for every k; return (labels, centroids, silhouette, silhouette per k) of the best.

    The silhouette uses cosine distance because the vectors are compared by cosine everywhere
    else in the project; one sample and one distance matrix serve every k, so the scores are
    comparable and the matrix is computed once.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from sklearn.metrics.pairwise import cosine_distances

    sample = _silhouette_sample(len(vectors), seed)
    distances = cosine_distances(vectors[sample])
    best: tuple[np.ndarray, np.ndarray, float | None] | None = None
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
        if best is None or (score is not None and (best[2] is None or score > best[2])):
            best = (labels, model.cluster_centers_, score)
    assert best is not None  # ks is never empty
    return best[0], best[1], best[2], by_k


def _order_by_size(labels: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber clusters largest first (ties by KMeans id) so ids are stable and meaningful."""
    sizes = np.bincount(labels, minlength=len(centroids))
    order = np.lexsort((np.arange(len(sizes)), -sizes))
    new_id = np.empty_like(order)
    new_id[order] = np.arange(len(order))
    return new_id[labels], centroids[order]


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------
def run(
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    processed: Processed,
    cfg: ClusterConfig,
) -> Clustering:
    """Cluster the users with history, profile every cluster and measure the clustering."""
    _check_inputs(user_vectors, item_vectors, processed)
    user_vectors = np.asarray(user_vectors, dtype=np.float32)
    item_vectors = np.asarray(item_vectors, dtype=np.float32)

    has_history = np.any(user_vectors != 0, axis=1)
    clustered_users = np.flatnonzero(has_history)
    vectors = user_vectors[clustered_users]
    # Identical vectors (users with the same recent history) count once: KMeans cannot split them.
    n_distinct = len(np.unique(vectors, axis=0)) if len(vectors) else 0
    ks = _candidate_ks(cfg, n_distinct, len(user_vectors))

    labels, centroids, silhouette, by_k = _fit(vectors, ks, cfg.seed)
    labels, centroids = _order_by_size(labels, centroids.astype(np.float32))
    distance = np.linalg.norm(vectors - centroids[labels], axis=1).astype(np.float32)

    cluster_column = np.full(len(user_vectors), -1, dtype=np.int32)
    cluster_column[clustered_users] = labels
    distance_column = np.full(len(user_vectors), np.nan, dtype=np.float32)
    distance_column[clustered_users] = distance
    assignments = pl.DataFrame(
        {
            "user_idx": np.arange(len(user_vectors), dtype=np.int32),
            "cluster": cluster_column,
            "distance": distance_column,
        }
    ).with_columns(
        pl.when(pl.col("cluster") >= 0).then(pl.col("cluster")).alias("cluster"),
        pl.when(pl.col("cluster") >= 0).then(pl.col("distance")).alias("distance"),
    )

    profiles = cluster_profiles(labels, centroids, clustered_users, item_vectors, processed, cfg)
    sizes = np.array([profile["size"] for profile in profiles])
    members = pl.DataFrame({"user_idx": clustered_users, "cluster": labels})
    # The floor: the same profiles over the same cluster sizes, members drawn at random.
    shuffled = members.with_columns(
        pl.Series("cluster", np.random.default_rng(cfg.seed).permutation(labels))
    )
    user_shares = user_term_shares(processed.train, processed.items)
    phrases = {t["term"] for p in profiles for t in p["top_terms"] if t["kind"] == PHRASE}
    # The items' phrases, found once where a profile names any: agreement and coverage read them.
    carried_phrases = item_phrases(processed.items).item_terms() if phrases else None
    if carried_phrases is not None:  # measured on the users' phrases as genres on genres
        own = user_phrase_shares(processed.train, carried_phrases, phrases)
        user_shares = pl.concat([user_shares, own], how="vertical_relaxed")
    named = [_label_terms(profile) for profile in profiles]
    agreement = [
        label_agreement(processed.train, processed.items, assigned, profiles, user_shares)
        for assigned in (members, shuffled)
    ]
    metrics: dict[str, Any] = {
        "k": len(centroids),
        "silhouette": None if silhouette is None else round(silhouette, 4),
        "users": len(clustered_users),
        "users_without_history": len(user_vectors) - len(clustered_users),
        "size_min": int(sizes.min()),
        "size_median": float(np.median(sizes)),
        "size_max": int(sizes.max()),
        "largest_share": round(int(sizes.max()) / len(clustered_users), 4),
        "label_agreement": None if agreement[0] is None else round(agreement[0], 4),
        "label_agreement_random": None if agreement[1] is None else round(agreement[1], 4),
        # Labels read apart, and say what a group likes before when it watched.
        "labels_distinct": len({profile["label"] for profile in profiles}),
        "labels_with_an_era": sum(
            any(term.endswith(" films") for term in profile["label"].split(LABEL_SEPARATOR))
            for profile in profiles
        ),
        "labels_with_a_title": sum(" — " in profile["label"] for profile in profiles),
        "labels_distinct_share": round(len({p["label"] for p in profiles}) / len(profiles), 4),
        "label_terms_whole_words": whole_share([t["term"] for terms in named for t in terms]),
        "label_coverage": _label_coverage(processed, members, named, carried_phrases),
    }
    if cfg.k == "auto":
        metrics["k_range_searched"] = [ks[0], ks[-1]]
        metrics["silhouette_by_k"] = {
            str(k): None if score is None else round(score, 4) for k, score in by_k.items()
        }
    return Clustering(
        assignments=assignments,
        centroids=centroids,
        profiles=profiles,
        metrics=metrics,
        over_represented=over_represented_terms(
            processed.history_served, processed.items, cfg.top_terms
        ),
    )


def _label_terms(profile: dict[str, Any]) -> list[dict[str, Any]]:
    """The terms a cluster's label names: the leading `top_terms` its label reads, in order
    (none for a label that names an exemplar or the cluster)."""
    text = re.sub(r" \(cluster \d+\)$", "", profile["label"]).split(" — ")[0]
    parts = [part.lstrip("#").lower() for part in text.split(LABEL_SEPARATOR)]
    named = []
    for term, part in zip(profile["top_terms"], parts, strict=False):
        if str(term["term"]).lower() != part:
            break
        named.append(term)
    return named


def _label_coverage(
    processed: Processed,
    members: pl.DataFrame,
    named: list[list[dict[str, Any]]],
    carried_phrases: pl.DataFrame | None,
) -> float | None:
    """Over clusters, the mean share of their members' training events on an item that carries
    one of the cluster's label terms (a cluster whose label names no term: 0). Events, not
    distinct items: a cluster's items are what its members did, as its terms' shares count.
    `carried_phrases`: the items' phrases (`Phrases.item_terms`), None where no label has any."""
    wanted = pl.DataFrame(
        [
            {"cluster": c, "kind": t["kind"], "term": t["term"]}
            for c, terms in enumerate(named)
            for t in terms
        ],
        schema={"cluster": pl.Int32, "kind": pl.String, "term": pl.String},
    )
    if not named:
        return None
    carried = item_terms(processed.items).select("item_idx", "kind", "term")
    if carried_phrases is not None:
        carried = pl.concat([carried, carried_phrases])
    hits = carried.join(wanted, on=["kind", "term"]).select("cluster", "item_idx").unique()
    events = user_events(processed.train).join(
        members.select(pl.col("user_idx").cast(pl.Int32), pl.col("cluster").cast(pl.Int32)),
        on="user_idx",
    )
    hits = hits.with_columns(pl.lit(True).alias("hit"))
    shares = (
        events.join(hits, on=["cluster", "item_idx"], how="left")
        .group_by("cluster")
        .agg(pl.col("hit").fill_null(False).mean())
    )
    by_cluster = dict(shares.iter_rows())
    return round(float(np.mean([by_cluster.get(c, 0.0) for c in range(len(named))])), 4)


@writes("cluster")
def main(layout: Layout) -> None:
    """Read, cluster, write, print a summary (the layout is staged for this stage)."""
    params = load_params(layout.params)
    processed = read_processed(layout)
    embeddings = read_embeddings(params.cluster.encoder, layout)
    vectors = user_vectors(embeddings, processed, params.cluster)
    clustering = run(vectors, embeddings.items, processed, params.cluster)
    write_clustering(clustering, params.cluster.model_dump(mode="json"), layout)
    metrics = clustering.metrics
    chosen = " (auto)" if params.cluster.k == "auto" else ""
    print(
        f"cluster: k={metrics['k']}{chosen}, silhouette {metrics['silhouette']}, sizes "
        f"{metrics['size_min']}-{metrics['size_max']} over {metrics['users']} users, label "
        f"agreement {metrics['label_agreement']} (random members "
        f"{metrics['label_agreement_random']})"
    )
    for profile in clustering.profiles:
        print(f"  {profile['cluster']:>2}  {profile['size']:>5}  {profile['label']}")


if __name__ == "__main__":
    io.run_stage(main)
