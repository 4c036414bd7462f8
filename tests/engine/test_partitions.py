"""User-hash partitions (`pipeline.engine.partitions`) and the pieces tasks write (`rows`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.data.artifacts import INTERACTION_SCHEMA
from pipeline.data.interactions import interaction_matrix
from pipeline.engine.partitions import (
    by_user,
    local_matrix,
    partition_files,
    partition_of,
    read_partition,
    write_partitions,
)
from pipeline.engine.rows import assemble, write_piece
from recli.errors import RecliError


def _events(n_users: int = 30, per_user: int = 4) -> dict[str, pl.DataFrame]:
    rng = np.random.default_rng(0)
    rows = [
        (user, int(rng.integers(0, 12)), 1.0, 100 * user + event)
        for user in range(n_users)
        for event in range(per_user)
    ]
    frame = pl.DataFrame(rows, schema=INTERACTION_SCHEMA, orient="row")
    position = pl.col("timestamp") % 100
    return {
        "train": frame.filter(position < 2),
        "validation": frame.filter(position == 2),
        "test": frame.filter(position == 3),
        "cold": frame.clear(),
    }


def test_a_user_is_in_one_partition_and_the_buckets_are_fixed() -> None:
    users = pl.Series("user_idx", np.arange(1000, dtype=np.int32))
    buckets = pl.select(partition_of(pl.lit(users), 16)).to_series()
    # The hash is arithmetic, not seeded: these values hold on any machine and version.
    assert buckets.head(4).to_list() == [(u * 2_654_435_761 % 2**32) % 16 for u in range(4)]
    counts = np.bincount(buckets.to_numpy(), minlength=16)
    assert counts.min() > 40  # neighbouring users spread over every bucket


def test_partitions_hold_every_event_once_in_serving_order(tmp_path: Path) -> None:
    splits = _events()
    users = pl.DataFrame(
        {"user_idx": np.arange(30, dtype=np.int32), "user_id": [f"u{i}" for i in range(30)]}
    )
    events = by_user(splits, users)
    write_partitions(events, tmp_path, 5)
    files = partition_files(tmp_path)
    assert len(files) == 5
    parts = [read_partition(path) for path in files]
    together = pl.concat(parts).sort("user_idx", "timestamp", maintain_order=True)
    assert together.height == sum(frame.height for frame in splits.values())
    assert together.equals(events.sort("user_idx", "timestamp", maintain_order=True))
    owners = [set(part["user_idx"]) for part in parts]
    assert sum(len(owner) for owner in owners) == 30  # no user in two partitions
    first = parts[0]
    assert first["user_id"].to_list()[0] == f"u{first['user_idx'][0]}"
    assert set(first["split"]) <= {"train", "validation", "test", "cold"}


def test_a_partitions_matrix_has_the_whole_matrix_rows(tmp_path: Path) -> None:
    splits = _events()
    events = by_user(
        splits, pl.DataFrame({"user_idx": np.arange(30, dtype=np.int32), "user_id": np.arange(30)})
    )
    write_partitions(events, tmp_path, 3)
    whole = interaction_matrix(events, 30, 12)
    for path in partition_files(tmp_path):
        users, matrix = local_matrix(read_partition(path), 12)
        assert (matrix != whole[users]).nnz == 0


def test_no_partitions_names_the_stage_to_run(tmp_path: Path) -> None:
    with pytest.raises(RecliError, match="dvc repro preprocess"):
        partition_files(tmp_path)


def test_pieces_assemble_into_one_array_and_are_removed(tmp_path: Path) -> None:
    write_piece(tmp_path, "v", 1, np.array([3, 0]), np.array([[3.0, 3.0], [0.5, 0.5]]))
    write_piece(tmp_path, "v", 0, np.array([1]), np.array([[1.0, 1.0]]))
    written = assemble(tmp_path, "v", tmp_path / "v.npy", (5, 2))
    assert written == 3
    array = np.load(tmp_path / "v.npy")
    assert array.dtype == np.float32
    np.testing.assert_array_equal(array[:, 0], [0.5, 1.0, 0.0, 3.0, 0.0])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["v.npy"]
