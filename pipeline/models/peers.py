"""Peer recommenders the main model is compared against: popularity, ItemKNN and EASE.

All three share one small contract (`Recommender`): `fit(train)` on a users x items CSR matrix of
implicit positives, then `score(users)` -> float32 [len(users), n_items]. Each model keeps the
matrix it was fit on as `train` and scores users from their rows in it; `with_history(matrix)`
scores them from another history with the same fitted weights (at test time: training plus
validation events, nothing refit). Masking already-seen items is the evaluator's job
(`pipeline.evaluation.metrics.rank_users`), not the model's.

Memory, for n items: ItemKNN builds its similarity in blocks of target items (about 64 MB of
float32 at a time) and keeps only `neighbors` entries per item, so 10k items is cheap. EASE needs
one dense n x n float64 buffer (Gram matrix, inverted in place) plus the n x n float32 weights,
about 12 n² bytes at peak; `ease_grid` also keeps the Gram matrix (8 n² more). Above
`evaluate.quadratic_peers_max_items` items it is skipped (docs/scale.md gives measured costs).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, Self

import numpy as np
import scipy.linalg.lapack
from scipy.sparse import csr_matrix, issparse

from pipeline.evaluation.metrics import Scorer, check_user_indices, top_k
from pipeline.evaluation.protocol import SplitMatrices, select_on_validation

# Dense scratch blocks are sized to about this many entries (x4 bytes for float32, x8 float64).
_BLOCK_ENTRIES = 16_000_000


class Recommender(Protocol):
    name: str

    def fit(self, train: csr_matrix) -> Self: ...

    def score(self, users: np.ndarray) -> np.ndarray: ...

    def with_history(self, history: csr_matrix) -> Scorer: ...


def _as_train(train: csr_matrix) -> csr_matrix:
    """A private float32 CSR copy, so later edits to the caller's matrix cannot change the model."""
    if not issparse(train) or train.ndim != 2:
        raise ValueError("train must be a 2-D scipy sparse matrix [users, items]")
    if train.shape[0] < 1 or train.shape[1] < 1:
        raise ValueError(f"train must have at least one user and one item, got {train.shape}")
    matrix = csr_matrix(train, dtype=np.float32, copy=True)
    matrix.eliminate_zeros()
    if not np.isfinite(matrix.data).all():
        raise ValueError("train contains NaN or infinite values")
    return matrix


def _binary(matrix: csr_matrix) -> csr_matrix:
    binary = matrix.copy()
    binary.data[:] = 1.0
    return binary


class _Fitted:
    """Shared bookkeeping: the training matrix, the user-range check, scoring another history."""

    train: csr_matrix | None = None

    def _rows(
        self, users: np.ndarray, history: csr_matrix | None = None
    ) -> tuple[csr_matrix, np.ndarray]:
        if self.train is None:
            raise RuntimeError(f"{type(self).__name__} must be fit before it can score")
        source = self.train if history is None else history
        users = check_user_indices(users, source.shape[0])
        return source[users], users

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.score_history(users, None)

    def score_history(self, users: np.ndarray, history: csr_matrix | None) -> np.ndarray:
        raise NotImplementedError

    def with_history(self, history: csr_matrix) -> Scorer:
        """A scorer that reads each user's row of `history` (e.g. training + validation events)
        with the weights fit on the training split: a longer input, nothing refit."""
        if self.train is None:
            raise RuntimeError(f"{type(self).__name__} must be fit before it can score")
        if getattr(history, "shape", None) != self.train.shape:
            raise ValueError(f"history must have the training matrix's shape {self.train.shape}")
        rows = _binary(_as_train(history))
        return lambda users: self.score_history(users, rows)


class Popularity(_Fitted):
    """Every user gets the same list: items by number of training interactions."""

    name = "popularity"

    def __init__(self) -> None:
        self.counts: np.ndarray | None = None

    def fit(self, train: csr_matrix) -> Self:
        self.train = _as_train(train)
        # Count interactions, not summed values, so a weighted matrix still means "how many users".
        self.counts = self.train.getnnz(axis=0).astype(np.float32)
        return self

    def score_history(self, users: np.ndarray, history: csr_matrix | None) -> np.ndarray:
        _, users = self._rows(users, history)
        # A real array, not a broadcast view: callers are free to write into the scores.
        return np.repeat(self.counts[None, :], users.size, axis=0)


class ItemKNN(_Fitted):
    """Item-based nearest neighbours with cosine similarity on the binary training matrix.

    sim(i, j) = |U_i ∩ U_j| / (sqrt(|U_i|) sqrt(|U_j|) + shrink), where U_i is the set of users
    who interacted with item i; `shrink` damps similarities built on few co-occurrences.
    Pruning is column-wise: `similarity[:, j]` keeps the `neighbors` items most similar to target
    item j (ties to the lower item index), with the diagonal zeroed so an item never recommends
    itself. score(u, j) = sum over i of x[u, i] * similarity[i, j], i.e. `X_u @ similarity`, so
    each target item is scored from its own nearest neighbours among the user's items.
    """

    name = "itemknn"

    def __init__(self, neighbors: int = 100, shrink: float = 0.0) -> None:
        if neighbors < 1:
            raise ValueError(f"neighbors must be at least 1, got {neighbors}")
        if shrink < 0:
            raise ValueError(f"shrink must be non-negative, got {shrink}")
        self.neighbors = int(neighbors)
        self.shrink = float(shrink)
        self.similarity: csr_matrix | None = None

    def fit(self, train: csr_matrix) -> Self:
        self.train = _as_train(train)
        binary = _binary(self.train)
        n_items = binary.shape[1]
        norms = np.sqrt(binary.getnnz(axis=0)).astype(np.float32)
        by_item = binary.T.tocsr()
        keep = min(self.neighbors, n_items)
        block = max(1, _BLOCK_ENTRIES // n_items)

        # The full similarity would be dense n x n; computing it a block of target items at a
        # time and pruning each block straight away keeps memory at one block plus the result.
        neighbor_parts, target_parts, value_parts = [], [], []
        for start in range(0, n_items, block):
            targets = np.arange(start, min(start + block, n_items))
            co_counts = (by_item[targets] @ binary).toarray()  # [targets, items]
            denominator = norms[targets, None] * norms[None, :] + np.float32(self.shrink)
            # An item nobody interacted with has norm 0: its similarities are 0, not NaN.
            similarity = np.divide(
                co_counts,
                denominator,
                out=np.zeros_like(co_counts, dtype=np.float32),
                where=denominator > 0,
            )
            similarity[np.arange(targets.size), targets] = 0.0
            best = top_k(similarity, keep)
            values = np.take_along_axis(similarity, best, axis=1)
            positive = values > 0  # zero similarity contributes nothing; don't store it
            neighbor_parts.append(best[positive])
            target_parts.append(np.broadcast_to(targets[:, None], best.shape)[positive])
            value_parts.append(values[positive])

        self.similarity = csr_matrix(
            (
                np.concatenate(value_parts).astype(np.float32),
                (np.concatenate(neighbor_parts), np.concatenate(target_parts)),
            ),
            shape=(n_items, n_items),
        )
        return self

    def score_history(self, users: np.ndarray, history: csr_matrix | None) -> np.ndarray:
        rows, _ = self._rows(users, history)
        return np.asarray((rows @ self.similarity).toarray(), dtype=np.float32)


def _gram(matrix: csr_matrix) -> np.ndarray:
    """Dense float64 XᵀX, accumulated over blocks of users.

    Densifying a block of users and multiplying with BLAS is much faster than a sparse-sparse
    product whose result is nearly dense anyway, and the blocks keep memory bounded however many
    users there are.
    """
    n_users, n_items = matrix.shape
    gram = np.zeros((n_items, n_items), dtype=np.float64)
    block = max(1, _BLOCK_ENTRIES // n_items)
    for start in range(0, n_users, block):
        dense = matrix[start : start + block].toarray().astype(np.float64)
        gram += dense.T @ dense
    return gram


def _symmetric_inverse(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite float64 matrix, computed in place.

    Cholesky (potrf) then its inverse (potri) does half a general inverse's work and needs no
    second n x n buffer. LAPACK sees the C-ordered array as its transpose,
    which is the same matrix, and fills only one triangle (the lower one, in numpy's view).
    """
    factor, info = scipy.linalg.lapack.dpotrf(matrix.T, lower=False, clean=False, overwrite_a=True)
    if info == 0:
        inverse, info = scipy.linalg.lapack.dpotri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: XᵀX + reg·I is not positive definite (LAPACK {info})")
    result = inverse.T  # back to C order; the same memory as `matrix`
    # Mirror the lower triangle upwards a block of rows at a time so no n x n temporary is made.
    n = result.shape[0]
    step = max(1, _BLOCK_ENTRIES // max(n, 1))
    for start in range(0, n, step):
        stop = min(start + step, n)
        diagonal = result[start:stop, start:stop]
        diagonal[...] = np.tril(diagonal) + np.tril(diagonal, -1).T
        result[start:stop, stop:] = result[stop:, start:stop].T
    return result


def _ease_weights(gram: np.ndarray, reg: float, *, keep_gram: bool) -> np.ndarray:
    """B = I - P diag(1/diag(P)) with P = (G + reg I)^-1; diag(B) = 0. Returns float32.

    With `keep_gram=False` the Gram matrix is overwritten, saving one dense n x n float64 copy.
    """
    regularised = gram.copy() if keep_gram else gram
    regularised[np.diag_indices_from(regularised)] += reg
    # The inverse is done in float64: float32 loses several digits on ill-conditioned item-item
    # matrices, and only the final weights need to be compact.
    precision = _symmetric_inverse(regularised)
    # Off the diagonal B_ij = -P_ij / P_jj (each column divided by its diagonal entry).
    precision /= -np.diag(precision)[None, :]
    np.fill_diagonal(precision, 0.0)
    return precision.astype(np.float32)


class EASE(_Fitted):
    """Embarrassingly Shallow Autoencoder (Steck, 2019): a closed-form item-item linear model.

    Learns B minimising ||X - X B||² + reg ||B||² subject to diag(B) = 0; scores are X_u @ B.
    """

    name = "ease"

    def __init__(self, reg: float = 500.0) -> None:
        if not reg > 0:
            raise ValueError(f"reg must be positive, got {reg}")
        self.reg = float(reg)
        self.weights: np.ndarray | None = None

    def fit(self, train: csr_matrix) -> Self:
        matrix = _as_train(train)
        return self._fit_from_gram(matrix, _gram(matrix), keep_gram=False)

    def _fit_from_gram(self, matrix: csr_matrix, gram: np.ndarray, *, keep_gram: bool) -> Self:
        # Split out so `ease_grid` can compute the Gram matrix once for the whole grid.
        self.train = matrix
        self.weights = _ease_weights(gram, self.reg, keep_gram=keep_gram)
        return self

    def score_history(self, users: np.ndarray, history: csr_matrix | None) -> np.ndarray:
        rows, _ = self._rows(users, history)
        return np.asarray(rows @ self.weights, dtype=np.float32)


def ease_grid(train: csr_matrix, grid: Sequence[float]) -> Iterator[tuple[float, Scorer]]:
    """(reg, scorer) for each reg of `grid`, EASE fit on `train`, for the protocol's tuning loop.

    The Gram matrix is computed once for the whole grid, and each model is fit only when the
    loop asks for it, so at most one set of weights is alive at a time.
    """
    regs = [float(reg) for reg in grid]
    if not regs:
        raise ValueError("the EASE reg grid is empty")
    if any(not reg > 0 for reg in regs):
        raise ValueError(f"every EASE reg must be positive, got {regs}")
    matrix = _as_train(train)
    gram = _gram(matrix)
    for reg in regs:
        yield reg, EASE(reg)._fit_from_gram(matrix, gram, keep_gram=True).score


def tuned_ease(
    matrices: SplitMatrices, grid: Sequence[float], seed: int = 0
) -> tuple[EASE, dict[float, float]]:
    """EASE fit on the training split with the λ of `grid` that scores best on validation
    (through the protocol), and every λ's validation NDCG@10. The tuning loop keeps no model
    alive, so the winner is fit once more."""
    best, by_reg = select_on_validation(ease_grid(matrices.train, grid), matrices, seed)
    return EASE(reg=best).fit(matrices.train), by_reg


def quadratic_skip(n_items: int, cap: int | None) -> str | None:
    """Why item x item models (EASE, ItemKNN) are not built for `n_items` items under
    `evaluate.quadratic_peers_max_items` = `cap`, or None when they are."""
    if cap is None or n_items <= cap:
        return None
    return (
        f"skipped: {n_items} items > evaluate.quadratic_peers_max_items {cap} "
        f"(item x item matrices of {n_items**2 * 8 / 2**30:.1f} GiB)"
    )


def itemknn_grid(train: csr_matrix, grid: Sequence[int]) -> Iterator[tuple[int, Scorer]]:
    """(neighbours, scorer) for each neighbourhood size of `grid`, ItemKNN fit on `train`."""
    sizes = [int(size) for size in grid]
    if not sizes:
        raise ValueError("the ItemKNN neighbours grid is empty")
    for size in sizes:
        yield size, ItemKNN(neighbors=size).fit(train).score
