"""Hand-built inputs for the cluster stage and the profiles, small enough to work out on paper:
unit vectors in tight groups, and `Processed` tables of who liked what."""

from __future__ import annotations

import numpy as np
import polars as pl

from pipeline.data.artifacts import Processed


def unit(rows: np.ndarray) -> np.ndarray:
    """`rows` scaled to unit length, as float32."""
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def groups(sizes: list[int], dim: int = 16, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """Users in tight bunches around orthogonal directions: group g lies along axis g."""
    rng = np.random.default_rng(seed)
    rows = []
    for group, size in enumerate(sizes):
        centre = np.zeros(dim)
        centre[group] = 1.0
        rows.append(centre + noise * rng.standard_normal((size, dim)))
    return unit(np.vstack(rows))


def processed_from(
    liked: list[list[int]],
    genres: list[list[str]],
    tags: list[list[str]] | None = None,
) -> Processed:
    """A `Processed` built by hand: user u liked the items `liked[u]` in training; item i is
    `Film i` with the genres `genres[i]` (and the tags `tags[i]`)."""
    n_items = len(genres)
    train = pl.DataFrame(
        {
            "user_idx": [u for u, items in enumerate(liked) for _ in items],
            "item_idx": [i for items in liked for i in items],
        },
        schema={"user_idx": pl.Int32, "item_idx": pl.Int32},
    ).with_columns(pl.lit(1.0, pl.Float32).alias("rating"), pl.lit(0, pl.Int64).alias("timestamp"))
    items = pl.DataFrame(
        {
            "item_idx": list(range(n_items)),
            "item_id": [str(100 + i) for i in range(n_items)],
            "title": [f"Film {i}" for i in range(n_items)],
            "genres": genres,
            "tags": tags if tags is not None else [[] for _ in range(n_items)],
        },
        schema_overrides={
            "item_idx": pl.Int32,
            "genres": pl.List(pl.String),
            "tags": pl.List(pl.String),
        },
    )
    users = pl.DataFrame(
        {"user_idx": list(range(len(liked))), "user_id": [str(u) for u in range(len(liked))]},
        schema_overrides={"user_idx": pl.Int32},
    )
    empty = train.clear()
    return Processed(
        train=train, validation=empty, test=empty, cold=empty, items=items, users=users
    )


HORROR_FANS = range(6)
ROMANCE_FANS = range(6, 12)


def horror_and_romance() -> Processed:
    """Six horror fans (users 0-5) and six romance fans (users 6-11).

    Items 0-3 Horror (0 and 1 also tagged `gore`), 4 Horror tagged `cult`, 5-8 Romance.
    Horror fans: items 0, 1, 2, 3, 5 each; the first one also item 4 (31 interactions).
    Romance fans: items 5, 6, 7, 8, 0 each (30 interactions). 61 in all.
    """
    genres = [["Horror"]] * 5 + [["Romance"]] * 4
    tags = [["gore"], ["gore"], [], [], ["cult"], [], [], [], []]
    horror_fans = [[0, 1, 2, 3, 5] for _ in HORROR_FANS]
    horror_fans[0] = [*horror_fans[0], 4]
    romance_fans = [[5, 6, 7, 8, 0] for _ in ROMANCE_FANS]
    return processed_from(horror_fans + romance_fans, genres, tags)
