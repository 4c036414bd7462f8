"""The one shape every raw-data source is read into (`RawData`), and the normalisation the sources
share: how a title's release year is found and which genre cells mean "no genre".

The sources (`pipeline.data.movielens`, `pipeline.data.files`) build `RawData`;
`pipeline.data.source` picks one and re-exports `RawData`, which is where the rest of the pipeline
imports it from. It lives here, not there, because `pipeline.data.source` imports both sources and
each source needs it.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

INTERACTIONS_SCHEMA = pl.Schema(
    {"user_id": pl.String, "item_id": pl.String, "rating": pl.Float64, "timestamp": pl.Int64}
)
ITEMS_SCHEMA = pl.Schema(
    {
        "item_id": pl.String,
        "title": pl.String,
        "year": pl.Int32,
        "genres": pl.List(pl.String),
        "tags": pl.List(pl.String),
        "description": pl.String,
    }
)
# Genre cells that mean "no genre" (MovieLens' latest and 100K spellings), not a genre to learn.
NO_GENRE = ("(no genres listed)", "unknown")
# The last `(YYYY)` in a title, allowing a series range `(1975-1979)` and trailing notes like the
# `(V)` (video) in ML-100K's "Land Before Time III: ... (1995) (V)".
TITLE_YEAR_PATTERN = r"^.*\((\d{4})(?:[-–]\d{0,4})?\)(?:\s*\([^()]*\))*\s*$"


@dataclass(frozen=True)
class RawData:
    """Interactions, items and (optionally) users, with original ids as strings."""

    interactions: pl.DataFrame
    """`INTERACTIONS_SCHEMA`; duplicates and missing ids kept (`preprocess` drops and counts)."""
    items: pl.DataFrame
    """`ITEMS_SCHEMA`: one row per catalogue item."""
    users: pl.DataFrame | None
    """Demographics where the source has them (MovieLens-100K), else None."""
    source: str
    """Where the data came from, for messages and metrics."""


def drop_no_genre(genres: pl.Expr) -> pl.Expr:
    """A genre-list expression without the cells that mean "no genre" (`NO_GENRE`)."""
    return genres.list.eval(pl.element().filter(~pl.element().is_in(NO_GENRE)))


def title_year(title: pl.Expr | pl.Series) -> pl.Expr | pl.Series:
    """The release year a title ends with (`Heat (1995)`, `Fawlty Towers (1975-1979)`), else
    null, as Int32."""
    return title.str.extract(TITLE_YEAR_PATTERN, 1).cast(pl.Int32)


def stripped_ids(events: pl.DataFrame) -> pl.DataFrame:
    """`events` with the spaces around their user and item ids removed."""
    return events.with_columns(
        pl.col("user_id").str.strip_chars(), pl.col("item_id").str.strip_chars()
    )


def missing_ids() -> pl.Expr:
    """True for an event naming no user or no item (null, or empty once stripped): such rows
    are dropped and counted, by `preprocess` and by live updates alike."""
    return (
        pl.col("user_id").is_null()
        | (pl.col("user_id") == "")
        | pl.col("item_id").is_null()
        | (pl.col("item_id") == "")
    )
