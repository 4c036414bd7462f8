"""Peer recommenders on tiny matrices whose answers can be worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from pipeline.evaluation.metrics import rank_users, top_k
from pipeline.models import peers
from pipeline.models.peers import EASE, ItemKNN, Popularity, ease_grid, itemknn_grid


def _csr(rows: list[list[int]], n_items: int) -> csr_matrix:
    dense = np.zeros((len(rows), n_items), dtype=np.float32)
    for user, items in enumerate(rows):
        dense[user, items] = 1.0
    return csr_matrix(dense)


def _random_binary(n_users: int, n_items: int, seed: int) -> csr_matrix:
    rng = np.random.default_rng(seed)
    # Skewed item popularity, so that different models and regs disagree on some users.
    probability = 0.6 / np.arange(1, n_items + 1) ** 0.7
    return csr_matrix((rng.random((n_users, n_items)) < probability).astype(np.float32))


# Item sets (by user): item 0 {0,1}, item 1 {0,1}, item 2 {1,2}, item 3 {2}.
TINY = _csr([[0, 1], [0, 1, 2], [2, 3]], 4)


@pytest.mark.parametrize("model", [Popularity(), ItemKNN(neighbors=2), EASE(reg=1.0)])
def test_every_model_follows_the_contract(model: peers.Recommender) -> None:
    assert model.fit(TINY) is model
    assert isinstance(model.name, str) and model.name
    scores = model.score(np.array([2, 0]))
    assert scores.shape == (2, 4) and scores.dtype == np.float32
    assert model.score(np.array([], dtype=np.int64)).shape == (0, 4)
    with pytest.raises(ValueError, match="user indices"):
        model.score(np.array([3]))
    with pytest.raises(ValueError, match="user indices"):
        model.score(np.array([-1]))


def test_models_must_be_fit_first_and_keep_their_own_train_copy() -> None:
    with pytest.raises(RuntimeError, match="fit"):
        EASE().score(np.array([0]))
    train = TINY.copy()
    model = Popularity().fit(train)
    train.data[:] = 0.0  # the caller changing its matrix later must not change the model
    assert model.train.nnz == TINY.nnz


def test_popularity_ranks_items_by_interaction_count() -> None:
    train = _csr([[0, 2], [2], [1, 2], [1]], 4)  # counts: item0 1, item1 2, item2 3, item3 0
    model = Popularity().fit(train)
    scores = model.score(np.array([0, 3]))
    assert scores.tolist() == [[1.0, 2.0, 3.0, 0.0]] * 2
    assert top_k(scores, 4)[0].tolist() == [2, 1, 0, 3]
    # After masking, user 3 (who has item 1) gets the rest in popularity order.
    assert rank_users(model.score, np.array([3]), train, 3).tolist() == [[2, 0, 3]]


def test_itemknn_similarity_is_hand_checkable() -> None:
    model = ItemKNN(neighbors=10).fit(TINY)
    half, root_half = 0.5, 1 / math.sqrt(2)
    # cos(0,1) = 2/(√2·√2) = 1; cos(0,2) = cos(1,2) = 1/(√2·√2); cos(2,3) = 1/(√2·1).
    expected = np.array(
        [
            [0.0, 1.0, half, 0.0],
            [1.0, 0.0, half, 0.0],
            [half, half, 0.0, root_half],
            [0.0, 0.0, root_half, 0.0],
        ]
    )
    assert np.allclose(model.similarity.toarray(), expected)
    # User 0 has items {0, 1}: score_j = sim(0, j) + sim(1, j).
    assert np.allclose(model.score(np.array([0]))[0], [1.0, 1.0, 1.0, 0.0])


def test_itemknn_keeps_the_top_neighbors_per_target_column() -> None:
    model = ItemKNN(neighbors=1).fit(TINY)
    similarity = model.similarity.toarray()
    # Each column j keeps only the item most similar to j.
    root_half = 1 / math.sqrt(2)
    expected = np.zeros((4, 4))
    expected[1, 0] = expected[0, 1] = 1.0
    expected[3, 2] = expected[2, 3] = root_half
    assert np.allclose(similarity, expected)
    assert np.all(np.diag(similarity) == 0)
    assert np.allclose(model.score(np.array([0]))[0], [1.0, 1.0, 0.0, 0.0])


def test_itemknn_shrink_damps_the_similarity() -> None:
    model = ItemKNN(neighbors=10, shrink=2.0).fit(TINY)
    assert model.similarity[0, 1] == pytest.approx(2 / (2 + 2))  # 2 / (√2·√2 + shrink)


def test_itemknn_handles_items_nobody_interacted_with() -> None:
    train = _csr([[0, 1], [1]], 3)  # item 2 has no users: its norm is 0
    model = ItemKNN().fit(train)
    assert np.isfinite(model.similarity.toarray()).all()
    assert model.score(np.array([0]))[0, 2] == 0.0


def _ease_reference(train: csr_matrix, reg: float) -> np.ndarray:
    x = train.toarray().astype(np.float64)
    precision = np.linalg.inv(x.T @ x + reg * np.eye(x.shape[1]))
    weights = np.eye(x.shape[1]) - precision @ np.diag(1 / np.diag(precision))
    return weights


def test_ease_matches_a_direct_numpy_computation() -> None:
    train = _random_binary(40, 15, seed=3)
    model = EASE(reg=7.0).fit(train)
    reference = _ease_reference(train, 7.0)
    assert model.weights.dtype == np.float32
    assert np.allclose(model.weights, reference, atol=1e-6)
    assert np.all(np.diag(model.weights) == 0.0)
    users = np.array([0, 5, 39])
    assert np.allclose(model.score(users), train[users].toarray() @ reference, atol=1e-5)


def test_blocked_computation_matches_the_one_block_path(monkeypatch: pytest.MonkeyPatch) -> None:
    train = _random_binary(60, 25, seed=4)
    knn_whole = ItemKNN(neighbors=4).fit(train).similarity.toarray()
    ease_whole = EASE(reg=3.0).fit(train).weights
    # Tiny blocks force every block loop (Gram, KNN targets, inverse mirroring) to iterate.
    monkeypatch.setattr(peers, "_BLOCK_ENTRIES", 50)
    assert np.array_equal(ItemKNN(neighbors=4).fit(train).similarity.toarray(), knn_whole)
    assert np.allclose(EASE(reg=3.0).fit(train).weights, ease_whole, atol=1e-6)
    assert np.allclose(ease_whole, _ease_reference(train, 3.0), atol=1e-6)


def test_ease_recommends_within_the_users_block() -> None:
    # Users 0-5 only ever touch items 0-4, users 6-11 only items 5-9; each misses some items.
    rng = np.random.default_rng(5)
    rows = []
    for user in range(12):
        block = range(0, 5) if user < 6 else range(5, 10)
        rows.append([item for item in block if rng.random() < 0.6] or [block[0]])
    train = _csr(rows, 10)
    model = EASE(reg=1.0).fit(train)
    scores = model.score(np.arange(12))
    for user in range(12):
        own = np.arange(0, 5) if user < 6 else np.arange(5, 10)
        other = np.setdiff1d(np.arange(10), own)
        assert np.allclose(scores[user, other], 0.0, atol=1e-6)  # no weight crosses blocks
        if len(rows[user]) < 5:
            best = rank_users(model.score, np.array([user]), train, k=1)[0, 0]
            assert best in own


def test_ease_grid_fits_each_reg_exactly_as_a_separate_fit() -> None:
    train = _random_binary(80, 30, seed=6)
    users = np.arange(10)
    grid = ease_grid(train, [1.0, 5000.0])
    regs = []
    for reg, scorer in grid:
        regs.append(reg)
        np.testing.assert_allclose(
            scorer(users), EASE(reg=reg).fit(train).score(users), rtol=1e-5, atol=1e-6
        )
    assert regs == [1.0, 5000.0]


def test_itemknn_grid_fits_each_size() -> None:
    train = _random_binary(40, 20, seed=2)
    users = np.arange(5)
    for size, scorer in itemknn_grid(train, [2, 7]):
        np.testing.assert_array_equal(
            scorer(users), ItemKNN(neighbors=size).fit(train).score(users)
        )


def test_grid_input_checks() -> None:
    with pytest.raises(ValueError, match="empty"):
        next(ease_grid(TINY, []))
    with pytest.raises(ValueError, match="positive"):
        next(ease_grid(TINY, [0.0]))
    with pytest.raises(ValueError, match="empty"):
        next(itemknn_grid(TINY, []))


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="neighbors"):
        ItemKNN(neighbors=0)
    with pytest.raises(ValueError, match="shrink"):
        ItemKNN(shrink=-1.0)
    with pytest.raises(ValueError, match="reg"):
        EASE(reg=0.0)
    with pytest.raises(ValueError, match="sparse"):
        EASE().fit(np.ones((2, 2)))


@pytest.mark.parametrize("model", [ItemKNN(neighbors=5), EASE(reg=10.0)], ids=["itemknn", "ease"])
def test_with_history_reads_the_longer_history_without_refitting(model) -> None:
    train = _random_binary(30, 15, seed=4)
    model.fit(train)
    users = np.arange(30)
    # The training history itself gives back exactly the training scores.
    np.testing.assert_allclose(model.with_history(train)(users), model.score(users), atol=1e-6)
    longer = train.tolil(copy=True)
    unseen = int(np.flatnonzero(train[0].toarray()[0] == 0)[0])
    longer[0, unseen] = 1.0
    changed = model.with_history(csr_matrix(longer))(users)
    assert not np.allclose(changed[0], model.score(users)[0])
    np.testing.assert_allclose(changed[1:], model.score(users)[1:], atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        model.with_history(train[:3])
