"""What a group of users over-represents, and how it is put into words.

The `cluster` stage groups users; this module describes any grouping of them from what they did
in training, in the terms of `pipeline.models.terms` (genres, tags, release eras, measured by
lift). A cluster's terms are ranked by share × ln(lift), the part each term plays in how the
cluster differs (`label_weight`), because that ranking also names the cluster. Exemplars are the
liked items that set a cluster apart; a label joins the terms that carry most of a cluster's
activity, unique across clusters (`label_clusters`); a cluster no such term names is named by
phrases of its items' text (`pipeline.models.phrases`). A profile's `top_terms` start with
exactly the label's terms, so a label never names what the terms shown beside it do not lead
with. `cluster_profiles` assembles one JSON-ready profile per cluster, and `label_agreement`
measures how well the profiles describe their members.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from pipeline.core.sections import ClusterConfig
from pipeline.data.artifacts import Processed
from pipeline.models.phrases import bare_labels, group_weights, phrase_label
from pipeline.models.terms import ERA_TERMS, ranked_terms, user_events, user_term_shares
from recli.contract import term_text

# An exemplar (or top item) must be liked by at least 3 of the cluster's users and by at least 2%
# of them: an item one user happened to watch can sit near the centroid by accident, but it does
# not show what the group has in common. 3 keeps small clusters usable; 2% scales with big ones.
MIN_ITEM_USERS = 3
MIN_ITEM_USER_SHARE = 0.02

LABEL_TERMS = 3
"""Genres/tags joined into a cluster label; more stops being short."""
MIN_LABEL_LIFT = 1.1
"""A term joins a label only at this lift or more: `recli` shows a group's terms only from this
lift on, and a label names nothing the screen beside it leaves out."""
EXTRA_LABEL_TERMS = 2
"""Terms a label may gain to tell it apart from clusters whose terms are the same."""
LABEL_POOL = 12
"""Genres/tags per cluster among which the term that sets a clashing cluster apart is sought."""
LABEL_SEPARATOR = " · "


# --------------------------------------------------------------------------------------------
# Terms: what each cluster over-represents
# --------------------------------------------------------------------------------------------
def _top_terms(
    train: pl.DataFrame, clustered: pl.DataFrame, items: pl.DataFrame, keep: int
) -> dict[int, list[dict[str, Any]]]:
    """Supported terms each cluster over-represents, highest `label_weight` first."""
    result: dict[int, list[dict[str, Any]]] = {}
    for row in ranked_terms(train, clustered, items, keep, by_weight=True).iter_rows(named=True):
        result.setdefault(row.pop("cluster"), []).append(row)
    return result


# --------------------------------------------------------------------------------------------
# Items: exemplars and the most over-represented items
# --------------------------------------------------------------------------------------------
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
        # Sorted: group_by gives rows in any order, and the float products below must not
        # depend on it (a last-bit difference would reorder exact ties between runs).
        supported = liked.filter(
            (pl.col("cluster") == cluster) & (pl.col("users") >= _min_item_users(size))
        ).sort("item_idx")
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


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------
def _titled(examples: list[dict[str, Any]], label: str) -> bool:
    """Whether the first exemplar's title can tell this label apart (it is not already in it)."""
    return bool(examples) and examples[0]["title"] not in label


def label_weight(term: dict[str, Any]) -> float:
    """share × ln(lift): the term's part in how far the cluster's terms are from everyone's.

    Lift alone favours rare terms (a genre on 6% of the cluster's events at ×2 outranks one on
    40% at ×1.5); a label should name what most of the group's activity is about, and the terms
    shown beside it are ranked by the same measure.
    """
    return term["share"] * math.log(term["lift"])


def _contrast(term: dict[str, Any], others: list[list[dict[str, Any]]]) -> float:
    """share × ln of the smallest ratio of this cluster's lift for the term to another clashing
    cluster's (1 where the other does not over-represent it): how far the term sets the cluster
    apart from every cluster it is confused with."""
    key = (term["kind"], term["term"])
    ratios = [
        term["lift"] / next((t["lift"] for t in pool if (t["kind"], t["term"]) == key), 1.0)
        for pool in others
    ]
    return term["share"] * math.log(min(ratios)) if ratios else 0.0


def _setting_apart(
    pool: list[dict[str, Any]], chosen: list[dict[str, Any]], others: list[list[dict[str, Any]]]
) -> dict[str, Any] | None:
    """The term of `pool` not in `chosen` that best sets the cluster apart from `others`: a
    genre or tag if any does, an era only when none does; None when nothing does."""
    named = {(t["kind"], t["term"]) for t in chosen}
    left = [t for t in pool if (t["kind"], t["term"]) not in named]
    for kinds in (lambda kind: kind != "era", lambda kind: kind == "era"):
        scored = [(t, _contrast(t, others)) for t in left if kinds(t["kind"])]
        scored = [(t, value) for t, value in scored if value > 0]
        if scored:
            return max(scored, key=lambda pair: pair[1])[0]
    return None


def label_clusters(
    top_terms: list[list[dict[str, Any]]],
    exemplars: list[list[dict[str, Any]]],
    pools: list[list[dict[str, Any]]] | None = None,
) -> list[str]:
    """Short labels from the top terms, distinct across clusters: `top_terms[c]` and
    `exemplars[c]` are cluster c's, as in its profile (a term needs `term`, `kind`, `share` and
    `lift`; an exemplar its `title`); `pools[c]` (default: `top_terms[c]`) are more of the
    terms it over-represents, to tell clashing clusters apart.

    Up to LABEL_TERMS genres/tags of lift ≥ MIN_LABEL_LIFT, those of highest `label_weight` (the
    ones that carry most of the cluster's activity); an era only when there is nothing else, or
    when it is what sets the cluster apart. Clusters whose labels name the same terms (in any
    order) each get the term from their pool that best sets them apart from the others
    (`_setting_apart`), up to EXTRA_LABEL_TERMS times. A cluster with no term of lift ≥
    MIN_LABEL_LIFT is named after its first exemplar. A clash nothing resolves gets every
    member's first exemplar title appended (not only the later ones, so none reads as the
    "real" owner), and anything still equal its cluster id.
    """
    return _labelled(top_terms, exemplars, pools)[0]


def _nameable(terms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The terms a label may name: only those the screen shows as over-represented, since a
    label naming a term missing from the list beside it reads as a mistake."""
    return [t for t in terms if t["lift"] >= MIN_LABEL_LIFT]


def _labelled(
    top_terms: list[list[dict[str, Any]]],
    exemplars: list[list[dict[str, Any]]],
    pools: list[list[dict[str, Any]]] | None = None,
) -> tuple[list[str], list[list[dict[str, Any]]]]:
    """`label_clusters`' labels, and per cluster the terms its label names, in the label's
    order (what the profile's `top_terms` must start with)."""
    pools = [_nameable(pool) for pool in (top_terms if pools is None else pools)]
    chosen: list[list[dict[str, Any]]] = []
    for terms in top_terms:
        by_weight = sorted(_nameable(terms), key=label_weight, reverse=True)
        tastes = [term for term in by_weight if term["kind"] != "era"][:LABEL_TERMS]
        chosen.append(tastes or [term for term in by_weight if term["kind"] == "era"][:1])
    for _ in range(EXTRA_LABEL_TERMS):
        clashes = _clashes(chosen)
        if not clashes:
            break
        extended = [list(terms) for terms in chosen]
        for members in clashes:
            for cluster in members:
                others = [pools[other] for other in members if other != cluster]
                extra = _setting_apart(pools[cluster], chosen[cluster], others)
                if extra is not None:
                    extended[cluster].append(extra)
        if extended == chosen:
            break
        chosen = extended
    # What they like first (genres/tags), then when (an era).
    named = [
        [t for t in terms if t["kind"] != "era"] + [t for t in terms if t["kind"] == "era"]
        for terms in chosen
    ]
    labels = []
    for cluster, (terms, examples) in enumerate(zip(named, exemplars, strict=True)):
        if terms:
            labels.append(LABEL_SEPARATOR.join(term_text(t) for t in terms))
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
    labels = [
        f"{label} (cluster {c})" if label in clashing else label for c, label in enumerate(labels)
    ]
    return labels, named


def _shown_terms(
    named: list[dict[str, Any]], pool: list[dict[str, Any]], keep: int
) -> list[dict[str, Any]]:
    """A profile's `top_terms`: the label's own terms in the label's order, then the rest of
    the pool by `label_weight`, up to `keep` genres/tags and ERA_TERMS eras in all."""
    in_label = {(t["kind"], t["term"]) for t in named}
    rest = [t for t in pool if (t["kind"], t["term"]) not in in_label]
    tastes_left = max(keep - sum(t["kind"] != "era" for t in named), 0)
    eras_left = max(ERA_TERMS - sum(t["kind"] == "era" for t in named), 0)
    return (
        named
        + [t for t in rest if t["kind"] != "era"][:tastes_left]
        + [t for t in rest if t["kind"] == "era"][:eras_left]
    )


def _clashes(chosen: list[list[dict[str, Any]]]) -> list[list[int]]:
    """Groups of clusters whose chosen terms are the same set (clusters without terms aside)."""
    by_terms: dict[frozenset[tuple[str, str]], list[int]] = {}
    for cluster, terms in enumerate(chosen):
        if terms:
            by_terms.setdefault(frozenset((t["kind"], t["term"]) for t in terms), []).append(
                cluster
            )
    return [members for members in by_terms.values() if len(members) > 1]


# --------------------------------------------------------------------------------------------
# Profiles, and how well they describe the members
# --------------------------------------------------------------------------------------------
def cluster_profiles(
    labels: np.ndarray,
    centroids: np.ndarray,
    clustered_users: np.ndarray,
    item_vectors: np.ndarray,
    processed: Processed,
    cfg: ClusterConfig,
) -> list[dict[str, Any]]:
    """One JSON-ready profile per cluster, ordered by cluster id: its label, size and share of
    the clustered users, top terms, exemplars and top items (`cfg.top_terms`, `cfg.exemplars`).

    `top_terms` start with the label's terms in the label's order, the rest follow by
    `label_weight`: the first terms `recli clusters` shows beside a label are the ones it names.

    `labels[i]` is the cluster of user `clustered_users[i]`; `centroids` and `item_vectors` are
    in one space (exemplars are the items along each centroid's offset from everyone's mean).
    """
    k = len(centroids)
    sizes = np.bincount(labels, minlength=k)
    train = user_events(processed.train)
    user_cluster = pl.DataFrame(
        {"user_idx": clustered_users.astype(np.int32), "cluster": labels.astype(np.int32)}
    )
    clustered = train.join(user_cluster, on="user_idx")
    pool = _top_terms(train, clustered, processed.items, max(cfg.top_terms, LABEL_POOL))
    exemplars, top_items = _items_per_cluster(
        train, clustered, processed.items, item_vectors, centroids, sizes, cfg.exemplars
    )
    pools = [pool.get(c, []) for c in range(k)]
    # The label is chosen among the `top_terms` genres/tags of highest weight, then its eras (at
    # most ERA_TERMS): what the group likes reads before when it watched.
    candidates = [
        [t for t in terms if t["kind"] != "era"][: cfg.top_terms]
        + [t for t in terms if t["kind"] == "era"]
        for terms in pools
    ]
    exemplar_list = [exemplars.get(c, []) for c in range(k)]
    names, named = _labelled(candidates, exemplar_list, pools)
    if not all(named):
        _name_by_phrases(clustered, processed.items, item_vectors, names, named, pools)
    # One ranking on screen and in the label: the terms shown beside a label lead with its own.
    terms_list = [_shown_terms(named[c], pools[c], cfg.top_terms) for c in range(k)]
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


def _name_by_phrases(
    clustered: pl.DataFrame,
    items: pl.DataFrame,
    item_vectors: np.ndarray,
    names: list[str],
    named: list[list[dict[str, Any]]],
    pools: list[list[dict[str, Any]]],
) -> None:
    """Clusters no genre, tag or era names get, in place, phrases of their items' text as label,
    label terms and pool (so the terms shown beside the label lead with them); a clash nothing
    resolves gets the cluster id."""
    k = len(names)
    weights = group_weights(clustered["cluster"], clustered["item_idx"], k, len(items))
    bare = [c for c in range(k) if not named[c]]
    for c, (terms, ranked) in bare_labels(items, weights, item_vectors, bare).items():
        names[c], named[c], pools[c] = phrase_label(terms, LABEL_SEPARATOR), terms, ranked
    for c in bare:
        if names.count(names[c]) > 1:
            names[c] = f"{names[c]} (cluster {c})"


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
    no cluster has a term. `user_shares` (`user_term_shares(train, items)`) can be passed in
    when several assignments are scored on the same data.
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
        user_shares = user_term_shares(train, items)
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
