"""Dividing the events into train / validation / test (`preprocess.split`): for every user at
once, or for a partition of whole users with the very same result.

Every strategy orders events by random keys drawn from one generator seeded with
`preprocess.split.seed`, one key per event, over the events in (user, item) order: the keys
break ties between equal timestamps (never the item id, which would leak: lower MovieLens ids
are older, more popular films) and the random holdout orders each user's events by them. A
user's keys are therefore one stretch of that stream, starting after the events of every user
with a smaller index (`stream_starts`): a partition draws each of its users' stretches by
advancing the generator to its start (`PCG64.advance` skips draws without making them), so each
user gets the same keys, and the same split, whichever partition or backend splits them.

`temporal` holds out the most recent events of everyone, one cut-off over every event: the
driver finds it (`temporal_cut`, with the items seen in training) and each partition compares
its events with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from pipeline.core.sections import SplitConfig
from pipeline.data.artifacts import INTERACTION_SCHEMA, SPLITS
from recli.errors import RecliError


def stream_starts(events: pl.DataFrame) -> pl.DataFrame:
    """`user_idx`, `start`: where each user's keys begin in the seeded stream, that is how many
    events the users before them have (one row per user, by user)."""
    counts = events.group_by("user_idx").len().sort("user_idx")
    counts = counts.with_columns(pl.col("len").cast(pl.Int64))
    return counts.select("user_idx", (pl.col("len").cum_sum() - pl.col("len")).alias("start"))


def stream_keys(events: pl.DataFrame, seed: int, starts: pl.DataFrame) -> np.ndarray:
    """The random key of each of `events` (sorted by user, then item): each user's stretch of
    the stream seeded with `seed`, from their `start` in `starts`. Users whose stretches follow
    one another (every user, when `events` are all of them) are drawn in one go."""
    counts = events.group_by("user_idx", maintain_order=True).len()
    if counts.is_empty():
        return np.empty(0)
    runs = counts.join(starts, on="user_idx", how="left", maintain_order="left")
    begin = runs["start"].to_numpy().astype(np.int64)
    size = runs["len"].to_numpy().astype(np.int64)
    # A new run where a user's stretch does not follow the previous user's.
    breaks = np.flatnonzero(np.r_[True, begin[1:] != begin[:-1] + size[:-1]])
    generator = np.random.default_rng(seed)
    keys, position = [], 0
    for first, last in zip(breaks, np.r_[breaks[1:], len(begin)], strict=True):
        if begin[first] > position:
            generator.bit_generator.advance(int(begin[first] - position))
        n = int(size[first:last].sum())
        keys.append(generator.random(n))
        position = int(begin[first]) + n
    return np.concatenate(keys)


def _with_keys(events: pl.DataFrame, seed: int, starts: pl.DataFrame | None) -> pl.DataFrame:
    """`events` sorted by user and item with their stream key in `_tie`."""
    events = events.sort("user_idx", "item_idx")
    if starts is None:
        starts = stream_starts(events)
    return events.with_columns(pl.Series("_tie", stream_keys(events, seed, starts)))


@dataclass(frozen=True)
class TemporalCut:
    """Where the temporal split cuts every event: the (timestamp, key) of the first validation
    and the first test event (None: no such event), and the items seen in training."""

    validation: tuple[int, float] | None
    test: tuple[int, float] | None
    train_items: np.ndarray


def temporal_cut(events: pl.DataFrame, cfg: SplitConfig) -> TemporalCut:
    """The temporal split's cut-off over every one of `events`."""
    ordered = (
        _with_keys(events, cfg.seed, None)
        .select("item_idx", "timestamp", "_tie")
        # Two events at one timestamp draw the same 53-bit key with a negligible chance; then
        # the cut-off by value and the order by position could disagree on one of them.
        .sort("timestamp", "_tie")
    )
    n = ordered.height
    test_start = n - round(n * cfg.test_fraction)
    validation_start = test_start - round(n * cfg.validation_fraction)

    def at(position: int) -> tuple[int, float] | None:
        if position >= n:
            return None
        return int(ordered["timestamp"][position]), float(ordered["_tie"][position])

    train_items = ordered.head(validation_start)["item_idx"].unique().sort().to_numpy()
    return TemporalCut(at(validation_start), at(test_start), train_items)


def _from(cut: tuple[int, float] | None) -> pl.Expr:
    """Whether an event is at or after `cut` in (timestamp, key) order."""
    if cut is None:
        return pl.lit(False)
    timestamp, key = cut
    return (pl.col("timestamp") > timestamp) | (
        (pl.col("timestamp") == timestamp) & (pl.col("_tie") >= key)
    )


def check_timestamps(events: pl.DataFrame, cfg: SplitConfig) -> None:
    """Stop when a strategy that needs time meets events without a timestamp."""
    missing = events["timestamp"].null_count()
    if cfg.strategy in ("leave_last_out", "temporal") and missing:
        raise RecliError(
            f"{missing} interactions have no timestamp, which preprocess.split.strategy "
            f"'{cfg.strategy}' needs: set data.files.columns.timestamp or use strategy "
            "random_holdout"
        )


def split(
    events: pl.DataFrame,
    cfg: SplitConfig,
    starts: pl.DataFrame | None = None,
    cut: TemporalCut | None = None,
) -> dict[str, pl.DataFrame]:
    """Divide `events` (with `user_idx, item_idx, rating, timestamp`) into the three splits.

    By default `events` are every user's. A partition of whole users passes `starts` (the
    partition's rows of `stream_starts` over every event) and, for `temporal`, the `cut` over
    every event: its users are then split as they are among everyone.
    """
    check_timestamps(events, cfg)
    keyed = _with_keys(events, cfg.seed, starts)
    if cfg.strategy == "leave_last_out":
        ordered = keyed.sort("user_idx", "timestamp", "_tie").with_columns(
            pl.int_range(pl.len()).over("user_idx").alias("_position"),
            pl.len().over("user_idx").alias("_count"),
        )
        from_end = pl.col("_count") - pl.col("_position")
        assigned = ordered.with_columns(
            pl.when(from_end == 1)
            .then(pl.lit("test"))
            .when(from_end == 2)
            .then(pl.lit("validation"))
            .otherwise(pl.lit("train"))
            .alias("_split")
        )
    elif cfg.strategy == "random_holdout":
        ordered = keyed.sort("user_idx", "_tie").with_columns(
            pl.int_range(pl.len()).over("user_idx").alias("_position"),
            pl.len().over("user_idx").alias("_count"),
        )
        n_test = (pl.col("_count") * cfg.test_fraction).round().cast(pl.Int64)
        n_validation = (pl.col("_count") * cfg.validation_fraction).round().cast(pl.Int64)
        # Keep at least one training event per user, whatever the fractions.
        n_test = pl.min_horizontal(n_test, pl.col("_count") - 1)
        n_validation = pl.min_horizontal(n_validation, pl.col("_count") - 1 - n_test)
        assigned = ordered.with_columns(
            pl.when(pl.col("_position") < n_test)
            .then(pl.lit("test"))
            .when(pl.col("_position") < n_test + n_validation)
            .then(pl.lit("validation"))
            .otherwise(pl.lit("train"))
            .alias("_split")
        )
    else:  # temporal: one global cut-off, the most recent events are held out
        cut = cut if cut is not None else temporal_cut(events, cfg)
        assigned = keyed.with_columns(
            pl.when(_from(cut.test))
            .then(pl.lit("test"))
            .when(_from(cut.validation))
            .then(pl.lit("validation"))
            .otherwise(pl.lit("train"))
            .alias("_split")
        )
    columns = list(INTERACTION_SCHEMA)
    parts = {
        # Within a user, ties keep the seeded order that decided the split: downstream stages read
        # "most recent" from this order.
        name: assigned.filter(pl.col("_split") == name)
        .sort("user_idx", "timestamp", "_tie")
        .select(columns)
        for name in SPLITS
    }
    if cfg.strategy == "temporal":
        # Held-out events of users or items never seen in training cannot be ranked fairly by
        # collaborative models; they are dropped (and counted in the summary). A user's
        # training events are all in their partition; the items seen come from every event.
        train = parts["train"]
        for name in ("validation", "test"):
            parts[name] = parts[name].filter(
                pl.col("user_idx").is_in(train["user_idx"].unique().implode())
                & pl.col("item_idx").is_in(pl.Series(cut.train_items, dtype=pl.Int32).implode())
            )
    return parts
