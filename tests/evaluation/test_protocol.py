"""The evaluation protocol: split matrices, candidate masking, ties, and the one tuning loop."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from synthetic import make_raw

from pipeline import preprocess
from pipeline.core.sections import PreprocessConfig
from pipeline.evaluation.metrics import evaluate_scorer, rank_users
from pipeline.evaluation.protocol import (
    SPREAD_SAMPLE_USERS,
    SplitMatrices,
    SplitScorers,
    evaluate_model,
    random_scorer,
    restricted,
    select_on_validation,
    spread_sample,
)


@pytest.fixture(scope="module")
def cold_setup():
    processed = preprocess.run(
        make_raw(n_users=40, n_items=60, per_user=15),
        PreprocessConfig(min_user_interactions=3, cold_item_fraction=0.2),
    )
    return processed, SplitMatrices.from_processed(processed)


def test_test_ranking_excludes_validation_items() -> None:
    processed = preprocess.run(make_raw(), PreprocessConfig(min_user_interactions=3))
    matrices = SplitMatrices.from_processed(processed)
    seen = matrices.seen("test").toarray()
    assert (seen[matrices.validation.toarray() > 0] == 1).all()
    assert (seen[matrices.test.toarray() > 0] == 0).all()
    assert (matrices.seen("validation") != matrices.train).nnz == 0
    assert matrices.train_counts.sum() == processed.train.height


@pytest.mark.parametrize("split", ["validation", "test"])
def test_a_scorer_that_loves_cold_items_never_gets_one_into_the_warm_lists(
    cold_setup, split: str
) -> None:
    _, matrices = cold_setup
    cold = matrices.cold_items
    assert cold.sum() == 12
    result = evaluate_model(
        lambda users: np.tile(cold.astype(np.float32), (len(users), 1)),
        matrices,
        split,
        ks=[10],
        coverage_k=10,
    )
    assert result.users.size > 0
    assert not cold[result.recommended].any()
    # ...and nothing the user was already known to have done comes back either.
    seen = matrices.seen(split)
    for row, user in zip(result.recommended, result.users, strict=True):
        assert not set(row) & set(seen[user].indices)


def test_the_cold_slice_ranks_only_cold_items(cold_setup) -> None:
    processed, matrices = cold_setup
    result = evaluate_model(random_scorer(matrices.n_items, 1), matrices, "cold", [5], 5)
    assert matrices.cold_items[result.recommended].all()
    assert result.users.size == len(set(processed.cold["user_idx"]))


def test_unknown_split_is_refused(cold_setup) -> None:
    with pytest.raises(ValueError, match="unknown split"):
        evaluate_model(random_scorer(60, 0), cold_setup[1], "train")


def test_restricted_scores_excluded_items_minus_infinity() -> None:
    candidates = np.array([True, False, True])
    scores = restricted(lambda users: np.ones((len(users), 3), np.float32), candidates)(
        np.arange(2)
    )
    assert np.isneginf(scores[:, 1]).all() and (scores[:, [0, 2]] == 1).all()


def test_random_floor_is_the_same_whatever_the_batch() -> None:
    scorer = random_scorer(20, seed=5)
    np.testing.assert_array_equal(scorer(np.array([3, 4]))[1], scorer(np.array([4]))[0])


def test_ties_are_broken_at_random_and_real_preferences_kept() -> None:
    seen = csr_matrix((30, 6), dtype=np.float32)
    flat = lambda users: np.zeros((len(users), 6), np.float32)  # noqa: E731
    first_choices = {
        int(rank_users(flat, np.array([user]), seen, 1, tie_seed=1)[0, 0]) for user in range(30)
    }
    assert len(first_choices) > 3  # not always item 0
    graded = np.array([3.0, 1.0, 1.0, 2.0, -np.inf, 1.0 + 1e-6], dtype=np.float32)
    ranked = rank_users(
        lambda users: np.tile(graded, (len(users), 1)), np.arange(30), seen, 5, tie_seed=1
    )
    assert (ranked[:, :3] == [0, 3, 5]).all()  # a tiny real difference survives
    assert {tuple(row) for row in ranked[:, 3:]} == {(1, 2), (2, 1)}


def test_ties_follow_the_seeded_draw_however_close_its_values() -> None:
    # 3,000 items at 19.0: float32 has no room for noise below one unit at that magnitude, so
    # the order among them must come from the seeded draw itself, not from perturbed scores.
    n_items, users = 3000, np.array([4, 7])
    scores = np.full((2, n_items), 19.0, dtype=np.float32)
    scores[:, 10] = 25.0
    seen = csr_matrix((8, n_items), dtype=np.float32)
    ranked = rank_users(lambda u: scores[: len(u)], users, seen, 50, tie_seed=3)
    assert (ranked[:, 0] == 10).all()
    for row, user in zip(ranked, users, strict=True):
        draw = np.random.default_rng([3, int(user)]).random(n_items)
        draw[10] = -1.0
        np.testing.assert_array_equal(row[1:], np.argsort(-draw, kind="stable")[:49])
    alone = rank_users(lambda u: scores[: len(u)], users[1:], seen, 50, tie_seed=3)
    np.testing.assert_array_equal(alone[0], ranked[1])  # the same whatever the batch


def test_evaluation_breaks_ties_the_same_way_in_tuning_and_reporting(cold_setup) -> None:
    # A constant scorer is all ties: its validation lists must be the seeded random order, the
    # same in a tuning loop and in a report, and not the catalogue order.
    _, matrices = cold_setup
    constant = lambda users: np.zeros((len(users), matrices.n_items), np.float32)  # noqa: E731
    reported = evaluate_model(constant, matrices, "validation", [10], 10, seed=4)
    _, tuned = select_on_validation([("constant", constant)], matrices, seed=4)
    assert tuned["constant"] == reported.summary()["ndcg@10"]
    first_items = set(reported.recommended[:, 0].tolist())
    assert len(first_items) > 3


def _random_binary(n_users: int, n_items: int, seed: int) -> csr_matrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < 0.2).astype(np.float32)
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1.0
    return csr_matrix(dense)


def test_select_on_validation_picks_the_setting_that_is_best_on_validation() -> None:
    train = _random_binary(60, 25, seed=6)
    users = np.arange(60)
    rng = np.random.default_rng(0)
    good = rng.random((60, 25)).astype(np.float32)
    bad = rng.random((60, 25)).astype(np.float32)
    # Validation = each user's unseen top-1 under `good`, so `good` scores HR@1 = 1 exactly.
    masked = np.where(train.toarray() > 0, -np.inf, good)
    picks = masked.argmax(axis=1)
    validation = csr_matrix((np.ones(60, np.float32), (users, picks)), shape=train.shape)
    empty = csr_matrix(train.shape, dtype=np.float32)
    matrices = SplitMatrices(
        train=train, validation=validation, test=empty, cold=empty, cold_items=np.zeros(25, bool)
    )
    candidates = [
        ("bad", lambda u: bad[u]),
        ("good", lambda u: good[u]),
        ("also", lambda u: bad[u]),
    ]
    best, values = select_on_validation(candidates, matrices, metric="hr@1")
    assert best == "good" and values["good"] == 1.0 and values["bad"] < 1.0
    assert list(values) == ["bad", "good", "also"]
    # The first of equal values wins.
    assert select_on_validation(candidates[::2], matrices, metric="hr@1")[0] == "bad"
    # Each value is exactly what a separate evaluation gives.
    direct = evaluate_scorer(lambda u: bad[u], train, validation, [1], 1)
    assert values["bad"] == pytest.approx(direct.summary()["hr@1"])


def test_select_on_validation_input_checks(cold_setup) -> None:
    matrices = cold_setup[1]
    with pytest.raises(ValueError, match="empty"):
        select_on_validation([], matrices)
    with pytest.raises(ValueError, match="metric"):
        select_on_validation([("x", random_scorer(60, 0))], matrices, metric="precision@3")


def test_the_test_split_is_scored_from_the_test_time_history(cold_setup) -> None:
    # A model whose test-time scorer knows each user's test item (as the validation event lets a
    # sequential model know the next one) and whose training-history scorer knows nothing.
    _, matrices = cold_setup
    test_items = matrices.test.toarray().astype(np.float32)
    model = SplitScorers(
        validation=lambda users: np.zeros((len(users), matrices.n_items), np.float32),
        test=lambda users: test_items[users],
    )
    assert evaluate_model(model, matrices, "test", [1], 1).summary()["hr@1"] == 1.0
    assert evaluate_model(model, matrices, "validation", [1], 1).summary()["hr@1"] < 0.5
    # The cold slice is predicted from the training history, like validation.
    cold = evaluate_model(model, matrices, "cold", [1], 1, seed=2)
    flat = evaluate_model(model.validation, matrices, "cold", [1], 1, seed=2)
    np.testing.assert_array_equal(cold.recommended, flat.recommended)


def test_above_max_users_every_evaluation_ranks_the_same_seeded_sample(cold_setup) -> None:
    processed, full = cold_setup
    capped = SplitMatrices.from_processed(processed, max_users=15, seed=7)
    assert capped.evaluated is not None and capped.evaluated.size == 15
    assert np.array_equal(capped.evaluated, np.unique(capped.evaluated))  # sorted, no repeats
    again = SplitMatrices.from_processed(processed, max_users=15, seed=7)
    assert np.array_equal(capped.evaluated, again.evaluated)
    other = SplitMatrices.from_processed(processed, max_users=15, seed=8)
    assert not np.array_equal(capped.evaluated, other.evaluated)
    assert SplitMatrices.from_processed(processed, max_users=40).evaluated is None

    scorer = random_scorer(full.n_items, seed=1)
    for split in ("validation", "test"):
        sampled = evaluate_model(scorer, capped, split, [10], 10, seed=3)
        everyone = evaluate_model(scorer, full, split, [10], 10, seed=3)
        assert set(sampled.users) <= set(capped.evaluated.tolist())
        # A user's result does not depend on who else is evaluated.
        position = np.searchsorted(everyone.users, sampled.users)
        np.testing.assert_array_equal(
            sampled.per_user["ndcg@10"], everyone.per_user["ndcg@10"][position]
        )


def test_score_spreads_are_measured_on_the_evaluated_users_only() -> None:
    pool = np.array([3, 8, 20, 41, 77])
    drawn = spread_sample(100, seed=0, pool=pool)
    assert set(drawn.tolist()) == set(pool.tolist())  # fewer than the sample size: all of them
    many = np.arange(0, 4000, 2)
    drawn = spread_sample(4000, seed=0, pool=many)
    assert drawn.size == SPREAD_SAMPLE_USERS and set(drawn.tolist()) <= set(many.tolist())
    # Without a pool: the same draw as over every user, seeded.
    np.testing.assert_array_equal(spread_sample(4000, 1), spread_sample(4000, 1))
    assert spread_sample(4000, 1).max() >= 2000
