"""Topics: groups of the catalogue's items in the item text space, what `recli explore` suggests
and what makes a held-out event "novel" (its topic new to the user).

KMeans on the unit item vectors, topics numbered largest first (`fit_topics`). A topic is named
after the terms most of its items carry, and most of its core (the items nearest its centre,
which `recli explore` shows first), counted over items rather than events (`topic_terms`), and
stands for itself by a well-known item near its centre. How users move from topic to topic is
counted on the training split (`topics_for`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from pipeline.core.sections import InterestsConfig
from pipeline.data.artifacts import Processed, Topics
from pipeline.data.interactions import unit_rows
from pipeline.models.exploration import transition_counts
from pipeline.models.interest_labels import LABEL_TERMS, label
from pipeline.models.phrases import (
    PHRASE,
    bare_labels,
    group_weights,
    whole_share,
)
from pipeline.models.terms import has_genres, item_terms, word_terms

TOPIC_LABEL_SHARE = 0.5
"""A term can name a topic only when at least this share of its items carry it, and of its
core: then the items `recli explore` shows for the topic mostly carry it too."""
CORE_ITEMS = 10
"""A topic's core: its items nearest its centre (all of them in a smaller topic)."""


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
    """The terms a topic's label is chosen from: genres and tags; phrases of titles and
    descriptions only where no genre or tag qualifies; an era only where nothing else does."""
    for kinds in (("genre", "tag"), (PHRASE,), ("era",)):
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
    core (the items nearest its centre, which stand for it best), genres and tags before eras.
    So each term named is on at least half the items `recli explore` can show for the topic.
    Where no genre or tag qualifies, phrases of the items' text name it (`_phrased`), before
    any era. Labels are distinct across topics as sets of terms: a topic whose label reads like
    an earlier one's names more of its qualifying terms, and where it has no more, its medoid's
    title is appended (its number instead to a phrase label, to any label on a catalogue without
    genres, and to a label that is already a title). A topic no term qualifies for is named after
    its medoid. `history` counts the topic's events and picks a well-known medoid.
    """
    item_events = np.bincount(history["item_idx"].to_numpy(), minlength=len(item_topic))
    return profiles_of(item_events, items, item_topic, item_vectors)


def profiles_of(
    item_events: np.ndarray, items: pl.DataFrame, item_topic: np.ndarray, item_vectors: np.ndarray
) -> list[dict[str, Any]]:
    """`topic_profiles` from the events on each item (`item_events`, summed over partitions)."""
    n_topics = int(item_topic.max()) + 1
    by_topic = topic_terms(items, item_topic, item_vectors)
    titles = dict(items.select("item_idx", "title").iter_rows())
    unit = unit_rows(item_vectors.astype(np.float32))
    counts = np.bincount(item_topic, weights=item_events, minlength=n_topics).astype(np.int64)
    with_genres = has_genres(items)
    phrased = _phrased(items, item_topic, item_vectors, by_topic, with_genres)
    profiles: list[dict[str, Any]] = []
    used: set[frozenset[str]] = set()
    for topic in range(n_topics):
        members = np.flatnonzero(item_topic == topic)
        medoid = _exemplar(members, unit, item_events)
        title = titles.get(medoid, f"item {medoid}")
        terms = by_topic.get(topic, [])
        first = LABEL_TERMS
        if topic in phrased:
            chosen, ranked = phrased[topic]
            rest = [t for t in ranked if t not in chosen]
            terms = [*chosen, *rest, *(t for t in terms if t["kind"] == "era")]
            first = len(chosen)
        nameable = _topic_label_terms(terms)
        # Distinct as sets of terms: "Drama · Romance" and "Romance · Drama" read the same.
        for size in range(first, first + 3):
            text, named = label(nameable, title, size)
            if frozenset(named) not in used:
                break
        else:
            # A label of words never carries a product's title (nor does one already made of
            # the title): its topic's number tells it apart.
            numbered = topic in phrased or not with_genres or not named
            text = f"{text} (topic {topic})" if numbered else f"{text} (like {title})"
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


def _phrased(
    items: pl.DataFrame,
    item_topic: np.ndarray,
    item_vectors: np.ndarray,
    by_topic: dict[int, list[dict[str, Any]]],
    with_genres: bool,
) -> dict[int, tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Per topic no genre or tag names: the phrases its label names and all its ranked phrases
    (`pipeline.models.phrases`), each item counted once, scored against every topic.

    Where the catalogue has genres (`with_genres`), only topics some word of their text names
    (the word fallback) are named by phrases; the others keep their era or their medoid's title.
    Without genres, tags are words of the items' text like any other, and every topic no tag
    names is named by phrases."""
    n_topics = int(item_topic.max()) + 1
    bare = [
        topic
        for topic in range(n_topics)
        if not any(term["kind"] in ("genre", "tag") for term in by_topic.get(topic, []))
        and (not with_genres or any(term["kind"] == "word" for term in by_topic.get(topic, [])))
    ]
    if not bare:
        return {}
    weights = group_weights(item_topic, np.arange(len(item_topic)), n_topics, len(item_topic))
    return {
        topic: ([_as_topic_term(t) for t in chosen], [_as_topic_term(t) for t in ranked])
        for topic, (chosen, ranked) in bare_labels(items, weights, item_vectors, bare).items()
    }


def _as_topic_term(term: dict[str, Any]) -> dict[str, Any]:
    """A phrase in the shape of a topic's terms (its items are its events: one per item)."""
    keys = ("term", "kind", "items", "share", "share_overall", "lift")
    return {key: term[key] for key in keys}


def topics_for(processed: Processed, vectors: np.ndarray, cfg: InterestsConfig) -> Topics:
    """Topics of the catalogue, labelled from and with transitions counted on the training
    split only (the timelines exploration is evaluated against come after it)."""
    item_topic, centroids = fit_topics(vectors, cfg.topics, cfg.seed)
    counts, adoptions = transition_counts(processed.train, item_topic, len(centroids))
    item_events = np.bincount(processed.train["item_idx"].to_numpy(), minlength=len(vectors))
    return Topics(
        item_topic=item_topic,
        centroids=centroids,
        profiles=profiles_of(item_events, processed.items, item_topic, vectors),
        counts=counts,
        adoptions=adoptions,
        smoothing=cfg.transition_smoothing,
    )


def novel_events(events: pl.DataFrame, item_topic: np.ndarray) -> dict[str, dict[str, int]]:
    """Per evaluated split, its held-out events (`events`: some users' every event, with their
    `split`) and how many are novel: their topic is none of the user's events before them
    (the training split for validation, training and validation for test). Sums over users."""
    local = np.unique(events["user_idx"].to_numpy())
    n_topics = int(item_topic.max()) + 1 if item_topic.size else 0
    novel = {}
    for split, before in (("validation", ("train",)), ("test", ("train", "validation"))):
        history = events.filter(pl.col("split").is_in(before))
        held_out = events.filter(pl.col("split") == split)
        engaged = np.zeros((local.size, n_topics), dtype=bool)
        engaged[
            np.searchsorted(local, history["user_idx"].to_numpy()),
            item_topic[history["item_idx"].to_numpy()],
        ] = True
        new = ~engaged[
            np.searchsorted(local, held_out["user_idx"].to_numpy()),
            item_topic[held_out["item_idx"].to_numpy()],
        ]
        novel[split] = {"events": int(held_out.height), "novel": int(new.sum())}
    return novel


def topic_metrics(
    topics: Topics,
    processed: Processed | dict[str, dict[str, int]],
    carried: dict[int, set[str]],
) -> dict[str, Any]:
    """How the topics came out: sizes, distinct labels, label agreement (`carried`: every term
    and phrase each item carries), and how many held-out events are novel (their topic new to
    the user before them; `processed`: every event, or the counts `novel_events` gives, summed
    over partitions)."""
    sizes = np.array([profile["size"] for profile in topics.profiles])

    def agreement(item_topic: np.ndarray) -> list[float]:
        """Per labelled topic, the share of its items (under `item_topic`) carrying a label term."""
        return [
            float(np.mean([bool(carried.get(item, set()) & named) for item in members]))
            for profile in topics.profiles
            if profile["label_terms"]
            for named, members in [
                (set(profile["label_terms"]), np.flatnonzero(item_topic == profile["topic"]))
            ]
        ]

    agreement_shares = agreement(topics.item_topic)
    floor = agreement(np.random.default_rng(0).permutation(topics.item_topic))
    if isinstance(processed, dict):
        novel = processed
    else:
        splits = [
            processed.split(name).select("user_idx", "item_idx").with_columns(split=pl.lit(name))
            for name in ("train", "validation", "test")
        ]
        novel = novel_events(pl.concat(splits), topics.item_topic)
    labels = [profile["label"] for profile in topics.profiles]
    return {
        "topics": len(topics.profiles),
        "items_per_topic": {
            "min": int(sizes.min()),
            "median": float(np.median(sizes)),
            "max": int(sizes.max()),
        },
        "distinct_labels": len(set(labels)),
        "distinct_labels_share": round(len(set(labels)) / max(len(labels), 1), 4),
        "label_terms_whole_words": whole_share(
            [term for profile in topics.profiles for term in profile["label_terms"]]
        ),
        "label_agreement": round(float(np.mean(agreement_shares)), 4) if agreement_shares else None,
        "label_agreement_shuffled_items": round(float(np.mean(floor)), 4) if floor else None,
        "novel_events": novel,
    }
