"""Matrix factorisation with `implicit`: the model a config describes, and folding a history in.

The `factorize` stage fits the model on the training split; `evaluate` (and serving, later) needs
the user factors a *different* history implies, the training events plus the validation event
when the test event is predicted, without refitting anything. For ALS that is exact: with the
item factors fixed, a user's factor is the solution of one regularised least-squares problem,
the very step ALS alternates on, and `implicit` exposes it as `recalculate_user`. BPR has no
closed form, so its user factors stay those of training (a documented limitation).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import scipy.sparse as sp

from pipeline.core.sections import FactorizeConfig


def make_model(cfg: FactorizeConfig, use_gpu: bool = False) -> Any:
    """The `implicit` model `cfg` describes, unfitted."""
    import implicit

    if cfg.algorithm == "als":
        return implicit.als.AlternatingLeastSquares(
            factors=cfg.embedding_size,
            regularization=cfg.reg,
            alpha=cfg.alpha,
            iterations=cfg.epochs,
            random_state=cfg.seed,
            use_gpu=use_gpu,
            calculate_training_loss=False,
        )
    # BPR's parallel SGD is not reproducible across thread schedules: one thread on CPU.
    return implicit.bpr.BayesianPersonalizedRanking(
        factors=cfg.embedding_size,
        learning_rate=cfg.learning_rate,
        regularization=cfg.reg,
        iterations=cfg.epochs,
        random_state=cfg.seed,
        use_gpu=use_gpu,
        num_threads=0 if use_gpu else 1,
    )


def fold_in(
    item_factors: np.ndarray,
    trained_user_factors: np.ndarray,
    history: sp.csr_matrix,
    cfg: FactorizeConfig,
) -> np.ndarray:
    """User factors implied by `history` (users × items) with the item factors held fixed.

    ALS: the exact least-squares solve for every user. BPR: the trained user factors, unchanged.
    """
    if cfg.algorithm != "als":
        return trained_user_factors
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(
        factors=item_factors.shape[1], regularization=cfg.reg, alpha=cfg.alpha
    )
    model.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
    model.user_factors = np.ascontiguousarray(trained_user_factors, dtype=np.float32)
    users = np.arange(history.shape[0])
    with _threadpools().limit(limits=1, user_api="blas"):
        folded = model.recalculate_user(users, sp.csr_matrix(history, dtype=np.float32))
    return np.asarray(folded, dtype=np.float32)


@functools.cache
def _threadpools() -> Any:
    """The process's BLAS thread pools, found once: finding them costs ~7 ms, more than folding
    in one user (live updates fold in one at a time)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()
