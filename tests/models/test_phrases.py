"""Labels made of phrases (`pipeline.models.phrases`) on a catalogue of titles and descriptions
only, and on the groupings that use them: interest groups, topics and users' interests."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from hand_built import horror_and_romance
from product_families import (
    FAMILIES,
    ITEMS_PER_FAMILY,
    family_events,
    family_items,
    family_processed,
)
from three_topics import SETTINGS

from pipeline import cluster
from pipeline.core.sections import ClusterConfig, InterestsConfig
from pipeline.models.interest_labels import describe
from pipeline.models.interest_tallies import interest_metrics
from pipeline.models.phrases import (
    carried_with_phrases,
    distinct_labels,
    group_weights,
    is_whole,
    item_phrases,
    ranked_phrases,
)
from pipeline.models.profiles import LABEL_SEPARATOR
from pipeline.models.topics import topic_metrics, topics_for

SKU_OR_FRAGMENT = re.compile(r"\d|(^|\s)\w{0,1}-|-(\w{0,1})(\s|$)|sml|gsw")


def _family_text(family: int) -> str:
    """Every word of one family's titles and descriptions, lower-case."""
    items, _ = family_items()
    rows = items.filter(pl.col("item_idx") // ITEMS_PER_FAMILY == family)
    return " ".join(f"{t} {d}" for t, d in rows.select("title", "description").iter_rows()).lower()


def _check_label(label: str, terms: list[str], titles: set[str]) -> None:
    """2-3 phrases, each words of the items' text: no model number, fragment or full title."""
    assert 2 <= len(terms) <= 3, (label, terms)
    assert label.split(LABEL_SEPARATOR) == [t[:1].upper() + t[1:] for t in terms], label
    for term in terms:
        assert is_whole(term) and not SKU_OR_FRAGMENT.search(term), (label, term)
        assert term.lower() not in titles, label
    assert label.lower() not in titles


# --------------------------------------------------------------------------------------------
# Candidates, scores and labels
# --------------------------------------------------------------------------------------------
def test_phrases_are_words_without_model_numbers_fragments_or_stop_words_at_the_edges() -> None:
    items = pl.DataFrame(
        {
            "item_idx": [0, 1, 2],
            "title": ["Inkbird GSW-1000 Borescope", "Kreg SML-C Borescopes", "Mr Acme X-200 Kit"],
            "description": [
                "A borescope with a cast iron body, for the pipes. Mr Acme et al",
                "Two borescopes with cast iron bodies, for pipes",
                "The kit of the cast iron pipes",
            ],
        },
        schema_overrides={"item_idx": pl.Int32},
    )
    names = item_phrases(items).names
    assert "cast iron" in names and "pipes" in names
    assert "borescope" in names and "borescopes" not in names  # one phrase, its commonest form
    for name in names:
        assert not re.search(r"\d|gsw|sml|x-|-c\b", name), name
        words = name.split()
        assert words[0] not in ("a", "the", "with", "for", "of")
        assert words[-1] not in ("a", "the", "with", "for", "of")
        assert len(words[0]) > 2 and len(words[-1]) > 2  # no "mr", "et", "mr acme"
        assert len(words) <= 3
    assert "acme" in names


def test_a_phrase_is_never_a_whole_product_title() -> None:
    items = pl.DataFrame(
        {
            "item_idx": [0, 1],
            "title": ["Cast Iron Skillet", "Cast Iron Skillet"],
            "description": ["cast iron skillet", "cast iron skillet"],
        },
        schema_overrides={"item_idx": pl.Int32},
    )
    names = item_phrases(items).names
    assert "cast iron skillet" not in names and "cast iron" in names


def test_whole_words_are_told_from_fragments_and_model_numbers() -> None:
    assert is_whole("cast iron skillet") and is_whole("Sci-Fi") and is_whole("1997 films")
    assert is_whole("Children's") and is_whole("#dark comedy")
    assert not is_whole("gsw-") and not is_whole("gsw-1000") and not is_whole("sml-c")
    assert not is_whole("x200")


def test_each_familys_phrases_lead_and_redundant_ones_are_dropped() -> None:
    items, vectors = family_items()
    family = np.arange(len(items)) // ITEMS_PER_FAMILY
    weights = group_weights(family, np.arange(len(items)), 3, len(items))
    ranked = ranked_phrases(item_phrases(items), weights, vectors)
    for group, phrases in enumerate(FAMILIES.values()):
        names = [t["term"] for t in ranked[group]]
        assert set(names[:2]) <= set(phrases), names
        for term in ranked[group]:  # each on a share of the family's items, over-represented
            assert term["share"] >= 0.15 and term["lift"] > 1 and term["items"] >= 2
        # No phrase whose words another chosen phrase's contain ("iron", "cast iron skillet").
        words = [set(name.split()) for name in names]
        assert not any(a < b or b < a for i, a in enumerate(words) for b in words[i + 1 :])
    # Without vectors: by c-TF-IDF alone, the same phrases lead.
    plain = ranked_phrases(item_phrases(items), weights)
    for group, phrases in enumerate(FAMILIES.values()):
        assert {t["term"] for t in plain[group][:2]} <= set(phrases)


def test_clashing_labels_each_gain_their_next_distinguishing_phrase() -> None:
    def terms(*names: str) -> list[dict]:
        return [{"term": name} for name in names]

    ranked = [terms("steel", "iron", "pan"), terms("steel", "iron", "wok"), terms("hose", "reel")]
    chosen = distinct_labels(ranked)
    assert [[t["term"] for t in c] for c in chosen] == [
        ["steel", "iron", "pan"],
        ["steel", "iron", "wok"],
        ["hose", "reel"],
    ]


# --------------------------------------------------------------------------------------------
# The groupings
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clustered() -> cluster.Clustering:
    processed = family_processed()
    _, vectors = family_items()
    users = cluster.taste_vectors(processed.train, vectors, processed.users.height)
    return cluster.run(users, vectors, processed, ClusterConfig(k=3))


def test_interest_groups_are_named_by_their_familys_phrases(clustered) -> None:
    items, _ = family_items()
    titles = {title.lower() for title in items["title"]}
    labels = [p["label"] for p in clustered.profiles]
    assert len(set(labels)) == 3
    for profile in clustered.profiles:
        assert not profile["label"].startswith("Like ")
        named = [t["term"] for t in profile["top_terms"][: len(profile["label"].split(" · "))]]
        _check_label(profile["label"], named, titles)
        families = {
            f for f in range(3) if all(term in _family_text(f) for term in named)
        }  # every phrase named is on one family's items
        assert len(families) == 1, profile["label"]
        assert all(t["lift"] >= 1.1 for t in profile["top_terms"])
    metrics = clustered.metrics
    assert metrics["label_agreement"] is not None
    assert metrics["label_agreement"] > metrics["label_agreement_random"]
    assert metrics["labels_distinct"] == 3 and metrics["labels_distinct_share"] == 1.0
    assert metrics["label_terms_whole_words"] == 1.0
    assert metrics["label_coverage"] >= 0.5


def test_topics_are_named_by_their_familys_phrases() -> None:
    processed = family_processed()
    items, vectors = family_items()
    topics = topics_for(processed, vectors, InterestsConfig(topics=3, seed=0))
    titles = {title.lower() for title in items["title"]}
    assert len({p["label"] for p in topics.profiles}) == 3
    for profile in topics.profiles:
        _check_label(profile["label"], profile["label_terms"], titles)
        members = np.flatnonzero(topics.item_topic == profile["topic"])
        family = int(members[0]) // ITEMS_PER_FAMILY
        assert set(profile["label_terms"]) <= set(list(FAMILIES.values())[family])
    metrics = topic_metrics(topics, processed, carried_with_phrases(items))
    assert metrics["label_agreement"] > metrics["label_agreement_shuffled_items"]
    assert metrics["label_terms_whole_words"] == 1.0 and metrics["distinct_labels_share"] == 1.0


def test_users_interests_are_named_by_phrases_distinct_within_each_user() -> None:
    items, vectors = family_items()
    events = family_events()
    # User 0 also bought four garden products: two interests.
    extra = pl.DataFrame(
        {
            "user_idx": [0] * 4,
            "item_idx": [24, 25, 26, 27],
            "rating": [1.0] * 4,
            "timestamp": [50, 51, 52, 53],
        },
        schema=events.schema,
    )
    history = pl.concat([events, extra]).sort("user_idx", "timestamp")
    assignments = pl.DataFrame(
        {"user_idx": np.arange(24), "cluster": np.arange(24) // 8},
        schema={"user_idx": pl.Int32, "cluster": pl.Int32},
    )
    table, _ = describe(history, items, vectors, assignments, SETTINGS)
    titles = {title.lower() for title in items["title"]}
    for label, named, members in table.select("label", "label_terms", "items").iter_rows():
        _check_label(label, json.loads(named), titles)
        family = members[0] // ITEMS_PER_FAMILY
        assert set(json.loads(named)) <= set(list(FAMILIES.values())[family]), label
    first = table.filter(pl.col("user_idx") == 0)["label"].to_list()
    assert len(first) == 2 and len(set(first)) == 2
    metrics = interest_metrics(table, carried_with_phrases(items), n_users=24, seed=0)
    assert metrics["label_agreement"] > metrics["label_agreement_shuffled_interests"]
    assert metrics["labels_from_a_title"] == 0.0 and metrics["label_terms_whole_words"] == 1.0


def test_a_catalogue_with_genres_keeps_its_genre_labels_whatever_its_descriptions() -> None:
    processed = horror_and_romance()
    config = ClusterConfig(k=2)
    vectors = np.eye(16, dtype=np.float32)[: processed.items.height] + 0.01
    users = cluster.taste_vectors(processed.train, vectors, processed.users.height)
    plain = cluster.run(users, vectors, processed, config)
    described = processed.items.with_columns(
        pl.Series("description", ["stainless steel cast iron skillet wireless earbuds"] * 9)
    )
    worded = cluster.run(users, vectors, replace(processed, items=described), config)
    assert [p["label"] for p in worded.profiles] == [p["label"] for p in plain.profiles]
    assert [p["top_terms"] for p in worded.profiles] == [p["top_terms"] for p in plain.profiles]
    for key, value in plain.metrics.items():
        assert worded.metrics[key] == value, key


def test_a_text_only_catalogue_with_years_and_tags_is_named_by_its_words() -> None:
    """Release years and a tag that is no word ("#toplist10") set each family apart as sharply
    as its phrases do; neither is a word of the items' text, so neither names a group, and a
    whole-word tag on one item does not keep the topics from their phrases."""
    processed = family_processed()
    items, vectors = family_items()
    family = pl.col("item_idx") // ITEMS_PER_FAMILY
    dated = items.with_columns(
        (1995 + family).cast(pl.Int32).alias("year"),
        pl.lit([], dtype=pl.List(pl.String)).alias("genres"),
        pl.concat_list(pl.format("#toplist{}", family)).alias("tags"),
    ).with_columns(  # one whole-word tag, on one item: a tag names too little to lead
        pl.when(pl.col("item_idx") == 0)
        .then(pl.concat_list(pl.col("tags"), pl.lit(["gift"])))
        .otherwise(pl.col("tags"))
        .alias("tags")
    )
    users = cluster.taste_vectors(processed.train, vectors, processed.users.height)
    result = cluster.run(users, vectors, replace(processed, items=dated), ClusterConfig(k=3))
    titles = {title.lower() for title in items["title"]}
    for profile in result.profiles:
        named = [t for t in profile["top_terms"][: len(profile["label"].split(" · "))]]
        assert {t["kind"] for t in profile["top_terms"]} == {"phrase"}, profile["top_terms"]
        _check_label(profile["label"], [t["term"] for t in named], titles)
    assert result.metrics["label_terms_whole_words"] == 1.0
    topics = topics_for(replace(processed, items=dated), vectors, InterestsConfig(topics=3))
    for profile in topics.profiles:
        _check_label(profile["label"], profile["label_terms"], titles)


def test_an_interest_whose_items_share_no_words_is_named_by_the_items_around_it() -> None:
    """A user whose one product shares no word with any other item: the interest takes its
    topic's label, never the product's title."""
    items, vectors = family_items()
    lone = items.height
    items = pl.concat(
        [
            items,
            pl.DataFrame(
                {
                    "item_idx": [lone],
                    "item_id": ["lone"],
                    "title": ["Zorblax"],
                    "description": ["Quixotic."],
                },
                schema=items.schema,
            ),
        ]
    )
    vectors = np.vstack([vectors, vectors[:1]])  # beside the cookware family
    processed = family_processed()
    lone_user = processed.users.height
    history = pl.concat(
        [
            family_events(),
            pl.DataFrame(
                [(lone_user, lone, 1.0, 10_000)], schema=family_events().schema, orient="row"
            ),
        ]
    )
    processed = replace(
        processed,
        items=items,
        train=history,
        users=pl.concat(
            [processed.users, pl.DataFrame({"user_idx": [lone_user], "user_id": ["lone"]})],
            how="vertical_relaxed",
        ),
    )
    topics = topics_for(processed, vectors, InterestsConfig(topics=3, seed=0))
    assignments = pl.DataFrame(
        {"user_idx": np.arange(lone_user + 1), "cluster": np.arange(lone_user + 1) // 8 % 3},
        schema={"user_idx": pl.Int32, "cluster": pl.Int32},
    )
    plain, _ = describe(history, items, vectors, assignments, SETTINGS)
    assert plain.filter(pl.col("user_idx") == lone_user)["label"].to_list() == ["Like Zorblax"]
    table, _ = describe(history, items, vectors, assignments, SETTINGS, topics=topics)
    row = table.filter(pl.col("user_idx") == lone_user).row(0, named=True)
    topic = topics.profiles[int(topics.item_topic[lone])]
    assert json.loads(row["label_terms"]) == topic["label_terms"] and topic["label_terms"]
    assert set(topic["label_terms"]) <= set(FAMILIES["cookware"])
    assert "Zorblax" not in row["label"]
    metrics = interest_metrics(table, carried_with_phrases(items), n_users=25, seed=0)
    assert metrics["labels_from_a_title"] == 0.0
    assert metrics["labels_from_the_topic"] == round(1 / table.height, 4)
