"""Stage `preprocess`: clean raw interactions, give contiguous ids, assemble item text, split.

Outputs (under `data/processed/`): `train.parquet`, `validation.parquet`, `test.parquet` and
`cold.parquet` (every event of the held-out cold items) with `user_idx, item_idx, rating,
timestamp`; `items.parquet` (id map back to the original `item_id`, title, year, genres, tags, the
assembled `text`, `train_count`, `cold`); `users.parquet` (id map back to
`user_id`, `train_count`, demographics when the source has them); every event again in the user
partitions (`by_user/`); and `metrics/preprocess.json` counting every row that cleaning dropped
and why.

The steps that need every event (the drops by global counts, the cold-item hold-out, the ids)
run in the stage's process; on the engine (`run_partitions`, what `main` runs) each user
partition's users are then split by a task that writes the partition's file, with the same
result as `run`, which splits every user at once.

Timestamp ties: 44% of MovieLens-100K users have several events at their last timestamp.
Ordering those by item id would leak (lower ids are older, more popular films), so ties are broken
by a random key drawn from `preprocess.split.seed` (`pipeline.data.splitting`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.core import io
from pipeline.core.config import load_params
from pipeline.core.layout import Layout, writes
from pipeline.core.sections import PreprocessConfig, SplitConfig
from pipeline.data.artifacts import SPLITS, Processed, write_processed
from pipeline.data.interactions import latest_per_item
from pipeline.data.item_text import descriptions_cut, item_text
from pipeline.data.raw import missing_ids, stripped_ids
from pipeline.data.source import RawData, load_source, with_live_events
from pipeline.data.splitting import (
    TemporalCut,
    check_timestamps,
    split,
    stream_starts,
    temporal_cut,
)
from pipeline.engine.partitions import by_user, by_user_folder, partition_file, partition_of
from pipeline.engine.runner import Engine
from recli.errors import RecliError
from recli.live import live_path


def _ordered_ids(values: pl.Series) -> pl.Series:
    """Unique ids in a natural order: numeric when every id is numeric, else lexicographic."""
    unique = values.unique()
    as_numbers = unique.cast(pl.Int64, strict=False)
    if as_numbers.null_count() == 0:
        return unique.gather(as_numbers.arg_sort())
    return unique.sort()


UNMATCHED_SHOWN = 3
"""Unmatched item ids (and the items file's closest spellings) an error shows."""


def _require_events(events: pl.DataFrame, why: str) -> None:
    """Stop, naming the setting or the input that removed the last event."""
    if events.is_empty():
        raise RecliError(f"no interactions left: {why}")


def _closest_spelling(item_id: str, known: list[str], by_number: dict[int, str]) -> str | None:
    """The items file's id most like `item_id`: the same number spelled otherwise (`001` and
    `1`), else the nearest string."""
    import difflib

    try:
        same = by_number.get(int(item_id))
    except ValueError:
        same = None
    if same is not None:
        return same
    close = difflib.get_close_matches(item_id, known, n=1, cutoff=0.6)
    return close[0] if close else None


def check_unknown_items(
    unknown: pl.Series, total: int, known: pl.Series, cfg: PreprocessConfig
) -> None:
    """Stop when more than `cfg.max_unknown_item_share` of `total` events name an item the
    items file lacks (`unknown` are those events' item ids), showing a few unmatched ids and
    the closest spellings the items file has."""
    if not total or unknown.len() <= cfg.max_unknown_item_share * total:
        return
    ids = known.to_list()
    by_number: dict[int, str] = {}
    for value in ids:
        if value.lstrip("-").isdigit():
            by_number.setdefault(int(value), value)
    shown = []
    for item_id in unknown.unique(maintain_order=True).head(UNMATCHED_SHOWN).to_list():
        closest = _closest_spelling(item_id, ids, by_number)
        shown.append(f"'{item_id}'" + (f" (items file has '{closest}')" if closest else ""))
    raise RecliError(
        f"{unknown.len()} of {total} events ({unknown.len() / total:.1%}) name items missing from "
        f"the items file, e.g. {', '.join(shown)}: make both files spell item ids the same way, "
        f"add the items, or raise preprocess.max_unknown_item_share "
        f"({cfg.max_unknown_item_share:g}) to drop those events"
    )


def summary_line(summary: dict[str, int | str]) -> str:
    """What `preprocess` read, kept and dropped (by reason), on one line."""
    dropped = {
        key.removeprefix("dropped_").replace("_", " "): int(value)
        for key, value in summary.items()
        if key.startswith("dropped_") and int(value)
    }
    kept = sum(
        int(summary.get(f"{name}_interactions", 0)) for name in ("train", "validation", "test")
    ) + int(summary.get("cold_interactions", 0))
    reasons = ", ".join(f"{count} {reason}" for reason, count in dropped.items()) or "none"
    return f"preprocess: read {summary['raw_interactions']} events, kept {kept}; dropped: {reasons}"


def clean(raw: RawData, cfg: PreprocessConfig) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """Drop unusable rows, returning (interactions, items, counts of what was dropped and why)."""
    counts: dict[str, int] = {"raw_interactions": raw.interactions.height}
    events = stripped_ids(raw.interactions)
    missing = missing_ids()
    counts["dropped_missing_ids"] = events.filter(missing).height
    events = events.filter(~missing)

    items = raw.items.with_columns(pl.col("item_id").str.strip_chars()).filter(
        pl.col("item_id").is_not_null() & (pl.col("item_id") != "")
    )
    counts["dropped_duplicate_items"] = items.height - items["item_id"].n_unique()
    items = items.unique("item_id", keep="first", maintain_order=True)
    untitled = pl.col("title").is_null() | (pl.col("title").str.strip_chars() == "")
    items = items.with_columns(
        pl.when(untitled)
        .then(pl.lit("Item ") + pl.col("item_id"))
        .otherwise(pl.col("title"))
        # Without the alias the result lands in a new column named after the literal.
        .alias("title")
    )

    known = events["item_id"].is_in(items["item_id"].implode())
    counts["dropped_unknown_items"] = int((~known).sum())
    check_unknown_items(events.filter(~known)["item_id"], events.height, items["item_id"], cfg)
    events = events.filter(known)
    _require_events(
        events,
        "every event names an item the items file lacks: check that both "
        "files spell item ids the same way",
    )

    if cfg.min_rating is not None:
        low = pl.col("rating").is_null() | (pl.col("rating") < cfg.min_rating)
        counts["dropped_below_min_rating"] = events.filter(low).height
        events = events.filter(~low)
        _require_events(
            events,
            f"preprocess.min_rating ({cfg.min_rating:g}) removed every event: lower it, "
            "or set it to null to keep every event",
        )

    before = events.height
    events = latest_per_item(events)
    counts["dropped_duplicates"] = before - events.height

    item_counts = events.group_by("item_id").len()
    rare_items = item_counts.filter(pl.col("len") < cfg.min_item_interactions)["item_id"]
    before = events.height
    events = events.filter(~pl.col("item_id").is_in(rare_items.implode()))
    counts["dropped_rare_item_events"] = before - events.height
    _require_events(
        events,
        f"preprocess.min_item_interactions ({cfg.min_item_interactions}) removed every "
        "event: lower it",
    )

    user_counts = events.group_by("user_id").len()
    sparse_users = user_counts.filter(pl.col("len") < cfg.min_user_interactions)["user_id"]
    before = events.height
    events = events.filter(~pl.col("user_id").is_in(sparse_users.implode()))
    counts["dropped_sparse_user_events"] = before - events.height
    counts["dropped_sparse_users"] = sparse_users.len()

    _require_events(
        events,
        f"preprocess.min_user_interactions ({cfg.min_user_interactions}) removed every "
        "user: lower it",
    )
    # The catalogue is every titled item that still has an event.
    items = items.filter(pl.col("item_id").is_in(events["item_id"].unique().implode()))
    return events, items, counts


def hold_out_cold_items(
    events: pl.DataFrame, cfg: PreprocessConfig, counts: dict[str, int]
) -> tuple[pl.DataFrame, pl.DataFrame, pl.Series]:
    """Pick a seeded share of items and take every one of their events out of training.

    Returns (warm events, cold events, cold item ids). Users left with too few warm events are
    dropped (counted), and their cold events with them: the slice asks "which new item will this
    known user like", which needs a known user.
    """
    item_ids = _ordered_ids(events["item_id"])
    n_cold = round(cfg.cold_item_fraction * item_ids.len())
    # A separate random stream from the tie-break keys, so changing one never moves the other.
    rng = np.random.default_rng([cfg.split.seed, 1])
    cold_ids = item_ids.gather(np.sort(rng.choice(item_ids.len(), size=n_cold, replace=False)))
    is_cold = pl.col("item_id").is_in(cold_ids.implode())
    warm, cold = events.filter(~is_cold), events.filter(is_cold)
    warm_counts = warm.group_by("user_id").len()
    kept = warm_counts.filter(pl.col("len") >= cfg.min_user_interactions)["user_id"]
    counts["dropped_users_after_cold_holdout"] = events["user_id"].n_unique() - kept.len()
    keep = pl.col("user_id").is_in(kept.implode())
    return warm.filter(keep), cold.filter(keep), cold_ids


@dataclass(frozen=True)
class Indexed:
    """The events after every step that needs all of them, ready to split: the warm events
    and the cold-item ones with contiguous ids, and what the tables are made of."""

    events: pl.DataFrame
    cold: pl.DataFrame
    users: pl.DataFrame
    """`user_idx` (Int32), `user_id`: the id map."""
    items: pl.DataFrame
    """`item_idx` (Int32), `item_id` and the items file's columns."""
    cold_ids: pl.Series
    counts: dict[str, int]


def index(raw: RawData, cfg: PreprocessConfig) -> Indexed:
    """Clean `raw`, hold out the cold items and give users and items contiguous ids."""
    events, items, counts = clean(raw, cfg)
    warm, cold, cold_ids = hold_out_cold_items(events, cfg, counts)

    user_ids = _ordered_ids(warm["user_id"])
    item_ids = _ordered_ids(pl.concat([warm["item_id"], cold["item_id"]]))
    user_map = pl.DataFrame({"user_id": user_ids}).with_row_index("user_idx")
    item_map = pl.DataFrame({"item_id": item_ids}).with_row_index("item_idx")

    def to_indices(frame: pl.DataFrame) -> pl.DataFrame:
        return (
            frame.join(user_map, on="user_id")
            .join(item_map, on="item_id")
            .select(
                pl.col("user_idx").cast(pl.Int32),
                pl.col("item_idx").cast(pl.Int32),
                pl.col("rating").cast(pl.Float32).fill_null(1.0),
                pl.col("timestamp").cast(pl.Int64),
            )
        )

    return Indexed(
        events=to_indices(warm),
        cold=to_indices(cold).sort("user_idx", "timestamp", "item_idx"),
        users=user_map.with_columns(pl.col("user_idx").cast(pl.Int32)),
        items=item_map.with_columns(pl.col("item_idx").cast(pl.Int32)).join(
            items, on="item_id", how="left"
        ),
        cold_ids=cold_ids,
        counts=counts,
    )


def tables(
    indexed: Indexed,
    parts: dict[str, pl.DataFrame],
    raw: RawData,
    cfg: PreprocessConfig,
    description_words: int | None = None,
) -> Processed:
    """The item and user tables and the summary around the split `parts` of `indexed`."""
    counts = dict(indexed.counts)
    train = parts["train"]
    # Only the temporal split drops events (held-out events of users/items unseen in training).
    counts["dropped_unseen_held_out"] = indexed.events.height - sum(
        part.height for part in parts.values()
    )

    train_items = train.group_by("item_idx").len("train_count")
    train_users = train.group_by("user_idx").len("train_count")

    item_table = (
        indexed.items.join(
            train_items.with_columns(pl.col("item_idx").cast(pl.Int32)), on="item_idx", how="left"
        )
        .with_columns(
            pl.col("train_count").fill_null(0).cast(pl.Int32),
            pl.col("item_id").is_in(indexed.cold_ids.implode()).alias("cold"),
        )
        .sort("item_idx")
    )
    item_table = item_table.with_columns(item_text(item_table, description_words))

    user_table = indexed.users
    if raw.users is not None:
        user_table = user_table.join(raw.users, on="user_id", how="left")
    user_table = (
        user_table.join(
            train_users.with_columns(pl.col("user_idx").cast(pl.Int32)), on="user_idx", how="left"
        )
        .with_columns(pl.col("train_count").fill_null(0).cast(pl.Int32))
        .sort("user_idx")
    )

    summary: dict[str, int | str] = {
        "source": raw.source,
        "strategy": cfg.split.strategy,
        **counts,
        "users": user_table.height,
        "items": item_table.height,
        **{f"{name}_interactions": part.height for name, part in parts.items()},
        "cold_items": indexed.cold_ids.len(),
        "cold_interactions": indexed.cold.height,
        "descriptions_cut": descriptions_cut(item_table, description_words),
    }
    return Processed(
        train=parts["train"],
        validation=parts["validation"],
        test=parts["test"],
        cold=indexed.cold,
        items=item_table,
        users=user_table,
        summary=summary,
    )


def run(raw: RawData, cfg: PreprocessConfig, description_words: int | None = None) -> Processed:
    """Clean, index and split `raw` according to `cfg`; item descriptions are cut to their
    first `description_words` words in the assembled text (`text.description_words`)."""
    indexed = index(raw, cfg)
    return tables(indexed, split(indexed.events, cfg.split), raw, cfg, description_words)


# --------------------------------------------------------------------------------------------
# The stage on the engine: the users split partition by partition
# --------------------------------------------------------------------------------------------
def split_partition(
    events: pl.DataFrame,
    cold: pl.DataFrame,
    users: pl.DataFrame,
    cfg: SplitConfig,
    starts: pl.DataFrame,
    cut: TemporalCut | None,
    path: Path,
) -> dict[str, pl.DataFrame]:
    """One partition's users split (`events`, their rows of the stream `starts`, the temporal
    `cut` over every event), written with their `cold` events to `path` as `by_user` orders
    them; returns the partition's splits."""
    parts = split(events, cfg, starts, cut)
    io.write_parquet(path, by_user({**parts, "cold": cold}, users))
    return parts


def run_partitions(
    engine: Engine,
    raw: RawData,
    cfg: PreprocessConfig,
    description_words: int | None,
    folder: Path,
    partitions: int,
) -> Processed:
    """`run`, with the users split partition by partition on `engine` after the steps that
    need every event (cleaning, the cold-item hold-out, the ids); each partition's task writes
    its file under `folder`. The splits are assembled in user order, the same rows in the same
    order as `run`'s."""
    indexed = index(raw, cfg)
    check_timestamps(indexed.events, cfg.split)
    cut = temporal_cut(indexed.events, cfg.split) if cfg.split.strategy == "temporal" else None
    part = partition_of(pl.col("user_idx"), partitions).alias("_part")

    def pieces(frame: pl.DataFrame) -> dict[int, pl.DataFrame]:
        grouped = frame.with_columns(part).partition_by("_part", as_dict=True, include_key=False)
        return {key[0]: piece for key, piece in grouped.items()}

    events, cold, users = pieces(indexed.events), pieces(indexed.cold), pieces(indexed.users)
    starts = pieces(stream_starts(indexed.events))
    folder.mkdir(parents=True, exist_ok=True)
    arguments = [
        (
            events.get(p, indexed.events.clear()),
            cold.get(p, indexed.cold.clear()),
            users.get(p, indexed.users.clear()),
            cfg.split,
            starts.get(p, pl.DataFrame(schema={"user_idx": pl.Int32, "start": pl.Int64})),
            cut,
            partition_file(folder, p),
        )
        for p in range(partitions)
    ]
    split_parts = engine.map(split_partition, arguments)
    # A user's rows are all in one piece, in their order: a stable sort by user is `run`'s order.
    parts = {
        name: pl.concat([piece[name] for piece in split_parts]).sort(
            "user_idx", maintain_order=True
        )
        for name in SPLITS
    }
    return tables(indexed, parts, raw, cfg, description_words)


@writes("preprocess")
def main(layout: Layout) -> None:
    params = load_params(layout.params)
    raw, added = with_live_events(load_source(params.data, layout.root), layout.artifacts)
    if added:
        print(
            f"preprocess: {added} events added with `recli add`/`recli ingest` "
            f"({live_path(layout.artifacts)}) join the source's"
        )
    engine = Engine(params.engine)
    with engine.session():
        processed = run_partitions(
            engine,
            raw,
            params.preprocess,
            params.text.description_words,
            by_user_folder(layout),
            params.engine.partitions,
        )
    write_processed(processed, layout, partitions=None)
    print(summary_line(processed.summary))
    if processed.summary["descriptions_cut"]:
        print(
            f"preprocess: {processed.summary['descriptions_cut']} item descriptions cut to their "
            f"first {params.text.description_words} words for the encoder "
            "(text.description_words; the items file is unchanged)"
        )
    print(
        f"preprocess: {processed.summary['users']} users, {processed.summary['items']} items, "
        f"train/validation/test = {processed.train.height}/{processed.validation.height}/"
        f"{processed.test.height}"
    )


if __name__ == "__main__":
    io.run_stage(main)
