"""Stage `factorize`: ALS or BPR on the implicit-feedback training matrix (the `implicit` library).

Outputs (under `data/factorize/`): `user_factors.npy`, `item_factors.npy` (float32, no pickle),
`user_factors_at_test.npy` (each user's factor folded in again from the training + validation
history, item factors fixed: what the model knows when the test event is predicted),
`user_factors_served.npy` (folded in from every event of the user: what serving uses) and
`config.json`, the effective config next to the factors. Score of user u for item i = u · i.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from pipeline import io
from pipeline.artifacts import Factors, Layout, read_processed, write_factors, writes
from pipeline.collaborative import fold_in, make_model
from pipeline.config import FactorizeConfig, load_params
from pipeline.interactions import interaction_matrix


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


@writes("factorize")
def main(root: Path = Path(".")) -> None:
    layout = Layout(root)
    params = load_params(layout.params)
    processed = read_processed(layout)
    shape = (processed.users.height, processed.items.height)
    train = interaction_matrix(processed.train, *shape)
    history_at_test = interaction_matrix(processed.history_at_test, *shape)
    history_served = interaction_matrix(processed.history_served, *shape)
    factors = run(train, params.factorize, history_at_test, history_served)
    write_factors(factors, params.factorize.model_dump(mode="json"), layout)
    print(
        f"factorize: {params.factorize.algorithm} with {factors.users.shape[1]} factors on "
        f"{train.nnz} training interactions"
    )


if __name__ == "__main__":
    io.run_stage(main)
