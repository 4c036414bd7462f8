from __future__ import annotations

import polars as pl
import pytest
from synthetic import make_items, make_raw

from pipeline import preprocess
from pipeline.core.sections import PreprocessConfig, SplitConfig
from pipeline.data.source import RawData
from recli.errors import RecliError


def _config(**split: object) -> PreprocessConfig:
    # No cold items here: these tests are about the split alone.
    return PreprocessConfig(
        min_user_interactions=3, cold_item_fraction=0.0, split=SplitConfig(**split)
    )


def _pairs(frame: pl.DataFrame) -> set[tuple[int, int]]:
    return set(zip(frame["user_idx"].to_list(), frame["item_idx"].to_list(), strict=True))


def test_leave_last_out_one_test_and_one_validation_per_user_and_no_leak() -> None:
    processed = preprocess.run(make_raw(), _config())
    n_users = processed.users.height
    assert processed.test["user_idx"].n_unique() == processed.test.height == n_users
    assert processed.validation["user_idx"].n_unique() == processed.validation.height == n_users
    train, validation, test = (_pairs(processed.split(s)) for s in preprocess.SPLITS)
    assert not (test & train) and not (test & validation) and not (validation & train)

    # Held-out events are the latest: no train event after validation, no validation after test.
    last_train = processed.train.group_by("user_idx").agg(pl.col("timestamp").max().alias("train"))
    joined = last_train.join(
        processed.validation.select("user_idx", validation="timestamp"), on="user_idx"
    ).join(processed.test.select("user_idx", test="timestamp"), on="user_idx")
    assert (joined["train"] <= joined["validation"]).all()
    assert (joined["validation"] <= joined["test"]).all()


def test_timestamp_ties_are_not_broken_by_item_id() -> None:
    # One user, last three events share a timestamp: which one is "last" must depend on the seed,
    # not on item order (ordering ties by item id leaks popularity into the split).
    raw = RawData(
        interactions=pl.DataFrame(
            {
                "user_id": ["7"] * 5,
                "item_id": ["100", "101", "102", "103", "104"],
                "rating": [1.0] * 5,
                "timestamp": [1, 2, 9, 9, 9],
            },
            schema_overrides={"timestamp": pl.Int64},
        ),
        items=make_items(5),
        users=None,
        source="ties",
    )
    chosen = set()
    for seed in range(12):
        processed = preprocess.run(raw, _config(seed=seed))
        test_item = processed.items.filter(pl.col("item_idx") == processed.test["item_idx"][0])
        chosen.add(test_item["item_id"][0])
    assert chosen <= {"102", "103", "104"}
    assert len(chosen) >= 2


def test_same_seed_same_split_and_different_seed_differs_on_ties() -> None:
    raw = make_raw(ties=True)
    first = preprocess.run(raw, _config(seed=1))
    again = preprocess.run(raw, _config(seed=1))
    other = preprocess.run(raw, _config(seed=2))
    assert first.test.equals(again.test)
    assert not first.test.equals(other.test)


def test_random_holdout_fractions_and_disjoint() -> None:
    processed = preprocess.run(
        make_raw(per_user=20, ties=False),
        _config(strategy="random_holdout", validation_fraction=0.1, test_fraction=0.2),
    )
    per_user = processed.test.group_by("user_idx").len()
    assert (per_user["len"] == 4).all()  # 20 * 0.2
    assert (processed.validation.group_by("user_idx").len()["len"] == 2).all()
    assert (processed.train.group_by("user_idx").len()["len"] == 14).all()
    train, validation, test = (_pairs(processed.split(s)) for s in preprocess.SPLITS)
    assert not (test & train) and not (test & validation) and not (validation & train)


def test_temporal_split_uses_one_global_cutoff() -> None:
    processed = preprocess.run(
        make_raw(ties=False),
        _config(strategy="temporal", validation_fraction=0.1, test_fraction=0.2),
    )
    assert processed.train["timestamp"].max() <= processed.validation["timestamp"].min()
    assert processed.validation["timestamp"].max() <= processed.test["timestamp"].min()
    # Held-out events only for users and items the model has seen in training.
    assert set(processed.test["user_idx"]) <= set(processed.train["user_idx"])
    assert set(processed.test["item_idx"]) <= set(processed.train["item_idx"])


def test_cleaning_counts_and_contiguous_ids_map_back() -> None:
    raw = make_raw(n_users=5, per_user=6, ties=False)
    messy = pl.concat(
        [
            raw.interactions,
            raw.interactions.head(2),  # exact duplicates
            pl.DataFrame(
                {
                    "user_id": [None, "", "3", "99"],
                    "item_id": ["100", "101", None, "999"],  # 999 has no item row
                    "rating": [1.0, 1.0, 1.0, 1.0],
                    "timestamp": [1, 2, 3, 4],
                },
                schema_overrides={"timestamp": pl.Int64},
            ),
        ]
    )
    processed = preprocess.run(
        RawData(messy, raw.items, None, "messy"),
        PreprocessConfig(min_user_interactions=3, max_unknown_item_share=0.1),
    )
    summary = processed.summary
    assert summary["dropped_duplicates"] == 2
    assert summary["dropped_missing_ids"] == 3
    assert summary["dropped_unknown_items"] == 1
    assert processed.users["user_idx"].to_list() == list(range(5))
    assert processed.users["user_id"].to_list() == ["1", "2", "3", "4", "5"]  # numeric order
    assert processed.items["item_idx"].to_list() == list(range(processed.items.height))
    total = sum(processed.split(s).height for s in (*preprocess.SPLITS, "cold"))
    assert total == raw.interactions.height


def test_item_text_has_title_genres_and_tags() -> None:
    processed = preprocess.run(make_raw(), _config())
    text = processed.items["text"][0]
    assert text.startswith("Film ") and "Genres:" in text and "Tags:" in text


def test_long_descriptions_are_cut_to_their_opening_words_and_counted() -> None:
    raw = make_raw()
    long = " ".join(f"word{index}" for index in range(80))
    descriptions = [long if index % 2 else "Short and whole." for index in range(raw.items.height)]
    raw = RawData(
        raw.interactions, raw.items.with_columns(description=pl.Series(descriptions)), None, "t"
    )
    processed = preprocess.run(raw, _config(), description_words=60)
    texts = processed.items.sort("item_idx")["text"].to_list()
    cut = [text for text in texts if "word0" in text]
    assert cut and all(text.endswith("word59 …") and "word60" not in text for text in cut)
    assert all(text.endswith("Short and whole.") for text in texts if "word0" not in text)
    assert processed.summary["descriptions_cut"] == len(cut)
    whole = preprocess.run(raw, _config())
    assert whole.summary["descriptions_cut"] == 0
    assert all("word79" in text for text in whole.items["text"].to_list() if "word0" in text)


def test_split_without_timestamps_is_a_clear_error() -> None:
    raw = make_raw()
    raw = RawData(
        raw.interactions.with_columns(pl.lit(None, dtype=pl.Int64).alias("timestamp")),
        raw.items,
        None,
        "no time",
    )
    with pytest.raises(RecliError, match="random_holdout"):
        preprocess.run(raw, _config())


def test_everything_filtered_is_a_clear_error() -> None:
    with pytest.raises(RecliError, match="min_user_interactions"):
        preprocess.run(make_raw(per_user=4), PreprocessConfig(min_user_interactions=50))


def test_cold_items_never_reach_training_and_form_their_own_slice() -> None:
    cfg = PreprocessConfig(min_user_interactions=3, cold_item_fraction=0.1)
    processed = preprocess.run(make_raw(n_items=40), cfg)
    cold_items = set(processed.items.filter(pl.col("cold"))["item_idx"])
    assert len(cold_items) == 4
    for name in preprocess.SPLITS:
        assert not set(processed.split(name)["item_idx"]) & cold_items
    assert set(processed.cold["item_idx"]) <= cold_items and processed.cold.height > 0
    assert set(processed.cold["user_idx"]) <= set(processed.train["user_idx"])
    again = preprocess.run(make_raw(n_items=40), cfg)
    assert again.cold.equals(processed.cold)
    assert processed.summary["cold_items"] == 4
    off = preprocess.run(make_raw(n_items=40), cfg.model_copy(update={"cold_item_fraction": 0.0}))
    assert off.cold.is_empty() and not off.items["cold"].any()
