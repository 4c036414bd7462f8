"""EASE in reduced rank (`pipeline.models.linear`): exact at full rank, the best rank-r fit of the
training scores below it, histories read with nothing refit, λ from validation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from synthetic import make_block_raw

from pipeline import factorize, preprocess
from pipeline.core.sections import EvaluateConfig, FactorizeConfig, PreprocessConfig
from pipeline.data.interactions import interaction_matrix
from pipeline.evaluation.protocol import SplitMatrices
from pipeline.models import linear
from pipeline.models.peers import EASE


@pytest.fixture(scope="module")
def block():
    processed = preprocess.run(make_block_raw(), PreprocessConfig(min_user_interactions=3))
    matrices = SplitMatrices.from_processed(processed)
    served = interaction_matrix(processed.history_served, *matrices.train.shape)
    return matrices, served, EASE(reg=20.0).fit(matrices.train)


def test_at_full_rank_the_training_scores_are_ease_scores(block) -> None:
    matrices, served, ease = block
    n_items = matrices.n_items
    vectors, _ = linear.reduced_rank(
        ease.train, ease.weights, n_items + 5, 0, (matrices.seen_for_test, served)
    )
    assert vectors.items.shape == (n_items, n_items)  # the rank is capped at the items
    users = np.arange(matrices.train.shape[0])
    np.testing.assert_allclose(vectors.score(users), ease.score(users), atol=2e-4)


def test_below_full_rank_it_is_the_best_fit_of_that_rank(block) -> None:
    matrices, served, ease = block
    scores = (matrices.train @ ease.weights).astype(np.float64)
    singular = np.linalg.svd(scores, compute_uv=False)
    users = np.arange(matrices.train.shape[0])
    for rank in (2, 5, 10):
        vectors, _ = linear.reduced_rank(
            ease.train, ease.weights, rank, 0, (matrices.seen_for_test, served)
        )
        assert vectors.items.shape == (matrices.n_items, rank)
        np.testing.assert_allclose(vectors.items.T @ vectors.items, np.eye(rank), atol=1e-5)
        # Eckart–Young: no rank-r matrix is closer to the scores than the top-r SVD.
        residual = np.linalg.norm(scores - vectors.score(users))
        assert residual == pytest.approx(np.sqrt(np.sum(singular[rank:] ** 2)), rel=1e-3)


def test_histories_are_read_with_the_training_weights(block) -> None:
    matrices, served, ease = block
    histories = (matrices.seen_for_test, served)
    vectors, saved = linear.reduced_rank(ease.train, ease.weights, 6, 0, histories)
    projection = ease.weights @ vectors.items
    np.testing.assert_allclose(saved, projection, rtol=1e-5, atol=1e-6)
    for history, users in (
        (matrices.seen_for_test, vectors.users_at_test),
        (served, vectors.users_served),
    ):
        binary = history.toarray() > 0
        np.testing.assert_allclose(users, binary @ projection, rtol=1e-4, atol=1e-5)
        # B·Q as saved gives any history's users: what live updates derive (the same bytes).
        np.testing.assert_array_equal(linear.history_vectors(history, saved), users)
    # The validation event is in the at-test history and not in training: the vectors differ.
    assert not np.allclose(vectors.users_at_test, vectors.users)


def test_same_inputs_same_bytes(block) -> None:
    matrices, served, ease = block

    def build() -> np.ndarray:
        vectors, _ = linear.reduced_rank(
            ease.train, ease.weights, 7, 3, (matrices.seen_for_test, served)
        )
        return np.hstack([vectors.items.ravel(), vectors.users_served.ravel()])

    assert build().tobytes() == build().tobytes()


def test_lambda_is_chosen_on_validation(block) -> None:
    matrices, served, _ = block
    vectors, record, projection = linear.fit(matrices, served, 4, [1.0, 50.0, 5000.0], seed=0)
    assert projection.shape == (matrices.n_items, 4)
    by_reg = record["validation_ndcg@10_by_reg"]
    assert list(by_reg) == ["1.0", "50.0", "5000.0"]
    assert record["reg"] == float(max(by_reg, key=by_reg.__getitem__))
    assert record["rank"] == 4 and vectors.users_served.shape == (served.shape[0], 4)


def test_factorize_skips_it_when_asked_or_when_the_catalogue_is_too_big(block) -> None:
    matrices, served, _ = block
    none, why, no_projection = factorize.run_linear(
        matrices, served, FactorizeConfig(linear_rank=0), EvaluateConfig(), 0
    )
    assert none is None and no_projection is None and "linear_rank is 0" in why["skipped"]
    small = EvaluateConfig(quadratic_peers_max_items=matrices.n_items - 1)
    none, why, _ = factorize.run_linear(matrices, served, FactorizeConfig(), small, 0)
    assert none is None and "quadratic_peers_max_items" in why["skipped"]
    vectors, record, _ = factorize.run_linear(
        matrices, served, FactorizeConfig(linear_rank=3), EvaluateConfig(), 0
    )
    assert vectors is not None and vectors.items.shape[1] == 3 and record["rank"] == 3


def test_a_history_matrix_of_counts_is_read_as_binary(block) -> None:
    _, served, ease = block
    doubled = sp.csr_matrix(served * 2.0)
    once, _ = linear.reduced_rank(ease.train, ease.weights, 4, 0, (served, served))
    twice, _ = linear.reduced_rank(ease.train, ease.weights, 4, 0, (doubled, doubled))
    np.testing.assert_array_equal(once.users_served, twice.users_served)
