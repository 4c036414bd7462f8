"""The user × item matrix every model and metric reads: one definition, kept tiny and stable.

It lives apart from the stages so that stages depending on it (DVC `deps`) are not re-run when an
unrelated stage module changes.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp


def interaction_matrix(events: pl.DataFrame, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary user × item CSR matrix (float32) from `user_idx, item_idx` rows."""
    rows = events["user_idx"].to_numpy()
    columns = events["item_idx"].to_numpy()
    values = np.ones(len(rows), dtype=np.float32)
    matrix = sp.csr_matrix((values, (rows, columns)), shape=(n_users, n_items), dtype=np.float32)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix
