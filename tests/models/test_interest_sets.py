"""Users' histories cut into interests (`pipeline.models.interest_sets`) on hand-built histories
whose right answers are known."""

from __future__ import annotations

import numpy as np
import pytest
from three_topics import SETTINGS, events_of, topic_items

from pipeline.models import interest_sets
from pipeline.models.interest_sets import InterestSettings, user_interest_sets


def test_a_user_with_two_tastes_gets_two_interests_with_their_owntopic_items() -> None:
    _, vectors = topic_items()
    # User 0: six noir films long ago, then six animated ones recently.
    history = events_of({0: [8, 9, 10, 11, 12, 13, 0, 1, 2, 3, 4, 5]})
    table, centroids = user_interest_sets(history, vectors, SETTINGS)
    assert table["interest"].to_list() == [0, 1]
    recent, older = table.row(0, named=True), table.row(1, named=True)
    assert set(recent["items"]) == {0, 1, 2, 3, 4, 5}
    assert set(older["items"]) == {8, 9, 10, 11, 12, 13}
    assert recent["items"][0] == 5  # newest first
    # Same number of events, but the recent interest weighs more (half-life 4 events).
    assert recent["events"] == older["events"] == 6
    # The older events are all 6 events further back: each counts 0.5 ** (6 / 4) as much.
    assert recent["weight"] == pytest.approx(1 / (1 + 0.5**1.5))
    assert recent["weight"] + older["weight"] == pytest.approx(1.0)
    assert recent["medoid"] == 0 and older["medoid"] == 8  # the items on their topic's axis
    assert centroids.shape == (2, 6)
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, rtol=1e-5)
    assert int(np.argmax(centroids[0][:3])) == 0 and int(np.argmax(centroids[1][:3])) == 1


def test_users_grouped_in_worker_processes_get_the_same_interests(monkeypatch) -> None:
    _, vectors = topic_items()
    rng = np.random.default_rng(3)
    history = events_of(
        {user: rng.choice(24, size=int(rng.integers(4, 14))).tolist() for user in range(9)}
    )
    alone = user_interest_sets(history, vectors, SETTINGS)
    monkeypatch.setattr(interest_sets, "PARALLEL_MIN_USERS", 3)
    split = user_interest_sets(history, vectors, SETTINGS, workers=2)
    assert split[0].equals(alone[0])
    np.testing.assert_array_equal(split[1], alone[1])
    assert alone[0]["user_idx"].n_unique() == 9


def test_small_groups_join_the_nearest_interest_and_the_count_is_capped() -> None:
    _, vectors = topic_items()
    # Two westerns are too few to be an interest of their own.
    history = events_of({0: [0, 1, 2, 3, 16, 17, 8, 9, 10, 11]})
    table, _ = user_interest_sets(history, vectors, SETTINGS)
    assert table.height == 2
    assert (
        sorted(len(items) for items in table["items"]) == [5, 5]
        or sum(len(items) for items in table["items"]) == 10
    )
    capped, _ = user_interest_sets(
        events_of({0: [0, 1, 2, 8, 9, 10, 16, 17, 18]}),
        vectors,
        InterestSettings(distance_threshold=0.5, max_interests=2, min_items=1),
    )
    assert capped.height == 2
    few, _ = user_interest_sets(events_of({0: [0, 8, 16]}), vectors, SETTINGS)
    assert few.height == 1 and few["weight"].to_list() == [1.0]  # too short to split


def test_a_sparse_history_splits_only_where_an_item_is_far_from_the_rest() -> None:

    _, vectors = topic_items()  # topics 0-7, 8-15, 16-23 near three orthogonal axes
    linked = SETTINGS.but(linked_similarity=0.5)
    # Five items (fewer than 2 x min_items): three of one topic, one each of two others.
    history = events_of({0: [0, 1, 2, 8, 16]})
    table, _ = user_interest_sets(history, vectors, linked)
    assert sorted(sorted(items) for items in table["items"]) == [[0, 1, 2], [8], [16]]
    assert table["weight"].sum() == pytest.approx(1.0)
    # Without a bar (or with one no pair of items misses) the sparse history is one interest.
    for settings in (SETTINGS, SETTINGS.but(linked_similarity=-1.0)):
        single, _ = user_interest_sets(history, vectors, settings)
        assert single.height == 1 and sorted(single["items"][0]) == [0, 1, 2, 8, 16]
    # One topic only: linked into one interest.
    same, _ = user_interest_sets(events_of({0: [3, 4, 5, 6]}), vectors, linked)
    assert same.height == 1
    # Up to sparse_items items are grouped by links; above, by Ward's cut with min_items.
    eight = events_of({0: [0, 1, 2, 3, 8, 9, 10, 16]})
    by_links, _ = user_interest_sets(eight, vectors, linked.but(sparse_items=10))
    assert sorted(len(items) for items in by_links["items"]) == [1, 3, 4]
    by_ward, _ = user_interest_sets(eight, vectors, linked)  # sparse_items 6
    assert min(len(items) for items in by_ward["items"]) >= SETTINGS.min_items
    # At most max_interests parts.
    capped = linked.but(max_interests=2)
    two, _ = user_interest_sets(history, vectors, capped)
    assert two.height == 2 and sum(len(items) for items in two["items"]) == 5


def test_the_linking_bar_is_a_quantile_of_how_close_next_items_are_to_the_past() -> None:
    _, vectors = topic_items()
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    before = events_of({0: [0, 1], 1: [8, 9], 2: [16, 0]})
    after = events_of({0: [2], 1: [17], 2: [3]})
    closest = [
        max(unit[2] @ unit[0], unit[2] @ unit[1]),
        max(unit[17] @ unit[8], unit[17] @ unit[9]),
        max(unit[3] @ unit[16], unit[3] @ unit[0]),
    ]
    bar = interest_sets.calibrate_linked_similarity(before, after, vectors, 0.5)
    assert bar == pytest.approx(float(np.median(closest)), abs=1e-4)
    assert interest_sets.calibrate_linked_similarity(before, after, vectors, 0.0) == pytest.approx(
        min(closest), abs=1e-4
    )
    assert interest_sets.calibrate_linked_similarity(before, events_of({}), vectors, 0.1) is None
