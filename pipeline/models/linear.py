"""EASE in reduced rank: the item-item linear model as user and item vectors of a few hundred
dimensions, so it can join the fused vector that one dot product in the Annoy index serves.

EASE (Steck, 2019) scores user u's items as x_u·B, with x_u the user's history row and B an
items × items matrix: exact, strong on short histories, and n_items wide, far too wide to index.
Ridge regression with a rank limit has a closed form (reduced-rank regression): the full
solution B projected onto the top right singular vectors Q (items × r) of the training scores
X·B, i.e. B·Q·Qᵀ. Its score x_u·B·Q·Qᵀ is the dot product of the user vector x_u·(B·Q), which
any history gives with B·Q fixed (the at-test and served histories: nothing refit), and the
item vector, Q's row. Q is found by seeded randomized subspace iteration on X·B without forming
it (users × items dense would not fit at scale), and comes out the same for the same inputs.

λ is EASE's, chosen on validation NDCG@10 over `evaluate.ease_reg_grid` through the evaluation
protocol; above `evaluate.quadratic_peers_max_items` items (where the EASE peer is skipped too)
there is no linear part. How the rank was set, and what lower ranks cost, is in docs/pipeline.md.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from pipeline.data.interactions import UserItemVectors
from pipeline.evaluation.protocol import SplitMatrices
from pipeline.models.peers import tuned_ease

OVERSAMPLING = 16
"""Extra directions carried through the subspace iteration beyond the rank kept."""
POWER_ITERATIONS = 4
"""Passes of X·B and its transpose that sharpen the subspace (the spectrum decays slowly)."""


def _orthonormal(matrix: np.ndarray) -> np.ndarray:
    basis, _ = np.linalg.qr(matrix)
    return basis


def score_subspace(train: sp.csr_matrix, weights: np.ndarray, rank: int, seed: int) -> np.ndarray:
    """Q: items × r orthonormal columns spanning the top right singular vectors of the training
    scores `train @ weights`, from seeded randomized subspace iteration. r is `rank`, or less
    where the scores cannot have that many directions (fewer items or users than `rank`)."""
    n_items = weights.shape[0]
    width = min(n_items, rank + OVERSAMPLING)
    # Float64 throughout: the iteration is cheap next to EASE's inverse, and sums of thousands
    # of float32 products would make Q depend on BLAS blocking more than it needs to.
    matrix = sp.csr_matrix(train, dtype=np.float64)
    transposed = matrix.T.tocsr()
    b = np.asarray(weights, dtype=np.float64)
    start = np.random.default_rng(seed).standard_normal((n_items, width))
    users_side = _orthonormal(matrix @ (b @ start))
    for _ in range(POWER_ITERATIONS):
        items_side = _orthonormal(b.T @ (transposed @ users_side))
        users_side = _orthonormal(matrix @ (b @ items_side))
    # Scores restricted to the users' subspace: small (width × items), so its SVD is exact.
    small = (b.T @ (transposed @ users_side)).T
    _, _, right = np.linalg.svd(small, full_matrices=False)
    subspace = right[:rank].T
    # SVD signs are arbitrary; fix them so the same subspace is always written the same way.
    signs = np.sign(subspace[np.argmax(np.abs(subspace), axis=0), np.arange(subspace.shape[1])])
    return np.ascontiguousarray(subspace * signs, dtype=np.float32)


def reduced_rank(
    train: sp.csr_matrix,
    weights: np.ndarray,
    rank: int,
    seed: int,
    histories: tuple[sp.csr_matrix, sp.csr_matrix],
) -> tuple[UserItemVectors, np.ndarray]:
    """EASE `weights` at `rank`: items Q, users x·(B·Q) from the training rows, and from the
    two `histories` (at test, served); and B·Q, which gives any other history's users
    (`history_vectors`)."""
    subspace = score_subspace(train, weights, rank, seed)
    projection = np.asarray(weights, dtype=np.float32) @ subspace
    at_test, served = histories
    vectors = UserItemVectors(
        users=history_vectors(train, projection),
        items=subspace,
        users_at_test=history_vectors(at_test, projection),
        users_served=history_vectors(served, projection),
    )
    return vectors, projection


def history_vectors(history: sp.csr_matrix, projection: np.ndarray) -> np.ndarray:
    """The users `history` (users × items) implies: its binary rows times B·Q (nothing refit)."""
    binary = sp.csr_matrix(history, dtype=np.float32)
    binary.data[:] = 1.0
    return np.asarray(binary @ projection, dtype=np.float32)


def fit(
    matrices: SplitMatrices,
    served: sp.csr_matrix,
    rank: int,
    reg_grid: list[float],
    seed: int,
) -> tuple[UserItemVectors, dict[str, object], np.ndarray]:
    """λ chosen on validation (full EASE, every λ of `reg_grid`), then that EASE at `rank`.
    Returns the vectors, a record of the choice and B·Q (`history_vectors`)."""
    model, by_reg = tuned_ease(matrices, reg_grid, seed)
    histories = (matrices.seen_for_test, served)
    vectors, projection = reduced_rank(model.train, model.weights, rank, seed, histories)
    record = {
        "reg": model.reg,
        "rank": int(vectors.items.shape[1]),
        "validation_ndcg@10_by_reg": {str(key): round(value, 5) for key, value in by_reg.items()},
    }
    return vectors, record, projection
