"""The `preprocess` stage on the engine: its users split partition by partition are split as
when every user is split at once (the same rows in the same order, for every strategy and any
number of partitions, empty ones included), and on a real two-node Ray cluster the stage writes
the very same bytes as on the local backend."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from synthetic import make_raw

from pipeline import preprocess
from pipeline.core.config import EngineConfig, Params
from pipeline.core.layout import Layout
from pipeline.core.sections import PreprocessConfig, SplitConfig
from pipeline.data.artifacts import write_processed
from pipeline.data.splitting import stream_keys, stream_starts
from pipeline.engine.partitions import by_user_folder
from pipeline.engine.runner import Engine
from pipeline.workflow import override, write_params

STRATEGIES = ["leave_last_out", "temporal", "random_holdout"]


def _config(strategy: str) -> PreprocessConfig:
    return PreprocessConfig(min_user_interactions=3, split=SplitConfig(strategy=strategy))


def test_a_users_keys_are_their_stretch_of_the_one_stream() -> None:
    events = pl.DataFrame(
        {"user_idx": [0, 0, 1, 2, 2, 2, 3], "item_idx": [1, 4, 2, 0, 3, 5, 1]},
        schema={"user_idx": pl.Int32, "item_idx": pl.Int32},
    )
    every = np.random.default_rng(7).random(events.height)
    starts = stream_starts(events)
    assert starts["start"].to_list() == [0, 2, 3, 6]
    assert np.array_equal(stream_keys(events, 7, starts), every)
    some = events.filter(pl.col("user_idx").is_in([0, 2, 3]))
    assert np.array_equal(stream_keys(some, 7, starts), every[[0, 1, 3, 4, 5, 6]])


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("partitions", [1, 5, 64])
def test_partitions_split_as_every_user_at_once(
    tmp_path: Path, strategy: str, partitions: int
) -> None:
    """64 partitions of 40 users leave some empty; 40 users with timestamp ties at the end."""
    raw, cfg = make_raw(n_users=40, n_items=30, per_user=10), _config(strategy)
    whole = preprocess.run(raw, cfg)
    expected = tmp_path / "expected"
    write_processed(whole, Layout(expected), partitions)

    folder = tmp_path / "by_user"
    engine = Engine(EngineConfig())
    parted = preprocess.run_partitions(engine, raw, cfg, None, folder, partitions)
    for name in ("train", "validation", "test", "cold", "items", "users"):
        assert_frame_equal(getattr(parted, name), getattr(whole, name))
    assert parted.summary == whole.summary
    written = sorted(folder.iterdir())
    assert [path.name for path in written] == [
        path.name for path in sorted(by_user_folder(Layout(expected)).iterdir())
    ]
    for path in written:
        assert path.read_bytes() == (by_user_folder(Layout(expected)) / path.name).read_bytes()


def _project(root: Path, strategy: str, backend: str) -> Path:
    """A project of files (40 users with ties) preprocessed on `backend`."""
    raw = make_raw(n_users=40, n_items=30, per_user=10)
    (root / "data" / "input").mkdir(parents=True)
    raw.interactions.write_csv(root / "data" / "input" / "ratings.csv")
    genres = raw.items["genres"].list.join("|")
    raw.items.select("item_id", "title", genres=genres).write_csv(root / "data/input/movies.csv")
    changes = {
        "data.source": "files",
        "data.files.interactions": "data/input/ratings.csv",
        "data.files.items": "data/input/movies.csv",
        "preprocess.min_user_interactions": 3,
        "preprocess.split.strategy": strategy,
        "engine.partitions": 6,
        "engine.backend": backend,
    }
    write_params(override(Params(), changes), root)
    preprocess.main(root)
    return root


def _digests(root: Path) -> dict[str, str]:
    files = [*sorted((root / "data" / "processed").rglob("*.parquet"))]
    files.append(root / "metrics" / "preprocess.json")
    return {
        str(path.relative_to(root)): hashlib.md5(path.read_bytes()).hexdigest() for path in files
    }


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_preprocess_on_ray_writes_the_local_bytes(
    tmp_path: Path, ray_cluster: Any, strategy: str
) -> None:
    local = _digests(_project(tmp_path / "local", strategy, "local"))
    on_ray = _digests(_project(tmp_path / "ray", strategy, "ray"))
    assert on_ray == local
    assert len(local) == 6 + 6 + 1  # the partitions, the tables and the metrics: none left out
