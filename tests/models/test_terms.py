"""Terms and lifts (`pipeline.models.terms`): what items carry and what a user's events
over-represent, worked out on paper."""

from __future__ import annotations

import polars as pl
import pytest
from hand_built import horror_and_romance
from three_topics import topic_items

from pipeline.models.terms import (
    item_terms,
    over_represented_terms,
    user_term_shares,
    word_terms,
)


def test_release_era_is_a_term_exact_year_recently_decade_before() -> None:
    items = pl.DataFrame(
        {
            "item_idx": [0, 1, 2],
            "genres": [["Drama"], [], ["Comedy"]],
            "tags": [[], [], []],
            "year": [1997, 1974, None],
        },
        schema_overrides={"year": pl.Int32, "tags": pl.List(pl.String)},
    )
    terms = item_terms(items).filter(pl.col("kind") == "era").sort("item_idx")
    assert terms["term"].to_list() == ["1997 films", "1970s films"]


def test_a_catalogue_without_genres_has_no_era_terms_and_fragment_tags_are_no_terms() -> None:
    items = pl.DataFrame(
        {
            "item_idx": [0, 1, 2],
            "genres": [[], [], []],
            "tags": [["dark comedy", "#toplist10"], ["gsw-"], ["Sci-Fi"]],
            "year": [1997, 1974, None],
        },
        schema_overrides={"year": pl.Int32, "genres": pl.List(pl.String)},
    )
    terms = item_terms(items).sort("item_idx", "term")
    # The year is no word of the items' text; "#toplist10" and "gsw-" are no whole words.
    assert terms.select("item_idx", "kind", "term").rows() == [
        (0, "tag", "dark comedy"),
        (2, "tag", "Sci-Fi"),
    ]
    with_genres = items.with_columns(pl.Series("genres", [["Drama"], [], []]))
    assert item_terms(with_genres).filter(pl.col("kind") == "era").height == 2


def test_user_term_shares_are_each_users_share_of_events_carrying_the_term() -> None:
    processed = horror_and_romance()
    shares = user_term_shares(processed.train, processed.items)
    first = shares.filter(pl.col("user_idx") == 0).sort("kind", "term")
    # User 0: items 0, 1, 2, 3, 4 (Horror; gore on 0 and 1, cult on 4) and 5 (Romance).
    assert first.select("kind", "term", "interactions", "total").rows() == [
        ("genre", "Horror", 5, 6),
        ("genre", "Romance", 1, 6),
        ("tag", "cult", 1, 6),
        ("tag", "gore", 2, 6),
    ]
    assert first["share"].to_list() == pytest.approx([5 / 6, 1 / 6, 1 / 6, 2 / 6])


def test_user_interests_are_the_users_own_lifts_with_support() -> None:
    processed = horror_and_romance()
    interests = over_represented_terms(processed.train, processed.items, keep=5)
    first = interests.filter(pl.col("user_idx") == 0)
    # User 0: 5 of 6 events Horror, against 31 of 61 overall. gore (2 events) and cult (1) are
    # above the population's share but below the 3-event support floor.
    assert first["term"].to_list() == ["Horror"]
    assert first["lift"][0] == pytest.approx((5 / 6) / (31 / 61), abs=1e-4)
    romance_fan = interests.filter(pl.col("user_idx") == 6)
    assert romance_fan["term"].to_list() == ["Romance"]
    assert romance_fan["lift"][0] == pytest.approx((4 / 5) / (30 / 61), abs=1e-4)


def test_the_words_of_titles_and_descriptions_are_terms_without_short_and_common_ones() -> None:
    items, _ = topic_items(genres=False)
    words = set(word_terms(items.drop("year"))["term"].to_list())
    assert "cartoons" in words and "story" in words and "with" not in words
