"""The cluster stage: users' vectors, KMeans and the choice of k, and what `run` and `main`
produce (the profiles themselves are tested in test_profiles)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from hand_built import HORROR_FANS, ROMANCE_FANS, groups, horror_and_romance, processed_from, unit

from pipeline import cluster
from pipeline.core.config import Params
from pipeline.core.layout import Layout
from pipeline.core.sections import ClusterConfig
from pipeline.data.artifacts import (
    Clustering,
    Processed,
    read_clustering,
    write_embeddings,
    write_processed,
)
from pipeline.data.interactions import UserItemVectors
from pipeline.models.terms import over_represented_terms
from recli.errors import RecliError


def _cluster_of(clustering: Clustering, user: int) -> int:
    return clustering.assignments["cluster"][user]


# --------------------------------------------------------------------------------------------
# What a user's interest vector is
# --------------------------------------------------------------------------------------------
def test_taste_vectors_are_idf_weighted_history_means() -> None:
    items = np.eye(3, dtype=np.float32)
    # Item 0 is liked by 3 of 4 users (idf ln 4/3), item 1 by one (idf ln 4); user 3 has none.
    processed = processed_from([[0, 1], [0], [0], []], [["A"], ["B"], ["C"]])
    vectors = cluster.taste_vectors(processed.train, items, 4)
    expected = np.array([np.log(4 / 3), np.log(4), 0.0])
    np.testing.assert_allclose(vectors[0], expected / np.linalg.norm(expected), rtol=1e-5)
    np.testing.assert_allclose(vectors[1], [1, 0, 0])
    np.testing.assert_array_equal(vectors[3], [0, 0, 0])
    assert vectors.dtype == np.float32

    embeddings = UserItemVectors(users=np.ones((4, 3), np.float32), items=items)
    recent = cluster.user_vectors(embeddings, processed, ClusterConfig(representation="recent"))
    assert recent is embeddings.users
    taste = cluster.user_vectors(embeddings, processed, ClusterConfig(representation="taste"))
    np.testing.assert_array_equal(taste, vectors)


# --------------------------------------------------------------------------------------------
# KMeans and the choice of k
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def three_groups() -> tuple[np.ndarray, np.ndarray, Processed]:
    users = groups([12, 10, 8])
    items = unit(np.eye(16)[:3])
    # Each group likes its own item: enough for profiles, irrelevant to the assignments.
    group = [0] * 12 + [1] * 10 + [2] * 8
    processed = processed_from([[g] for g in group], [["A"], ["B"], ["C"]])
    return users, items, processed


def test_recovers_well_separated_groups_largest_first(three_groups) -> None:
    users, items, processed = three_groups
    clustering = cluster.run(users, items, processed, ClusterConfig(k=3))
    # Ids are ordered by size, and the groups were built largest first: the mapping is identity.
    expected = [0] * 12 + [1] * 10 + [2] * 8
    assert clustering.assignments["cluster"].to_list() == expected
    assert [p["size"] for p in clustering.profiles] == [12, 10, 8]
    assert clustering.centroids.shape == (3, 16) and clustering.centroids.dtype == np.float32
    assert clustering.metrics["silhouette"] > 0.9
    assert clustering.metrics["largest_share"] == pytest.approx(12 / 30, abs=1e-4)
    assert (clustering.metrics["size_min"], clustering.metrics["size_max"]) == (8, 12)


def test_auto_picks_the_true_number_of_groups(three_groups) -> None:
    users, items, processed = three_groups
    clustering = cluster.run(users, items, processed, ClusterConfig(k="auto", k_range=(2, 6)))
    assert clustering.metrics["k"] == 3
    by_k = clustering.metrics["silhouette_by_k"]
    assert list(by_k) == ["2", "3", "4", "5", "6"]
    assert max(by_k, key=by_k.get) == "3"
    assert clustering.metrics["silhouette"] == by_k["3"]


def test_distance_is_to_the_assigned_centroid(three_groups) -> None:
    users, items, processed = three_groups
    clustering = cluster.run(users, items, processed, ClusterConfig(k=3))
    labels = clustering.assignments["cluster"].to_numpy()
    expected = np.linalg.norm(users - clustering.centroids[labels], axis=1)
    np.testing.assert_allclose(clustering.assignments["distance"].to_numpy(), expected, rtol=1e-5)


def test_same_seed_same_assignments() -> None:
    users = unit(np.random.default_rng(3).standard_normal((60, 8)))
    processed = processed_from([[0]] * 60, [["A"]])
    items = unit(np.ones((1, 8)))
    cfg = ClusterConfig(k=5, seed=7)
    first = cluster.run(users, items, processed, cfg)
    again = cluster.run(users, items, processed, cfg)
    assert first.assignments.equals(again.assignments)
    np.testing.assert_array_equal(first.centroids, again.centroids)


def test_k_must_be_below_the_number_of_users() -> None:
    users = groups([3, 2])
    processed = processed_from([[0]] * 5, [["A"]])
    items = unit(np.ones((1, 16)))
    with pytest.raises(RecliError, match=r"cluster\.k \(5\) must be below the number of users"):
        cluster.run(users, items, processed, ClusterConfig(k=5))


def test_auto_range_is_clipped_to_the_users_or_refused() -> None:
    items = unit(np.ones((1, 16)))
    users = groups([3, 2])
    clustering = cluster.run(
        users, items, processed_from([[0]] * 5, [["A"]]), ClusterConfig(k="auto", k_range=(2, 20))
    )
    assert clustering.metrics["k_range_searched"] == [2, 4]
    with pytest.raises(RecliError, match=r"cluster\.k_range"):
        cluster.run(users[:2], items, processed_from([[0]] * 2, [["A"]]), ClusterConfig(k="auto"))


def test_users_without_history_are_left_unassigned(three_groups) -> None:
    users, items, processed = three_groups
    users = users.copy()
    users[5] = 0.0
    clustering = cluster.run(users, items, processed, ClusterConfig(k=3))
    row = clustering.assignments.row(5, named=True)
    assert row["cluster"] is None and row["distance"] is None
    assert clustering.assignments["cluster"].null_count() == 1
    assert clustering.metrics["users"] == 29
    assert clustering.metrics["users_without_history"] == 1


def test_embeddings_that_do_not_match_the_processed_data_are_refused(three_groups) -> None:
    users, items, processed = three_groups
    with pytest.raises(RecliError, match="dvc repro embed"):
        cluster.run(users[:-1], items, processed, ClusterConfig(k=3))


# --------------------------------------------------------------------------------------------
# What the stage produces
# --------------------------------------------------------------------------------------------
HORROR_AND_ROMANCE_CONFIG = ClusterConfig(k=2, top_terms=5)


@pytest.fixture(scope="module")
def horror_and_romance_clustering() -> Clustering:
    """The horror and romance fans of `hand_built` as two tight groups of vectors (equal sizes:
    look clusters up by user)."""
    users, items = groups([6, 6]), unit(np.eye(16)[:9] + 0.1)
    return cluster.run(users, items, horror_and_romance(), HORROR_AND_ROMANCE_CONFIG)


def test_run_profiles_every_group_it_finds(horror_and_romance_clustering) -> None:
    clustering = horror_and_romance_clustering
    horror, romance = _cluster_of(clustering, 0), _cluster_of(clustering, 6)
    assert clustering.assignments["cluster"].to_list() == [horror] * 6 + [romance] * 6
    assert [p["cluster"] for p in clustering.profiles] == [0, 1]
    assert clustering.profiles[horror]["label"] == "Horror · #gore"
    assert clustering.profiles[romance]["label"] == "Romance"
    assert [p["size"] for p in clustering.profiles] == [6, 6]


def test_run_measures_label_agreement_against_random_members(
    horror_and_romance_clustering,
) -> None:
    # Every member over-represents every term of their group; shuffled members do not.
    assert horror_and_romance_clustering.metrics["label_agreement"] == 1.0
    assert horror_and_romance_clustering.metrics["label_agreement_random"] < 1.0


def test_run_keeps_every_users_own_interests(horror_and_romance_clustering) -> None:
    processed = horror_and_romance()
    interests = over_represented_terms(
        processed.train, processed.items, HORROR_AND_ROMANCE_CONFIG.top_terms
    )
    assert set(interests["user_idx"]) == set(HORROR_FANS) | set(ROMANCE_FANS)
    assert horror_and_romance_clustering.over_represented.equals(interests)


def test_main_writes_what_run_returns_for_the_project_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    layout = Layout(project)
    cfg = HORROR_AND_ROMANCE_CONFIG.model_copy(update={"encoder": "finetuned"})
    layout.params.parent.mkdir(parents=True)
    layout.params.write_text(
        yaml.safe_dump(Params(cluster=cfg).model_dump(mode="json")), encoding="utf-8"
    )
    processed = horror_and_romance()
    # Items in general position: exemplars of exactly equal similarity may come in either order.
    items = unit(np.random.default_rng(0).standard_normal((processed.items.height, 16)))
    vectors = UserItemVectors(users=groups([6, 6]), items=items)
    write_processed(processed, layout)
    write_embeddings("finetuned", vectors, layout)
    # Run from elsewhere: every path comes from the root the stage is given.
    monkeypatch.chdir(tmp_path)
    cluster.main(project)

    loaded = read_clustering(layout)
    expected = cluster.run(
        cluster.user_vectors(vectors, processed, cfg), vectors.items, processed, cfg
    )
    assert loaded.assignments.schema == pl.Schema(
        {"user_idx": pl.Int32, "cluster": pl.Int32, "distance": pl.Float32}
    )
    assert loaded.assignments.equals(expected.assignments)
    np.testing.assert_array_equal(loaded.centroids, expected.centroids)
    assert loaded.profiles == expected.profiles
    assert loaded.metrics == expected.metrics
    assert loaded.over_represented.equals(expected.over_represented)
    sizes = json.loads(layout.plot_file("cluster_sizes").read_text(encoding="utf-8"))
    assert sizes == [{"cluster": p["label"], "users": p["size"]} for p in loaded.profiles]
    assert json.loads((layout.cluster / "config.json").read_text())["k"] == 2
    assert not (tmp_path / "data").exists() and not (tmp_path / "metrics").exists()
