"""The user × item matrix and the user/item vector pair every model is scored with: one
definition each, kept tiny and stable.

It lives apart from the stages so that stages depending on it (DVC `deps`) are not re-run when an
unrelated stage module changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


class SampledRows:
    """Some users' rows of a per-user array, indexed by the user's index among every user.

    What a tuning loop measured on a sample of users reads: `rows[users]` and `len(rows)` (every
    user's count) behave as on the whole array, for users of the sample, while only the sample's
    rows are held. Scaling and joining act row by row (`rowwise`), so their rows are the whole
    array's rows of the same computation, to the bit.
    """

    def __init__(self, values: np.ndarray, users: np.ndarray, n_users: int) -> None:
        self.values = values
        """[sample, d]: the rows of `users`, in that order."""
        self.users = users
        """Sorted user indices of the sample."""
        self.n_users = n_users

    @classmethod
    def read(cls, path: Path, users: np.ndarray | None) -> SampledRows:
        """Rows `users` (None: every row) of an `.npy`, read through a memory map."""
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        n_users = int(mapped.shape[0])
        chosen = np.arange(n_users, dtype=np.int64) if users is None else users
        return cls(np.asarray(mapped[chosen]), chosen, n_users)

    def __len__(self) -> int:
        return self.n_users

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.n_users, *self.values.shape[1:])

    def __getitem__(self, users: Any) -> np.ndarray:
        position = np.searchsorted(self.users, users)
        if not np.all(self.users[np.minimum(position, self.users.size - 1)] == users):
            raise IndexError("a user outside the sample was asked for")
        return self.values[position]


def rowwise(function: Callable[..., np.ndarray], *arrays: Any) -> Any:
    """`function(*arrays)`, a row-by-row computation; on `SampledRows` (all from the same sample),
    the same computation on their rows, as `SampledRows` again."""
    if not any(isinstance(array, SampledRows) for array in arrays):
        return function(*arrays)
    first = next(array for array in arrays if isinstance(array, SampledRows))
    values = [array.values if isinstance(array, SampledRows) else array for array in arrays]
    return SampledRows(function(*values), first.users, first.n_users)


def latest_per_item(
    events: pl.DataFrame, user: str = "user_id", item: str = "item_id"
) -> pl.DataFrame:
    """One event per (user, item): a re-rating is the same interest; keep the most recent event
    (live updates apply the same rule: `pipeline.live`)."""
    return events.sort("timestamp", nulls_last=False).unique(
        [user, item], keep="last", maintain_order=True
    )
