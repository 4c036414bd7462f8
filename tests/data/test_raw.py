"""The shape every source produces, and the normalisation the sources share."""

from __future__ import annotations

import polars as pl
import pytest

from pipeline.data.raw import RawData, drop_no_genre, title_year


def test_raw_data_is_frozen() -> None:
    raw = RawData(pl.DataFrame(), pl.DataFrame(), None, "x")
    with pytest.raises(AttributeError):
        raw.source = "y"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("title", "year"),
    [
        ("GoldenEye (1995)", 1995),
        ("Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)", 2001),
        # A series' first year; a trailing note such as ML-100K's `(V)` (video) is passed over.
        ("Fawlty Towers (1975-1979)", 1975),
        ("Land Before Time III: The Time of the Great Giving (1995) (V)", 1995),
        ("Untitled Project", None),
        ("1984", None),
        (None, None),
    ],
)
def test_title_year_is_the_last_parenthesised_year(title: str | None, year: int | None) -> None:
    years = title_year(pl.Series([title], dtype=pl.String))
    assert years.dtype == pl.Int32
    assert years.to_list() == [year]


def test_no_genre_cells_are_dropped() -> None:
    genres = pl.DataFrame(
        {"genres": [["Drama", "(no genres listed)"], ["unknown"], []]},
        schema={"genres": pl.List(pl.String)},
    )
    assert genres.select(drop_no_genre(pl.col("genres")))["genres"].to_list() == [
        ["Drama"],
        [],
        [],
    ]
