"""What users' interests are about (`pipeline.models.interest_labels`): terms, labels and nearest
groups on hand-built histories whose right answers are known."""

from __future__ import annotations

import json

import polars as pl
from three_topics import SETTINGS, events_of, topic_items

from pipeline.models.interest_labels import describe, label
from pipeline.models.interest_tallies import interest_metrics
from pipeline.models.phrases import carried_with_phrases


def test_labels_name_the_genres_an_interest_over_represents() -> None:
    items, vectors = topic_items()
    history = events_of(
        {
            0: [8, 9, 10, 11, 12, 13, 0, 1, 2, 3, 4, 5],
            1: [16, 17, 18, 19, 20, 21],
            2: [0, 1, 2, 16, 17, 18],
        }
    )
    assignments = pl.DataFrame(
        {"user_idx": [0, 1, 2], "cluster": [7, 9, 7]},
        schema={"user_idx": pl.Int32, "cluster": pl.Int32},
    )
    table, _ = describe(history, items, vectors, assignments, SETTINGS)
    user0 = table.filter(pl.col("user_idx") == 0)
    assert user0["label"].to_list() == ["Animation", "Film-Noir"]
    assert json.loads(user0["label_terms"][0]) == ["Animation"]
    assert user0["group"].to_list() == [7, 7]  # both nearest to the group holding users 0 and 2
    assert table.filter(pl.col("user_idx") == 1)["group"].to_list() == [9]
    metrics = interest_metrics(table, carried_with_phrases(items), n_users=4, seed=0)
    assert metrics["users"] == 3 and metrics["users_without_events"] == 1
    assert metrics["label_agreement"] == 1.0  # every item carries its interest's genre
    assert metrics["label_agreement_shuffled_interests"] < 1.0
    assert metrics["users_by_interest_count"] == {"1": 1, "2": 2}
    assert metrics["labels_led_by_an_era"] == 0.0


def test_without_genres_labels_come_from_the_words_of_titles_and_descriptions() -> None:
    items, vectors = topic_items(genres=False)
    items = items.drop("year")
    history = events_of({0: [8, 9, 10, 11, 12, 13, 0, 1, 2, 3, 4, 5], 1: [16, 17, 18, 19, 20, 21]})
    assignments = pl.DataFrame(
        {"user_idx": [0, 1], "cluster": [0, 1]}, schema={"user_idx": pl.Int32, "cluster": pl.Int32}
    )
    table, _ = describe(history, items, vectors, assignments, SETTINGS)
    labels = table.filter(pl.col("user_idx") == 0)["label"].to_list()
    assert not any(text.startswith("Like ") for text in labels)
    assert "cartoons" in labels[0].lower() or "animation" in labels[0].lower()
    assert len(set(table["label"].to_list())) == table.height  # distinct


def test_a_label_prefers_genres_to_eras_and_falls_back_to_the_medoid() -> None:
    terms = [
        {"term": "1997 films", "kind": "era"},
        {"term": "Thriller", "kind": "genre"},
        {"term": "noir", "kind": "tag"},
        {"term": "Crime", "kind": "genre"},
    ]
    assert label(terms, "Heat (1995)") == ("Thriller · Noir", ["Thriller", "noir"])
    assert label(terms[:1], "Heat (1995)") == ("1997 films", ["1997 films"])
    assert label([], "Heat (1995)") == ("Like Heat (1995)", [])
