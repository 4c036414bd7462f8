"""Interactions laid out for many machines: one parquet file per hash bucket of the user.

A user's partition is a fixed function of their index (`partition_of`), so every event of a
user is in one file and a task that reads a file has whole users. The files hold every event
(training, validation, test and cold-item ones, with a `split` column) in the order serving reads
them: each user's events in time order, equal timestamps in the split order of
`Processed.history_served`. Every partition has a file, empty or not, so a reader never guesses
how many there are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from pipeline.core import io
from pipeline.core.layout import Layout
from pipeline.data.interactions import interaction_matrix
from recli.errors import RecliError

BY_USER_DIR = "by_user"
"""The partitions' folder inside `data/processed`."""
HASH_MULTIPLIER = 2_654_435_761
"""Knuth's multiplicative hash: neighbouring user indices land in different partitions, and the
bucket is the same on every machine and every library version (no seeded or salted hash)."""
SPLIT_ORDER = ("train", "validation", "test", "cold")


def by_user_folder(layout: Layout) -> Path:
    """Where a project's partitions live: `data/processed/by_user/`."""
    return layout.processed / BY_USER_DIR


def partition_of(user_idx: pl.Expr, partitions: int) -> pl.Expr:
    """The partition of each user index: `(user × HASH_MULTIPLIER mod 2³²) mod partitions`."""
    hashed = (user_idx.cast(pl.UInt64) * HASH_MULTIPLIER) % (1 << 32)
    return (hashed % partitions).cast(pl.Int32)


def users_of_partition(n_users: int, part: int, partitions: int) -> np.ndarray:
    """The indices of every user (of `n_users`, with events or not) in partition `part`, in
    order: `partition_of` in numpy."""
    users = np.arange(n_users, dtype=np.uint64)
    hashed = (users * np.uint64(HASH_MULTIPLIER)) % np.uint64(1 << 32)
    return np.flatnonzero(hashed % np.uint64(partitions) == part)


def partition_file(folder: Path, part: int) -> Path:
    return folder / f"part-{part:05d}.parquet"


def by_user(splits: dict[str, pl.DataFrame], users: pl.DataFrame) -> pl.DataFrame:
    """Every event with its `split` and the user's original `user_id`, in serving order."""
    events = pl.concat(
        [splits[name].with_columns(pl.lit(name).alias("split")) for name in SPLIT_ORDER]
    )
    ordered = events.sort("user_idx", "timestamp", maintain_order=True)
    return ordered.join(users.select("user_idx", "user_id"), on="user_idx", how="left")


def write_partitions(events: pl.DataFrame, folder: Path, partitions: int) -> None:
    """`events` (from `by_user`) as `partitions` files under `folder`, one per hash bucket."""
    bucket = events.select(partition_of(pl.col("user_idx"), partitions).alias("part"))["part"]
    for part in range(partitions):
        io.write_parquet(partition_file(folder, part), events.filter(bucket == part))


def partition_files(folder: Path) -> list[Path]:
    """The partition files under `folder`, in partition order; names the stage to re-run when
    there are none."""
    files = sorted(Path(folder).glob("part-*.parquet"))
    if not files:
        raise RecliError(f"{folder} holds no partitions: run `dvc repro preprocess`")
    return files


def read_partition(path: Path) -> pl.DataFrame:
    """One partition's events (see `by_user` for the columns and their order)."""
    return io.read_parquet(path, "preprocess")


def local_matrix(events: pl.DataFrame, n_items: int) -> tuple[np.ndarray, sp.csr_matrix]:
    """A partition's users (in the order of their first event) and their binary user × item
    matrix, one row per user in that order: the same rows the whole matrix has for them."""
    users = events["user_idx"].unique(maintain_order=True)
    local = events.join(
        pl.DataFrame({"user_idx": users, "row": np.arange(users.len(), dtype=np.int32)}),
        on="user_idx",
    )
    matrix = interaction_matrix(
        local.select(pl.col("row").alias("user_idx"), "item_idx"), users.len(), n_items
    )
    return users.to_numpy(), matrix
