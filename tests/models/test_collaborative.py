"""Folding a history into ALS: the exact least-squares user factor, with the item factors fixed."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from pipeline import factorize
from pipeline.core.sections import FactorizeConfig
from pipeline.models.collaborative import fold_in

CFG = FactorizeConfig(embedding_size=6, epochs=8, reg=0.5, alpha=4.0, seed=3)


@pytest.fixture(scope="module")
def fitted() -> tuple[csr_matrix, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    dense = (rng.random((30, 20)) < 0.3).astype(np.float32)
    train = csr_matrix(dense)
    factors = factorize.run(train, CFG)
    return train, factors.users, factors.items


def _least_squares(items: np.ndarray, row: np.ndarray, cfg: FactorizeConfig) -> np.ndarray:
    # Hu, Koren & Volinsky (2008) as implicit weighs it: an observed item's confidence is
    # alpha × its value, every other item's is 1; the preference is 1 on observed items.
    confidence = np.where(row > 0, cfg.alpha * row, 1.0)
    preference = (row > 0).astype(np.float64)
    y = items.astype(np.float64)
    lhs = y.T @ (confidence[:, None] * y) + cfg.reg * np.eye(y.shape[1])
    return np.linalg.solve(lhs, y.T @ (confidence * preference))


def test_fold_in_solves_the_als_user_step_exactly(fitted) -> None:
    train, users, items = fitted
    folded = fold_in(items, users, train, CFG)
    for user in (0, 7, 29):
        expected = _least_squares(items, train[user].toarray()[0], CFG)
        np.testing.assert_allclose(folded[user], expected, rtol=1e-3, atol=1e-4)


def test_a_longer_history_moves_the_user_towards_the_new_item(fitted) -> None:
    train, users, items = fitted
    user = 4
    unseen = int(np.flatnonzero(train[user].toarray()[0] == 0)[0])
    longer = train.tolil(copy=True)
    longer[user, unseen] = 1.0
    before = fold_in(items, users, train, CFG)
    after = fold_in(items, users, csr_matrix(longer), CFG)
    assert after[user] @ items[unseen] > before[user] @ items[unseen]
    others = np.arange(train.shape[0]) != user
    np.testing.assert_allclose(after[others], before[others], rtol=1e-5, atol=1e-6)


def test_the_stage_writes_factors_for_the_test_time_history(fitted) -> None:
    train, _, _ = fitted
    factors = factorize.run(train, CFG, history_at_test=train)
    assert factors.users_at_test is not None
    assert factors.users_at_test.shape == factors.users.shape
    assert factors.users_at_test.dtype == np.float32


def test_bpr_keeps_its_training_factors() -> None:
    users, items = np.ones((3, 2), np.float32), np.ones((4, 2), np.float32)
    history = csr_matrix(np.eye(3, 4, dtype=np.float32))
    kept = fold_in(items, users, history, FactorizeConfig(algorithm="bpr"))
    assert kept is users
