from __future__ import annotations

import numpy as np
import pytest
from synthetic import make_block_raw

from pipeline import factorize, preprocess
from pipeline.core.layout import Layout
from pipeline.core.sections import FactorizeConfig, PreprocessConfig
from pipeline.data.artifacts import read_factors, write_factors
from pipeline.data.interactions import interaction_matrix


@pytest.fixture(scope="module")
def block_train():
    processed = preprocess.run(make_block_raw(), PreprocessConfig(min_user_interactions=3))
    matrix = interaction_matrix(processed.train, processed.users.height, processed.items.height)
    block_of_item = np.array([int(i) >= 115 for i in processed.items["item_id"]])
    block_of_user = np.array([int(u) >= 20 for u in processed.users["user_id"]])
    return matrix, block_of_user, block_of_item


def test_interaction_matrix_is_binary_and_deduplicated() -> None:
    import polars as pl

    events = pl.DataFrame({"user_idx": [0, 0, 1], "item_idx": [2, 2, 0]})
    matrix = interaction_matrix(events, 2, 3)
    assert matrix.shape == (2, 3) and matrix.nnz == 2
    assert matrix.dtype == np.float32 and set(matrix.data) == {1.0}


@pytest.mark.parametrize("algorithm", ["als", "bpr"])
def test_recommends_within_the_users_taste_block(block_train, algorithm: str) -> None:
    matrix, block_of_user, block_of_item = block_train
    reg = 0.1 if algorithm == "als" else 0.01  # a 40-user matrix needs far less than the default
    cfg = FactorizeConfig(algorithm=algorithm, embedding_size=8, epochs=30, reg=reg, seed=3)
    factors = factorize.run(matrix, cfg)
    assert factors.users.dtype == np.float32 and factors.items.dtype == np.float32
    scores = factors.score(np.arange(matrix.shape[0]))
    scores[matrix.toarray() > 0] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :3]
    same_block = block_of_item[top] == block_of_user[:, None]
    assert same_block.mean() > 0.95


def test_same_seed_same_factors(block_train) -> None:
    matrix, _, _ = block_train
    cfg = FactorizeConfig(embedding_size=8, epochs=5, seed=11)
    first, second = factorize.run(matrix, cfg), factorize.run(matrix, cfg)
    np.testing.assert_array_equal(first.users, second.users)
    np.testing.assert_array_equal(first.items, second.items)


def test_write_read_round_trip(tmp_path, block_train) -> None:
    matrix, _, _ = block_train
    cfg = FactorizeConfig(embedding_size=4, epochs=2)
    factors = factorize.run(matrix, cfg)
    layout = Layout(tmp_path)
    write_factors(factors, cfg.model_dump(mode="json"), layout)
    loaded = read_factors(layout)
    np.testing.assert_array_equal(loaded.items, factors.items)
    assert (layout.factorize / "config.json").read_text().count("embedding_size") == 1
