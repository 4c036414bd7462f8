"""How many interests users have and how well their labels describe their items, counted so that
the counts of several partitions of users add up to those of all of them (`Tally`).

Counts, sums of whole numbers and sets add up exactly, in any order: the interests per user as
a histogram (its median and mean are those of the values), the labels led by an era or taken
from a title, the distinct labels. The label agreement is a mean of shares, each the number of
an interest's items carrying a label term over its number of items: those are summed as whole
numbers per interest size and divided once, exactly (`Agreement`), so the mean does not depend
on the order the interests are added in. The median weight of the users' top interests needs
the values themselves: one number per user.

The agreement's floor deals each user's items at random across their interests with one seeded
generator, user after user in user order (`shuffled_agreement`). How many numbers a permutation
draws from the generator depends on what it draws (bounded integers are drawn by rejection),
so a partition cannot know the generator's state at its first user without dealing every
earlier user's items: the floor is dealt in one pass over the interests in user order, read a
batch at a time.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import polars as pl

from pipeline.models.terms import is_whole


@dataclass
class Agreement:
    """The label agreement's shares, summed: per interest size (items), the items carrying one
    of the interest's label terms; and how many interests have label terms."""

    carrying: dict[int, int] = field(default_factory=dict)
    interests: int = 0

    @classmethod
    def of(cls, table: pl.DataFrame, carried: dict[int, set[str]]) -> Agreement:
        """Over the rows of `table` (`items`, `label_terms` as JSON text)."""
        found = cls()
        for members, named in table.select("items", "label_terms").iter_rows():
            wanted = set(json.loads(named))
            if wanted:
                size = len(members)
                hits = sum(bool(carried.get(item, set()) & wanted) for item in members)
                found.carrying[size] = found.carrying.get(size, 0) + hits
                found.interests += 1
        return found

    def __add__(self, other: Agreement) -> Agreement:
        carrying = dict(self.carrying)
        for size, hits in other.carrying.items():
            carrying[size] = carrying.get(size, 0) + hits
        return Agreement(carrying, self.interests + other.interests)

    def mean(self) -> float | None:
        """The mean share, rounded once from the exact sum (None without labelled interests)."""
        if not self.interests:
            return None
        total = sum(Fraction(hits, size) for size, hits in self.carrying.items())
        return float(total / self.interests)


@dataclass
class Tally:
    """What `interest_metrics` reports, counted over some users' interests; `+` adds the
    tallies of disjoint sets of users."""

    per_user: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    """Users by their number of interests (index: the number)."""
    top_weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    agreement: Agreement = field(default_factory=Agreement)
    interests: int = 0
    led_by_an_era: int = 0
    from_a_title: int = 0
    from_the_topic: int = 0
    labels: set[str] = field(default_factory=set)
    label_terms: int = 0
    whole_label_terms: int = 0

    @classmethod
    def of(cls, table: pl.DataFrame, carried: dict[int, set[str]]) -> Tally:
        """Of the interests in `table` (`pipeline.models.interest_labels.label_interests`)."""
        named = [json.loads(text) for text in table["label_terms"]]
        terms = [term for one in named for term in one]
        return cls(
            per_user=np.bincount(table.group_by("user_idx").len()["len"].to_numpy(), minlength=1),
            top_weights=table.filter(pl.col("interest") == 0)["weight"].to_numpy(),
            agreement=Agreement.of(table, carried),
            interests=table.height,
            led_by_an_era=sum(bool(one) and one[0].endswith(" films") for one in named),
            from_a_title=int((table["label_terms"] == "[]").sum()),
            from_the_topic=int(((table["terms"] == "[]") & (table["label_terms"] != "[]")).sum()),
            labels=set(table["label"].to_list()),
            label_terms=len(terms),
            whole_label_terms=sum(is_whole(term) for term in terms),
        )

    def __add__(self, other: Tally) -> Tally:
        width = max(self.per_user.size, other.per_user.size)
        return Tally(
            per_user=np.pad(self.per_user, (0, width - self.per_user.size))
            + np.pad(other.per_user, (0, width - other.per_user.size)),
            top_weights=np.concatenate([self.top_weights, other.top_weights]),
            agreement=self.agreement + other.agreement,
            interests=self.interests + other.interests,
            led_by_an_era=self.led_by_an_era + other.led_by_an_era,
            from_a_title=self.from_a_title + other.from_a_title,
            from_the_topic=self.from_the_topic + other.from_the_topic,
            labels=self.labels | other.labels,
            label_terms=self.label_terms + other.label_terms,
            whole_label_terms=self.whole_label_terms + other.whole_label_terms,
        )


def _median_of_counts(histogram: np.ndarray) -> float:
    """The median of the values `histogram` counts (value i, `histogram[i]` times)."""
    n = int(histogram.sum())
    cumulative = np.cumsum(histogram)
    low = int(np.searchsorted(cumulative, (n - 1) // 2, side="right"))
    high = int(np.searchsorted(cumulative, n // 2, side="right"))
    return (low + high) / 2


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def metrics_of(tally: Tally, floor: Agreement, n_users: int) -> dict[str, Any]:
    """`interest_metrics` from a tally of every user's interests and the agreement of the
    items dealt at random across them (`shuffled_agreement`)."""
    users = int(tally.per_user.sum())
    agreement, shuffled = tally.agreement.mean(), floor.mean()
    return {
        "users": users,
        "users_without_events": int(n_users - users),
        "interests": tally.interests,
        "interests_per_user_median": _median_of_counts(tally.per_user) if users else None,
        "interests_per_user_mean": round(
            int(np.arange(tally.per_user.size) @ tally.per_user) / users, 3
        )
        if users
        else None,
        "users_by_interest_count": {
            str(count): int(n) for count, n in enumerate(tally.per_user) if count and n
        },
        "top_interest_weight_median": round(float(np.median(tally.top_weights)), 4)
        if tally.top_weights.size
        else None,
        "label_agreement": None if agreement is None else round(agreement, 4),
        "label_agreement_shuffled_interests": None if shuffled is None else round(shuffled, 4),
        "labels_led_by_an_era": _share(tally.led_by_an_era, tally.interests),
        "labels_from_a_title": _share(tally.from_a_title, tally.interests),
        "labels_from_the_topic": _share(tally.from_the_topic, tally.interests),
        "labels_distinct": len(tally.labels),
        "labels_distinct_share": _share(len(tally.labels), tally.interests),
        "label_terms_whole_words": _share(tally.whole_label_terms, tally.label_terms),
    }


def _dealt(table: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """`table` (whole users, sorted by user) with each user's interest items dealt at random
    across their interests (sizes kept), drawing from `rng` user after user."""
    dealt: list[list[int]] = []
    users = table["user_idx"].to_numpy()
    members = table["items"].to_list()
    starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1, users.size]
    for start, stop in itertools.pairwise(starts.tolist()):
        own = members[start:stop]
        pooled = rng.permutation(np.concatenate([np.asarray(group) for group in own]))
        cuts = np.cumsum([len(group) for group in own])[:-1]
        dealt.extend(part.tolist() for part in np.split(pooled, cuts))
    return table.with_columns(pl.Series("items", dealt, dtype=pl.List(pl.Int32)))


def shuffled_agreement(
    batches: Iterable[pl.DataFrame], carried: dict[int, set[str]], seed: int
) -> Agreement:
    """The label agreement with each user's items dealt at random across their interests: the
    floor a label that says nothing about its own items reaches. `batches`: the interests
    (`user_idx, items, label_terms`) in user order, a user's rows possibly across two."""
    rng = np.random.default_rng(seed)
    found = Agreement()
    pending: pl.DataFrame | None = None
    for batch in batches:
        if pending is not None:
            batch = pl.concat([pending, batch.select(pending.columns)])
        if batch.height == 0:
            continue
        last = batch["user_idx"][-1]
        pending = batch.filter(pl.col("user_idx") == last)
        complete = batch.filter(pl.col("user_idx") != last)
        if complete.height:
            found += Agreement.of(_dealt(complete, rng), carried)
    if pending is not None and pending.height:
        found += Agreement.of(_dealt(pending, rng), carried)
    return found


def interest_metrics(
    table: pl.DataFrame, carried: dict[int, set[str]], n_users: int, seed: int
) -> dict[str, Any]:
    """How many interests users have and how well the labels describe their items (`carried`:
    every term and phrase each item carries), against the agreement of the same items dealt at
    random across each user's interests."""
    columns = ["user_idx", "items", "label_terms"]
    return metrics_of(
        Tally.of(table, carried),
        shuffled_agreement([table.select(columns)], carried, seed),
        n_users,
    )
