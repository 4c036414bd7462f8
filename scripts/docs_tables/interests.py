"""Interests and exploration: the interest groups (`metrics/cluster.json`), each user's own
interests and the topics (`metrics/interests.json`), and how well exploration predicts a new
topic (`metrics/evaluation.json` → `next_new_topic`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from docs_tables.formatting import (
    PAIR_HEADER,
    is_number,
    num,
    share,
    source,
    summary,
    table,
)
from docs_tables.metrics import Metrics


# --------------------------------------------------------------------------------------------
# cluster.json, interests.json
# --------------------------------------------------------------------------------------------
def cluster_summary(metrics: Metrics) -> str:
    """The interest groups: how many, how tight, how well their labels fit their members."""
    data: dict[str, Any] = metrics.get("cluster.json")
    rows = summary(
        data,
        [
            ("k", "interest groups (k)", num),
            ("users", "users", num),
            ("users_without_history", "users without training history", num),
            ("silhouette", "cosine silhouette", lambda v: num(v, 3)),
            ("size_min", "smallest group (users)", num),
            ("size_median", "median group (users)", lambda v: f"{v:g}"),
            ("size_max", "largest group (users)", num),
            ("largest_share", "largest group's share of users", share),
            ("label_agreement", "label agreement", lambda v: num(v, 3)),
            (
                "label_agreement_random",
                "label agreement with members shuffled among the groups (floor)",
                lambda v: num(v, 3),
            ),
            ("labels_distinct", "distinct labels", num),
            ("labels_with_an_era", "labels with a release era", num),
            ("labels_with_a_title", "labels told apart by a title", num),
        ],
    )
    return table(PAIR_HEADER, rows) + "\n\n" + source("`metrics/cluster.json`")


def interests_summary(metrics: Metrics) -> str:
    """Each user's own interests: how many, how heavy, how well their labels fit."""
    data: dict[str, Any] = metrics.get("interests.json")
    rows = summary(
        data,
        [
            ("users", "users", num),
            ("users_without_events", "users without events", num),
            ("interests", "interests in all", num),
            ("interests_per_user_median", "interests per user, median", lambda v: f"{v:g}"),
            ("interests_per_user_mean", "interests per user, mean", lambda v: num(v, 2)),
            (
                "top_interest_weight_median",
                "weight of a user's heaviest interest, median",
                lambda v: num(v, 2),
            ),
            (
                "label_agreement",
                "label agreement: share of an interest's items carrying one of its label terms",
                lambda v: num(v, 3),
            ),
            (
                "label_agreement_shuffled_interests",
                "the same with each user's items dealt at random across their interests (floor)",
                lambda v: num(v, 3),
            ),
            ("labels_led_by_an_era", "labels led by a release era", share),
            ("labels_from_a_title", "labels that are the medoid's title", share),
            ("labels_from_the_topic", "labels taken from the medoid's topic", share),
        ],
    )
    counts = data.get("users_by_interest_count")
    if isinstance(counts, Mapping) and counts:
        rows.insert(
            min(5, len(rows)),
            [
                "users with " + " / ".join(str(n) for n in counts) + " interests",
                " / ".join(num(v) for v in counts.values()),
            ],
        )
    return table(PAIR_HEADER, rows) + "\n\n" + source("`metrics/interests.json`")


def interests_sparse(metrics: Metrics) -> str:
    """The sparse histories: how many, the linking bar, how many interests they get and how
    well their labels fit against the floor."""
    data: dict[str, Any] = metrics.get("interests.json", "sparse_histories")
    rows = summary(
        data,
        [
            ("users", "users with fewer than `interests.sparse_items` distinct items", num),
            ("linked_similarity", "linking bar (cosine), read off the validation events", num),
            ("users_with_several_interests", "of them with several interests", num),
            ("interests_per_user_mean", "interests per such user, mean", lambda v: num(v, 2)),
            ("label_agreement", "their label agreement", lambda v: num(v, 3)),
            (
                "label_agreement_shuffled_interests",
                "the same with their items dealt at random (floor)",
                lambda v: num(v, 3),
            ),
        ],
    )
    return (
        table(PAIR_HEADER, rows) + "\n\n" + source("`metrics/interests.json` → `sparse_histories`")
    )


def topics_summary(metrics: Metrics) -> str:
    """The topics exploration suggests, and how many held-out events are in a new topic."""
    data: dict[str, Any] = metrics.get("interests.json", "topics")
    rows = summary(
        data,
        [
            ("topics", "topics", num),
            ("distinct_labels", "distinct labels", num),
            ("label_agreement", "label agreement", lambda v: num(v, 3)),
            (
                "label_agreement_shuffled_items",
                "label agreement with items shuffled among the topics (floor)",
                lambda v: num(v, 3),
            ),
        ],
    )
    sizes = data.get("items_per_topic")
    if isinstance(sizes, Mapping):
        rows.insert(
            1,
            [
                "items per topic, min / median / max",
                " / ".join(f"{sizes[k]:g}" for k in ("min", "median", "max") if k in sizes),
            ],
        )
    novel = data.get("novel_events")
    if isinstance(novel, Mapping):
        for split, entry in novel.items():
            if isinstance(entry, Mapping):
                rows.append(
                    [
                        f"{split} events in a topic new to the user (novel)",
                        f"{num(entry.get('novel'))} of {num(entry.get('events'))}",
                    ]
                )
    return table(PAIR_HEADER, rows) + "\n\n" + source("`metrics/interests.json` → `topics`")


# --------------------------------------------------------------------------------------------
# Exploration: evaluation.json → next_new_topic
# --------------------------------------------------------------------------------------------
NEXT_TOPIC_NAMES = {
    "timeline_and_similarity": "timelines and language-model similarity (as tuned)",
    "timeline_only": "timelines only",
    "take_up_rate_only": "how often anyone takes the topic up",
}


def next_new_topic(metrics: Metrics) -> str:
    """How well the topic ranking predicts the topic of each novel test event."""
    rows: dict[str, dict[str, Any]] = metrics.get("evaluation.json", "next_new_topic")
    header = ["topics ranked by", "events", "hit@3 ± s.e.", "mean rank", "MRR"]
    body = []
    for variant, row in rows.items():
        hit = share(row.get("hit@3"))
        if is_number(row.get("hit@3_standard_error")):
            hit += f" ± {share(row['hit@3_standard_error'])}"
        body.append(
            [
                NEXT_TOPIC_NAMES.get(variant, variant),
                num(row.get("events")),
                hit,
                num(row.get("mean_rank"), 1),
                num(row.get("mrr"), 3),
            ]
        )
    randoms = [row for row in rows.values() if "random_hit@3" in row]
    if randoms:
        row = randoms[0]
        body.append(
            [
                "a random order",
                num(row.get("events")),
                share(row.get("random_hit@3")),
                num(row.get("random_mean_rank"), 1),
                "—",
            ]
        )
    return table(header, body) + "\n\n" + source("`metrics/evaluation.json` → `next_new_topic`")
