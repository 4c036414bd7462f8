"""Stage `interests` on the two-block data: `main` writes what `run` returns, for the project root
it is given, and the split interests cover only the users the evaluation ranks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from synthetic import make_block_raw

from pipeline import cluster, interests, preprocess
from pipeline.core.config import Params
from pipeline.core.layout import Layout
from pipeline.core.sections import PreprocessConfig
from pipeline.data.artifacts import (
    Processed,
    read_clustering,
    read_embeddings,
    read_interests,
    read_split_interests,
    read_topics,
    write_embeddings,
    write_processed,
)
from pipeline.data.interactions import UserItemVectors
from pipeline.workflow import override, write_params

SMALL = {"preprocess.min_user_interactions": 3, "cluster.k": 2, "interests.topics": 4}


def _unit(rng: np.random.Generator, rows: int, width: int = 16) -> np.ndarray:
    vectors = rng.normal(size=(rows, width))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Params, Processed]:
    """A project with the `interests` stage's inputs (text vectors in general position, the
    `cluster` stage run on them) and the stage run once."""
    root = tmp_path_factory.mktemp("project")
    params = override(Params(), SMALL)
    write_params(params, root)
    layout = Layout(root)
    processed = preprocess.run(make_block_raw(), PreprocessConfig(min_user_interactions=3))
    write_processed(processed, layout)
    rng = np.random.default_rng(0)
    users = _unit(rng, processed.users.height)
    vectors = UserItemVectors(
        users, _unit(rng, processed.items.height), users_at_test=users, users_served=users
    )
    write_embeddings("zero_shot", vectors, layout)
    cluster.main(root)
    interests.main(root)
    return root, params, processed


def test_main_writes_what_run_returns(project: tuple[Path, Params, Processed]) -> None:
    root, params, processed = project
    layout = Layout(root)
    served, splits, topics = interests.run(
        processed,
        read_embeddings(params.interests.encoder, layout).items,
        read_clustering(layout).assignments,
        params.interests,
    )
    loaded = read_interests(layout)
    assert loaded.table.equals(served.table)
    np.testing.assert_array_equal(loaded.centroids, served.centroids)
    assert loaded.metrics == served.metrics
    assert set(splits) == {"validation", "test"}
    for split, (table, centroids) in splits.items():
        written_table, written_centroids = read_split_interests(split, layout)
        assert written_table.equals(table)
        np.testing.assert_array_equal(written_centroids, centroids)
    written = read_topics(layout)
    np.testing.assert_array_equal(written.item_topic, topics.item_topic)
    np.testing.assert_array_equal(written.centroids, topics.centroids)
    assert written.profiles == topics.profiles
    # The transition counts are stored as JSON, rounded.
    np.testing.assert_allclose(written.counts, topics.counts, rtol=1e-6)
    np.testing.assert_allclose(written.adoptions, topics.adoptions, rtol=1e-6)
    assert served.metrics["topics"]["topics"] == params.interests.topics
    # The sparse histories (fewer than sparse_items items) are counted and described, and their
    # linking bar is the one read off the training and validation events.
    sparse = served.metrics["sparse_histories"]
    served_items = processed.history_served.group_by("user_idx").agg(pl.col("item_idx").n_unique())
    assert sparse["users"] == int((served_items["item_idx"] < params.interests.sparse_items).sum())
    item_vectors = read_embeddings(params.interests.encoder, layout).items
    assert sparse["linked_similarity"] == interests.linking_bar(
        processed, item_vectors, params.interests
    )
    assert -1.0 <= sparse["linked_similarity"] <= 1.0


def test_split_interests_cover_only_the_evaluated_users(
    project: tuple[Path, Params, Processed],
) -> None:
    root, params, processed = project
    layout = Layout(root)
    evaluated = np.array([0, 3, 5])
    _, splits, _ = interests.run(
        processed,
        read_embeddings(params.interests.encoder, layout).items,
        read_clustering(layout).assignments,
        params.interests,
        evaluated=evaluated,
    )
    for table, centroids in splits.values():
        assert set(table["user_idx"].to_list()) <= set(evaluated.tolist())
        assert len(centroids) == table.height
