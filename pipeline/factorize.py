"""Stage `factorize`: ALS or BPR on the implicit-feedback training matrix (the `implicit` library).

Outputs (under `data/factorize/`): `user_factors.npy`, `item_factors.npy` (float32, no pickle),
`user_factors_at_test.npy` (each user's factor folded in again from the training + validation
history, item factors fixed: what the model knows when the test event is predicted),
`user_factors_served.npy` (folded in from every event of the user: what serving uses) and
`config.json`, the effective config next to the factors. Score of user u for item i = u · i.

Beside the factors, the same matrix gives EASE in reduced rank (`pipeline.models.linear`): the
`linear_{user,item}_vectors.npy` files (with the same `_at_test` and `_served` users) and
`linear.json`, the λ chosen on validation and the rank, or why there are none.

On the engine: `fit` (the model and EASE, which need every training event) is one task, on a
Ray worker on the ray backend, and the served fold-in one task per user partition; the stage's
own process holds the item factors only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from pipeline.core import io
from pipeline.core.config import load_params
from pipeline.core.layout import Layout, writes
from pipeline.core.sections import EvaluateConfig, FactorizeConfig
from pipeline.data.artifacts import (
    Factors,
    item_factors_file,
    read_processed,
    user_count,
    write_factors,
    write_linear,
)
from pipeline.data.interactions import UserItemVectors, interaction_matrix
from pipeline.engine.partitions import (
    by_user_folder,
    local_matrix,
    partition_files,
    read_partition,
)
from pipeline.engine.rows import assemble, write_piece
from pipeline.engine.runner import Engine
from pipeline.evaluation.protocol import SplitMatrices
from pipeline.models import linear
from pipeline.models.collaborative import fold_in, make_model
from pipeline.models.peers import quadratic_skip


def run(
    train: sp.csr_matrix,
    cfg: FactorizeConfig,
    history_at_test: sp.csr_matrix | None = None,
    history_served: sp.csr_matrix | None = None,
) -> Factors:
    """Fit the configured model on `train` (users × items) and return its factors; with
    `history_at_test` and `history_served`, also the user factors those histories imply (folded
    in with the item factors fixed: nothing refit)."""
    import implicit
    from threadpoolctl import threadpool_limits

    use_gpu = implicit.gpu.HAS_CUDA
    # implicit parallelises over users itself; BLAS threads on top of that only contend.
    with threadpool_limits(limits=1, user_api="blas"):
        model = make_model(cfg, use_gpu)
        model.fit(train.astype(np.float32).tocsr(), show_progress=False)
    if use_gpu:
        model = model.to_cpu()
    # For BPR, implicit appends an item-bias column (and a constant 1 to the users), so the plain
    # dot product already includes the bias.
    users = np.asarray(model.user_factors, dtype=np.float32)
    items = np.asarray(model.item_factors, dtype=np.float32)
    at_test = None if history_at_test is None else fold_in(items, users, history_at_test, cfg)
    served = None if history_served is None else fold_in(items, users, history_served, cfg)
    return Factors(users=users, items=items, users_at_test=at_test, users_served=served)


SERVED_FACTORS = "user_factors_served"
"""The served user factors' output name (`.npy` under `data/factorize/`)."""


def fold_in_partition(
    path: Path, items: np.ndarray, trained: Path, cfg: FactorizeConfig, out: Path, part: int
) -> int:
    """The served factors of one partition's users (every event, item factors fixed), written
    as a piece of `SERVED_FACTORS` under `out`; returns how many users. `trained`: the trained
    user factors' `.npy` (read for BPR, whose fold-in keeps them)."""
    items = np.array(items)  # writable: on Ray it arrives as a read-only view of the object store
    users, history = local_matrix(read_partition(path), items.shape[0])
    trained_rows = np.load(trained, mmap_mode="r", allow_pickle=False)[users]
    folded = fold_in(items, trained_rows, history, cfg)
    return write_piece(out, SERVED_FACTORS, part, users, folded)


def fold_in_served(
    engine: Engine, layout: Layout, items: np.ndarray, cfg: FactorizeConfig, n_users: int
) -> int:
    """Every user's served factors, partition by partition on `engine`, into
    `user_factors_served.npy`; returns how many users had events."""
    out, trained = layout.factorize, layout.factorize / "user_factors.npy"
    pieces = [
        (path, items, trained, cfg, out, part)
        for part, path in enumerate(partition_files(by_user_folder(layout)))
    ]
    engine.map(fold_in_partition, pieces)
    shape = (n_users, items.shape[1])
    return assemble(out, SERVED_FACTORS, out / f"{SERVED_FACTORS}.npy", shape)


def run_linear(
    matrices: SplitMatrices,
    served: sp.csr_matrix,
    cfg: FactorizeConfig,
    evaluate: EvaluateConfig,
    seed: int,
) -> tuple[UserItemVectors | None, dict[str, object], np.ndarray | None]:
    """Reduced-rank EASE on the training split and its B·Q, or None, why not, and None."""
    if cfg.linear_rank == 0:
        return None, {"skipped": "factorize.linear_rank is 0"}, None
    reason = quadratic_skip(matrices.n_items, evaluate.quadratic_peers_max_items)
    if reason is not None:
        return None, {"skipped": reason}, None
    return linear.fit(matrices, served, cfg.linear_rank, evaluate.ease_reg_grid, seed)


def fit(layout: Layout) -> str:
    """The part of the stage that needs every training event: the model fitted on the training
    split (its user factors, and theirs folded in at test time) and reduced-rank EASE, written
    under the stage's folder. On the ray backend this is one task on a worker, so the driver
    holds the item factors only. Returns the summary line."""
    params = load_params(layout.params)
    processed = read_processed(layout)
    seed = params.preprocess.split.seed
    matrices = SplitMatrices.from_processed(processed, params.evaluate.max_users, seed)
    train = matrices.train
    history_served = interaction_matrix(processed.history_served, *train.shape)
    factors = run(train, params.factorize, matrices.seen("test"))
    write_factors(factors, params.factorize.model_dump(mode="json"), layout)
    vectors, record, projection = run_linear(
        matrices, history_served, params.factorize, params.evaluate, seed
    )
    write_linear(vectors, record, layout, projection)
    ease = (
        f"EASE at rank {record['rank']} (λ {record['reg']})"
        if vectors is not None
        else f"no EASE part ({record['skipped']})"
    )
    return (
        f"factorize: {params.factorize.algorithm} with {factors.users.shape[1]} factors on "
        f"{train.nnz} training interactions; {ease}"
    )


@writes("factorize")
def main(layout: Layout) -> None:
    params = load_params(layout.params)
    engine = Engine(params.engine)
    with engine.session():
        # The fit reads every training event: on Ray, a worker does, not this process.
        (summary,) = engine.map(fit, [(layout.absolute(),)])
        items = io.read_npy(item_factors_file(layout), "factorize")
        fold_in_served(engine, layout, items, params.factorize, user_count(layout))
    print(summary)


if __name__ == "__main__":
    io.run_stage(main)
