"""The stage contracts: paths, and every artifact read back exactly as written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synthetic import make_raw

from pipeline import preprocess
from pipeline.core.layout import STAGE_OUTPUTS, Layout
from pipeline.core.sections import PreprocessConfig
from pipeline.data import artifacts
from pipeline.data.interactions import UserItemVectors
from recli import contract
from recli.errors import RecliError


def test_layout_puts_every_stage_under_the_served_artifacts_folder(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    assert layout.params == tmp_path / "params.yaml"
    assert layout.index == tmp_path / contract.DEFAULT_ARTIFACTS / contract.INDEX_DIR
    assert layout.encoder == tmp_path / contract.DEFAULT_ARTIFACTS / contract.ENCODER_DIR
    assert layout.metrics_file("cluster") == tmp_path / "metrics" / "cluster.json"
    assert layout.plot_file("cluster_sizes") == tmp_path / "metrics/plots/cluster_sizes.json"
    # Run from the project root, the outputs are spelled as dvc.yaml spells them.
    assert STAGE_OUTPUTS["fuse"] == ["data/fuse", "metrics/fuse.json"]
    assert STAGE_OUTPUTS["index"] == ["data/index", "metrics/index.json"]


def test_processed_round_trip(tmp_path: Path) -> None:
    processed = preprocess.run(make_raw(), PreprocessConfig(min_user_interactions=3))
    layout = Layout(tmp_path)
    artifacts.write_processed(processed, layout)
    loaded = artifacts.read_processed(layout)
    for name in (*artifacts.SPLITS, "cold"):
        assert loaded.split(name).equals(processed.split(name))
    assert loaded.items.equals(processed.items) and loaded.users.equals(processed.users)
    assert dict(loaded.train.schema) == artifacts.INTERACTION_SCHEMA
    assert (layout.metrics_file("preprocess")).exists()


@pytest.mark.parametrize("variant", list(artifacts.EMBEDDING_VARIANTS))
def test_vector_round_trips(tmp_path: Path, variant: str) -> None:
    layout = Layout(tmp_path)
    rng = np.random.default_rng(0)
    vectors = UserItemVectors(
        users=rng.normal(size=(4, 3)).astype(np.float32),
        items=rng.normal(size=(5, 3)).astype(np.float32),
    )
    artifacts.write_embeddings(variant, vectors, layout)
    artifacts.write_factors(vectors, {"embedding_size": 3}, layout)
    artifacts.write_fused(vectors, layout)
    for loaded in (
        artifacts.read_embeddings(variant, layout),
        artifacts.read_factors(layout),
        artifacts.read_fused(layout),
    ):
        np.testing.assert_array_equal(loaded.users, vectors.users)
        np.testing.assert_array_equal(loaded.items, vectors.items)


def test_the_two_embedding_variants_do_not_overwrite_each_other(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    ones = UserItemVectors(np.ones((2, 2), np.float32), np.ones((3, 2), np.float32))
    artifacts.write_embeddings("finetuned", ones, layout)
    artifacts.write_embeddings("zero_shot", UserItemVectors(ones.users * 2, ones.items * 2), layout)
    assert artifacts.read_embeddings("finetuned", layout).users[0, 0] == 1.0
    with pytest.raises(ValueError, match="unknown embedding variant"):
        artifacts.read_embeddings("bm25", layout)


def test_reading_before_the_stage_ran_names_the_stage(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    for read, stage in (
        (artifacts.read_processed, "preprocess"),
        (artifacts.read_factors, "factorize"),
        (artifacts.read_clustering, "cluster"),
        (artifacts.read_fused, "fuse"),
        (artifacts.read_retrieval, "fuse"),
    ):
        with pytest.raises(RecliError, match=rf"run `dvc repro {stage}`"):
            read(layout)


def test_test_time_user_vectors_round_trip_beside_the_training_ones(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    users = np.ones((3, 2), np.float32)
    vectors = UserItemVectors(users, np.ones((4, 2), np.float32), users_at_test=users * 3)
    artifacts.write_factors(vectors, {}, layout)
    loaded = artifacts.read_factors(layout)
    np.testing.assert_array_equal(loaded.users_at_test, users * 3)
    assert (layout.factorize / "user_factors_at_test.npy").exists()
    np.testing.assert_array_equal(loaded.score_at_test(np.array([0])), [[6.0] * 4])
    # Vectors written without them read back without them: test scores fall back to training.
    artifacts.write_fused(UserItemVectors(users, np.ones((4, 2), np.float32)), layout)
    fused = artifacts.read_fused(layout)
    assert fused.users_at_test is None
    np.testing.assert_array_equal(fused.score_at_test(np.array([1])), fused.score(np.array([1])))
