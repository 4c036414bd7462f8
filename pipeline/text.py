"""How users and items become text for the encoder: one definition for every stage.

An item's text is assembled by `preprocess` (title, year, genres, tags, description). A user is
described by what they did most recently: the titles of their last `text.history_items` training
items, most recent first. Titles are short, so a five-item history fits in ~60 tokens, and recency
matters: the next item a user picks is far more like their last few than their first few.
"""

from __future__ import annotations

import numpy as np
import polars as pl

HISTORY_PREFIX = "Recently liked: "


def history_text(titles: list[str]) -> str:
    """The text of one user history (titles most recent first)."""
    return HISTORY_PREFIX + "; ".join(titles)


def user_texts(
    events: pl.DataFrame, items: pl.DataFrame, n_users: int, history_items: int
) -> list[str]:
    """One history text per user index (`""` for a user without events).

    `events` are in each user's time order (preprocess orders equal timestamps by a seeded key;
    training events come before validation ones when both are passed), and that order decides
    which items are the most recent: re-sorting here would break timestamp ties another way.
    """
    titles = items.sort("item_idx")["title"].to_list()
    recent = (
        events.with_row_index("_order")
        .sort("user_idx", "timestamp", "_order")
        .group_by("user_idx", maintain_order=True)
        .agg(pl.col("item_idx").tail(history_items).reverse())
    )
    texts = [""] * n_users
    for user, item_indices in recent.iter_rows():
        texts[user] = history_text([titles[item] for item in item_indices])
    return texts


def training_pairs(
    train: pl.DataFrame, items: pl.DataFrame, history_items: int, seed: int
) -> pl.DataFrame:
    """(anchor, positive) pairs: the user's history just before an event → that event's item text.

    Every training event after a user's first becomes one pair, so the encoder learns "after these,
    this", the same question recommendation asks. Rows are shuffled with `seed`.
    """
    titles = items.sort("item_idx")["title"].to_list()
    item_text = items.sort("item_idx")["text"].to_list()
    anchors: list[str] = []
    positives: list[str] = []
    # Events within a user are ordered by time; ties keep the order preprocess gave them.
    ordered = train.sort("user_idx", "timestamp", maintain_order=True)
    for _, group in ordered.group_by("user_idx", maintain_order=True):
        sequence = group["item_idx"].to_list()
        for position in range(1, len(sequence)):
            history = sequence[max(0, position - history_items) : position][::-1]
            anchors.append(history_text([titles[item] for item in history]))
            positives.append(item_text[sequence[position]])
    order = np.random.default_rng(seed).permutation(len(anchors))
    return pl.DataFrame(
        {"anchor": [anchors[i] for i in order], "positive": [positives[i] for i in order]}
    )
