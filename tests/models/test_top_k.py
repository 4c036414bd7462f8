"""Every user's top k by blocks (`pipeline.models.top_k`), against a brute-force ranking."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.models.top_k import because, block_top_k


def _brute(users: np.ndarray, items: np.ndarray, seen: sp.csr_matrix, k: int) -> list[list[int]]:
    scores = users @ items.T
    lists = []
    for row in range(users.shape[0]):
        unseen = [i for i in range(items.shape[0]) if seen[row, i] == 0]
        lists.append(sorted(unseen, key=lambda i: (-scores[row, i], i))[:k])
    return lists


@settings(max_examples=40, deadline=None)
@given(
    n_users=st.integers(1, 6),
    n_items=st.integers(1, 15),
    k=st.integers(1, 8),
    item_block=st.integers(1, 16),
    seed=st.integers(0, 1000),
)
def test_blocks_give_the_brute_force_lists(
    n_users: int, n_items: int, k: int, item_block: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    # Small integers: exact float sums, and ties, which must go to the lower item index.
    users = rng.integers(-2, 3, (n_users, 3)).astype(np.float32)
    items = rng.integers(-2, 3, (n_items, 3)).astype(np.float32)
    seen = sp.csr_matrix((rng.random((n_users, n_items)) < 0.3).astype(np.float32))
    top, scores = block_top_k(users, items, seen, k, item_block)
    expected = _brute(users, items, seen, k)
    for row in range(n_users):
        found = [int(i) for i, s in zip(top[row], scores[row], strict=True) if np.isfinite(s)]
        assert found == expected[row]
        np.testing.assert_array_equal(
            scores[row][: len(found)], (users[row] @ items[found].T).astype(np.float32)
        )


def test_because_names_the_closest_recent_history_item() -> None:
    items = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]], dtype=np.float32)
    recommended = np.array([[2, 3], [3, -1], [2, 3]])
    reasons = because(items, recommended, [np.array([1, 0]), np.array([0]), np.array([])])
    np.testing.assert_array_equal(reasons, [[0, 1], [0, -1], [-1, -1]])
