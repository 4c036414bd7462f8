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
  rank them: `pipeline.models.profiles`), and, on data without genres, tags or years, the words of
  the items' titles and descriptions;
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

import itertools
import json
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from pipeline.core import io
from pipeline.core.config import InterestsConfig, load_params
from pipeline.core.layout import Layout, writes
from pipeline.core.parallel import usable_cores
from pipeline.data.artifacts import (
    Processed,
    Topics,
    UserInterests,
    read_clustering,
    read_embeddings,
    read_processed,
    write_interests,
    write_split_interests,
    write_topics,
)
from pipeline.data.interactions import unit_rows
from pipeline.evaluation.protocol import user_sample
from pipeline.models.exploration import transition_counts
from pipeline.models.interest_sets import InterestSettings, user_interest_sets
from pipeline.models.profiles import (
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
TOPIC_LABEL_SHARE = 0.5
"""A term can name a topic only when at least this share of its items carry it, and of its
core: then the items `recli explore` shows for the topic mostly carry it too."""
CORE_ITEMS = 10
"""A topic's core: its items nearest its centre (all of them in a smaller topic)."""
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


def keyed_terms(
    events: pl.DataFrame, keyed: pl.DataFrame, items: pl.DataFrame, keep: int = TERMS_KEPT
) -> pl.DataFrame:
    """Terms each group of events (`keyed`: `key, item_idx`) over-represents against all of
    `events`: `key, term, kind, lift, share, share_overall, interactions`.

    Genres, tags and eras (`pipeline.models.profiles.item_terms`); where the data has none of those
    for a group, the words of its items' titles and descriptions.
    """
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
    return ranked


def interest_terms(
    history: pl.DataFrame, items: pl.DataFrame, interests: pl.DataFrame, keep: int = TERMS_KEPT
) -> pl.DataFrame:
    """Terms each interest's events over-represent against everyone's (`keyed_terms`):
    `user_idx, interest, term, kind, lift, share, share_overall, interactions`, highest lift
    first."""
    events = history.select(pl.col("user_idx").cast(pl.Int32), pl.col("item_idx").cast(pl.Int32))
    ranked = keyed_terms(events, _event_keys(history, interests), items, keep)
    return ranked.select(
        (pl.col("key") // KEY_STRIDE).cast(pl.Int32).alias("user_idx"),
        (pl.col("key") % KEY_STRIDE).cast(pl.Int32).alias("interest"),
        pl.exclude("key"),
    ).sort(["user_idx", "interest", "lift"], descending=[False, False, True])


def label(
    terms: list[dict[str, Any]], medoid_title: str, size: int = LABEL_TERMS
) -> tuple[str, list[str]]:
    """An interest's label and the terms in it: its `size` most over-represented
    genre/tag/word terms; an era only when there is nothing else; the medoid's title when no
    term is over-represented."""
    named = [term["term"] for term in terms if term["kind"] != "era"][:size]
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
    # Events per (group, item), then one product: an event-by-event sum would be the slow part
    # of the stage on millions of events.
    counts = sp.csr_matrix(
        (
            np.ones(joined.height),
            (np.searchsorted(groups, joined["cluster"].to_numpy()), joined["item_idx"].to_numpy()),
        ),
        shape=(groups.size, len(item_vectors)),
    )
    sums = np.asarray(counts @ item_vectors.astype(np.float64))
    unit = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return groups, unit.astype(np.float32)


def describe(
    history: pl.DataFrame,
    items: pl.DataFrame,
    item_vectors: np.ndarray,
    assignments: pl.DataFrame,
    settings: InterestSettings,
    workers: int = 1,
) -> tuple[pl.DataFrame, np.ndarray]:
    """Every user's interests with their terms, label and nearest global group (one row per
    interest, `terms` and `label_terms` as JSON text), and the interests' unit centroids.

    A user's labels are distinct: a repeated one gets its medoid's title appended. `workers`:
    processes the users' histories are grouped in (`user_interest_sets`).
    """
    table, centroids = user_interest_sets(history, item_vectors, settings, workers)
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


# --------------------------------------------------------------------------------------------
# Topics: groups of the catalogue's items, and how users move between them
# --------------------------------------------------------------------------------------------
def fit_topics(item_vectors: np.ndarray, n_topics: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(topic per item, unit centroids): KMeans on the unit item vectors, topics numbered
    largest first."""
    from sklearn.cluster import KMeans

    unit = unit_rows(item_vectors.astype(np.float64))
    k = max(1, min(n_topics, len(np.unique(unit.round(6), axis=0))))
    model = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(unit)
    sizes = np.bincount(model.labels_, minlength=k)
    order = np.lexsort((np.arange(k), -sizes))  # largest first, ties by KMeans id
    renumbered = np.empty(k, dtype=np.int64)
    renumbered[order] = np.arange(k)
    centroids = unit_rows(model.cluster_centers_[order]).astype(np.float32)
    return renumbered[model.labels_], centroids


def _exemplar(members: np.ndarray, unit: np.ndarray, item_events: np.ndarray) -> int:
    """The item that stands for a topic: among its most interacted quarter, the one closest to
    the topic's centroid (a well-known item reads better than an obscure central one)."""
    if members.size == 0:
        return -1
    popular = members[item_events[members] >= np.quantile(item_events[members], 0.75)]
    centre = unit[members].mean(axis=0)
    return int(popular[np.argmax(unit[popular] @ centre)])


def topic_terms(
    items: pl.DataFrame, item_topic: np.ndarray, item_vectors: np.ndarray
) -> dict[int, list[dict[str, Any]]]:
    """Per topic, the terms its items carry more often than the catalogue's, highest weight
    first: `term, kind, items` (the topic's items carrying it), `share` (of the topic's items),
    `core_share` (of its core: the CORE_ITEMS items nearest its centre), `share_overall` (of
    every item), `lift` (`share / share_overall`), only terms carried by at least
    TOPIC_LABEL_SHARE of the topic's items and of its core.

    Items, not events: `recli explore` shows a topic's items, so what names a topic must be
    visible on them, and a blockbuster's hundreds of events would otherwise lend the whole topic
    a genre only that one film has. The weight is share × ln(lift), as the cluster labels weigh
    terms (`pipeline.models.profiles.label_weight`): common in the topic and rarer elsewhere.
    """
    carried = pl.concat(
        [item_terms(items).select("item_idx", "kind", "term"), word_terms(items)],
        how="diagonal_relaxed",
    ).select(pl.col("item_idx").cast(pl.Int32), "kind", "term")
    unit = unit_rows(item_vectors.astype(np.float64))
    core = np.zeros(len(item_topic), dtype=bool)
    for topic in np.unique(item_topic):
        members = np.flatnonzero(item_topic == topic)
        closeness = unit[members] @ unit[members].mean(axis=0)
        # Nearest first, ties to the lower item index.
        core[members[np.lexsort((members, -closeness))[:CORE_ITEMS]]] = True
    membership = pl.DataFrame(
        {
            "item_idx": np.arange(len(item_topic), dtype=np.int32),
            "topic": np.asarray(item_topic, dtype=np.int64),
            "core": core,
        }
    )
    sizes = membership.group_by("topic").agg(
        pl.len().alias("size"), pl.col("core").sum().alias("core_size")
    )
    overall = carried.group_by("kind", "term").agg(
        (pl.len() / max(len(item_topic), 1)).alias("share_overall")
    )
    ranked = (
        carried.join(membership, on="item_idx")
        .group_by("topic", "kind", "term")
        .agg(pl.len().alias("items"), pl.col("core").sum().alias("in_core"))
        .join(sizes, on="topic")
        .join(overall, on=["kind", "term"])
        .with_columns(
            (pl.col("items") / pl.col("size")).round(4).alias("share"),
            (pl.col("in_core") / pl.col("core_size")).round(4).alias("core_share"),
            (pl.col("items") / pl.col("size") / pl.col("share_overall")).round(4).alias("lift"),
            pl.col("share_overall").round(4),
        )
        .filter(
            (pl.col("lift") > 1.0)
            & (pl.col("share") >= TOPIC_LABEL_SHARE)
            & (pl.col("core_share") >= TOPIC_LABEL_SHARE)
        )
        .with_columns((pl.col("share") * pl.col("lift").log()).alias("weight"))
        .sort(
            ["topic", "weight", "share", "kind", "term"],
            descending=[False, True, True, False, False],
        )
    )
    by_topic: dict[int, list[dict[str, Any]]] = {}
    for row in ranked.select(
        "topic",
        "term",
        "kind",
        pl.col("items").cast(pl.Int32),
        "share",
        "core_share",
        "share_overall",
        "lift",
    ).iter_rows(named=True):
        by_topic.setdefault(int(row.pop("topic")), []).append(row)
    return by_topic


def _topic_label_terms(terms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The terms a topic's label is chosen from: genres and tags; the words of titles and
    descriptions only where no genre or tag qualifies; an era only where nothing else does."""
    for kinds in (("genre", "tag"), ("word",), ("era",)):
        found = [term for term in terms if term["kind"] in kinds]
        if found:
            return found
    return []


def topic_profiles(
    history: pl.DataFrame, items: pl.DataFrame, item_topic: np.ndarray, item_vectors: np.ndarray
) -> list[dict[str, Any]]:
    """Per topic: its label, terms, size, events and medoid.

    The label names what the topic's items share (`topic_terms`): its LABEL_TERMS terms of
    highest weight among those carried by at least TOPIC_LABEL_SHARE of its items and of its
    core (the items nearest its centre, which stand for it best), genres and tags before words
    and words before eras. So each term named is on at least half the items `recli explore`
    can show for the topic. Labels are distinct across topics as sets of terms: a topic whose
    label reads like an earlier one's names more of its qualifying terms, and where it has no
    more, its medoid's title is appended. A topic no term qualifies for is named after its
    medoid. `history` counts the topic's events and picks a well-known medoid.
    """
    events = history.select(pl.col("user_idx").cast(pl.Int32), pl.col("item_idx").cast(pl.Int32))
    n_topics = int(item_topic.max()) + 1
    by_topic = topic_terms(items, item_topic, item_vectors)
    titles = dict(items.select("item_idx", "title").iter_rows())
    unit = unit_rows(item_vectors.astype(np.float32))
    event_topics = item_topic[events["item_idx"].to_numpy()]
    counts = np.bincount(event_topics, minlength=n_topics)
    item_events = np.bincount(events["item_idx"].to_numpy(), minlength=len(item_topic))
    profiles: list[dict[str, Any]] = []
    used: set[frozenset[str]] = set()
    for topic in range(n_topics):
        members = np.flatnonzero(item_topic == topic)
        medoid = _exemplar(members, unit, item_events)
        title = titles.get(medoid, f"item {medoid}")
        terms = by_topic.get(topic, [])
        nameable = _topic_label_terms(terms)
        # Distinct as sets of terms: "Drama · Romance" and "Romance · Drama" read the same.
        for size in range(LABEL_TERMS, LABEL_TERMS + 3):
            text, named = label(nameable, title, size)
            if frozenset(named) not in used:
                break
        else:
            text = f"{text} (like {title})"
        used.add(frozenset(named))
        profiles.append(
            {
                "topic": topic,
                "label": text,
                "label_terms": named,
                "size": int(members.size),
                "events": int(counts[topic]),
                "medoid": medoid,
                "medoid_title": title,
                "terms": terms,
            }
        )
    return profiles


def topics_for(processed: Processed, vectors: np.ndarray, cfg: InterestsConfig) -> Topics:
    """Topics of the catalogue, labelled from and with transitions counted on the training
    split only (the timelines exploration is evaluated against come after it)."""
    item_topic, centroids = fit_topics(vectors, cfg.topics, cfg.seed)
    counts, adoptions = transition_counts(processed.train, item_topic, len(centroids))
    return Topics(
        item_topic=item_topic,
        centroids=centroids,
        profiles=topic_profiles(processed.train, processed.items, item_topic, vectors),
        counts=counts,
        adoptions=adoptions,
        smoothing=cfg.transition_smoothing,
    )


def topic_metrics(topics: Topics, processed: Processed, items: pl.DataFrame) -> dict[str, Any]:
    """How the topics came out: sizes, distinct labels, label agreement, and how many held-out
    events are novel (their topic new to the user before them)."""
    sizes = np.array([profile["size"] for profile in topics.profiles])
    carried = _carried(items)
    agreement = [
        np.mean([bool(carried.get(item, set()) & set(profile["label_terms"])) for item in members])
        for profile in topics.profiles
        if profile["label_terms"]
        for members in [np.flatnonzero(topics.item_topic == profile["topic"])]
    ]
    shuffled = np.random.default_rng(0).permutation(topics.item_topic)
    floor = [
        np.mean([bool(carried.get(item, set()) & set(profile["label_terms"])) for item in members])
        for profile in topics.profiles
        if profile["label_terms"]
        for members in [np.flatnonzero(shuffled == profile["topic"])]
    ]
    novel = {}
    n_users, n_topics = processed.users.height, len(topics.profiles)
    for split, history in (("validation", processed.train), ("test", processed.history_at_test)):
        engaged = np.zeros((n_users, n_topics), dtype=bool)
        engaged[
            history["user_idx"].to_numpy(), topics.item_topic[history["item_idx"].to_numpy()]
        ] = True
        held_out = processed.split(split)
        new = ~engaged[
            held_out["user_idx"].to_numpy(), topics.item_topic[held_out["item_idx"].to_numpy()]
        ]
        novel[split] = {"events": int(held_out.height), "novel": int(new.sum())}
    labels = [profile["label"] for profile in topics.profiles]
    return {
        "topics": len(topics.profiles),
        "items_per_topic": {
            "min": int(sizes.min()),
            "median": float(np.median(sizes)),
            "max": int(sizes.max()),
        },
        "distinct_labels": len(set(labels)),
        "label_agreement": round(float(np.mean(agreement)), 4) if agreement else None,
        "label_agreement_shuffled_items": round(float(np.mean(floor)), 4) if floor else None,
        "novel_events": novel,
    }


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
    if table.height == 0:
        return table
    # A user's rows are contiguous in the interests table (it is sorted by user).
    users = table["user_idx"].to_numpy()
    members = table["items"].to_list()
    starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1, users.size]
    for start, stop in itertools.pairwise(starts.tolist()):
        own = members[start:stop]
        pooled = rng.permutation(np.concatenate([np.asarray(group) for group in own]))
        cuts = np.cumsum([len(group) for group in own])[:-1]
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
def main(layout: Layout) -> None:
    params = load_params(layout.params)
    cfg = params.interests
    processed = read_processed(layout)
    vectors = read_embeddings(cfg.encoder, layout).items
    clustering = read_clustering(layout)
    settings = settings_for(cfg)
    # What is served knows every event: the served interests come from the whole history.
    history = processed.history_served
    workers = usable_cores()
    table, centroids = describe(
        history, processed.items, vectors, clustering.assignments, settings, workers
    )
    metrics = interest_metrics(table, processed.items, processed.users.height, cfg.seed)
    # What is evaluated reads only the history before the held-out event, and only the users
    # the evaluation ranks (a seeded sample above `evaluate.max_users`) are ever scored.
    evaluated = user_sample(
        processed.users.height, params.evaluate.max_users, params.preprocess.split.seed
    )
    for split, before in (("validation", processed.train), ("test", processed.history_at_test)):
        if evaluated is not None:
            before = before.filter(pl.col("user_idx").is_in(evaluated.tolist()))
        split_table, split_centroids = user_interest_sets(before, vectors, settings, workers)
        write_split_interests(split, split_table, split_centroids, layout)
    topics = topics_for(processed, vectors, cfg)
    write_topics(topics, layout)
    metrics["topics"] = topic_metrics(topics, processed, processed.items)
    write_interests(
        UserInterests(table=table, centroids=centroids, metrics=metrics),
        cfg.model_dump(mode="json"),
        layout,
    )
    novel = metrics["topics"]["novel_events"]["test"]
    print(
        f"interests: {metrics['interests']} over {metrics['users']} users "
        f"(median {metrics['interests_per_user_median']:g}), label agreement "
        f"{metrics['label_agreement']} (shuffled {metrics['label_agreement_shuffled_interests']}); "
        f"{metrics['topics']['topics']} topics, {novel['novel']} of {novel['events']} test "
        "events in a topic new to their user"
    )


if __name__ == "__main__":
    io.run_stage(main)
