"""User and item text: what the encoder reads."""

from __future__ import annotations

from synthetic import make_raw

from pipeline import preprocess
from pipeline.core.sections import PreprocessConfig
from pipeline.data.text import HISTORY_PREFIX, TrainingPairs, user_texts


def _processed():
    return preprocess.run(make_raw(n_users=12, n_items=20, per_user=6), PreprocessConfig())


def test_user_text_is_the_most_recent_titles_most_recent_first() -> None:
    processed = _processed()
    texts = user_texts(processed.train, processed.items, processed.users.height, history_items=2)
    user_events = processed.train.filter(processed.train["user_idx"] == 0)  # sorted by time
    titles = processed.items.sort("item_idx")["title"].to_list()
    last, before = user_events["item_idx"][-1], user_events["item_idx"][-2]
    assert texts[0] == f"{HISTORY_PREFIX}{titles[last]}; {titles[before]}"


def test_training_pairs_pair_history_with_the_next_item() -> None:
    processed = _processed()
    pairs = TrainingPairs(processed.train, processed.items, history_items=3, seed=0)
    per_user = processed.train.group_by("user_idx").len()["len"]
    assert len(pairs) == int((per_user - 1).sum())
    table = pairs.table()
    assert all(anchor.startswith(HISTORY_PREFIX) for anchor in table["anchor"])
    assert table.equals(TrainingPairs(processed.train, processed.items, 3, seed=0).table())
    assert not table.equals(TrainingPairs(processed.train, processed.items, 3, seed=1).table())
    # Every pair is one event after a user's first: its anchor is the (at most 3) titles just
    # before that event, most recent first, and its positive that event's item text.
    titles = processed.items.sort("item_idx")["title"].to_list()
    texts = processed.items.sort("item_idx")["text"].to_list()
    expected = []
    for _, events in processed.train.group_by("user_idx"):
        sequence = events.sort("timestamp", maintain_order=True)["item_idx"].to_list()
        for position in range(1, len(sequence)):
            history = [titles[item] for item in sequence[max(0, position - 3) : position][::-1]]
            expected.append((HISTORY_PREFIX + "; ".join(history), texts[sequence[position]]))
    assert sorted(table.iter_rows()) == sorted(expected)
    chosen = [4, 0, 4]
    assert pairs.table(chosen).rows() == [table.row(index) for index in chosen]
    assert [texts[item] for item in pairs.positive_items()] == table["positive"].to_list()


def test_the_test_time_history_text_leads_with_the_validation_item() -> None:
    processed = _processed()
    titles = processed.items.sort("item_idx")["title"].to_list()
    n_users = processed.users.height
    at_test = user_texts(processed.history_at_test, processed.items, n_users, history_items=2)
    training = user_texts(processed.train, processed.items, n_users, history_items=2)
    validation = dict(processed.validation.select("user_idx", "item_idx").iter_rows())
    last_training = processed.train.group_by("user_idx", maintain_order=True).last()
    last_item = dict(last_training.select("user_idx", "item_idx").iter_rows())
    for user in range(n_users):
        expected = f"{HISTORY_PREFIX}{titles[validation[user]]}; {titles[last_item[user]]}"
        assert at_test[user] == expected
        assert training[user].startswith(f"{HISTORY_PREFIX}{titles[last_item[user]]}")


def test_timestamp_ties_keep_the_splits_order() -> None:
    # make_raw gives half the users three events at one timestamp: the most recent among them
    # is the one preprocess put last (its seeded tie-break), whatever the item ids.
    processed = _processed()
    titles = processed.items.sort("item_idx")["title"].to_list()
    texts = user_texts(processed.train, processed.items, processed.users.height, 1)
    last = processed.train.group_by("user_idx", maintain_order=True).last()
    for user, item in last.select("user_idx", "item_idx").iter_rows():
        assert texts[user] == f"{HISTORY_PREFIX}{titles[item]}"
