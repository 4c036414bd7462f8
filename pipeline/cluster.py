"""Stage `cluster`: group users by their interest embeddings and describe each group readably.

KMeans (scikit-learn) runs on unit user vectors built from `embed`'s outputs. By default
(`cluster.representation: taste`) a user is the IDF-weighted mean of the text vectors of every
item in their training history: what they like, all of it. `recent` uses the embed stage's user
vector instead (the encoded titles of their last few items, built to predict the next one), which
groups users as much by when they were active as by taste. `cluster.k: auto` tries every k in
`cluster.k_range` and keeps the best cosine silhouette. Each cluster is then profiled from what
its users did in training: the genres and tags it over-represents (lift against the whole
population), recognisable exemplar items (the liked items furthest along the direction from
everyone's mean to the cluster's centroid), and a unique short label. How well
the profiles describe their members is measured (`label_agreement`) against random membership.

Outputs (under `data/cluster/`): `assignments.parquet` (`user_idx, cluster, distance`),
`centroids.npy` (float32 [k, d]), `profiles.json` (one profile per cluster, by cluster id),
`interests.parquet` (each user's own over-represented terms, the same lift per user) and
`config.json` (the effective config); `metrics/cluster.json` and the plot data
`metrics/plots/cluster_sizes.json`.

Cluster ids are ordered by size, largest first, so cluster 0 is always the biggest group. Users
without history (an all-zero vector) carry no interest signal: they are left out of the fit and
their `cluster` and `distance` are null.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline import io
from pipeline.config import ClusterConfig, load_params
from pipeline.interactions import UserItemVectors, interaction_matrix
from pipeline.preprocess import Processed
from recli.errors import RecliError

OUTPUT_DIR = Path("data/cluster")
METRICS_FILE = Path("metrics/cluster.json")
SIZES_PLOT_FILE = Path("metrics/plots/cluster_sizes.json")

N_INIT = 10
"""KMeans restarts per k; the lowest-inertia run is kept (10 is scikit-learn's classic default)."""
SILHOUETTE_SAMPLE = 5_000
"""Silhouette is O(n²) in time and memory: score a seeded sample of at most this many users."""

# A term must be carried by at least 5% of the cluster's interactions and by 5 of them: lift is a
# ratio, and a tag seen twice in a cluster but almost never elsewhere would otherwise top every
# list while describing nobody's taste.
MIN_TERM_SHARE = 0.05
MIN_TERM_INTERACTIONS = 5
MIN_USER_TERM_INTERACTIONS = 3

# An exemplar (or top item) must be liked by at least 3 of the cluster's users and by at least 2%
# of them: an item one user happened to watch can sit near the centroid by accident, but it does
# not show what the group has in common. 3 keeps small clusters usable; 2% scales with big ones.
MIN_ITEM_USERS = 3
MIN_ITEM_USER_SHARE = 0.02

LABEL_TERMS = 3
"""Terms joined into a cluster label; more stops being short."""
LABEL_SEPARATOR = " · "
TAG_PREFIX = "#"
ERA_EXACT_FROM = 1990
ERA_TERMS = 2
"""At most this many era terms per cluster profile (and one in its label)."""
"""From this year on, an item's era term is its exact release year; before, its decade."""
"""Tags are shown as `#dark comedy` so they cannot be mistaken for a genre of the same name."""


@dataclass(frozen=True)
class Clustering:
    """Everything the stage writes."""

    assignments: pl.DataFrame
    """`user_idx` Int32, `cluster` Int32, `distance` Float32 (Euclidean distance to the centroid,
    the quantity KMeans minimises); null cluster and distance for users without history."""
    centroids: np.ndarray
    """float32 [k, d]: KMeans centroids (means of unit vectors, so their norm is below 1)."""
    profiles: list[dict[str, Any]]
    """One JSON-ready profile per cluster, ordered by cluster id."""
    metrics: dict[str, Any]
    interests: pl.DataFrame
    """Each user's own over-represented terms (`user_interests`), for every user with history."""


# --------------------------------------------------------------------------------------------
# What a user's interest vector is
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
# Profiles
# --------------------------------------------------------------------------------------------
def _era(year: pl.Expr) -> pl.Expr:
    """ "1997 films" for recent years, "1970s films" before 1990.

    Users described by their recent history group as much by *when* they watch (the new releases
    of their day) as by genre; an era term lets a cluster label say so. Exact years only where
    the catalogue is dense enough for one year to carry support.
    """
    decade = (year // 10 * 10).cast(pl.String) + pl.lit("s films")
    exact = year.cast(pl.String) + pl.lit(" films")
    return pl.when(year >= ERA_EXACT_FROM).then(exact).otherwise(decade)


def _item_terms(items: pl.DataFrame) -> pl.DataFrame:
    """One row per (item_idx, kind, term) for the items' genres, tags and release era."""
    parts = [
        items.select(pl.col("item_idx").cast(pl.Int32), pl.col(column).alias("term"))
        .explode("term")
        .with_columns(pl.col("term").str.strip_chars(), pl.lit(kind).alias("kind"))
        for column, kind in (("genres", "genre"), ("tags", "tag"))
        if column in items.columns
    ]
    if "year" in items.columns:
        parts.append(
            items.filter(pl.col("year").is_not_null()).select(
                pl.col("item_idx").cast(pl.Int32),
                _era(pl.col("year")).alias("term"),
                pl.lit("era").alias("kind"),
            )
        )
    if not parts:
        return pl.DataFrame(schema={"item_idx": pl.Int32, "term": pl.String, "kind": pl.String})
    return (
        pl.concat(parts)
        .filter(pl.col("term").is_not_null() & (pl.col("term") != ""))
        # A tag repeated on one item is still one item carrying it.
        .unique()
    )


def _term_shares(grouped: pl.DataFrame, items: pl.DataFrame, by: str) -> pl.DataFrame:
    """Per group (`by`) and term: the group's `interactions` carrying it, its `total`
    interactions, and the `share` of the one in the other."""
    totals = grouped.group_by(by).agg(pl.len().alias("total"))
    return (
        grouped.join(_item_terms(items), on="item_idx")
        .group_by(by, "kind", "term")
        .agg(pl.len().alias("interactions"))
        .join(totals, on=by)
        .with_columns((pl.col("interactions") / pl.col("total")).alias("share"))
    )


def _user_events(train: pl.DataFrame) -> pl.DataFrame:
    return train.select(pl.col("user_idx").cast(pl.Int32), pl.col("item_idx").cast(pl.Int32))


def _ranked_terms(
    train: pl.DataFrame,
    grouped: pl.DataFrame,
    items: pl.DataFrame,
    keep: int,
    by: str = "cluster",
    min_interactions: int = MIN_TERM_INTERACTIONS,
) -> pl.DataFrame:
    """Supported terms each group (`by`: a cluster, or a user) over-represents, highest lift
    first: `keep` genres/tags and at most ERA_TERMS eras per group."""
    overall = _term_shares(train.with_columns(pl.lit(0).alias("everyone")), items, "everyone")
    return (
        _term_shares(grouped, items, by)
        .join(
            overall.select("kind", "term", pl.col("share").alias("share_overall")),
            on=["kind", "term"],
        )
        .with_columns((pl.col("share") / pl.col("share_overall")).alias("lift"))
        .filter(
            (pl.col("share") >= MIN_TERM_SHARE)
            & (pl.col("interactions") >= min_interactions)
            # Below 1 the term is under-represented: it does not describe the cluster.
            & (pl.col("lift") > 1.0)
        )
        .with_columns((pl.col("kind") == "era").alias("is_era"))
        .sort(
            [by, "lift", "share", "kind", "term"],
            descending=[False, True, True, False, False],
        )
        # Eras have high lifts (release years cluster sharply) and would crowd out genres and
        # tags, which say more about taste: `keep` of those, and at most ERA_TERMS eras.
        .group_by(by, "is_era", maintain_order=True)
        .head(keep)
        .filter(~pl.col("is_era") | (pl.int_range(pl.len()).over(by, "is_era") < ERA_TERMS))
        .sort(
            [by, "lift", "share", "kind", "term"],
            descending=[False, True, True, False, False],
        )
        .select(
            by,
            "term",
            "kind",
            pl.col("lift").round(4),
            pl.col("share").round(4),
            pl.col("share_overall").round(4),
            pl.col("interactions").cast(pl.Int32),
        )
    )


def _top_terms(
    train: pl.DataFrame, clustered: pl.DataFrame, items: pl.DataFrame, keep: int
) -> dict[int, list[dict[str, Any]]]:
    """Supported terms each cluster over-represents, highest lift first."""
    result: dict[int, list[dict[str, Any]]] = {}
    for row in _ranked_terms(train, clustered, items, keep).iter_rows(named=True):
        result.setdefault(row.pop("cluster"), []).append(row)
    return result


def user_interests(train: pl.DataFrame, items: pl.DataFrame, keep: int) -> pl.DataFrame:
    """Each user's own profile: the genres, tags and eras their training history
    over-represents against everyone's, highest lift first, as `user_idx, term, kind, lift,
    share, share_overall, interactions` rows.

    The same lift as the cluster profiles, with a lower support floor (MIN_USER_TERM_INTERACTIONS)
    since one user has far fewer events than a cluster.
    """
    events = _user_events(train)
    return _ranked_terms(
        events, events, items, keep, by="user_idx", min_interactions=MIN_USER_TERM_INTERACTIONS
    )


def _min_item_users(size: int) -> int:
    # Never above the cluster's size: a 2-user cluster can still show what both liked.
    return min(size, max(MIN_ITEM_USERS, math.ceil(MIN_ITEM_USER_SHARE * size)))


def _item_entry(items: pl.DataFrame, item: int) -> dict[str, Any]:
    return {
        "item_idx": item,
        "item_id": str(items["item_id"][item]),
        "title": str(items["title"][item]),
    }


def _items_per_cluster(
    train: pl.DataFrame,
    clustered: pl.DataFrame,
    items: pl.DataFrame,
    item_vectors: np.ndarray,
    centroids: np.ndarray,
    sizes: np.ndarray,
    keep: int,
) -> tuple[dict[int, list[dict[str, Any]]], dict[int, list[dict[str, Any]]]]:
    """(exemplars, top items) per cluster, both among items with enough support in the cluster."""
    # `items` rows are indexed by item_idx (preprocess guarantees contiguous, sorted ids).
    items = items.sort("item_idx")
    train_users = max(train["user_idx"].n_unique(), 1)
    overall = train.group_by("item_idx").agg(pl.col("user_idx").n_unique().alias("overall_users"))
    liked = (
        clustered.group_by("cluster", "item_idx")
        .agg(pl.col("user_idx").n_unique().alias("users"))
        .join(overall, on="item_idx")
    )
    # What sets a cluster apart is where its centroid lies relative to everyone's mean (the
    # size-weighted mean of the centroids): every centroid of averaged taste vectors shares a
    # large common part, and the items nearest to it are the blandest, not the most typical.
    population = (sizes[:, None] * centroids).sum(axis=0) / max(int(sizes.sum()), 1)
    offsets = centroids - population
    norms = np.linalg.norm(offsets, axis=1, keepdims=True)
    directions = offsets / np.where(norms > 0, norms, 1.0)

    exemplars: dict[int, list[dict[str, Any]]] = {}
    top_items: dict[int, list[dict[str, Any]]] = {}
    for cluster, size in enumerate(sizes.tolist()):
        if size == 0:
            continue
        supported = liked.filter(
            (pl.col("cluster") == cluster) & (pl.col("users") >= _min_item_users(size))
        )
        if supported.is_empty():
            continue
        item_idx = supported["item_idx"].to_numpy()
        users = supported["users"].to_numpy()
        similarity = item_vectors[item_idx] @ directions[cluster]
        # Ties (equal similarity) go to the item more of the cluster liked, then the lower id.
        nearest = _distinct_titles(items, item_idx, np.lexsort((item_idx, -users, -similarity)))
        exemplars[cluster] = [
            {
                **_item_entry(items, int(item_idx[i])),
                "similarity": round(float(similarity[i]), 4),
                "users": int(users[i]),
            }
            for i in nearest[:keep]
        ]
        lift = (users / size) / (supported["overall_users"].to_numpy() / train_users)
        strongest = _distinct_titles(items, item_idx, np.lexsort((item_idx, -users, -lift)))
        top_items[cluster] = [
            {
                **_item_entry(items, int(item_idx[i])),
                "lift": round(float(lift[i]), 4),
                "users": int(users[i]),
            }
            for i in strongest[:keep]
        ]
    return exemplars, top_items


def _distinct_titles(items: pl.DataFrame, item_idx: np.ndarray, order: np.ndarray) -> list[int]:
    """`order` without later items whose title an earlier one already shows (catalogues such as
    MovieLens-100K list a few films twice under two ids)."""
    seen: set[str] = set()
    kept = []
    for position in order.tolist():
        title = str(items["title"][int(item_idx[position])])
        if title not in seen:
            seen.add(title)
            kept.append(position)
    return kept


def _titled(examples: list[dict[str, Any]], label: str) -> bool:
    """Whether the first exemplar's title can tell this label apart (it is not already in it)."""
    return bool(examples) and examples[0]["title"] not in label


def _term_text(term: dict[str, Any]) -> str:
    return f"{TAG_PREFIX}{term['term']}" if term["kind"] == "tag" else term["term"]


def _label_weight(term: dict[str, Any]) -> float:
    """share × ln(lift): the term's part in how far the cluster's terms are from everyone's.

    Lift alone favours rare terms (a genre on 6% of the cluster's events at ×2 outranks one on
    40% at ×1.5); a label should name what most of the group's activity is about.
    """
    return term["share"] * math.log(term["lift"])


def _labels(
    top_terms: list[list[dict[str, Any]]], exemplars: list[list[dict[str, Any]]]
) -> list[str]:
    """Short labels from the top terms, made unique across clusters.

    Every cluster of a clashing group gets its first exemplar's title appended (not only the later
    ones, so none of them reads as the "real" owner of the label); anything still equal gets its
    cluster id.
    """
    labels = []
    for cluster, (terms, examples) in enumerate(zip(top_terms, exemplars, strict=True)):
        if terms:
            # What they like first (genres/tags), then when (at most one era); of the terms the
            # cluster over-represents, those that carry the most of its activity.
            by_weight = sorted(terms, key=_label_weight, reverse=True)
            eras = [term for term in by_weight if term["kind"] == "era"][:1]
            tastes = [term for term in by_weight if term["kind"] != "era"]
            tastes = tastes[: LABEL_TERMS - len(eras)]
            chosen = tastes + eras
            labels.append(LABEL_SEPARATOR.join(_term_text(t) for t in chosen))
        elif examples:
            labels.append(f"Like {examples[0]['title']}")
        else:
            labels.append(f"Cluster {cluster}")
    clashing = {label for label in labels if labels.count(label) > 1}
    labels = [
        f"{label} — {exemplars[c][0]['title']}"
        if label in clashing and _titled(exemplars[c], label)
        else label
        for c, label in enumerate(labels)
    ]
    clashing = {label for label in labels if labels.count(label) > 1}
    return [
        f"{label} (cluster {c})" if label in clashing else label for c, label in enumerate(labels)
    ]


def _profiles(
    labels: np.ndarray,
    centroids: np.ndarray,
    clustered_users: np.ndarray,
    item_vectors: np.ndarray,
    processed: Processed,
    cfg: ClusterConfig,
) -> list[dict[str, Any]]:
    k = len(centroids)
    sizes = np.bincount(labels, minlength=k)
    train = processed.train.select(
        pl.col("user_idx").cast(pl.Int32), pl.col("item_idx").cast(pl.Int32)
    )
    user_cluster = pl.DataFrame(
        {"user_idx": clustered_users.astype(np.int32), "cluster": labels.astype(np.int32)}
    )
    clustered = train.join(user_cluster, on="user_idx")
    terms = _top_terms(train, clustered, processed.items, cfg.top_terms)
    exemplars, top_items = _items_per_cluster(
        train, clustered, processed.items, item_vectors, centroids, sizes, cfg.exemplars
    )
    terms_list = [terms.get(c, []) for c in range(k)]
    exemplar_list = [exemplars.get(c, []) for c in range(k)]
    names = _labels(terms_list, exemplar_list)
    total = max(int(sizes.sum()), 1)
    return [
        {
            "cluster": c,
            "label": names[c],
            "size": int(sizes[c]),
            "share": round(int(sizes[c]) / total, 4),
            "top_terms": terms_list[c],
            "exemplars": exemplar_list[c],
            "top_items": top_items.get(c, []),
        }
        for c in range(k)
    ]


def label_agreement(
    train: pl.DataFrame,
    items: pl.DataFrame,
    user_cluster: pl.DataFrame,
    profiles: list[dict[str, Any]],
    user_shares: pl.DataFrame | None = None,
) -> float | None:
    """How well the profiles describe their members: over users, the mean share of their
    cluster's top terms that the user's own training history over-represents (the user's share
    of interactions carrying the term above the population's).

    1.0: every member leans towards every term their group is labelled with; a clustering that
    ignored taste would score about what a random reassignment of the members scores. None when
    no cluster has a term. `user_shares` (`_term_shares` of the users' training events) can be
    passed in when several assignments are scored on the same data.
    """
    cluster_terms = pl.DataFrame(
        [
            {
                "cluster": p["cluster"],
                "kind": t["kind"],
                "term": t["term"],
                "share_overall": t["share_overall"],
            }
            for p in profiles
            for t in p["top_terms"]
        ],
        schema={
            "cluster": pl.Int32,
            "kind": pl.String,
            "term": pl.String,
            "share_overall": pl.Float64,
        },
    )
    if cluster_terms.is_empty():
        return None
    if user_shares is None:
        user_shares = _term_shares(_user_events(train), items, "user_idx")
    leans = (
        user_cluster.select(pl.col("user_idx").cast(pl.Int32), pl.col("cluster").cast(pl.Int32))
        .join(cluster_terms, on="cluster")
        # A user none of whose events carry a term has a share of 0 for it.
        .join(
            user_shares.select("user_idx", "kind", "term", "share"),
            on=["user_idx", "kind", "term"],
            how="left",
        )
        .with_columns((pl.col("share").fill_null(0.0) > pl.col("share_overall")).alias("leans"))
        .group_by("user_idx")
        .agg(pl.col("leans").mean())
    )
    return float(leans["leans"].mean())


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

    profiles = _profiles(labels, centroids, clustered_users, item_vectors, processed, cfg)
    sizes = np.array([profile["size"] for profile in profiles])
    members = pl.DataFrame({"user_idx": clustered_users, "cluster": labels})
    # The floor: the same profiles over the same cluster sizes, members drawn at random.
    shuffled = members.with_columns(
        pl.Series("cluster", np.random.default_rng(cfg.seed).permutation(labels))
    )
    user_shares = _term_shares(_user_events(processed.train), processed.items, "user_idx")
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
        interests=user_interests(processed.train, processed.items, cfg.top_terms),
    )


def write(
    clustering: Clustering,
    cfg: ClusterConfig,
    output_dir: Path = OUTPUT_DIR,
    metrics_file: Path = METRICS_FILE,
    sizes_plot_file: Path = SIZES_PLOT_FILE,
) -> None:
    io.write_parquet(output_dir / "assignments.parquet", clustering.assignments)
    io.write_parquet(output_dir / "interests.parquet", clustering.interests)
    io.write_npy(output_dir / "centroids.npy", clustering.centroids)
    io.write_json(output_dir / "profiles.json", clustering.profiles)
    io.write_json(output_dir / "config.json", cfg.model_dump(mode="json"))
    io.write_json(metrics_file, clustering.metrics)
    io.write_json(
        sizes_plot_file,
        [{"cluster": p["label"], "users": p["size"]} for p in clustering.profiles],
    )


def read(input_dir: Path = OUTPUT_DIR, metrics_file: Path = METRICS_FILE) -> Clustering:
    """Load the stage's outputs (for the CLI and notebooks)."""
    return Clustering(
        assignments=io.read_parquet(input_dir / "assignments.parquet", "cluster"),
        centroids=io.read_npy(input_dir / "centroids.npy", "cluster"),
        profiles=io.read_json(input_dir / "profiles.json", "cluster"),
        metrics=io.read_json(metrics_file, "cluster"),
        interests=io.read_parquet(input_dir / "interests.parquet", "cluster"),
    )


def main() -> None:
    from pipeline import embed, preprocess

    params = load_params()
    processed = preprocess.read()
    embeddings = embed.read(params.cluster.encoder)
    vectors = user_vectors(embeddings, processed, params.cluster)
    clustering = run(vectors, embeddings.items, processed, params.cluster)
    write(clustering, params.cluster)
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
