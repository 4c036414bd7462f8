"""Atomic artifact writes and typed reads (`pipeline.io`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline import io
from recli.errors import RecliError


def test_atomic_directory_replaces_only_a_complete_directory(tmp_path: Path) -> None:
    destination = tmp_path / "model"
    with io.atomic_directory(destination) as staging:
        (staging / "weights").write_text("old")
    with pytest.raises(RuntimeError), io.atomic_directory(destination) as staging:
        (staging / "weights").write_text("half")
        raise RuntimeError("killed midway")
    assert (destination / "weights").read_text() == "old"
    with io.atomic_directory(destination) as staging:
        (staging / "weights").write_text("new")
    assert (destination / "weights").read_text() == "new"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]


def test_round_trips_keep_values_and_types(tmp_path: Path) -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    io.write_npy(tmp_path / "a.npy", array)
    loaded = io.read_npy(tmp_path / "a.npy", "embed")
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, array)

    frame = pl.DataFrame({"user_idx": [0, 1], "title": ["Amélie (2001)", "Ran (1985)"]})
    io.write_parquet(tmp_path / "f.parquet", frame)
    assert io.read_parquet(tmp_path / "f.parquet", "preprocess").equals(frame)

    io.write_json(tmp_path / "m.json", {"ndcg@10": 0.1, "label": "Comédie"})
    assert io.read_json(tmp_path / "m.json", "evaluate") == {"ndcg@10": 0.1, "label": "Comédie"}
    assert "Comédie" in (tmp_path / "m.json").read_text(encoding="utf-8")  # not \\u-escaped
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("reader", "name"),
    [(io.read_npy, "x.npy"), (io.read_parquet, "x.parquet"), (io.read_json, "x.json")],
)
def test_a_missing_artifact_names_the_stage_to_run(tmp_path: Path, reader, name: str) -> None:
    with pytest.raises(RecliError, match=r"is missing: run `dvc repro cluster`"):
        reader(tmp_path / name, "cluster")
