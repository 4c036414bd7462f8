"""Three topics of items with known answers (animation, film noir, westerns), each near its own
axis of the item space, and the histories built from them: shared by the tests of users' interests
(`pipeline.models.interest_sets`, `interest_labels`) and of the catalogue's topics."""

from __future__ import annotations

import numpy as np
import polars as pl

from pipeline.models.interest_sets import InterestSettings

TOPICS = ("Animation", "Film-Noir", "Western")
WORDS = ("cartoons", "detectives", "cowboys")
ITEM_SCHEMA = {
    "item_idx": pl.Int32,
    "title": pl.String,
    "year": pl.Int32,
    "genres": pl.List(pl.String),
    "tags": pl.List(pl.String),
    "description": pl.String,
}


def topic_items(n_per_topic: int = 8, genres: bool = True) -> tuple[pl.DataFrame, np.ndarray]:
    """Items in three topics, each topic's vectors near its own axis (its item 0 on it)."""
    rng = np.random.default_rng(0)
    rows, vectors = [], []
    offset = np.zeros(3)
    for topic, name in enumerate(TOPICS):
        for position in range(n_per_topic):
            item_idx = topic * n_per_topic + position
            vector = np.zeros(6)
            vector[topic] = 1.0
            # Mirrored pairs of offsets: a topic's centre is its axis, and item 0 sits on it.
            if position % 2:
                offset = 0.15 * rng.standard_normal(3)
            vector[3:] = 0.0 if position == 0 else (offset if position % 2 else -offset)
            vectors.append(vector)
            rows.append(
                {
                    "item_idx": item_idx,
                    "title": f"{name.split('-')[0]} story {position} ({1950 + position})",
                    "year": 1950 + position,
                    "genres": [name] if genres else [],
                    "tags": [],
                    "description": f"A tale of {WORDS[topic]}",
                }
            )
    return pl.DataFrame(rows, schema=ITEM_SCHEMA), np.asarray(vectors, dtype=np.float32)


def events_of(user_items: dict[int, list[int]]) -> pl.DataFrame:
    """`user_idx, item_idx, timestamp`: each user's items in the order given, one event each."""
    rows = [
        {"user_idx": user, "item_idx": item, "timestamp": 1000 * user + t}
        for user, items in user_items.items()
        for t, item in enumerate(items)
    ]
    return pl.DataFrame(
        rows, schema={"user_idx": pl.Int32, "item_idx": pl.Int32, "timestamp": pl.Int64}
    )


SETTINGS = InterestSettings(distance_threshold=1.0, min_items=3, half_life=4.0, sparse_items=6)


def everyone(n_per_topic: int = 8) -> pl.DataFrame:
    """Nine users, three per topic, each with most of their topic's items."""
    return events_of(
        {
            user: [topic * n_per_topic + i for i in range(n_per_topic) if (i + user) % 4]
            for topic in range(3)
            for user in range(3 * topic, 3 * topic + 3)
        }
    )
