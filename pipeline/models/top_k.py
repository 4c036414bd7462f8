"""Every user's top k by dot product, in blocks: the batch-scoring pattern of large recommenders.

Users are scored a block at a time against the items a block at a time (a user block × item block
of scores is all that is ever in memory); each item block keeps its own top k per user, and the
blocks' winners merge into the user's list. Items the user has seen score −inf and never appear,
so a user with fewer than k unseen items gets a shorter list. Within a list, equal scores are
ordered by item index.

`because` explains each recommended item as `recli recommend` does: the item, among the user's
`WHY_HISTORY_ITEMS` most recent, whose vector has the largest dot product with it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recli.explain import WHY_HISTORY_ITEMS


def _ordered(items: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's entries by score (highest first), then item index; the first k kept."""
    rows = np.repeat(np.arange(items.shape[0]), items.shape[1])
    order = np.lexsort((items.ravel(), -scores.ravel(), rows)).reshape(items.shape)
    order -= np.arange(items.shape[0])[:, None] * items.shape[1]
    kept = order[:, :k]
    return np.take_along_axis(items, kept, 1), np.take_along_axis(scores, kept, 1)


def _top_columns(scores: np.ndarray, width: int) -> np.ndarray:
    """Each row's `width` best columns, equal scores at the cut going to the lower column (a
    plain argpartition would pick among them arbitrarily)."""
    cut = -np.partition(-scores, width - 1, axis=1)[:, width - 1 : width]
    above = scores > cut
    level = scores == cut
    wanted = width - above.sum(axis=1, keepdims=True)
    chosen = above | (level & (np.cumsum(level, axis=1) <= wanted))
    return np.nonzero(chosen)[1].reshape(scores.shape[0], width)


def block_top_k(
    users: np.ndarray, items: np.ndarray, seen: sp.csr_matrix, k: int, item_block: int
) -> tuple[np.ndarray, np.ndarray]:
    """The top `k` item indices and scores of each row of `users` (−inf where a user has fewer
    than k unseen items), scoring `item_block` items at a time. `seen`: users × items."""
    n_users, n_items = users.shape[0], items.shape[0]
    best_items = np.empty((n_users, 0), dtype=np.int64)
    best_scores = np.empty((n_users, 0), dtype=np.float32)
    seen = sp.csr_matrix(seen)
    for start in range(0, n_items, item_block):
        stop = min(n_items, start + item_block)
        scores = np.asarray(users @ items[start:stop].T, dtype=np.float32)
        block_seen = seen[:, start:stop].tocoo()
        scores[block_seen.row, block_seen.col] = -np.inf
        width = min(k, stop - start)
        top = _top_columns(scores, width)
        merged_items = np.concatenate([best_items, top + start], axis=1)
        merged_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, 1)], axis=1)
        best_items, best_scores = _ordered(merged_items, merged_scores, k)
    return best_items, best_scores


def because(items: np.ndarray, recommended: np.ndarray, recent: list[np.ndarray]) -> np.ndarray:
    """For each recommended item (users × k indices, −1 for none), the item of the user's
    `recent` history (newest first; the first `WHY_HISTORY_ITEMS` read) closest to it by dot
    product; −1 where there is no history or no item."""
    out = np.full(recommended.shape, -1, dtype=np.int64)
    for row, history in enumerate(recent):
        history = np.asarray(history[:WHY_HISTORY_ITEMS], dtype=np.int64)
        present = recommended[row] >= 0
        if history.size == 0 or not present.any():
            continue
        dots = items[recommended[row, present]] @ items[history].T
        # argmax keeps the first of equal maxima: the most recent such history item.
        out[row, present] = history[np.argmax(dots, axis=1)]
    return out
