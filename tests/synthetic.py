"""Tiny synthetic datasets with known structure, shared by the pipeline tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline.data.source import RawData

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]


def make_items(n_items: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "item_id": [str(100 + i) for i in range(n_items)],
            "title": [f"Film {i} ({1980 + i % 30})" for i in range(n_items)],
            "year": [1980 + i % 30 for i in range(n_items)],
            "genres": [[GENRES[i % len(GENRES)]] for i in range(n_items)],
            "tags": [[f"tag{i % 4}"] for i in range(n_items)],
            "description": [None] * n_items,
        },
        schema_overrides={"year": pl.Int32, "description": pl.String},
    )


def make_raw(
    n_users: int = 30, n_items: int = 40, per_user: int = 12, seed: int = 0, ties: bool = True
) -> RawData:
    """Random interactions; with `ties`, many users share timestamps at the end of their history."""
    rng = np.random.default_rng(seed)
    users, items, stamps = [], [], []
    for user in range(n_users):
        chosen = rng.choice(n_items, size=per_user, replace=False)
        times = np.sort(rng.integers(0, 1_000, size=per_user))
        if ties and user % 2 == 0:
            times[-3:] = times[-1]
        users += [str(user + 1)] * per_user
        items += [str(100 + item) for item in chosen]
        stamps += times.tolist()
    interactions = pl.DataFrame(
        {
            "user_id": users,
            "item_id": items,
            "rating": rng.integers(1, 6, size=len(users)).astype(float),
            "timestamp": stamps,
        },
        schema_overrides={"timestamp": pl.Int64},
    )
    return RawData(
        interactions=interactions, items=make_items(n_items), users=None, source="synthetic"
    )


def make_block_raw(
    n_users_per_block: int = 20, n_items_per_block: int = 15, seed: int = 0
) -> RawData:
    """Two disjoint tastes: users in block A only touch A items, block B only B items.

    Any sensible recommender must recommend within the user's block: a known answer.
    """
    rng = np.random.default_rng(seed)
    users, items, stamps = [], [], []
    for block in range(2):
        for user in range(n_users_per_block):
            uid = block * n_users_per_block + user
            chosen = (
                rng.choice(n_items_per_block, size=8, replace=False) + block * n_items_per_block
            )
            users += [str(uid)] * len(chosen)
            items += [str(100 + item) for item in chosen]
            stamps += list(range(len(chosen)))
    interactions = pl.DataFrame(
        {"user_id": users, "item_id": items, "rating": [4.0] * len(users), "timestamp": stamps},
        schema_overrides={"timestamp": pl.Int64},
    )
    return RawData(
        interactions=interactions,
        items=make_items(2 * n_items_per_block),
        users=None,
        source="synthetic-blocks",
    )


def blocks_with_random_text(seed: int = 0):
    """(processed, matrices, ALS factors, text vectors) on the two-block data, where the text
    knows nothing (random unit vectors) and ALS finds the blocks: fusion should prefer ALS."""
    from pipeline import factorize, preprocess
    from pipeline.core.sections import FactorizeConfig, PreprocessConfig
    from pipeline.data.artifacts import Embeddings
    from pipeline.evaluation.protocol import SplitMatrices

    processed = preprocess.run(make_block_raw(), PreprocessConfig(min_user_interactions=3))
    matrices = SplitMatrices.from_processed(processed)
    cf = factorize.run(
        matrices.train, FactorizeConfig(embedding_size=8, reg=0.1, alpha=10.0, epochs=30)
    )
    rng = np.random.default_rng(seed)

    def unit(rows: np.ndarray) -> np.ndarray:
        return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)

    text = Embeddings(
        users=unit(rng.normal(size=(processed.users.height, 16))),
        items=unit(rng.normal(size=(processed.items.height, 16))),
    )
    return processed, matrices, cf, text


def score_spreads(text, cf) -> tuple[float, float]:
    """Standard deviation of the text and collaborative scores over every user × item: the
    scales `make_fusion` divides each side's score by (`tune_fusion` measures them on a sample)."""
    users = np.arange(len(text.users))
    return float(np.std(text.score(users))), float(np.std(cf.score(users)))


def small_pipeline_params(root: Path, encoder: Path) -> dict[str, Any]:
    """The params of a small project every stage runs on in a minute: `make_raw` data written as
    files under `root`, the tiny encoder at `encoder`, short training, small grids. Returned as
    a plain dict, for a test to change before `parse_params`."""
    from pipeline import workflow
    from pipeline.core.config import Params

    data = workflow.write_files(make_raw(n_users=40, n_items=50, per_user=12), root)
    raw = Params().model_dump(mode="json")
    raw["data"] = data.model_dump(mode="json")
    raw["evaluate"]["ease_reg_grid"] = [1.0, 10.0]
    raw["text"]["max_seq_length"] = 32
    raw["finetune"].update(
        base_model=str(encoder), max_steps=2, batch_size=8, eval_steps=2, eval_users=10
    )
    raw["cluster"]["k"] = 3
    raw["index"]["n_trees"] = 5
    return raw
