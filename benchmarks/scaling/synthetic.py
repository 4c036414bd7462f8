"""The scale benchmark's synthetic data: a seeded, deterministic data set of exactly n events
(`synthetic_events`) and the bring-your-own files a scratch project reads it from
(`write_inputs`).

About n/100 users with lognormal activity (at least 5 events each, ~100 on average), about
9.5·√n items (0.1M events: 1k users, 3k items; 1M: 10k users, 9.5k items; 10M: 100k users, 30k
items) with Zipf (exponent 1.1) item popularity, items in 16 latent topics whose words make up the
titles and descriptions, users who prefer a few topics (so the text carries real signal), ratings
1-5 (higher in a user's favourite topic), strictly increasing timestamps per user, and
`|`-separated genres. This is the `movies` shape; the parts every shape shares (`events_per_user`,
`zipf_weights`, `Preferences`, `make_distinct`, `timestamps`, `frames`, `write_inputs`) are here
too, and `products` builds the product-catalogue shape from them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline.data.source import RawData
from pipeline.workflow import write_files

MIN_EVENTS = 1_000

# The shape of the synthetic data.
EVENTS_PER_USER = 100  # mean; users = n_events / 100
MIN_USER_EVENTS = 5  # preprocess.min_user_interactions' default: nobody is dropped
ITEMS_PER_SQRT_EVENT = 9.5  # items = 9.5 * sqrt(n_events): 3k at 0.1M, 9.5k at 1M, 30k at 10M
ZIPF_EXPONENT = 1.1  # popularity ∝ 1 / rank^1.1: top 10% of items hold 41% (20k) to 70% (10M)
ACTIVITY_SIGMA = 1.0  # lognormal spread of events per user
FAVOURITE_TOPICS = 3  # topics a user prefers (Dirichlet-weighted)
GLOBAL_SHARE = 0.25  # share of a user's picks drawn by popularity alone, whatever the topic
PREFERENCE_ROUNDS = 8  # redraws of repeated (user, item) picks by the user's preference,
POPULARITY_ROUNDS = 16  # then by popularity alone, then uniformly from the catalogue
MEAN_GAP_SECONDS = 6 * 3600  # mean time between two events of a user
FIRST_TIMESTAMP = 1_420_070_400  # 2015-01-01
START_SPAN_SECONDS = 8 * 365 * 86_400  # users start within 8 years

TOPICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Space Opera", ("star", "orbit", "galaxy", "fleet", "nebula", "captain", "colony", "comet",
                     "station", "warp", "planet", "signal")),
    ("Mystery", ("detective", "clue", "alibi", "murder", "inspector", "secret", "shadow",
                 "witness", "riddle", "vault", "motive", "fog")),
    ("Romance", ("love", "heart", "kiss", "wedding", "letter", "summer", "promise", "sweetheart",
                 "dance", "rose", "vow", "longing")),
    ("Western", ("frontier", "outlaw", "sheriff", "saddle", "canyon", "dust", "gold", "rider",
                 "ranch", "revolver", "prairie", "bounty")),
    ("Horror", ("ghost", "haunted", "blood", "curse", "crypt", "scream", "demon", "midnight",
                "coffin", "witch", "terror", "grave")),
    ("Comedy", ("laugh", "prank", "blunder", "party", "roommate", "joke", "goof", "caper",
                "mixup", "hijinks", "jester", "giggle")),
    ("War", ("battle", "soldier", "trench", "general", "siege", "regiment", "medal", "bomber",
             "sniper", "front", "platoon", "armistice")),
    ("Fantasy", ("dragon", "wizard", "kingdom", "sword", "elf", "quest", "spell", "throne",
                 "castle", "prophecy", "enchanted", "realm")),
    ("Documentary", ("history", "nature", "archive", "interview", "climate", "ocean",
                     "wildlife", "science", "expedition", "truth", "inquiry", "footage")),
    ("Animation", ("cartoon", "puppy", "toybox", "bunny", "rainbow", "kitten", "talking",
                   "doodle", "sidekick", "bubble", "critter", "jingle")),
    ("Crime", ("heist", "gangster", "cartel", "robbery", "mob", "hustler", "smuggler", "racket",
               "getaway", "boss", "informant", "syndicate")),
    ("Sports", ("champion", "stadium", "coach", "league", "trophy", "rookie", "marathon",
                "boxer", "underdog", "season", "goal", "playoff")),
    ("Musical", ("song", "melody", "stage", "chorus", "band", "rhythm", "ballet", "concert",
                 "tune", "singer", "encore", "orchestra")),
    ("Thriller", ("conspiracy", "agent", "spy", "hostage", "chase", "assassin", "cipher",
                  "betrayal", "bunker", "target", "ransom", "escape")),
    ("Drama", ("family", "grief", "journey", "memory", "mother", "village", "winter", "silence",
               "river", "inheritance", "reunion", "farewell")),
    ("Sci-Fi", ("robot", "android", "cyborg", "laboratory", "clone", "virus", "future",
                "machine", "quantum", "mutant", "algorithm", "dystopia")),
)  # fmt: skip
"""Latent topics: a genre and the words its items' titles and descriptions are made of."""
GENERAL_WORDS = (
    "last", "first", "lost", "new", "old", "young", "strange", "great", "little", "dark",
    "golden", "silent", "story", "tale", "days", "return", "rise", "fall", "life", "world",
    "city", "road", "house", "time", "dream", "game", "night", "edge",
)  # fmt: skip
FILLER_WORDS = ("the", "a", "of", "in", "and", "with", "after", "before", "under", "beyond")


def scale_of(n_events: int) -> tuple[int, int]:
    """(users, items) of a synthetic data set with `n_events` events."""
    check_size(n_events)
    return n_events // EVENTS_PER_USER, round(ITEMS_PER_SQRT_EVENT * math.sqrt(n_events))


def check_size(n_events: int) -> None:
    """Refuse a data set smaller than `MIN_EVENTS` events."""
    if n_events < MIN_EVENTS:
        raise ValueError(f"n_events must be at least {MIN_EVENTS}, got {n_events}")


def events_per_user(
    rng: np.random.Generator, n_events: int, n_users: int, cap: int, sigma: float = ACTIVITY_SIGMA
) -> np.ndarray:
    """Lognormal activity (spread `sigma`), at least `MIN_USER_EVENTS` and at most `cap` each,
    summing exactly to `n_events` (largest remainders, then any capped surplus spread over the
    others)."""
    weights = rng.lognormal(0.0, sigma, n_users)
    extra = (n_events - MIN_USER_EVENTS * n_users) * weights / weights.sum()
    counts = MIN_USER_EVENTS + np.floor(extra).astype(np.int64)
    short = n_events - int(counts.sum())
    counts[np.argsort(-(extra - np.floor(extra)), kind="stable")[:short]] += 1
    surplus = int((counts - cap).clip(min=0).sum())
    counts = counts.clip(max=cap)
    while surplus:
        room = np.flatnonzero(counts < cap)
        take = rng.choice(room, size=min(surplus, room.size), replace=False)
        counts[take] += 1
        surplus -= take.size
    return counts


def zipf_weights(rng: np.random.Generator, n_items: int) -> np.ndarray:
    """Each item's popularity: 1 / rank^`ZIPF_EXPONENT` for a random permutation of ranks."""
    return 1.0 / (rng.permutation(n_items) + 1.0) ** ZIPF_EXPONENT


class Preferences:
    """Users' favourite topics and the draw of an item by them.

    Each user gets `n_favourite` topics (popular topics more often) with Dirichlet weights, the
    main one weighted most; `draw` picks an item per event from its user's topic mixture, by
    popularity within the topic."""

    def __init__(
        self,
        rng: np.random.Generator,
        topic: np.ndarray,
        weight: np.ndarray,
        n_users: int,
        n_favourite: int,
    ) -> None:
        self.rng = rng
        self.n_items = topic.size
        self.n_favourite = n_favourite
        n_topics = int(topic.max()) + 1
        self.by_topic = np.argsort(topic, kind="stable")
        self.cumulative = np.cumsum(weight[self.by_topic])
        sizes = np.bincount(topic, minlength=n_topics)
        self.ends = np.cumsum(sizes)
        self.starts = self.ends - sizes
        self.mass = np.bincount(topic, weights=weight, minlength=n_topics)
        self.offsets = np.concatenate([[0.0], np.cumsum(self.mass)])[:-1]
        gumbel = -np.log(-np.log(rng.random((n_users, n_topics))))
        self.favourite = np.argsort(-(np.log(np.maximum(self.mass, 1e-300)) + gumbel), axis=1)[
            :, :n_favourite
        ]
        weights = -np.sort(-rng.dirichlet(np.ones(n_favourite), n_users), axis=1)  # main first
        self.share = np.cumsum(weights, axis=1)

    def draw(self, users: np.ndarray, overall_share: float) -> tuple[np.ndarray, np.ndarray]:
        """An item per event drawn from its user's topic mixture (or, with `overall_share`, by
        popularity alone), and whether it was in the user's main topic."""
        rng = self.rng
        slot = (rng.random(users.size)[:, None] > self.share[users]).sum(axis=1)
        slot = slot.clip(max=self.n_favourite - 1)
        chosen = self.favourite[users, slot]
        overall = rng.random(users.size) < overall_share
        target = np.where(
            overall,
            rng.random(users.size) * self.cumulative[-1],
            self.offsets[chosen] + rng.random(users.size) * self.mass[chosen],
        )
        position = np.searchsorted(self.cumulative, target, side="right")
        low = np.where(overall, 0, self.starts[chosen])
        high = np.where(overall, self.n_items, self.ends[chosen]) - 1
        item = self.by_topic[position.clip(low, high)]
        return item, ~overall & (slot == 0)


def make_distinct(
    user: np.ndarray, item: np.ndarray, n_items: int, redraw: Callable[[np.ndarray, int], None]
) -> None:
    """One event per (user, item): while some pick repeats an earlier one of its user, let
    `redraw(repeated, attempt)` replace `item[repeated]` in place (attempt 0, 1, ...)."""
    for attempt in range(1000):
        key = user * n_items + item
        order = np.argsort(key, kind="stable")
        repeated = np.zeros(key.size, dtype=bool)
        repeated[order[1:][key[order][1:] == key[order][:-1]]] = True
        if not repeated.any():
            return
        redraw(np.flatnonzero(repeated), attempt)
    raise RuntimeError("could not draw distinct items per user")  # pragma: no cover


def timestamps(rng: np.random.Generator, counts: np.ndarray) -> np.ndarray:
    """Seconds per event (grouped by user, `counts` each): a random start per user within
    `START_SPAN_SECONDS`, then exponential gaps, so strictly increasing within a user."""
    first = np.cumsum(counts) - counts  # each user's first event
    gaps = 1 + rng.exponential(MEAN_GAP_SECONDS, int(counts.sum())).astype(np.int64)
    elapsed = np.cumsum(gaps)
    within = elapsed - np.repeat(elapsed[first] - gaps[first], counts)  # restarts per user
    start = FIRST_TIMESTAMP + rng.integers(0, START_SPAN_SECONDS, counts.size)
    return start[np.repeat(np.arange(counts.size), counts)] + within


def frames(
    user: np.ndarray,
    item: np.ndarray,
    rating: np.ndarray,
    timestamp: np.ndarray,
    texts: tuple[list[str], list[list[str]], list[str]],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(interactions, items) from 0-based users and items (ids from 1) and the items' (titles,
    genre lists, descriptions)."""
    titles, genres, descriptions = texts
    interactions = pl.DataFrame(
        {
            "user_id": user + 1,
            "item_id": item + 1,
            "rating": rating.astype(np.int8),
            "timestamp": timestamp,
        }
    )
    items = pl.DataFrame(
        {
            "item_id": np.arange(1, len(titles) + 1),
            "title": titles,
            "genres": genres,
            "description": descriptions,
        },
        schema={
            "item_id": pl.Int64,
            "title": pl.String,
            "genres": pl.List(pl.String),
            "description": pl.String,
        },
    )
    return interactions, items


def _item_texts(
    rng: np.random.Generator, topic: np.ndarray
) -> tuple[list[str], list[list[str]], list[str]]:
    """Titles (with a year), genre lists and descriptions made of each item's topic words."""
    n_topics = len(TOPICS)
    titles, genres, descriptions = [], [], []
    years = rng.integers(1960, 2024, topic.size)
    for index, own in enumerate(topic.tolist()):
        genre, words = TOPICS[own]
        title_words = list(rng.choice(words, size=int(rng.integers(1, 3)), replace=False))
        if rng.random() < 0.6:
            title_words.insert(0, str(rng.choice(GENERAL_WORDS)))
        titles.append(" ".join(word.capitalize() for word in title_words) + f" ({years[index]})")
        other = int((own + rng.integers(1, n_topics)) % n_topics)
        genres.append([genre, TOPICS[other][0]] if rng.random() < 0.3 else [genre])
        picked = []
        for _ in range(int(rng.integers(8, 15))):
            draw = rng.random()
            if draw < 0.55:
                picked.append(str(rng.choice(words)))
            elif draw < 0.65:
                picked.append(str(rng.choice(TOPICS[other][1])))
            elif draw < 0.8:
                picked.append(str(rng.choice(GENERAL_WORDS)))
            else:
                picked.append(str(rng.choice(FILLER_WORDS)))
        descriptions.append(" ".join(picked).capitalize() + ".")
    return titles, genres, descriptions


def synthetic_events(n_events: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A deterministic synthetic data set of exactly `n_events` events: (interactions, items).

    Interactions: `user_id`, `item_id` (integers from 1), `rating` (1-5), `timestamp` (seconds,
    strictly increasing within a user), sorted by user then time, one event per (user, item).
    Items: `item_id`, `title`, `genres` (a list), `description`. See the module docstring for the
    shape (`scale_of` for the counts).
    """
    n_users, n_items = scale_of(n_events)
    rng = np.random.default_rng(seed)

    # Items: a topic each, and a Zipf weight from a random popularity rank; users' topics.
    topic = rng.integers(0, len(TOPICS), n_items)
    preferences = Preferences(rng, topic, zipf_weights(rng, n_items), n_users, FAVOURITE_TOPICS)

    counts = events_per_user(rng, n_events, n_users, cap=max(MIN_USER_EVENTS, n_items // 2))
    user = np.repeat(np.arange(n_users), counts)
    item, in_first_topic = preferences.draw(user, GLOBAL_SHARE)

    def redraw(again: np.ndarray, attempt: int) -> None:
        """Repeated picks: by preference, then (once a heavy user has exhausted their topics) by
        popularity, then uniformly from the catalogue."""
        if attempt < PREFERENCE_ROUNDS + POPULARITY_ROUNDS:
            overall_share = GLOBAL_SHARE if attempt < PREFERENCE_ROUNDS else 1.0
            item[again], in_first_topic[again] = preferences.draw(user[again], overall_share)
        else:
            item[again] = rng.integers(0, n_items, again.size)
            in_first_topic[again] = False

    make_distinct(user, item, n_items, redraw)
    rating = np.rint(3.2 + 0.8 * in_first_topic + rng.normal(0.0, 1.0, n_events)).clip(1, 5)
    timestamp = timestamps(rng, counts)
    return frames(user, item, rating, timestamp, _item_texts(rng, topic))


def write_inputs(interactions: pl.DataFrame, items: pl.DataFrame, root: Path) -> dict[str, Any]:
    """Write a synthetic data set as bring-your-own CSV files under `root/data/input`; return the
    `data` params section that reads them (paths relative to `root`)."""
    raw = RawData(
        interactions=interactions,
        items=items.with_columns(tags=pl.lit([], pl.List(pl.String))),
        users=None,
        source="synthetic",
    )
    return write_files(raw, root).model_dump(mode="json")
