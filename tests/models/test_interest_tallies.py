"""The interests' metrics counted per partition of users add up to those of every user at once,
and the shuffled floor dealt from batches is the one dealt from the whole table."""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from pipeline.models.interest_tallies import (
    Agreement,
    Tally,
    interest_metrics,
    metrics_of,
    shuffled_agreement,
)


def _table(seed: int = 0) -> tuple[pl.DataFrame, dict[int, set[str]]]:
    """Interests of 12 users (1 to 4 each), labelled with genres their items carry or not."""
    rng = np.random.default_rng(seed)
    genres = ["drama", "comedy", "horror", "1994 films"]
    carried = {item: set(rng.choice(genres, size=2, replace=False)) for item in range(30)}
    rows = []
    for user in range(12):
        for interest in range(int(rng.integers(1, 5))):
            named = [] if rng.random() < 0.2 else list(rng.choice(genres, size=1))
            rows.append(
                {
                    "user_idx": user,
                    "interest": interest,
                    "items": rng.choice(30, size=int(rng.integers(1, 6)), replace=False).tolist(),
                    "weight": float(rng.random()),
                    "label": " · ".join(named) or f"Like item {user}",
                    "label_terms": json.dumps(named),
                    "terms": "[]" if rng.random() < 0.3 else json.dumps(named),
                }
            )
    schema = {"user_idx": pl.Int32, "interest": pl.Int32, "items": pl.List(pl.Int32)}
    return pl.DataFrame(rows, schema_overrides=schema), carried


def test_tallies_of_partitions_give_the_metrics_of_every_user() -> None:
    table, carried = _table()
    whole = interest_metrics(table, carried, n_users=15, seed=7)
    parts = [table.filter(pl.col("user_idx") % 3 == r) for r in range(3)]
    tally = sum((Tally.of(part, carried) for part in parts), Tally())
    columns = ["user_idx", "items", "label_terms"]
    # Batches of 5 rows cut users' interests in two: the floor is still the whole table's.
    batches = [table.select(columns).slice(start, 5) for start in range(0, table.height, 5)]
    floor = shuffled_agreement(batches, carried, seed=7)
    assert metrics_of(tally, floor, 15) == whole
    assert whole["interests"] == table.height and whole["users_without_events"] == 3


def test_the_agreement_is_the_mean_share_of_items_carrying_a_label_term() -> None:
    table, carried = _table(1)
    shares = [
        np.mean([bool(carried[item] & set(json.loads(named))) for item in members])
        for members, named in table.select("items", "label_terms").iter_rows()
        if json.loads(named)
    ]
    assert abs(Agreement.of(table, carried).mean() - float(np.mean(shares))) < 1e-12
