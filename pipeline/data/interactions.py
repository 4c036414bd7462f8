"""The user × item matrix and the user/item vector pair every model is scored with: one
definition each, kept tiny and stable.

It lives apart from the stages so that stages depending on it (DVC `deps`) are not re-run when an
unrelated stage module changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from recli.errors import RecliError


def interaction_matrix(events: pl.DataFrame, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary user × item CSR matrix (float32) from `user_idx, item_idx` rows."""
    rows = events["user_idx"].to_numpy()
    columns = events["item_idx"].to_numpy()
    values = np.ones(len(rows), dtype=np.float32)
    matrix = sp.csr_matrix((values, (rows, columns)), shape=(n_users, n_items), dtype=np.float32)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


@dataclass(frozen=True)
class UserItemVectors:
    """A user vector and an item vector per index; a score is their dot product.

    ALS factors, text embeddings and the fused vectors all have this shape. `users` are derived
    from each user's training history; `users_at_test` (when the model can recompute them) from
    the history up to the test event, training and validation events both, with nothing refit:
    what the model knows when it predicts the test event; `users_served` from every event the
    user has (test and cold-item events too), again with nothing refit: what serving knows.
    """

    users: np.ndarray
    """float32 [n_users, d], from the training history."""
    items: np.ndarray
    """float32 [n_items, d]."""
    users_at_test: np.ndarray | None = None
    """float32 [n_users, d], from the training and validation history; None: same as `users`."""
    users_served: np.ndarray | None = None
    """float32 [n_users, d], from every event of the user; None: not derived (not servable)."""

    @property
    def served_users(self) -> np.ndarray:
        """The user vectors serving uses. Never a fallback: vectors from fewer events than the
        user has would serve a stale taste, so vectors without them are an error."""
        if self.users_served is None:
            raise RecliError(
                "user vectors without their served variant (from every event of the user): "
                "run `dvc repro` to rebuild the stages from factorize on"
            )
        return self.users_served

    @property
    def test_users(self) -> np.ndarray:
        """The user vectors the test split is scored with (`users` when none were derived)."""
        return self.users if self.users_at_test is None else self.users_at_test

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.users[users] @ self.items.T

    def score_at_test(self, users: np.ndarray) -> np.ndarray:
        return self.test_users[users] @ self.items.T


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
