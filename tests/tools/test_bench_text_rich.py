"""The scale benchmark's product-catalogue shape (`benchmarks/scaling/products.py`): exact counts,
sparse users, long titles and descriptions without genres, one event per (user, item), ordered
timestamps, users who stay in a category from one item to the next, determinism, and that the
project's own files loader reads it back whole."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from scaling.products import BRAND_CATEGORY, MAX_USER_EVENTS, product_events, product_scale
from scaling.runner import SHAPES
from scaling.synthetic import write_inputs

from pipeline.core.config import DataConfig
from pipeline.core.sections import PreprocessConfig
from pipeline.data.source import load_source
from pipeline.preprocess import clean

N_EVENTS = 30_000


@pytest.fixture(scope="module")
def generated() -> tuple[pl.DataFrame, pl.DataFrame]:
    return product_events(N_EVENTS, seed=42)


@pytest.fixture(scope="module")
def events(generated: tuple[pl.DataFrame, pl.DataFrame]) -> pl.DataFrame:
    """The events in order, with each item's category (from its title's brand)."""
    interactions, items = generated
    category = items.select(
        "item_id",
        pl.col("title")
        .str.split(" ")
        .list.first()
        .replace_strict(BRAND_CATEGORY)
        .alias("category"),
    )
    return interactions.join(category, on="item_id", maintain_order="left")


def test_exact_counts_and_the_documented_scale(
    generated: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    interactions, items = generated
    assert product_scale(N_EVENTS) == (4_285, 2_222)
    assert product_scale(60_000) == (8_571, 4_444)
    assert interactions.height == N_EVENTS
    assert interactions["user_id"].n_unique() == N_EVENTS // 7
    assert items.height == round(N_EVENTS / 13.5) == items["item_id"].n_unique()
    assert interactions["item_id"].is_in(items["item_id"].implode()).all()
    assert interactions["item_id"].n_unique() > 0.9 * items.height
    assert SHAPES["products"] is product_events
    with pytest.raises(ValueError, match="at least"):
        product_events(10, seed=7)


def test_sparse_users_and_skewed_items(generated: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    interactions, items = generated
    per_user = interactions.group_by("user_id").len()["len"]
    assert per_user.min() >= 5
    assert per_user.mean() == pytest.approx(7.0, abs=0.01)
    assert per_user.median() <= 7
    assert 30 <= per_user.max() <= MAX_USER_EVENTS  # a few heavy users
    assert set(interactions["rating"].unique().to_list()) == {1, 2, 3, 4, 5}
    counts = interactions.group_by("item_id").len().sort("len", descending=True)["len"]
    assert counts.head(items.height // 10).sum() / interactions.height > 0.4


def test_one_event_per_user_and_item_in_time_order(
    generated: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    interactions, _ = generated
    assert interactions.select(pl.struct("user_id", "item_id").is_unique().all()).item()
    steps = interactions.select(pl.col("timestamp").diff().over("user_id").alias("step"))
    steps = steps.drop_nulls()
    assert steps.height == N_EVENTS - interactions["user_id"].n_unique()
    assert (steps["step"] > 0).all()


def test_long_titles_and_descriptions_and_no_genres(
    generated: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    _, items = generated
    assert (items["genres"].list.len() == 0).all()
    title_words = items["title"].str.split(" ").list.len()
    description_words = items["description"].str.split(" ").list.len()
    assert title_words.min() == 10 and title_words.max() == 13
    assert 11 < title_words.mean() < 12
    assert description_words.min() == 60 and description_words.max() == 95
    assert 75 < description_words.mean() < 80
    assert items["title"].str.split(" ").list.first().is_in(list(BRAND_CATEGORY)).all()
    assert (items["description"].str.count_matches(r"\. ") >= 3).all()  # several sentences
    assert items["title"].str.contains(r"\d").mean() > 0.5  # sizes, ratings and model codes
    assert items["title"].str.contains(r"\b[A-Z]{2}-\d{3}\b").mean() == pytest.approx(0.5, abs=0.05)


def test_users_prefer_categories_and_stay_in_them(events: pl.DataFrame) -> None:
    per_user = events.group_by("user_id", "category").len()
    top2 = (
        per_user.sort("len", descending=True)
        .group_by("user_id")
        .agg(pl.col("len").head(2).sum() / pl.col("len").sum())
    )
    # Spread evenly over 16 categories, ~7 events would put under half in their top two.
    assert top2["len"].mean() > 0.85
    same = events.select(
        (pl.col("category") == pl.col("category").shift().over("user_id")).drop_nulls().mean()
    ).item()
    # In a random order of each user's events: sum over categories of n_c (n_c - 1) / n per user.
    totals = per_user.group_by("user_id").agg(
        (pl.col("len") * (pl.col("len") - 1)).sum().alias("pairs"), pl.col("len").sum()
    )
    shuffled = (totals["pairs"] / totals["len"]).sum() / (totals["len"] - 1).sum()
    assert 0.4 < shuffled < 0.55
    assert same > shuffled + 0.08


def test_deterministic_for_a_seed(generated: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    again = product_events(N_EVENTS, seed=42)
    assert_frame_equal(generated[0], again[0])
    assert_frame_equal(generated[1], again[1])
    other = product_events(N_EVENTS, seed=43)
    assert not other[0].equals(generated[0])
    assert other[1]["title"].to_list() != generated[1]["title"].to_list()


def test_written_files_read_back_whole(
    generated: tuple[pl.DataFrame, pl.DataFrame], tmp_path: Path
) -> None:
    interactions, items = generated
    data = DataConfig.model_validate(write_inputs(interactions, items, tmp_path))
    raw = load_source(data, tmp_path)
    assert raw.interactions.height == N_EVENTS
    assert raw.items["title"].to_list() == items["title"].to_list()
    assert raw.items["description"].to_list() == items["description"].to_list()
    assert (raw.items["genres"].list.len() == 0).all()
    _, kept, counts = clean(raw, PreprocessConfig())
    dropped = {key: value for key, value in counts.items() if key.startswith("dropped_")}
    assert dropped and not any(dropped.values()), dropped
    assert kept.height == items["item_id"].is_in(interactions["item_id"].implode()).sum()
