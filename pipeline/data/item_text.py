"""An item's text for the encoder, assembled once by `preprocess` from the items file: title
(with year), genres, tags and the opening of the description."""

from __future__ import annotations

import polars as pl


def is_cut(text: str | None, words: int | None) -> bool:
    """Whether `opening` cuts `text`: it has more than `words` words."""
    return words is not None and bool(text) and len(text.split()) > words


def opening(text: str, words: int | None) -> str:
    """`text` cut to its first `words` words, with an ellipsis where something was cut."""
    if not is_cut(text, words):
        return text.strip()
    return " ".join(text.split()[:words]) + " …"


def item_text(items: pl.DataFrame, description_words: int | None = None) -> pl.Series:
    """One readable sentence per item: title (with year), genres, tags, and the description's
    first `description_words` words (None: all of it)."""
    texts = []
    for row in items.iter_rows(named=True):
        title = row["title"]
        if row["year"] is not None and str(row["year"]) not in title:
            title = f"{title} ({row['year']})"
        parts = [title]
        if row["genres"]:
            parts.append("Genres: " + ", ".join(row["genres"]))
        if row["tags"]:
            parts.append("Tags: " + ", ".join(row["tags"][:10]))
        if row["description"]:
            parts.append(opening(row["description"], description_words))
        texts.append(". ".join(parts))
    return pl.Series("text", texts, dtype=pl.String)


def descriptions_cut(items: pl.DataFrame, description_words: int | None) -> int:
    """How many items' descriptions `item_text` cuts."""
    return sum(is_cut(text, description_words) for text in items["description"].to_list())
