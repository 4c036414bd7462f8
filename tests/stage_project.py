"""A tiny project ready for the `fuse` and `index` stages, with answers known in advance.

The two-block data (`synthetic.make_block_raw`): users of block A only touch A items, block B
only B items. The upstream outputs are written directly where training would take long: ALS
(`factorize.run`, which finds the blocks), text vectors that know nothing (random unit
vectors) and sequence models that know nothing (random vectors); `cluster` and `interests` run
as the real stages on them. So fusion has a known answer: the smallest text weight and the
behaviour side without the sequence model.
"""

from __future__ import annotations

import hashlib
import importlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from synthetic import make_block_raw

from pipeline import cluster, factorize, interests, preprocess
from pipeline.core.config import Params, load_params
from pipeline.core.layout import Layout
from pipeline.core.sections import FactorizeConfig, PreprocessConfig
from pipeline.data.artifacts import (
    SEQUENCE_MODELS,
    write_embeddings,
    write_factors,
    write_processed,
    write_sequence_vectors,
)
from pipeline.data.interactions import UserItemVectors, interaction_matrix
from pipeline.evaluation.protocol import SplitMatrices
from pipeline.workflow import override, write_params

TEXT_DIMENSION = 16
SMALL: dict[str, object] = {
    "preprocess.min_user_interactions": 3,
    "cluster.k": 2,
    "interests.topics": 4,
    "fuse.weight_grid": [0.05, 0.5, 1.0],
    "fuse.sequence_share_grid": [0.0, 1.0],
    "fuse.interest_share_grid": [0.5, 0.9],
    "fuse.interest_pull_grid": [0.25],
    "fuse.explore_topic_weight_grid": [0.0, 0.5],
    "fuse.explore_similarity_grid": [0.0, 5.0],
    "index.n_trees": 5,
    "index.recall_users": 40,
}
"""The project's params: the committed defaults, with grids small enough for a test."""


def _random(rng: np.random.Generator, n_users: int, n_items: int, width: int) -> UserItemVectors:
    """Vectors that know nothing, with the test-time and served users every side has."""

    def unit(rows: int) -> np.ndarray:
        vectors = rng.normal(size=(rows, width))
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)

    users = unit(n_users)
    return UserItemVectors(unit(n_users), unit(n_items), users_at_test=users, users_served=users)


def upstream_project(root: Path, changes: dict[str, object] | None = None) -> Params:
    """Write `root/params.yaml` (`SMALL`, then `changes`) and every output `fuse` and `index`
    read; return the params."""
    params = override(Params(), {**SMALL, **(changes or {})})
    write_params(params, root)
    layout = Layout(root)
    processed = preprocess.run(make_block_raw(), PreprocessConfig(min_user_interactions=3))
    write_processed(processed, layout)
    n_users, n_items = processed.users.height, processed.items.height
    rng = np.random.default_rng(0)
    for variant in ("finetuned", "zero_shot"):
        write_embeddings(variant, _random(rng, n_users, n_items, TEXT_DIMENSION), layout)
    for model in SEQUENCE_MODELS:
        write_sequence_vectors(model, _random(rng, n_users, n_items, 8), layout)
    matrices = SplitMatrices.from_processed(processed)
    served = interaction_matrix(processed.history_served, n_users, n_items)
    factors = factorize.run(
        matrices.train,
        FactorizeConfig(embedding_size=8, reg=0.1, alpha=10.0, epochs=30),
        matrices.seen("test"),
        served,
    )
    write_factors(factors, {}, layout)
    cluster.main(root)
    interests.main(root)
    return params


def stage_md5s(stage: str, source: Path, target: Path, changes: dict[str, Any]) -> dict[str, str]:
    """`stage` run on a copy of the project at `source` (into `target`) with the params
    `changes`: the md5 of every file it wrote under `data/<stage>` and of its metrics (where it
    writes any)."""
    shutil.copytree(source, target)
    write_params(override(load_params(target / "params.yaml"), changes), target)
    importlib.import_module(f"pipeline.{stage}").main(target)
    metrics = target / f"metrics/{stage}.json"
    outputs = [
        *sorted((target / "data" / stage).iterdir()),
        *([metrics] if metrics.exists() else []),
    ]
    return {path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in outputs}
