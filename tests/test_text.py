"""User and item text: what the encoder reads."""

from __future__ import annotations

from synthetic import make_raw

from pipeline import preprocess
from pipeline.config import PreprocessConfig
from pipeline.text import HISTORY_PREFIX, training_pairs, user_texts


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
    pairs = training_pairs(processed.train, processed.items, history_items=3, seed=0)
    per_user = processed.train.group_by("user_idx").len()["len"]
    assert pairs.height == int((per_user - 1).sum())
    assert all(anchor.startswith(HISTORY_PREFIX) for anchor in pairs["anchor"])
    assert pairs.equals(training_pairs(processed.train, processed.items, 3, seed=0))
    assert not pairs.equals(training_pairs(processed.train, processed.items, 3, seed=1))
