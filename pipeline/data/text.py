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


def recent_texts(events: pl.DataFrame, titles: list[str], history_items: int) -> pl.DataFrame:
    """`user_idx, text`: the history text of every user with events (`titles` in item-index
    order).

    `events` are in each user's time order (preprocess orders equal timestamps by a seeded key;
    training events come before validation ones when both are passed), and that order decides
    which items are the most recent: re-sorting here would break timestamp ties another way.
    """
    recent = (
        events.with_row_index("_order")
        .sort("user_idx", "timestamp", "_order")
        .group_by("user_idx", maintain_order=True)
        .agg(pl.col("item_idx").tail(history_items).reverse())
    )
    texts = [history_text([titles[item] for item in items]) for items in recent["item_idx"]]
    return pl.DataFrame({"user_idx": recent["user_idx"], "text": texts}, strict=False)


def user_texts(
    events: pl.DataFrame, items: pl.DataFrame, n_users: int, history_items: int
) -> list[str]:
    """One history text per user index (`""` for a user without events); see `recent_texts`."""
    texts = [""] * n_users
    recent = recent_texts(events, items.sort("item_idx")["title"].to_list(), history_items)
    for user, text in recent.iter_rows():
        texts[user] = text
    return texts


class TrainingPairs:
    """Every (history before an event -> that event's item) pair of a training split, shuffled.

    Every training event after a user's first is one pair, so the encoder learns "after these,
    this", the same question recommendation asks. The pairs are kept as event positions, and a
    pair's texts are assembled only when asked for: fine-tuning reads a few thousand pairs of the
    millions a large dataset has, and holding every text would cost gigabytes.
    """

    def __init__(
        self, train: pl.DataFrame, items: pl.DataFrame, history_items: int, seed: int
    ) -> None:
        ordered_items = items.sort("item_idx")
        self.titles: list[str] = ordered_items["title"].to_list()
        self.item_texts: list[str] = ordered_items["text"].to_list()
        self.history_items = history_items
        # Events within a user are ordered by time; ties keep the order preprocess gave them.
        ordered = train.sort("user_idx", "timestamp", maintain_order=True)
        self.events = ordered["item_idx"].to_numpy().astype(np.int64)
        users = ordered["user_idx"].to_numpy()
        first = np.ones(users.size, dtype=bool)
        first[1:] = users[1:] != users[:-1]
        user_start = np.maximum.accumulate(np.where(first, np.arange(users.size), 0))
        targets = np.flatnonzero(~first)
        # Pair i of the unshuffled table is the i-th non-first event; the table is shuffled
        # with `seed`, as a pair's position decides which batch it lands in.
        order = np.random.default_rng(seed).permutation(targets.size)
        self.targets = targets[order]
        self.starts = user_start[self.targets]

    def __len__(self) -> int:
        return int(self.targets.size)

    def anchor(self, pair: int) -> str:
        """The history text before pair `pair`'s event (most recent title first)."""
        target, start = int(self.targets[pair]), int(self.starts[pair])
        history = self.events[max(start, target - self.history_items) : target][::-1]
        return history_text([self.titles[item] for item in history])

    def positive(self, pair: int) -> str:
        """The text of the item pair `pair`'s event picked."""
        return self.item_texts[self.events[self.targets[pair]]]

    def positive_items(self) -> np.ndarray:
        """The item index of every pair's positive, in pair order."""
        return self.events[self.targets]

    def table(self, pairs: np.ndarray | None = None) -> pl.DataFrame:
        """The texts of `pairs` (default: every pair) as an (anchor, positive) frame."""
        chosen = range(len(self)) if pairs is None else (int(pair) for pair in pairs)
        rows = [(self.anchor(pair), self.positive(pair)) for pair in chosen]
        return pl.DataFrame(rows, schema=["anchor", "positive"], orient="row")
