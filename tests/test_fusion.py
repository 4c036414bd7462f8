"""Fusion of the text and collaborative sides: the score split, the weight chosen on validation."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic import make_block_raw

from pipeline import factorize, preprocess
from pipeline.artifacts import Embeddings
from pipeline.config import FactorizeConfig, IndexConfig, PreprocessConfig
from pipeline.fusion import make_fusion, score_spreads, tune_fusion
from pipeline.protocol import SplitMatrices
from recli import contract


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def setup():
    processed = preprocess.run(make_block_raw(), PreprocessConfig(min_user_interactions=3))
    matrices = SplitMatrices.from_processed(processed)
    cf = factorize.run(
        matrices.train, FactorizeConfig(embedding_size=8, reg=0.1, alpha=10.0, epochs=30)
    )
    rng = np.random.default_rng(0)
    # Text that knows nothing: random unit vectors.
    text = Embeddings(
        users=_unit(rng.normal(size=(processed.users.height, 16))),
        items=_unit(rng.normal(size=(processed.items.height, 16))),
    )
    return processed, matrices, cf, text


def test_fused_dot_product_is_the_weighted_sum_of_scaled_scores(setup) -> None:
    _, _, cf, text = setup
    spreads = score_spreads(text, cf, seed=0)
    fusion = make_fusion(0.3, spreads)
    users, items = fusion.fuse(text.users, cf.users), fusion.fuse(text.items, cf.items)
    expected = (
        0.3 * text.score(np.arange(3)) / spreads[0] + 0.7 * cf.score(np.arange(3)) / spreads[1]
    )
    np.testing.assert_allclose(users[:3] @ items.T, expected, rtol=1e-4, atol=1e-4)


def test_tuning_prefers_the_informative_side(setup) -> None:
    _, matrices, cf, text = setup
    cfg = IndexConfig(weight_grid=[0.0, 0.5, 1.0])
    fusion, by_weight = tune_fusion(text, cf, matrices, cfg)
    assert list(by_weight) == ["0.0", "0.5", "1.0"]
    assert fusion.text_weight == 0.0  # random text only hurts
    assert by_weight["0.0"] > by_weight["1.0"]
    fixed, only = tune_fusion(text, cf, matrices, IndexConfig(text_weight=0.5))
    assert fixed.text_weight == 0.5 and list(only) == ["0.5"]


def test_fused_vectors_follow_the_serving_layout(setup) -> None:
    _, _, cf, text = setup
    fusion = make_fusion(0.3, (1.0, 1.0))
    fused = fusion.fuse(text.items, cf.items)
    width = text.items.shape[1]
    for row, text_row, cf_row in zip(fused, text.items, cf.items, strict=True):
        np.testing.assert_allclose(contract.text_part(row, width), fusion.text_scale * text_row)
        np.testing.assert_allclose(
            contract.collaborative_part(row, width), fusion.cf_scale * cf_row
        )
