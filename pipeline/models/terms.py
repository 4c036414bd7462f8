"""Terms, and what a group of events over-represents: the vocabulary every description of users,
interests and topics is written in.

An item carries terms (`item_terms`: its genres, tags and release era; `word_terms`: the words of
its title and description, for data without genres or tags). A group of events (a cluster's, a
user's, an interest's) over-represents a term by its lift, the group's share of events carrying
the term over everyone's share, with support floors so a rare term cannot top a list
(`ranked_terms`). A user's own terms are those of their history (`over_represented_terms`).
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl

# A term must be carried by at least 5% of the cluster's interactions and by 5 of them: lift is a
# ratio, and a tag seen twice in a cluster but almost never elsewhere would otherwise top every
# list while describing nobody's taste.
MIN_TERM_SHARE = 0.05
MIN_TERM_INTERACTIONS = 5
MIN_USER_TERM_INTERACTIONS = 3

ERA_EXACT_FROM = 1990
"""From this year on, an item's era term is its exact release year; before, its decade."""
ERA_TERMS = 2
"""At most this many era terms per cluster profile (and one in its label)."""

WORD_MIN_LENGTH = 4
"""Shorter words of titles and descriptions are no terms, nor are the common STOP_WORDS."""
STOP_WORDS = frozenset((
    "about", "after", "again", "against", "also", "among", "around", "away", "back", "been",
    "before", "being", "below", "between", "both", "came", "come", "could", "down", "during",
    "each", "even", "ever", "every", "from", "have", "having", "here", "into", "just", "like",
    "made", "make", "many", "more", "most", "much", "must", "never", "only", "other", "over",
    "same", "should", "some", "such", "than", "that", "their", "them", "then", "there", "these",
    "they", "this", "those", "through", "under", "until", "upon", "very", "were", "what", "when",
    "where", "which", "while", "will", "with", "within", "without", "would", "your",
))  # fmt: skip


def is_whole(term: str) -> bool:
    """Whether every token of a term is a whole word: no fragment cut at a hyphen ("gsw-"), no
    letters mixed with digits ("gsw-1000"); a year on its own is a whole word."""
    for token in term.lower().lstrip("#").split():
        token = token.strip("'’")
        if token.isdigit():
            continue
        if not re.fullmatch(r"[^\W\d_]+(?:['’-][^\W\d_]+)*", token):
            return False
        if any(len(part) < 2 for part in token.split("-")) and "-" in token:
            return False
    return True


def _era(year: pl.Expr) -> pl.Expr:
    """ "1997 films" for recent years, "1970s films" before 1990.

    Users described by their recent history group as much by *when* they watch (the new releases
    of their day) as by genre; an era term lets a cluster label say so. Exact years only where
    the catalogue is dense enough for one year to carry support.
    """
    decade = (year // 10 * 10).cast(pl.String) + pl.lit("s films")
    exact = year.cast(pl.String) + pl.lit(" films")
    return pl.when(year >= ERA_EXACT_FROM).then(exact).otherwise(decade)


def has_genres(items: pl.DataFrame) -> bool:
    """Whether any item of the catalogue has a genre."""
    return "genres" in items.columns and bool(items["genres"].list.len().sum())


def item_terms(items: pl.DataFrame) -> pl.DataFrame:
    """One row per (item_idx, kind, term) for the items' genres, tags and release era.

    A tag that is no whole word ("#toplist10", "gsw-") names nothing a reader could take up; it
    stays in the item's text, which is encoded, but is no term. A catalogue without genres is
    described by the words of its items' text (tags, and phrases of titles and descriptions,
    `pipeline.models.phrases`): a release year is no word of that text, so it has no era terms.
    """
    parts = [
        items.select(pl.col("item_idx").cast(pl.Int32), pl.col(column).alias("term"))
        .explode("term")
        .with_columns(pl.col("term").str.strip_chars(), pl.lit(kind).alias("kind"))
        for column, kind in (("genres", "genre"), ("tags", "tag"))
        if column in items.columns
    ]
    if "year" in items.columns and has_genres(items):
        parts.append(
            items.filter(pl.col("year").is_not_null()).select(
                pl.col("item_idx").cast(pl.Int32),
                _era(pl.col("year")).alias("term"),
                pl.lit("era").alias("kind"),
            )
        )
    if not parts:
        return pl.DataFrame(schema={"item_idx": pl.Int32, "term": pl.String, "kind": pl.String})
    terms = (
        pl.concat(parts)
        .filter(pl.col("term").is_not_null() & (pl.col("term") != ""))
        # A tag repeated on one item is still one item carrying it.
        .unique()
    )
    tags = terms.filter(pl.col("kind") == "tag")["term"].unique().to_list()
    fragments = sorted(tag for tag in tags if not is_whole(tag))
    return terms.filter((pl.col("kind") != "tag") | ~pl.col("term").is_in(fragments))


def word_terms(items: pl.DataFrame) -> pl.DataFrame:
    """`item_idx, kind="word", term` for the words of each item's title and description."""
    text = pl.col("title").fill_null("").str.replace_all(r"\(\d{4}\)", "")
    if "description" in items.columns:
        text = text + pl.lit(" ") + pl.col("description").fill_null("")
    words = (
        items.select(
            pl.col("item_idx").cast(pl.Int32),
            text.str.to_lowercase().str.extract_all(r"[a-z][a-z'-]+").alias("term"),
        )
        .explode("term")
        .filter(
            (pl.col("term").str.len_chars() >= WORD_MIN_LENGTH)
            & ~pl.col("term").is_in(sorted(STOP_WORDS))
        )
        .unique()
        .with_columns(pl.lit("word").alias("kind"))
    )
    return words.select("item_idx", "term", "kind")


def carried_terms(items: pl.DataFrame) -> dict[int, set[str]]:
    """Every term (genre, tag, era, word) each item carries."""
    found: dict[int, set[str]] = {}
    for item, term in pl.concat(
        [item_terms(items).select("item_idx", "term"), word_terms(items).select("item_idx", "term")]
    ).iter_rows():
        found.setdefault(item, set()).add(term)
    return found


EVENTS = "events"
"""A column of how many events a row stands for: rows of counts instead of one row per event."""


def _term_shares(grouped: pl.DataFrame, items: pl.DataFrame, by: str) -> pl.DataFrame:
    """Per group (`by`) and term: the group's `interactions` carrying it, its `total`
    interactions, and the `share` of the one in the other. A row is one event, or `EVENTS`
    events where `grouped` has that column (the same whole counts, so the same shares)."""
    count = pl.col(EVENTS).sum() if EVENTS in grouped.columns else pl.len()
    totals = grouped.group_by(by).agg(count.alias("total"))
    return (
        grouped.join(item_terms(items), on="item_idx")
        .group_by(by, "kind", "term")
        .agg(count.alias("interactions"))
        .join(totals, on=by)
        .with_columns((pl.col("interactions") / pl.col("total")).alias("share"))
    )


def user_events(train: pl.DataFrame) -> pl.DataFrame:
    """`user_idx, item_idx` (Int32) of every event: what the term and item counts group."""
    return train.select(pl.col("user_idx").cast(pl.Int32), pl.col("item_idx").cast(pl.Int32))


def user_term_shares(train: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    """Per user and term: the user's training `interactions` carrying it, their `total`
    interactions and the `share` of the one in the other (what `label_agreement` compares)."""
    return _term_shares(user_events(train), items, "user_idx")


def ranked_terms(
    train: pl.DataFrame,
    grouped: pl.DataFrame,
    items: pl.DataFrame,
    keep: int,
    by: str = "cluster",
    min_interactions: int = MIN_TERM_INTERACTIONS,
    by_weight: bool = False,
    overall: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Supported terms each group (`by`: a cluster, or a user) over-represents, highest lift
    first (`by_weight`: highest `label_weight` first): `keep` genres/tags and at most ERA_TERMS
    eras per group. `overall`: everyone's `kind, term, share` (`overall_shares`) when `train`
    is only some of the events (one partition's users).

    Lift and share are rounded to 4 places before the weight ranks them, so the order is the
    one `label_weight` gives the stored values."""
    if overall is None:
        overall = overall_shares(train, items)
    rank = "weight" if by_weight else "lift"
    order = [by, rank, "share", "kind", "term"]
    descending = [False, True, True, False, False]
    return (
        _term_shares(grouped, items, by)
        .join(
            overall.select("kind", "term", pl.col("share").alias("share_overall")),
            on=["kind", "term"],
        )
        .with_columns((pl.col("share") / pl.col("share_overall")).alias("lift"))
        .filter(
            (pl.col("share") >= MIN_TERM_SHARE)
            & (pl.col("interactions") >= min_interactions)
            # Below 1 the term is under-represented: it does not describe the cluster.
            & (pl.col("lift") > 1.0)
        )
        .with_columns(
            pl.col("lift").round(4),
            pl.col("share").round(4),
            pl.col("share_overall").round(4),
            (pl.col("kind") == "era").alias("is_era"),
        )
        .with_columns((pl.col("share") * pl.col("lift").log()).alias("weight"))
        .sort(order, descending=descending)
        # Eras have high lifts (release years cluster sharply) and would crowd out genres and
        # tags, which say more about taste: `keep` of those, and at most ERA_TERMS eras.
        .group_by(by, "is_era", maintain_order=True)
        .head(keep)
        .filter(~pl.col("is_era") | (pl.int_range(pl.len()).over(by, "is_era") < ERA_TERMS))
        .sort(order, descending=descending)
        .select(
            by,
            "term",
            "kind",
            "lift",
            "share",
            "share_overall",
            pl.col("interactions").cast(pl.Int32),
        )
    )


def overall_shares(events: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    """Everyone's `kind, term, share`: the share of all `events` (`item_idx` rows, or counts
    per item in an `EVENTS` column) on an item carrying the term."""
    return _term_shares(events.with_columns(pl.lit(0).alias("everyone")), items, "everyone")


def over_represented_terms(
    train: pl.DataFrame, items: pl.DataFrame, keep: int, overall: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Each user's own profile: the genres, tags and eras their training history
    over-represents against everyone's, highest lift first, as `user_idx, term, kind, lift,
    share, share_overall, interactions` rows.

    The same lift as the cluster profiles, with a lower support floor (MIN_USER_TERM_INTERACTIONS)
    since one user has far fewer events than a cluster. `overall`: everyone's shares
    (`overall_shares`) when `train` holds only some users' events (one partition's).
    """
    events = user_events(train)
    return ranked_terms(
        events,
        events,
        items,
        keep,
        by="user_idx",
        min_interactions=MIN_USER_TERM_INTERACTIONS,
        overall=overall,
    )


def served_counts(served: np.ndarray) -> pl.DataFrame:
    """`item_idx, EVENTS` for every item with events: what `terms.overall_shares` counts."""
    items = np.flatnonzero(served)
    return pl.DataFrame(
        {"item_idx": items.astype(np.int32), EVENTS: served[items].astype(np.int64)}
    )
