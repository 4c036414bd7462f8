"""The word-blocks task for the encoder's fine-tuning: two taste blocks of users, each touching
only its block's items, and every item titled by one distinct word. A user history is a list of
titles, so to rank the right block first the encoder must learn which words belong together."""

from __future__ import annotations

import numpy as np
import polars as pl

from pipeline import preprocess
from pipeline.core.sections import PreprocessConfig, TextConfig
from pipeline.data.artifacts import Processed
from pipeline.data.source import RawData

# One distinct word per item title (block A: the first 15, block B: the rest).
WORDS = (
    "apple", "river", "castle", "tiger", "violin", "desert", "rocket", "garden", "pirate",
    "winter", "candle", "forest", "dragon", "island", "mirror", "thunder", "harbor", "velvet",
    "comet", "meadow", "falcon", "glacier", "lantern", "orchid", "prairie", "quartz", "saddle",
    "tundra", "walnut", "zephyr",
)  # fmt: skip
ITEMS_PER_BLOCK = 15
USERS_PER_BLOCK = 20
EVENTS_PER_USER = 8
TEXT = TextConfig(history_items=3, max_seq_length=32)
PROBE_TEXTS = ["Recently liked: Apple; River", "Tiger", "Walnut. Genres: Drama"]


def block_raw(seed: int = 0) -> RawData:
    """Block A users touch only items 0-14, block B users only items 15-29; one word per title."""
    rng = np.random.default_rng(seed)
    users, items, stamps = [], [], []
    for block in range(2):
        for user in range(USERS_PER_BLOCK):
            chosen = rng.choice(ITEMS_PER_BLOCK, size=EVENTS_PER_USER, replace=False)
            users += [str(block * USERS_PER_BLOCK + user)] * EVENTS_PER_USER
            items += [str(100 + block * ITEMS_PER_BLOCK + item) for item in chosen]
            stamps += list(range(EVENTS_PER_USER))
    interactions = pl.DataFrame(
        {"user_id": users, "item_id": items, "rating": [4.0] * len(users), "timestamp": stamps},
        schema_overrides={"timestamp": pl.Int64},
    )
    n_items = 2 * ITEMS_PER_BLOCK
    catalogue = pl.DataFrame(
        {
            "item_id": [str(100 + item) for item in range(n_items)],
            "title": [word.title() for word in WORDS[:n_items]],
            "year": [None] * n_items,
            "genres": [[] for _ in range(n_items)],
            "tags": [[] for _ in range(n_items)],
            "description": [None] * n_items,
        },
        schema_overrides={
            "year": pl.Int32,
            "genres": pl.List(pl.String),
            "tags": pl.List(pl.String),
            "description": pl.String,
        },
    )
    return RawData(interactions=interactions, items=catalogue, users=None, source="word-blocks")


def block_processed() -> Processed:
    """The task preprocessed with no cold-item slice: every item stays a candidate, so the known
    answer stays simple."""
    return preprocess.run(
        block_raw(), PreprocessConfig(min_user_interactions=3, cold_item_fraction=0.0)
    )
