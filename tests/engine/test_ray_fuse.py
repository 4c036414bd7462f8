"""The `fuse` stage on the engine: on a real two-node Ray cluster it writes the very same bytes
as on the local backend (each partition's users are fused by the same function from the same
rows with the same chosen fusion); tuned on a sample of users, it chooses what tuning on every
user's vectors restricted to that sample chooses, and fuses every user as the whole arrays do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from stage_project import stage_md5s, upstream_project

from pipeline import fuse
from pipeline.core.config import load_params
from pipeline.core.layout import Layout
from pipeline.data.artifacts import (
    SEQUENCE_MODELS,
    read_embeddings,
    read_factors,
    read_fused,
    read_linear,
    read_processed,
    read_sequence_vectors,
    write_linear,
)
from pipeline.data.interactions import UserItemVectors
from pipeline.engine.partitions import partition_of, users_of_partition
from pipeline.evaluation.protocol import SplitMatrices
from pipeline.models.exploration import exploration_inputs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small project with every input `fuse` reads, reduced-rank EASE vectors included."""
    root = tmp_path_factory.mktemp("fuse_inputs")
    upstream_project(root)
    layout = Layout(root)
    processed = read_processed(layout)
    rng = np.random.default_rng(1)
    n_users, n_items = processed.users.height, processed.items.height

    def rows(count: int) -> np.ndarray:
        return rng.normal(size=(count, 6)).astype(np.float32)

    users = rows(n_users)
    linear = UserItemVectors(users, rows(n_items), users_at_test=rows(n_users), users_served=users)
    write_linear(linear, {}, layout)
    return root


@pytest.mark.slow
def test_fuse_on_ray_writes_the_local_bytes(inputs: Path, tmp_path: Path, ray_cluster: Any) -> None:
    local = stage_md5s("fuse", inputs, tmp_path / "local", {})
    on_ray = stage_md5s("fuse", inputs, tmp_path / "ray", {"engine.backend": "ray"})
    assert on_ray == local
    assert len(local) == 6  # the item vectors, three user outputs, retrieval.json, the metrics
    assert not list((tmp_path / "ray" / "data" / "fuse").glob("*.piece-*"))


def test_tuned_on_a_sample_fuses_every_user_as_the_whole_arrays_do(
    inputs: Path, tmp_path: Path
) -> None:
    root = tmp_path / "sampled"
    stage_md5s("fuse", inputs, root, {"evaluate.max_users": 25})
    layout = Layout(root)
    params = load_params(layout.params)
    seed = params.preprocess.split.seed
    processed = read_processed(layout)
    matrices = SplitMatrices.from_processed(processed, 25, seed)
    assert matrices.evaluated is not None and matrices.evaluated.size == 25
    whole = fuse.run(
        read_embeddings("finetuned", layout),
        read_factors(layout),
        {name: read_sequence_vectors(name, layout) for name in SEQUENCE_MODELS},
        read_linear(layout),
        matrices,
        exploration_inputs(processed, layout, params.interests.half_life),
        read_embeddings(params.interests.encoder, layout).items,
        params.fuse,
        seed,
        depth=max(params.evaluate.k),
        half_life=params.interests.half_life,
    )
    assert json.loads((root / "metrics/fuse.json").read_text(encoding="utf-8")) == json.loads(
        json.dumps(whole.record)
    )
    written = read_fused(layout)
    np.testing.assert_array_equal(written.users, whole.vectors.users)
    np.testing.assert_array_equal(written.items, whole.vectors.items)
    np.testing.assert_array_equal(written.test_users, whole.vectors.test_users)
    np.testing.assert_array_equal(written.served_users, whole.vectors.served_users)


def test_users_of_a_partition_are_those_of_partition_of() -> None:
    users = pl.Series("user_idx", np.arange(1000, dtype=np.int32))
    parts = pl.select(partition_of(pl.lit(users), 7)).to_series().to_numpy()
    for part in range(7):
        np.testing.assert_array_equal(
            users_of_partition(1000, part, 7), np.flatnonzero(parts == part)
        )
