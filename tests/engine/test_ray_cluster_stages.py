"""The `cluster` and `interests` stages on the engine: on a real two-node Ray cluster they write
the very same bytes as on the local backend (every per-user result is computed by the same
function from the same partition and the same fitted model or the same summed counts); KMeans
fitted on a sample still assigns every user, and the interests computed partition by partition
are those computed for every user at once."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from stage_project import stage_md5s
from synthetic import make_raw

from pipeline import cluster, interests, preprocess
from pipeline.core.config import Params, load_params
from pipeline.core.layout import Layout
from pipeline.core.sections import PreprocessConfig
from pipeline.data.artifacts import read_processed, write_embeddings, write_processed
from pipeline.data.interactions import UserItemVectors
from pipeline.engine.runner import Engine
from pipeline.models.user_clusters import fit_groups, fit_sample, taste_vectors
from pipeline.workflow import override, write_params

SMALL = {"cluster.k": 3, "engine.partitions": 4}


def _unit(rng: np.random.Generator, rows: int, width: int = 16) -> np.ndarray:
    vectors = rng.normal(size=(rows, width))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with the cluster stage's inputs: 4 user partitions, random text vectors."""
    root = tmp_path_factory.mktemp("inputs")
    write_params(override(Params(), SMALL), root)
    processed = preprocess.run(
        make_raw(n_users=60, n_items=40, per_user=10), PreprocessConfig(min_user_interactions=3)
    )
    layout = Layout(root)
    write_processed(processed, layout, partitions=4)
    rng = np.random.default_rng(0)
    users = _unit(rng, processed.users.height)
    vectors = UserItemVectors(
        users, _unit(rng, processed.items.height), users_at_test=users, users_served=users
    )
    write_embeddings("zero_shot", vectors, layout)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("representation", ["taste", "recent"])
def test_cluster_on_ray_writes_the_local_bytes(
    inputs: Path, tmp_path: Path, ray_cluster: Any, representation: str
) -> None:
    changes = {"cluster.representation": representation}
    local = stage_md5s("cluster", inputs, tmp_path / "local", changes)
    on_ray = stage_md5s("cluster", inputs, tmp_path / "ray", {**changes, "engine.backend": "ray"})
    assert on_ray == local
    assert len(local) == 6  # five outputs and the metrics: none left out
    assert not list((tmp_path / "ray" / "data" / "cluster").glob("*.piece-*"))


def test_a_fit_on_a_sample_assigns_every_user(inputs: Path, tmp_path: Path) -> None:
    """With fewer `fit_users` than users, KMeans sees the seeded sample only (its centroids
    are those of a fit on the sample's vectors), and every user with history is assigned, to
    the nearest centroid."""
    root = tmp_path / "sampled"
    shutil.copytree(inputs, root)
    layout = Layout(root)
    params = override(load_params(layout.params), {"cluster.fit_users": 25})
    processed = read_processed(layout)
    items = np.load(root / "data/embed/zero_shot_item_embeddings.npy")
    out = tmp_path / "out"
    engine = Engine(params.engine)
    clustering = cluster.run_partitions(engine, layout, processed, items, params.cluster, out)

    n_users = processed.users.height
    sample = fit_sample(n_users, 25, params.cluster.seed)
    assert sample is not None and len(sample) == 25
    vectors = taste_vectors(processed.train, items, n_users)
    sampled = sample[np.any(vectors[sample] != 0, axis=1)]
    model = fit_groups(vectors[sampled], n_users, params.cluster)[0]
    expected = model.cluster_centers_.astype(np.float32)
    np.testing.assert_array_equal(np.sort(clustering.centroids, axis=0), np.sort(expected, axis=0))

    assignments = pl.read_parquet(out / "assignments.parquet")
    assert assignments["user_idx"].to_list() == list(range(n_users))
    with_history = np.any(vectors != 0, axis=1)
    assert assignments["cluster"].is_not_null().to_numpy().tolist() == with_history.tolist()
    assert clustering.metrics["users"] == int(with_history.sum()) > 25
    unsampled = np.setdiff1d(np.flatnonzero(with_history), sample)
    distances = np.linalg.norm(vectors[unsampled, None, :] - clustering.centroids[None], axis=2)
    assigned = assignments["cluster"].to_numpy()[unsampled]
    np.testing.assert_array_equal(assigned, distances.argmin(axis=1))
    np.testing.assert_allclose(
        assignments["distance"].to_numpy()[unsampled], distances.min(axis=1), rtol=1e-5
    )
    assert (out / "over_represented.parquet").is_file()


# --------------------------------------------------------------------------------------------
# interests
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clustered(inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small project with the cluster stage's outputs: what the interests stage reads."""
    root = tmp_path_factory.mktemp("clustered") / "project"
    shutil.copytree(inputs, root)
    cluster.main(root)
    return root


@pytest.mark.slow
def test_interests_on_ray_writes_the_local_bytes(
    clustered: Path, tmp_path: Path, ray_cluster: Any
) -> None:
    local = stage_md5s("interests", clustered, tmp_path / "local", {})
    on_ray = stage_md5s("interests", clustered, tmp_path / "ray", {"engine.backend": "ray"})
    assert on_ray == local
    assert len(local) == 11  # ten outputs and the metrics: none left out, no piece left over


def test_interests_by_partition_are_those_of_every_user_at_once(
    clustered: Path, tmp_path: Path
) -> None:
    """The partitions' interests, labels and merged metrics are the whole-data computation's
    (`interests.run`), for the served interests and the evaluated splits'."""
    layout = Layout(clustered)
    params = load_params(layout.params)
    processed = read_processed(layout)
    items = np.load(clustered / "data/embed/zero_shot_item_embeddings.npy")
    assignments = pl.read_parquet(clustered / "data/cluster/assignments.parquet")
    evaluated = np.arange(0, processed.users.height, 2)
    whole, splits, topics = interests.run(
        processed, items, assignments, params.interests, evaluated
    )
    out = tmp_path / "out"
    engine = Engine(params.engine)
    metrics, by_parts = interests.run_partitions(
        engine, layout, items, params.interests, evaluated, out
    )
    assert metrics == whole.metrics
    assert pl.read_parquet(out / "user_interests.parquet").equals(whole.table)
    np.testing.assert_array_equal(np.load(out / "centroids.npy"), whole.centroids)
    for split, (table, centroids) in splits.items():
        assert pl.read_parquet(out / f"user_interests_for_{split}.parquet").equals(table)
        np.testing.assert_array_equal(np.load(out / f"centroids_for_{split}.npy"), centroids)
    np.testing.assert_allclose(by_parts.counts, topics.counts, rtol=1e-12)
    assert by_parts.profiles == topics.profiles
    assert sorted(path.name for path in out.iterdir()) == sorted(
        [
            "user_interests.parquet",
            "centroids.npy",
            *(f"user_interests_for_{s}.parquet" for s in splits),
            *(f"centroids_for_{s}.npy" for s in splits),
        ]
    )
