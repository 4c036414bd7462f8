"""Full-ranking metrics on tiny hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from pipeline.evaluation.metrics import (
    activity_buckets,
    evaluate_scorer,
    item_coverage,
    rank_users,
    ranking_metrics,
    standard_error,
    top_k,
)


def _csr(rows: list[list[int]], n_items: int) -> csr_matrix:
    dense = np.zeros((len(rows), n_items), dtype=np.float32)
    for user, items in enumerate(rows):
        dense[user, items] = 1.0
    return csr_matrix(dense)


def _fixed_scorer(table: np.ndarray):
    table = np.asarray(table, dtype=np.float32)
    return lambda users: table[users]


# --- top_k ------------------------------------------------------------------------------------


def test_top_k_orders_best_first() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [4.0, 3.0, 2.0, 1.0]], dtype=np.float32)
    assert top_k(scores, 3).tolist() == [[1, 3, 2], [0, 1, 2]]
    assert top_k(scores, 3).dtype == np.int64


def test_top_k_breaks_ties_by_item_index() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0], [5.0, 5.0, 5.0, 5.0, 5.0]])
    # The tie straddles the cut-off: the lower-indexed tied items win the slots.
    assert top_k(scores, 2).tolist() == [[1, 2], [0, 1]]
    assert top_k(scores, 4).tolist() == [[1, 2, 4, 3], [0, 1, 2, 3]]
    assert top_k(scores, 5).tolist() == [[1, 2, 4, 3, 0], [0, 1, 2, 3, 4]]


def test_top_k_matches_a_stable_full_sort_under_heavy_ties() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(50, 30)).astype(np.float32)  # many ties everywhere
    scores[0, :5] = -np.inf
    expected = np.argsort(-scores, axis=1, kind="stable")
    for k in (1, 3, 7, 30):
        assert np.array_equal(top_k(scores, k), expected[:, :k])


def test_top_k_with_a_priority_matches_a_full_sort_by_score_then_priority() -> None:
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, size=(50, 30)).astype(np.float32)
    scores[0, :5] = -np.inf
    priority = rng.random((50, 30))
    expected = np.lexsort((-priority, -scores), axis=1)
    for k in (1, 3, 7, 30):
        assert np.array_equal(top_k(scores, k, priority), expected[:, :k])
    # Distinct scores ignore the priority; a tie straddling the cut-off goes to the higher one.
    row = np.array([[1.0, 3.0, 3.0, 2.0, 3.0]])
    assert top_k(row, 2, np.array([[0.9, 0.1, 0.2, 0.9, 0.3]])).tolist() == [[4, 2]]
    assert top_k(row, 5, np.zeros((1, 5))).tolist() == [[1, 2, 4, 3, 0]]
    with pytest.raises(ValueError, match="priority"):
        top_k(row, 2, np.zeros((1, 4)))


def test_top_k_reads_a_priority_function_only_for_rows_with_ties() -> None:
    rng = np.random.default_rng(2)
    scores = rng.standard_normal((40, 3000)).astype(np.float32)  # distinct: no tie to break
    scores[5, rng.choice(3000, 50, replace=False)] = scores[5].max() + 1.0  # tie across the cut
    scores[9, [3, 7]] = scores[9].max() + 1.0  # a tie inside the top k only
    scores[11, :2990] = -np.inf  # ten finite scores: from k=11 on, the -inf slots tie
    priority = rng.random(scores.shape)
    asked: list[list[int]] = []

    def lazy(rows: np.ndarray) -> np.ndarray:
        asked.append(rows.tolist())
        return priority[rows]

    expected = np.lexsort((np.arange(3000)[None, :].repeat(40, 0), -priority, -scores), axis=1)
    for k in (1, 10, 25):
        asked.clear()
        assert np.array_equal(top_k(scores, k, lazy), expected[:, :k])
        assert np.array_equal(top_k(scores, k, priority), expected[:, :k])
        read = {row for rows in asked for row in rows}
        assert read == ({5, 9, 11} if k > 10 else {5, 9})
    assert np.array_equal(top_k(scores, 25), np.argsort(-scores, axis=1, kind="stable")[:, :25])


@pytest.mark.parametrize("k", [0, 5])
def test_top_k_rejects_bad_k(k: int) -> None:
    with pytest.raises(ValueError, match="k"):
        top_k(np.zeros((2, 4)), k)


def test_top_k_rejects_nan_and_bad_shape() -> None:
    with pytest.raises(ValueError, match="NaN"):
        top_k(np.array([[0.0, np.nan]]), 1)
    with pytest.raises(ValueError, match="2-D"):
        top_k(np.zeros(4), 1)


# --- rank_users ---------------------------------------------------------------------------------


def test_rank_users_never_returns_a_seen_item() -> None:
    table = np.array([[9.0, 1.0, 2.0, 3.0], [1.0, 2.0, 9.0, 8.0]])
    seen = _csr([[0], [2, 3]], 4)  # each user's best-scored item(s) are already seen
    ranked = rank_users(_fixed_scorer(table), np.array([0, 1]), seen, k=2)
    assert ranked.tolist() == [[3, 2], [1, 0]]


def test_rank_users_batches_give_the_same_answer() -> None:
    rng = np.random.default_rng(1)
    table = rng.random((7, 12)).astype(np.float32)
    seen = csr_matrix((rng.random((7, 12)) < 0.3).astype(np.float32))
    users = np.array([6, 0, 3, 3, 5])
    whole = rank_users(_fixed_scorer(table), users, seen, k=4)
    for batch_size in (1, 2, 3):
        assert np.array_equal(
            rank_users(_fixed_scorer(table), users, seen, k=4, batch_size=batch_size), whole
        )


def test_rank_users_does_not_mutate_the_scorers_arrays() -> None:
    row = np.arange(4, dtype=np.float32)
    rank_users(
        lambda users: np.broadcast_to(row, (users.size, 4)), np.array([0]), _csr([[3]], 4), 1
    )
    assert row.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_rank_users_input_checks() -> None:
    seen = _csr([[0], [1]], 3)
    scorer = _fixed_scorer(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="user indices"):
        rank_users(scorer, np.array([2]), seen, 1)
    with pytest.raises(ValueError, match="larger than the number of items"):
        rank_users(scorer, np.array([0]), seen, 4)
    with pytest.raises(ValueError, match="scorer returned shape"):
        rank_users(lambda users: np.zeros((users.size, 5)), np.array([0]), seen, 1)


# --- ranking_metrics ----------------------------------------------------------------------------


def test_single_relevant_item_at_rank_three() -> None:
    metrics = ranking_metrics(np.array([[5, 6, 7, 8, 9]]), [np.array([7])], ks=[5])
    assert metrics["hr@5"][0] == 1.0
    assert metrics["ndcg@5"][0] == pytest.approx(1 / math.log2(4))  # = 0.5
    assert metrics["ndcg@5"][0] == pytest.approx(0.5)
    assert metrics["mrr@5"][0] == pytest.approx(1 / 3)
    assert metrics["recall@5"][0] == 1.0


def test_relevant_item_outside_top_k_scores_zero() -> None:
    metrics = ranking_metrics(np.array([[5, 6, 7, 8, 9]]), [np.array([7])], ks=[2])
    assert {name: float(values[0]) for name, values in metrics.items()} == {
        "hr@2": 0.0,
        "ndcg@2": 0.0,
        "mrr@2": 0.0,
        "recall@2": 0.0,
    }


def test_several_relevant_items_use_the_ideal_dcg() -> None:
    recommended = np.array([[0, 1, 2, 3, 4]])
    relevant = [np.array([1, 3, 9])]  # hits at ranks 2 and 4; item 9 is not recommended
    metrics = ranking_metrics(recommended, relevant, ks=[2, 5])

    dcg5 = 1 / math.log2(3) + 1 / math.log2(5)
    idcg5 = 1 + 1 / math.log2(3) + 1 / math.log2(4)  # min(|rel|=3, K=5) = 3 ideal hits
    assert metrics["ndcg@5"][0] == pytest.approx(dcg5 / idcg5)
    assert metrics["recall@5"][0] == pytest.approx(2 / 3)
    assert metrics["mrr@5"][0] == pytest.approx(1 / 2)
    assert metrics["hr@5"][0] == 1.0

    idcg2 = 1 + 1 / math.log2(3)  # min(3, 2) = 2 ideal hits
    assert metrics["ndcg@2"][0] == pytest.approx((1 / math.log2(3)) / idcg2)
    assert metrics["recall@2"][0] == pytest.approx(1 / 3)


def test_perfect_list_has_ndcg_one() -> None:
    metrics = ranking_metrics(np.array([[3, 1, 0]]), [np.array([1, 3])], ks=[3])
    assert metrics["ndcg@3"][0] == pytest.approx(1.0)
    assert metrics["mrr@3"][0] == 1.0


def test_sparse_and_list_relevance_agree() -> None:
    recommended = np.array([[0, 1, 2], [2, 0, 1], [1, 2, 0]])
    lists = [np.array([2]), np.array([0, 1]), np.array([3, 3, 1])]  # duplicates count once
    sparse = _csr([[2], [0, 1], [3, 1]], 5)
    from_lists = ranking_metrics(recommended, lists, ks=[1, 3])
    from_sparse = ranking_metrics(recommended, sparse, ks=[1, 3])
    assert from_lists.keys() == from_sparse.keys()
    for name in from_lists:
        assert np.allclose(from_lists[name], from_sparse[name]), name
    assert from_lists["recall@3"].tolist() == [1.0, 1.0, 0.5]


def test_ranking_metrics_input_checks() -> None:
    recommended = np.array([[0, 1]])
    with pytest.raises(ValueError, match="no relevant items"):
        ranking_metrics(recommended, [np.array([], dtype=np.int64)], ks=[1])
    with pytest.raises(ValueError, match="cut-off"):
        ranking_metrics(recommended, [np.array([0])], ks=[3])
    with pytest.raises(ValueError, match="align"):
        ranking_metrics(recommended, [np.array([0]), np.array([1])], ks=[1])
    with pytest.raises(ValueError, match="repeats"):
        ranking_metrics(np.array([[1, 1]]), [np.array([1])], ks=[2])


# --- coverage, evaluate_scorer, buckets ---------------------------------------------------------


def test_item_coverage_on_a_known_case() -> None:
    recommended = np.array([[0, 1], [1, 2], [1, 0]])
    assert item_coverage(recommended, 1, n_items=5) == pytest.approx(2 / 5)  # items {0, 1}
    assert item_coverage(recommended, 2, n_items=5) == pytest.approx(3 / 5)  # items {0, 1, 2}
    with pytest.raises(ValueError, match=r"0\.\.4"):
        item_coverage(np.array([[5]]), 1, n_items=5)


def test_evaluate_scorer_skips_users_without_relevant_items() -> None:
    # Item scores are the same for everyone: 3 > 2 > 1 > 0.
    table = np.tile(np.array([0.0, 1.0, 2.0, 3.0]), (3, 1))
    seen = _csr([[3], [], [0]], 4)
    relevant = _csr([[2], [], [0]], 4)  # user 1 has nothing to find
    result = evaluate_scorer(_fixed_scorer(table), seen, relevant, ks=[1, 2], coverage_k=1)

    assert result.users.tolist() == [0, 2]
    assert result.recommended.tolist() == [[2, 1], [3, 2]]
    assert result.per_user["hr@1"].tolist() == [1.0, 0.0]
    assert result.per_user["mrr@2"].tolist() == [1.0, 0.0]  # item 0 is at rank 4 for user 2

    summary = result.summary()
    assert summary["hr@1"] == pytest.approx(0.5)
    assert summary["coverage@1"] == pytest.approx(2 / 4)
    assert summary["users"] == 2

    only_first = result.summary(np.array([True, False]))
    assert only_first["hr@1"] == 1.0
    assert only_first["users"] == 1
    assert only_first["coverage@1"] == summary["coverage@1"]  # always over every user
    empty = result.summary(np.array([False, False]))
    assert empty["users"] == 0 and math.isnan(empty["hr@1"])


def test_evaluate_scorer_with_explicit_users_and_checks() -> None:
    table = np.tile(np.array([0.0, 1.0, 2.0, 3.0]), (3, 1))
    seen = _csr([[3], [], [0]], 4)
    relevant = _csr([[2], [], [0]], 4)
    result = evaluate_scorer(
        _fixed_scorer(table), seen, relevant, ks=[1], coverage_k=1, users=np.array([2, 1])
    )
    assert result.users.tolist() == [2]
    with pytest.raises(ValueError, match="shape"):
        evaluate_scorer(_fixed_scorer(table), seen, relevant[:2], ks=[1], coverage_k=1)
    with pytest.raises(ValueError, match="mask"):
        result.summary(np.array([1]))
    with pytest.raises(ValueError, match="no user"):
        evaluate_scorer(_fixed_scorer(table), seen, relevant, [1], 1, users=np.array([1]))


def test_activity_bucket_labels_and_masks() -> None:
    counts = np.array([5, 20, 21, 50, 51, 150, 151, 1000])
    buckets = activity_buckets(counts, [20, 50, 150])
    assert [label for label, _ in buckets] == ["≤20", "21–50", "51–150", ">150"]
    assert [mask.tolist() for _, mask in buckets] == [
        [True, True, False, False, False, False, False, False],
        [False, False, True, True, False, False, False, False],
        [False, False, False, False, True, True, False, False],
        [False, False, False, False, False, False, True, True],
    ]
    # Every user falls in exactly one bucket.
    assert np.all(np.sum([mask for _, mask in buckets], axis=0) == 1)


def test_activity_buckets_edge_cases() -> None:
    counts = np.array([1, 10])
    assert [label for label, _ in activity_buckets(counts, [])] == ["all"]
    assert [label for label, _ in activity_buckets(counts, [4, 5])] == ["≤4", "5", ">5"]
    with pytest.raises(ValueError, match="increasing"):
        activity_buckets(counts, [50, 20])


def test_standard_error_of_the_mean() -> None:
    # sample sd of 1..4 is sqrt(5/3); over sqrt(4)
    assert standard_error([1.0, 2.0, 3.0, 4.0]) == pytest.approx(math.sqrt(5 / 3) / 2)
    assert standard_error(np.array([True, False, True, False])) == pytest.approx(
        math.sqrt(1 / 3) / 2
    )
    assert standard_error([0.7]) == 0.0
    assert standard_error([]) == 0.0
