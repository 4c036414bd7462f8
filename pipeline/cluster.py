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

On the engine (`run_partitions`, what `main` runs) every user's vector, cluster, distance and
own terms are computed partition by partition (`pipeline.models.user_clusters`), locally or as
Ray tasks; KMeans is fitted in this process on a seeded sample of at most `cluster.fit_users`
users (every user when there are no more). The profiles and their measures are still computed
here from the training events and every user's cluster. `run` does the same in memory for
vectors already at hand; describing the groups is `pipeline.models.profiles`' job.

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
from dataclasses import dataclass
from pathlib import Path
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
    embedding_paths,
    read_embeddings,
    read_processed,
    write_clustering,
)
from pipeline.data.interactions import UserItemVectors
from pipeline.engine.partitions import by_user_folder, partition_files
from pipeline.engine.runner import Engine
from pipeline.models.phrases import PHRASE, item_phrases, user_phrase_shares, whole_share
from pipeline.models.profiles import LABEL_SEPARATOR, cluster_profiles, label_agreement
from pipeline.models.terms import (
    item_terms,
    over_represented_terms,
    overall_shares,
    served_counts,
    user_events,
    user_term_shares,
)
from pipeline.models.user_clusters import (
    ASSIGNMENTS,
    OVER_REPRESENTED,
    assign_partition,
    census_partition,
    concatenate,
    fit_groups,
    fit_sample,
    idf_items,
    order_by_size,
    sample_partition,
    taste_vectors,
)
from recli.errors import RecliError


# --------------------------------------------------------------------------------------------
# What a user's taste vector is
# --------------------------------------------------------------------------------------------
def user_vectors(
    embeddings: UserItemVectors, processed: Processed, cfg: ClusterConfig
) -> np.ndarray:
    """The vectors KMeans groups, as `cluster.representation` says."""
    if cfg.representation == "recent":
        return embeddings.users
    return taste_vectors(processed.train, embeddings.items, processed.users.height)


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
    model, silhouette, by_k, ks = fit_groups(vectors, len(user_vectors), cfg)
    new_id, order = order_by_size(np.bincount(model.labels_, minlength=model.n_clusters))
    labels, centroids = new_id[model.labels_], model.cluster_centers_.astype(np.float32)[order]
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
    fitted = Fitted(centroids, silhouette, by_k, ks)
    profiles, metrics = describe(labels, clustered_users, item_vectors, processed, cfg, fitted)
    return Clustering(
        assignments=assignments,
        centroids=centroids,
        profiles=profiles,
        metrics=metrics,
        over_represented=over_represented_terms(
            processed.history_served, processed.items, cfg.top_terms
        ),
    )


@dataclass(frozen=True)
class Fitted:
    """What the KMeans fit decided: the centroids (by size, largest first) and the k chosen."""

    centroids: np.ndarray
    silhouette: float | None
    by_k: dict[int, float | None]
    ks: list[int]


def describe(
    labels: np.ndarray,
    clustered_users: np.ndarray,
    item_vectors: np.ndarray,
    processed: Processed,
    cfg: ClusterConfig,
    fitted: Fitted,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every cluster's profile, and the stage's metrics: `labels[i]` is the cluster of user
    `clustered_users[i]` (in user order)."""
    centroids, silhouette, by_k, ks = fitted.centroids, fitted.silhouette, fitted.by_k, fitted.ks
    n_users = processed.users.height
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
        "users_without_history": n_users - len(clustered_users),
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
    return profiles, metrics


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


# --------------------------------------------------------------------------------------------
# The stage on the engine: the users partition by partition
# --------------------------------------------------------------------------------------------
def run_partitions(
    engine: Engine,
    layout: Layout,
    processed: Processed,
    item_vectors: np.ndarray,
    cfg: ClusterConfig,
    out: Path,
) -> Clustering:
    """`run`, with every user's vector, cluster and own terms computed partition by partition
    on `engine`; `assignments.parquet` and `over_represented.parquet` are written to `out` from
    the partitions' pieces (the returned `Clustering` leaves them empty). KMeans is fitted on
    a seeded sample of at most `cluster.fit_users` users (`user_clusters.fit_sample`): every
    user when there are no more, as `run` does."""
    item_vectors = np.asarray(item_vectors, dtype=np.float32)
    n_users, n_items = processed.users.height, processed.items.height
    files = partition_files(by_user_folder(layout))
    counts = engine.map(census_partition, [(path, n_items) for path in files])
    item_users, served = (sum(column) for column in zip(*counts, strict=True))
    source: np.ndarray | Path = idf_items(item_vectors, item_users, n_users)
    if cfg.representation == "recent":
        source = embedding_paths(layout, cfg.encoder)["users"].absolute()
        users = np.load(io.require(source, "embed"), mmap_mode="r", allow_pickle=False)
        _check_inputs(users, item_vectors, processed)
    sample = fit_sample(n_users, cfg.fit_users, cfg.seed)
    parts = engine.map(sample_partition, [(path, n_items, source, sample) for path in files])
    fit_users = np.concatenate([users for users, _ in parts])
    order = np.argsort(fit_users)
    vectors = np.concatenate([vectors for _, vectors in parts])[order]
    model, silhouette, by_k, ks = fit_groups(vectors, n_users, cfg)
    overall = overall_shares(served_counts(served), processed.items)
    fit = (fit_users[order], model.labels_)
    pieces = [
        (path, part, processed.items, source, model, fit, overall, cfg.top_terms, out)
        for part, path in enumerate(files)
    ]
    sizes = sum(engine.map(assign_partition, pieces))
    new_id, by_size = order_by_size(sizes)
    concatenate(out, ASSIGNMENTS, out / "assignments.parquet", ["user_idx"], new_id)
    concatenate(out, OVER_REPRESENTED, out / "over_represented.parquet", ["user_idx"])
    members = pl.scan_parquet(out / "assignments.parquet").drop_nulls("cluster")
    members = members.select("user_idx", "cluster").collect()
    centroids = model.cluster_centers_.astype(np.float32)[by_size]
    profiles, metrics = describe(
        members["cluster"].to_numpy(),
        members["user_idx"].to_numpy(),
        item_vectors,
        processed,
        cfg,
        Fitted(centroids, silhouette, by_k, ks),
    )
    return Clustering(
        assignments=pl.DataFrame(),
        centroids=centroids,
        profiles=profiles,
        metrics=metrics,
        over_represented=pl.DataFrame(),
    )


@writes("cluster")
def main(layout: Layout) -> None:
    """Read, cluster, write, print a summary (the layout is staged for this stage)."""
    params = load_params(layout.params)
    processed = read_processed(layout)
    items = read_embeddings(params.cluster.encoder, layout).items
    engine = Engine(params.engine)
    with engine.session():
        clustering = run_partitions(
            engine, layout, processed, items, params.cluster, layout.cluster
        )
    write_clustering(clustering, params.cluster.model_dump(mode="json"), layout, per_user=False)
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
