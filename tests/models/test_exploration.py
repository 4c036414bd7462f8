"""Multi-interest retrieval and exploration: the plain-Python rules serving runs, and the numpy
versions the pipeline evaluates with, checked against known answers and against each other."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from pipeline.data.artifacts import InterestSets
from pipeline.evaluation.beyond_accuracy import (
    interest_coverage,
    intra_list_diversity,
    novelty,
    on_events,
    self_information,
)
from pipeline.evaluation.metrics import EvaluationResult, rank_users
from pipeline.models.exploration import (
    closest_similarity_matrix,
    explore_scorer,
    interest_queries,
    multi_interest_scorer,
    novel_events,
    topic_scores,
    topic_weight_matrix,
    transition_counts,
)
from recli import exploration
from recli.exploration import Transitions, merge_by_weight, rank_topics, topic_weights


# --------------------------------------------------------------------------------------------
# The rules (recli.exploration)
# --------------------------------------------------------------------------------------------
def test_merge_deals_slots_in_proportion_to_weight() -> None:
    lists = [list(range(0, 100)), list(range(100, 200)), list(range(200, 300))]
    merged = merge_by_weight(lists, [0.5, 0.3, 0.2], 10)
    sources = [source for _, source in merged]
    assert [sources.count(source) for source in range(3)] == [5, 3, 2]
    assert sources[0] == 0  # the heaviest list leads
    # Each list gives its items best first.
    for source in range(3):
        taken = [item for item, origin in merged if origin == source]
        assert taken == lists[source][: len(taken)]


def test_merge_skips_items_already_chosen_and_lists_that_run_dry() -> None:
    merged = merge_by_weight([[1, 2, 3], [1, 4], []], [0.5, 0.5, 1.0], 5)
    assert [item for item, _ in merged] == [1, 4, 2, 3]  # 1 once; list 1 then dry; [] ignored
    assert [source for _, source in merged] == [0, 1, 0, 0]
    assert merge_by_weight([[1, 2]], [0.0], 2) == []  # zero weight: nothing dealt
    with pytest.raises(ValueError, match="2 lists but 1 weights"):
        merge_by_weight([[1], [2]], [1.0], 1)


def test_interest_query_pulls_the_user_towards_the_interest() -> None:
    user, mean = [3.0, 4.0], [0.0, 10.0]  # |u| = 5, |m| = 10
    assert exploration.interest_query(user, mean, 0.0) == user
    assert exploration.interest_query(user, mean, 1.0) == [3.0, 9.0]  # u + 5 · m/|m|
    assert exploration.interest_query(user, [0.0, 0.0], 1.0) == user
    batch = interest_queries(np.array(user), np.array([mean, [2.0, 0.0]]), 1.0)
    np.testing.assert_allclose(batch, [[3.0, 9.0], [8.0, 4.0]])


def test_topic_weights_count_recent_events_more() -> None:
    # Newest first: topic 1 now, then topic 0 once a half-life ago.
    weights = topic_weights([1, 0, 0], half_life=1.0)
    assert weights[1] == pytest.approx(1 / 1.75) and weights[0] == pytest.approx(0.75 / 1.75)
    assert topic_weights([], 5.0) == {}


def test_transitions_are_smoothed_towards_the_take_up_rate() -> None:
    transitions = Transitions([[0, 6, 0], [0, 0, 0], [0, 0, 0]], adoptions=[0, 6, 0], smoothing=3)
    prior = [1 / 9, 7 / 9, 1 / 9]  # (adoptions + 1) / (total + topics)
    assert transitions.prior == pytest.approx(prior)
    assert transitions.probability(0, 1) == pytest.approx((6 + 3 * 7 / 9) / 9)
    assert transitions.probability(1, 2) == pytest.approx(prior[2])  # an empty row: the prior
    with pytest.raises(ValueError, match="3 x 3"):
        Transitions([[0, 1]], [0, 1, 2], 1.0)


def test_rank_topics_prefers_where_similar_users_went() -> None:
    # Users who had topic 0 moved on to topic 2, never to 3.
    counts = [[0, 0, 9, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    transitions = Transitions(counts, adoptions=[0, 0, 9, 9], smoothing=1.0)
    ranked = rank_topics({0: 0.8, 1: 0.2}, transitions, [0.0] * 4, similarity_weight=0.0)
    assert [entry.topic for entry in ranked] == [2, 3]  # engaged topics are not candidates
    assert sum(entry.probability for entry in ranked) == pytest.approx(1.0)
    assert ranked[0].because == (0, 1)  # topic 0 leads to it most
    # A strong enough pull of the language model towards topic 3 reverses the order.
    flipped = rank_topics({0: 0.8, 1: 0.2}, transitions, [0, 0, 0.0, 1.0], similarity_weight=10)
    assert [entry.topic for entry in flipped] == [3, 2]
    assert flipped[0].score == pytest.approx(math.log(flipped[0].probability) + 10)
    assert rank_topics({0: 1, 1: 1, 2: 1, 3: 1}, transitions, [0.0] * 4, 0.0) == []


def test_closest_similarity_is_the_best_cosine_to_any_interest() -> None:
    topics = [[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]
    found = exploration.closest_similarity([[2.0, 0.0], [0.0, -1.0]], topics)
    assert found == pytest.approx([1.0, 0.0, math.sqrt(0.5)])
    assert exploration.closest_similarity([], topics) == [0.0, 0.0, 0.0]
    assert exploration.nearest([[2.0, 0.0], [0.0, -1.0], [1.0, 1.0]], [0.0, 2.0]) == 2
    assert exploration.nearest([[1.0, 0.0], [3.0, 0.0]], [1.0, 0.0]) == 0  # ties: the first
    assert exploration.nearest([], [1.0, 0.0]) is None


# --------------------------------------------------------------------------------------------
# The numpy versions agree with the rules
# --------------------------------------------------------------------------------------------
def _history() -> pl.DataFrame:
    # user 0: topics 0, 0, 1, 2 in time; user 1: 1, 0; user 2: nothing; user 3: topic 2 only.
    return pl.DataFrame(
        {
            "user_idx": [0, 0, 0, 0, 1, 1, 3],
            "item_idx": [0, 1, 2, 4, 3, 0, 5],
            "timestamp": [1, 2, 3, 4, 1, 2, 7],
        }
    )


TOPIC_OF = np.array([0, 0, 1, 1, 2, 2])


def test_topic_weight_matrix_matches_the_rule_per_user() -> None:
    weights = topic_weight_matrix(_history(), TOPIC_OF, n_users=4, n_topics=3, half_life=2.0)
    assert weights[2].sum() == 0
    for user in (0, 1, 3):
        events = _history().filter(pl.col("user_idx") == user).sort("timestamp", descending=True)
        expected = topic_weights(TOPIC_OF[events["item_idx"].to_numpy()].tolist(), 2.0)
        assert {t: weights[user, t] for t in np.flatnonzero(weights[user])} == pytest.approx(
            expected
        )


def test_transition_counts_walk_each_timeline_in_order() -> None:
    counts, adoptions = transition_counts(_history(), TOPIC_OF, 3)
    # user 0: topic 1 after {0} (1 from 0); topic 2 after {0, 1} (½ from each).
    # user 1: topic 0 after {1} (1 from 1). User 3 never takes a second topic up.
    np.testing.assert_allclose(counts, [[0, 1, 0.5], [1, 0, 0.5], [0, 0, 0]])
    np.testing.assert_allclose(adoptions, [1, 1, 1])


def test_topic_scores_and_similarity_match_the_rules() -> None:
    sets = InterestSets(
        users=np.array([0, 0, 1]),
        weights=np.array([0.7, 0.3, 1.0]),
        items=[np.array([0, 1]), np.array([2]), np.array([3])],
        centroids=np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32) / [[1], [1], [2**0.5]],
    )
    topic_centroids = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    similarity = closest_similarity_matrix(sets, topic_centroids, n_users=3)
    for user, rows in enumerate(sets.rows_of(3)):
        expected = exploration.closest_similarity(sets.centroids[rows].tolist(), topic_centroids)
        np.testing.assert_allclose(similarity[user], expected, atol=1e-6)
    weights = topic_weight_matrix(_history(), TOPIC_OF, 4, 3, 2.0)[:3]
    transitions = Transitions(*transition_counts(_history(), TOPIC_OF, 3), smoothing=1.0)
    scores = topic_scores(weights, transitions, similarity, similarity_weight=2.0)
    assert np.isneginf(scores[0]).all()  # user 0 tried every topic
    engaged = {0: weights[1, 0], 1: weights[1, 1]}
    (only,) = rank_topics(engaged, transitions, similarity[1], 2.0)
    assert only.topic == 2 and scores[1, 2] == pytest.approx(only.score)
    assert np.isfinite(scores[2]).all()  # no history: every topic is new, ranked by the prior


# --------------------------------------------------------------------------------------------
# The scorers the protocol ranks
# --------------------------------------------------------------------------------------------
def _space() -> tuple[np.ndarray, np.ndarray]:
    """Items 0-3 along axis 0, items 4-7 along axis 1 (later items score higher)."""
    items = np.zeros((8, 2), dtype=np.float32)
    items[:4, 0] = [1.0, 1.1, 1.2, 1.3]
    items[4:, 1] = [1.0, 1.1, 1.2, 1.3]
    users = np.array([[1.0, 0.3]], dtype=np.float32)  # leans to axis 0
    return users, items


def test_multi_interest_lists_cover_both_interests() -> None:
    users, items = _space()
    seen = sp.csr_matrix(([1.0, 1.0], ([0, 0], [0, 4])), shape=(1, 8))
    sets = InterestSets(
        users=np.array([0, 0]),
        weights=np.array([0.5, 0.5]),
        items=[np.array([0]), np.array([4])],
        centroids=np.eye(2, dtype=np.float32),
    )
    candidates = np.ones(8, dtype=bool)
    single = rank_users(lambda u: users[u] @ items.T, np.array([0]), seen, 4)[0]
    assert set(single.tolist()) == {1, 2, 3, 7}  # the whole-user vector barely leaves axis 0
    scorer = multi_interest_scorer(users, items, sets, seen, candidates, 0.0, 10.0, depth=4)
    merged = rank_users(scorer, np.array([0]), seen, 4)[0]
    assert {3, 2} <= set(merged.tolist()) and {7, 6} <= set(merged.tolist())
    # Share 1: the whole-user list alone, whatever the interests.
    whole = multi_interest_scorer(users, items, sets, seen, candidates, 1.0, 10.0, depth=4)
    np.testing.assert_array_equal(rank_users(whole, np.array([0]), seen, 4)[0], single)
    # Items that are not candidates never take a slot.
    only_axis_0 = np.arange(8) < 4
    restricted = multi_interest_scorer(users, items, sets, seen, only_axis_0, 0.0, 10.0, 3)
    assert set(rank_users(restricted, np.array([0]), seen, 3)[0].tolist()) == {1, 2, 3}


def test_explore_ranks_topics_new_to_the_user_first() -> None:
    users, items = _space()
    topic_of = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    scores_by_topic = np.array([[-np.inf, -0.5]])  # topic 0 engaged
    scorer = explore_scorer(users, items, topic_of, scores_by_topic, 1.0, topic_weight=1.0)
    seen = sp.csr_matrix((1, 8))
    ranked = rank_users(scorer, np.array([0]), seen, 6)[0]
    assert ranked.tolist() == [7, 6, 5, 4, 3, 2]  # new topic first, then the rest by score
    row = scorer(np.array([0]))[0]
    assert row[7] == pytest.approx(exploration.explore_score(0.3 * 1.3, 1.0, -0.5, 1.0))


def test_novel_events_are_those_in_topics_the_history_lacks() -> None:
    relevant = sp.csr_matrix(([1.0, 1.0, 1.0], ([0, 0, 1], [1, 5, 5])), shape=(2, 6))
    engaged = np.array([[True, False, False], [False, False, True]])
    novel, familiar = novel_events(relevant, engaged, TOPIC_OF)
    assert novel.toarray().nonzero() == (np.array([0]), np.array([5]))
    assert sorted(zip(*familiar.nonzero(), strict=True)) == [(0, 1), (1, 5)]


# --------------------------------------------------------------------------------------------
# Beyond accuracy
# --------------------------------------------------------------------------------------------
def test_diversity_novelty_and_coverage_known_answers() -> None:
    vectors = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    assert intra_list_diversity(np.array([[0, 1]]), vectors) == pytest.approx([0.0])
    assert intra_list_diversity(np.array([[0, 2]]), vectors) == pytest.approx([1.0])
    assert intra_list_diversity(np.array([[0, 1, 2]]), vectors) == pytest.approx([2 / 3])
    # 3 users: item 0 seen by all, item 1 by one, item 2 by none.
    train = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [1, 0, 0]], dtype=np.float32))
    information = self_information(train)
    assert information == pytest.approx([-np.log2(4 / 4), -np.log2(2 / 4), -np.log2(1 / 4)])
    assert novelty(np.array([[1, 2]]), information) == pytest.approx([1.5])
    sets = InterestSets(
        users=np.array([0, 0, 1]),
        weights=np.array([0.5, 0.5, 1.0]),
        items=[np.array([0]), np.array([2]), np.array([1])],
        centroids=np.array([[1, 0], [0, 1], [1, 0]], dtype=np.float32),
    )
    coverage = interest_coverage(
        np.array([0, 0, 1]), np.array([[0, 1], [0, 2], [0, 2]]), sets, vectors
    )
    assert coverage[:2] == pytest.approx([0.5, 1.0]) and np.isnan(coverage[2])  # one interest


def test_accuracy_on_some_events_reuses_the_ranked_lists() -> None:
    result = EvaluationResult(
        users=np.array([0, 1]),
        per_user={},
        recommended=np.array([[3, 4], [5, 6]]),
        coverage={},
    )
    events = sp.csr_matrix(([1.0], ([1], [6])), shape=(2, 8))  # only user 1 has one: rank 2
    table = on_events(result, events, k=2)
    assert table["hr@2"] == {"mean": 1.0, "standard_error": 0.0, "users": 1}
    assert table["ndcg@2"]["mean"] == pytest.approx(1 / np.log2(3))
    assert on_events(result, sp.csr_matrix((2, 8)), 2) == {}
