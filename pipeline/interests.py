"""Per-user interests: each user's own history, grouped in the item text space.

One vector per user averages a person who watches both children's animation and film noir into
neither. Here each user's items are grouped by Ward linkage on their unit text vectors and the
tree is cut at a distance (`InterestSettings.distance_threshold`), so a user has as many interests
as their history shows, at most `max_interests`; groups of fewer than `min_items` items join the
nearest larger one. Each interest has:

- its items (newest first) and the user's events on them;
- a weight: its share of the user's events, each event counted `0.5 ** (age / half_life)` with
  age its position from the user's latest event, so what the user does now counts most;
- a medoid: the member closest on average to the others, the item that stands for it;
- the terms its items over-represent against everyone's events (lift, as the cluster profiles
  rank them: `pipeline.profiles`), and, on data without genres, tags or years, the words of the
  items' titles and descriptions;
- a short label from those terms, where a release era leads only when no genre or tag is
  over-represented (era terms otherwise group users by *when* they watched);
- the global interest group nearest to it: the cluster whose members' events, averaged in the
  same item space, point closest to the interest's centroid.

Outputs under `data/interests/`: `user_interests.parquet` (one row per interest), `centroids.npy`
(the interests' unit centroids, same order), `config.json`; `metrics/interests.json`: how many
interests users have, and how well the labels describe their items (`label_agreement`: the mean
share of an interest's items that carry one of its label terms, next to the same share after
shuffling each user's items across their interests, the floor).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.cluster.hierarchy import fcluster, linkage

from pipeline import io
from pipeline.artifacts import (
    Layout,
    UserInterests,
    read_clustering,
    read_embeddings,
    read_processed,
    write_interests,
    writes,
)
from pipeline.config import InterestsConfig, load_params
from pipeline.profiles import (
    LABEL_SEPARATOR,
    MIN_USER_TERM_INTERACTIONS,
    _ranked_terms,
    item_terms,
)

KEY_STRIDE = 1 << 16
"""(user, interest) pairs are keyed `user * KEY_STRIDE + interest` for the term tables."""
LABEL_TERMS = 2
"""Terms joined into an interest's label."""
TERMS_KEPT = 5
"""Over-represented terms kept per interest."""
WORD_MIN_LENGTH = 4
STOP_WORDS = frozenset((
    "about", "after", "again", "against", "also", "among", "around", "away", "back", "been",
    "before", "being", "below", "between", "both", "came", "come", "could", "down", "during",
    "each", "even", "ever", "every", "from", "have", "having", "here", "into", "just", "like",
    "made", "make", "many", "more", "most", "much", "must", "never", "only", "other", "over",
    "same", "should", "some", "such", "than", "that", "their", "them", "then", "there", "these",
    "they", "this", "those", "through", "under", "until", "upon", "very", "were", "what", "when",
    "where", "which", "while", "will", "with", "within", "without", "would", "your",
))  # fmt: skip


@dataclass(frozen=True)
class InterestSettings:
    """How a user's history is cut into interests."""

    distance_threshold: float = 1.5
    """Ward merge distance at which the tree is cut (unit vectors). On ML-100K with the
    fine-tuned encoder, 1.5 gives a median of 2 interests per user and 5 at the 90th percentile."""
    max_interests: int = 5
    min_items: int = 3
    """An interest holds at least this many items; smaller groups join the nearest one."""
    max_items: int = 200
    """Most recent distinct items clustered per user (the cost is quadratic in it)."""
    half_life: float = 20.0
    """Events after which an event counts half in an interest's weight."""

    def __post_init__(self) -> None:
        if self.distance_threshold <= 0 or self.half_life <= 0:
            raise ValueError("distance_threshold and half_life must be positive")
        if self.max_interests < 1 or self.min_items < 1 or self.max_items < 2:
            raise ValueError("max_interests and min_items must be >= 1, max_items >= 2")


def _groups(vectors: np.ndarray, settings: InterestSettings) -> np.ndarray:
    """Interest number (0..) per row of `vectors`, with small groups merged into larger ones."""
    n = len(vectors)
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
    """Row of the member with the highest mean cosine to the others."""
    similarity = vectors @ vectors.T
    return int(np.argmax(similarity.sum(axis=1)))


def user_interest_sets(
    history: pl.DataFrame, item_vectors: np.ndarray, settings: InterestSettings
) -> tuple[pl.DataFrame, np.ndarray]:
    """Every user's interests from `history` (`user_idx, item_idx, timestamp`, any order).

    Returns one row per (user, interest), heaviest first within a user: `user_idx, interest,
    items` (item indices, newest first), `events, weight, medoid, first_timestamp,
    last_timestamp`; and the interests' unit centroids (rows in the same order).
    """
    unit = item_vectors / np.maximum(np.linalg.norm(item_vectors, axis=1, keepdims=True), 1e-12)
    ordered = history.sort(["user_idx", "timestamp"], maintain_order=True)
    users = ordered["user_idx"].to_numpy()
    items = ordered["item_idx"].to_numpy()
    times = ordered["timestamp"].to_numpy()
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


def word_terms(items: pl.DataFrame) -> pl.DataFrame:
    """`item_idx, kind="word", term` for the words of each item's title and description."""
    text = pl.col("title").fill_null("").str.replace_all(r"\(\d{4}\)", "")
    if "description" in items.columns:
        text = text + pl.lit(" ") + pl.col("description").fill_null("")
    words = (
        items.select(
            pl.col("item_idx").cast(pl.Int32),
            text.str.to_lowercase().str.extract_all(r"[a-z][a-z'-]+").alias("term"),
        )
        .explode("term")
        .filter(
            (pl.col("term").str.len_chars() >= WORD_MIN_LENGTH)
            & ~pl.col("term").is_in(sorted(STOP_WORDS))
        )
        .unique()
        .with_columns(pl.lit("word").alias("kind"))
    )
    return words.select("item_idx", "term", "kind")


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


def interest_terms(
    history: pl.DataFrame, items: pl.DataFrame, interests: pl.DataFrame, keep: int = TERMS_KEPT
) -> pl.DataFrame:
    """Terms each interest's events over-represent against everyone's: `user_idx, interest,
    term, kind, lift, share, share_overall, interactions`, highest lift first.

    Genres, tags and eras (`pipeline.profiles.item_terms`); where the data has none of those for
    an interest, the words of its items' titles and descriptions.
    """
    events = history.select(pl.col("user_idx").cast(pl.Int32), pl.col("item_idx").cast(pl.Int32))
    keyed = _event_keys(history, interests)
    ranked = _ranked_terms(
        events, keyed, items, keep, by="key", min_interactions=MIN_USER_TERM_INTERACTIONS
    )
    covered = ranked["key"].unique()
    bare = keyed.filter(~pl.col("key").is_in(covered.implode()))
    if bare.height:
        words = word_terms(items)
        # Words take the place of genres, so the same lift and support floors rank them.
        as_genres = items.select(pl.col("item_idx").cast(pl.Int32)).join(
            words.group_by("item_idx").agg(pl.col("term").alias("genres")),
            on="item_idx",
            how="left",
        )
        found = _ranked_terms(
            events, bare, as_genres, keep, by="key", min_interactions=MIN_USER_TERM_INTERACTIONS
        ).with_columns(pl.lit("word").alias("kind"))
        ranked = pl.concat([ranked, found])
    return ranked.select(
        (pl.col("key") // KEY_STRIDE).cast(pl.Int32).alias("user_idx"),
        (pl.col("key") % KEY_STRIDE).cast(pl.Int32).alias("interest"),
        pl.exclude("key"),
    ).sort(["user_idx", "interest", "lift"], descending=[False, False, True])


def label(terms: list[dict[str, Any]], medoid_title: str) -> tuple[str, list[str]]:
    """An interest's label and the terms in it: its most over-represented genre/tag/word
    terms; an era only when there is nothing else; the medoid's title when no term is
    over-represented."""
    named = [term["term"] for term in terms if term["kind"] != "era"][:LABEL_TERMS]
    if not named:
        named = [term["term"] for term in terms][:1]
    if not named:
        return f"Like {medoid_title}", []
    return LABEL_SEPARATOR.join(_capitalised(term) for term in named), named


def _capitalised(term: str) -> str:
    return term[:1].upper() + term[1:] if term and term[0].islower() else term


def group_centroids(
    history: pl.DataFrame, assignments: pl.DataFrame, item_vectors: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(group ids, unit centroids): each global group's events averaged in the item space."""
    joined = history.select("user_idx", "item_idx").join(
        assignments.select("user_idx", "cluster"), on="user_idx"
    )
    groups = np.unique(joined["cluster"].to_numpy())
    sums = np.zeros((groups.size, item_vectors.shape[1]), dtype=np.float64)
    np.add.at(
        sums,
        np.searchsorted(groups, joined["cluster"].to_numpy()),
        item_vectors[joined["item_idx"].to_numpy()],
    )
    unit = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return groups, unit.astype(np.float32)


def describe(
    history: pl.DataFrame,
    items: pl.DataFrame,
    item_vectors: np.ndarray,
    assignments: pl.DataFrame,
    settings: InterestSettings,
) -> tuple[pl.DataFrame, np.ndarray]:
    """Every user's interests with their terms, label and nearest global group (one row per
    interest, `terms` and `label_terms` as JSON text), and the interests' unit centroids.

    A user's labels are distinct: a repeated one gets its medoid's title appended.
    """
    table, centroids = user_interest_sets(history, item_vectors, settings)
    terms = interest_terms(history, items, table)
    by_interest: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for row in terms.iter_rows(named=True):
        key = (row.pop("user_idx"), row.pop("interest"))
        by_interest.setdefault(key, []).append(row)
    titles = dict(items.select("item_idx", "title").iter_rows())
    labels, label_terms, term_lists = [], [], []
    used: dict[int, set[str]] = {}
    for user, interest, medoid in table.select("user_idx", "interest", "medoid").iter_rows():
        own = by_interest.get((user, interest), [])
        title = titles.get(medoid, f"item {medoid}")
        text, named = label(own, title)
        if text in used.setdefault(user, set()):
            text = f"{text} (like {title})"
        used[user].add(text)
        labels.append(text)
        label_terms.append(json.dumps(named, ensure_ascii=False))
        term_lists.append(json.dumps(own, ensure_ascii=False))
    groups, group_vectors = group_centroids(history, assignments, item_vectors)
    nearest = (
        groups[np.argmax(centroids @ group_vectors.T, axis=1)]
        if len(centroids) and groups.size
        else np.full(len(centroids), -1)
    )
    described = table.with_columns(
        pl.Series("label", labels, dtype=pl.String),
        pl.Series("label_terms", label_terms, dtype=pl.String),
        pl.Series("group", nearest, dtype=pl.Int32),
        pl.Series("terms", term_lists, dtype=pl.String),
    )
    return described, centroids


def _carried(items: pl.DataFrame) -> dict[int, set[str]]:
    """Every term (genre, tag, era, word) each item carries."""
    found: dict[int, set[str]] = {}
    for item, term in pl.concat(
        [item_terms(items).select("item_idx", "term"), word_terms(items).select("item_idx", "term")]
    ).iter_rows():
        found.setdefault(item, set()).add(term)
    return found


def _agreement(table: pl.DataFrame, carried: dict[int, set[str]]) -> float | None:
    shares = []
    for members, named in table.select("items", "label_terms").iter_rows():
        wanted = set(json.loads(named))
        if wanted:
            shares.append(np.mean([bool(carried.get(item, set()) & wanted) for item in members]))
    return float(np.mean(shares)) if shares else None


def _shuffled(table: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Each user's interest items dealt at random across their interests (sizes kept)."""
    rng = np.random.default_rng(seed)
    dealt: list[list[int]] = []
    for _, rows in table.group_by("user_idx", maintain_order=True):
        pooled = np.concatenate([np.asarray(members) for members in rows["items"]])
        pooled = rng.permutation(pooled)
        cuts = np.cumsum([len(members) for members in rows["items"]])[:-1]
        dealt.extend(part.tolist() for part in np.split(pooled, cuts))
    return table.with_columns(pl.Series("items", dealt, dtype=pl.List(pl.Int32)))


def interest_metrics(
    table: pl.DataFrame, items: pl.DataFrame, n_users: int, seed: int
) -> dict[str, Any]:
    """How many interests users have and how well the labels describe their items."""
    per_user = table.group_by("user_idx").len()["len"].to_numpy()
    distribution = np.bincount(per_user)
    carried = _carried(items)
    era_led = [
        bool(json.loads(named)) and json.loads(named)[0].endswith(" films")
        for named in table["label_terms"]
    ]
    top_weight = table.filter(pl.col("interest") == 0)["weight"].to_numpy()
    agreement = _agreement(table, carried)
    floor = _agreement(_shuffled(table, seed), carried)
    return {
        "users": int(per_user.size),
        "users_without_events": int(n_users - per_user.size),
        "interests": int(table.height),
        "interests_per_user_median": float(np.median(per_user)) if per_user.size else None,
        "interests_per_user_mean": round(float(per_user.mean()), 3) if per_user.size else None,
        "users_by_interest_count": {
            str(count): int(users) for count, users in enumerate(distribution) if count and users
        },
        "top_interest_weight_median": round(float(np.median(top_weight)), 4)
        if top_weight.size
        else None,
        "label_agreement": None if agreement is None else round(agreement, 4),
        "label_agreement_shuffled_interests": None if floor is None else round(floor, 4),
        "labels_led_by_an_era": round(float(np.mean(era_led)), 4) if era_led else None,
        "labels_from_a_title": round(float((table["label_terms"] == "[]").mean()), 4)
        if table.height
        else None,
    }


def settings_for(cfg: InterestsConfig) -> InterestSettings:
    return InterestSettings(
        distance_threshold=cfg.distance_threshold,
        max_interests=cfg.max_interests,
        min_items=cfg.min_items,
        max_items=cfg.max_items,
        half_life=cfg.half_life,
    )


@writes("interests")
def main(root: Path = Path(".")) -> None:
    layout = Layout(root)
    params = load_params(layout.params)
    cfg = params.interests
    processed = read_processed(layout)
    vectors = read_embeddings(cfg.encoder, layout).items
    clustering = read_clustering(layout)
    # What is served knows every event: the interests come from the whole history.
    history = processed.history_served
    table, centroids = describe(
        history, processed.items, vectors, clustering.assignments, settings_for(cfg)
    )
    metrics = interest_metrics(table, processed.items, processed.users.height, cfg.seed)
    write_interests(
        UserInterests(table=table, centroids=centroids, metrics=metrics),
        cfg.model_dump(mode="json"),
        layout,
    )
    print(
        f"interests: {metrics['interests']} over {metrics['users']} users "
        f"(median {metrics['interests_per_user_median']:g}), label agreement "
        f"{metrics['label_agreement']} (shuffled {metrics['label_agreement_shuffled_interests']})"
    )


if __name__ == "__main__":
    io.run_stage(main)
