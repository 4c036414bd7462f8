"""A reusable contract every scorer must honour, mixed into each model's test class.

A test class sets the `scorer` fixture (a fitted model's `score`) and inherits every check here:

    class TestEASE(ScorerContract):
        @pytest.fixture
        def scorer(self, matrices): return EASE(10.0).fit(matrices.train).score

`matrices` (the split the model was fit on, with cold items) comes from the test module.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluation.protocol import SplitMatrices, SplitScorers, evaluate_model


class ScorerContract:
    """Output shape and dtype, determinism, and the protocol's masking of seen and cold items."""

    def test_scores_are_float32_users_by_items(self, scorer, matrices: SplitMatrices) -> None:
        users = np.array([0, 3, 1], dtype=np.int64)
        scores = scorer(users)
        assert scores.shape == (3, matrices.n_items)
        assert scores.dtype == np.float32
        assert not np.isnan(scores).any()

    def test_scores_are_deterministic_and_independent_of_the_batch(
        self, scorer, matrices: SplitMatrices
    ) -> None:
        users = np.arange(min(6, matrices.train.shape[0]), dtype=np.int64)
        first, again = scorer(users), scorer(users)
        np.testing.assert_array_equal(first, again)
        np.testing.assert_allclose(scorer(users[2:3])[0], first[2], rtol=1e-5, atol=1e-6)

    @pytest.mark.parametrize("split", ["validation", "test"])
    def test_seen_and_cold_items_are_never_ranked(
        self, scorer, matrices: SplitMatrices, split: str
    ) -> None:
        result = evaluate_model(scorer, matrices, split, ks=[5], coverage_k=5)
        assert result.users.size > 0
        assert not matrices.cold_items[result.recommended].any()
        seen = matrices.seen(split)
        for row, user in zip(result.recommended, result.users, strict=True):
            assert not set(row.tolist()) & set(seen[user].indices.tolist())

    def test_the_evaluation_is_reproducible(self, scorer, matrices: SplitMatrices) -> None:
        first = evaluate_model(scorer, matrices, "test", ks=[5], coverage_k=5, seed=2)
        again = evaluate_model(scorer, matrices, "test", ks=[5], coverage_k=5, seed=2)
        np.testing.assert_array_equal(first.recommended, again.recommended)


class HistoryContract:
    """For a model that reads the user's history (`model`: its `SplitScorers`): the test split
    is scored from the training + validation history, and only that changes."""

    def test_the_test_scorer_reads_the_validation_event(
        self, model: SplitScorers, matrices: SplitMatrices
    ) -> None:
        users = np.flatnonzero(np.diff(matrices.validation.indptr) > 0)[:8]
        before, after = model.validation(users), model.test(users)
        assert after.shape == before.shape and after.dtype == np.float32
        changed = [not np.allclose(b, a, atol=1e-6) for b, a in zip(before, after, strict=True)]
        assert all(changed), "a user's test-time scores ignore their validation event"

    def test_the_test_lists_mask_the_validation_event(
        self, model: SplitScorers, matrices: SplitMatrices
    ) -> None:
        result = evaluate_model(model, matrices, "test", ks=[5], coverage_k=5)
        validation = matrices.validation
        for row, user in zip(result.recommended, result.users, strict=True):
            assert not set(row.tolist()) & set(validation[user].indices.tolist())
