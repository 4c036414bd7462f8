"""Stage `factorize`: ALS or BPR on the implicit-feedback training matrix (the `implicit` library).

Outputs (under `data/factorize/`): `user_factors.npy`, `item_factors.npy` (float32, no pickle) and
`config.json`, the effective config next to the factors. Score of user u for item i = u · i.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from pipeline import io
from pipeline.artifacts import Factors, Layout, read_processed, write_factors
from pipeline.config import FactorizeConfig, load_params
from pipeline.interactions import interaction_matrix


def run(train: sp.csr_matrix, cfg: FactorizeConfig) -> Factors:
    """Fit the configured model on `train` (users × items) and return its factors."""
    import implicit
    from threadpoolctl import threadpool_limits

    # implicit parallelises over users itself; BLAS threads on top of that only contend.
    with threadpool_limits(limits=1, user_api="blas"):
        model = _fit(train, cfg, implicit)
    if implicit.gpu.HAS_CUDA:
        model = model.to_cpu()
    # For BPR, implicit appends an item-bias column (and a constant 1 to the users), so the plain
    # dot product already includes the bias.
    users = np.asarray(model.user_factors, dtype=np.float32)
    items = np.asarray(model.item_factors, dtype=np.float32)
    return Factors(users=users, items=items)


def _fit(train: sp.csr_matrix, cfg: FactorizeConfig, implicit: Any) -> Any:
    use_gpu = implicit.gpu.HAS_CUDA
    if cfg.algorithm == "als":
        model = implicit.als.AlternatingLeastSquares(
            factors=cfg.embedding_size,
            regularization=cfg.reg,
            alpha=cfg.alpha,
            iterations=cfg.epochs,
            random_state=cfg.seed,
            use_gpu=use_gpu,
            calculate_training_loss=False,
        )
    else:
        # BPR's parallel SGD is not reproducible across thread schedules: one thread on CPU.
        model = implicit.bpr.BayesianPersonalizedRanking(
            factors=cfg.embedding_size,
            learning_rate=cfg.learning_rate,
            regularization=cfg.reg,
            iterations=cfg.epochs,
            random_state=cfg.seed,
            use_gpu=use_gpu,
            num_threads=0 if use_gpu else 1,
        )
    model.fit(train.astype(np.float32).tocsr(), show_progress=False)
    return model


def main(root: Path = Path(".")) -> None:
    layout = Layout(root)
    params = load_params(layout.params)
    processed = read_processed(layout)
    train = interaction_matrix(processed.train, processed.users.height, processed.items.height)
    factors = run(train, params.factorize)
    write_factors(factors, params.factorize.model_dump(mode="json"), layout)
    print(
        f"factorize: {params.factorize.algorithm} with {factors.users.shape[1]} factors on "
        f"{train.nnz} training interactions"
    )


if __name__ == "__main__":
    io.run_stage(main)
