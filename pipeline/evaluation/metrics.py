"""Full-ranking top-K evaluation: every unseen item is a candidate, no sampled negatives.

Sampled-negative protocols (rank the positive among 100 random items) inflate metrics and can
reorder models, so every user is ranked against the whole catalogue minus the items they have
already interacted with (`seen`, which get a score of -inf). Everything here is numpy/scipy (and
torch's top-k selection) and deterministic: exact ties in score are broken by item index or by a
seeded draw per user, so two runs give the same lists.

Metrics, per user, with binary relevance and 1-based rank r:
- HR@K: 1 if any relevant item is in the top K.
- NDCG@K: sum over hits of 1/log2(r + 1), divided by the best achievable DCG for
  min(|relevant|, K) hits.
- MRR@K: 1/r of the first relevant item in the top K, else 0.
- Recall@K: hits in the top K / |relevant|.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix, issparse

Scorer = Callable[[np.ndarray], np.ndarray]
"""User indices (int64, shape [b]) -> scores (float32, shape [b, n_items])."""

METRIC_NAMES = ("hr", "ndcg", "mrr", "recall")


def _check_k(k: int, n_items: int, what: str = "k") -> None:
    if k < 1:
        raise ValueError(f"{what} must be at least 1, got {k}")
    if k > n_items:
        raise ValueError(f"{what}={k} is larger than the number of items ({n_items})")


Priority = np.ndarray | Callable[[np.ndarray], np.ndarray]
"""A tie order for `top_k`: an array shaped like the scores, or a function of row indices that
returns those rows' priorities (so they are drawn only for the rows that have ties)."""


def _largest(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest values of each row (descending) and one set of their item indices.

    torch's top-k selection is several times faster than `np.partition` over wide rows, and it
    returns the exact values; which of several equal items it returns is unspecified, which is
    why `top_k` decides exact ties itself. Imported here so that importing this module stays
    light."""
    import torch

    values, indices = torch.topk(torch.from_numpy(scores), k, dim=1, sorted=True)
    return values.numpy(), indices.numpy()


def top_k(scores: np.ndarray, k: int, priority: Priority | None = None) -> np.ndarray:
    """Indices of the `k` highest scores per row, best first; ties go to the higher `priority`
    (same shape as `scores`, or a function of row indices giving those rows' priorities), or
    without one to the lower item index.

    Exact: a top-k selection finds each row's k largest values. Where the k-th value is not
    shared with an item outside them (the usual case), those k items are the answer; where it
    is, the items strictly above it are kept and the remaining slots are filled with the items
    equal to it that come first in the tie order. The k survivors are then sorted by score, tie
    order and item. Priorities are read only for rows with a tie at the cut-off or within their
    top k, and no row is sorted whole.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D [users, items], got shape {scores.shape}")
    n_rows, n_items = scores.shape
    _check_k(k, n_items)
    if np.isnan(scores).any():
        # NaN compares false against everything, so it would silently drop out of (or corrupt)
        # the selection below; a model producing NaN is broken and should say so.
        raise ValueError("scores contain NaN")
    if priority is not None and not callable(priority) and np.shape(priority) != scores.shape:
        raise ValueError(f"priority has shape {np.shape(priority)}, scores {scores.shape}")
    if n_rows == 0:
        return np.empty((0, k), dtype=np.int64)
    if scores.dtype not in (np.float32, np.float64):
        scores = scores.astype(np.float64)
    elif not (scores.flags.c_contiguous and scores.flags.writeable):
        scores = np.array(scores)  # a view or a broadcast: torch reads a plain array

    values, candidates = _largest(scores, k)
    candidates = candidates.astype(np.int64)
    kth = values[:, -1]
    overfull = np.flatnonzero((scores >= kth[:, None]).sum(axis=1) > k)
    tied_inside = np.flatnonzero((values[:, 1:] == values[:, :-1]).any(axis=1))
    needs_order = np.union1d(overfull, tied_inside)

    if priority is not None and needs_order.size:
        # Row i of `read` is row needs_order[i] of the scores (union1d sorts, so searchsorted
        # finds a row's place).
        read = priority(needs_order) if callable(priority) else np.asarray(priority)[needs_order]
    if overfull.size:
        # Several items share the k-th value: keep all strictly better ones, then the tied ones
        # first in the tie order until the row has exactly k.
        sub = scores[overfull]
        threshold = kth[overfull, None]
        above = sub > threshold
        tied = sub == threshold
        slots = k - above.sum(axis=1)
        if priority is None:
            keep = above | (tied & (np.cumsum(tied, axis=1) <= slots[:, None]))
            candidates[overfull] = np.nonzero(keep)[1].reshape(overfull.size, k)
        else:
            at = np.searchsorted(needs_order, overfull)
            for row, index in enumerate(overfull):
                equal = np.flatnonzero(tied[row])
                first = equal[np.argsort(-read[at[row], equal], kind="stable")[: slots[row]]]
                candidates[index] = np.concatenate([np.flatnonzero(above[row]), first])
        values[overfull] = np.take_along_axis(scores[overfull], candidates[overfull], axis=1)

    # Sort by descending score, then descending priority, then ascending item.
    if priority is None or not needs_order.size:
        order = np.lexsort((candidates, -values), axis=1)
    else:
        ranks = np.zeros(candidates.shape)
        ranks[needs_order] = np.take_along_axis(read, candidates[needs_order], axis=1)
        order = np.lexsort((candidates, -ranks, -values), axis=1)
    return np.take_along_axis(candidates, order, axis=1)


def tie_priority(users: np.ndarray, n_items: int, seed: int) -> np.ndarray:
    """[users, n_items] seeded uniform draws, one row per user whatever its batch: the order in
    which a user's exactly tied items are ranked (`top_k`)."""
    users = np.asarray(users)
    draws = np.empty((users.size, n_items))
    for row, user in enumerate(users):
        draws[row] = np.random.default_rng([seed, int(user)]).random(n_items)
    return draws


def _user_ties(users: np.ndarray, n_items: int, seed: int | None) -> Priority | None:
    """The tie order of `users`' rows (`tie_priority`), drawn only for the rows asked for."""
    if seed is None:
        return None
    return lambda rows: tie_priority(users[rows], n_items, seed)


def check_user_indices(users: np.ndarray, n_users: int) -> np.ndarray:
    """Validate a 1-D array of user indices in 0..n_users-1; return it as int64."""
    users = np.asarray(users)
    if users.ndim != 1:
        raise ValueError(f"users must be a 1-D array of user indices, got shape {users.shape}")
    if users.size and not np.issubdtype(users.dtype, np.integer):
        raise ValueError(f"users must be integer indices, got dtype {users.dtype}")
    users = users.astype(np.int64, copy=False)
    if users.size and (users.min() < 0 or users.max() >= n_users):
        raise ValueError(f"user indices must be in 0..{n_users - 1}")
    return users


def rank_users(
    scorer: Scorer,
    users: np.ndarray,
    seen: csr_matrix,
    k: int,
    batch_size: int = 1024,
    tie_seed: int | None = None,
) -> np.ndarray:
    """Top-`k` unseen items for each user, [len(users), k], best first.

    Users are scored `batch_size` at a time so memory stays at batch_size x n_items floats. A user
    with fewer than k unseen items gets the remaining slots filled with seen items (score -inf);
    those can never count as hits because held-out items are never in `seen`. Exactly equal
    scores are ranked by the lower item index, or with `tie_seed` in a seeded random order that
    depends on the user only (`tie_priority`).
    """
    if not issparse(seen) or seen.ndim != 2:
        raise ValueError("seen must be a 2-D scipy sparse matrix [users, items]")
    seen = csr_matrix(seen)
    n_users, n_items = seen.shape
    _check_k(k, n_items)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    users = check_user_indices(users, n_users)

    result = np.empty((users.size, k), dtype=np.int64)
    for start in range(0, users.size, batch_size):
        batch = users[start : start + batch_size]
        # Copy: the scorer may hand back a view of its own state (or a broadcast array), which
        # masking in place would corrupt.
        scores = np.array(scorer(batch), dtype=np.float32, copy=True)
        if scores.shape != (batch.size, n_items):
            raise ValueError(
                f"scorer returned shape {scores.shape}, expected {(batch.size, n_items)}"
            )
        rows = seen[batch]
        row_of_entry = np.repeat(np.arange(batch.size), np.diff(rows.indptr))
        stored = rows.data != 0  # an explicitly stored zero is not an interaction
        scores[row_of_entry[stored], rows.indices[stored]] = -np.inf
        result[start : start + batch.size] = top_k(scores, k, _user_ties(batch, n_items, tie_seed))
    return result


def _relevant_as_csr(
    relevant: list[np.ndarray] | csr_matrix, n_rows: int, n_items_hint: int
) -> csr_matrix:
    """Binary CSR with one row per recommended row; duplicates and stored zeros dropped."""
    if issparse(relevant):
        matrix = csr_matrix(relevant, dtype=np.float32, copy=True)
        matrix.eliminate_zeros()
    else:
        lists = [np.asarray(items, dtype=np.int64).ravel() for items in relevant]
        lengths = np.array([items.size for items in lists], dtype=np.int64)
        columns = np.concatenate(lists) if lists else np.empty(0, dtype=np.int64)
        if columns.size and columns.min() < 0:
            raise ValueError("relevant item indices must be non-negative")
        width = max(n_items_hint, int(columns.max()) + 1 if columns.size else 0)
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        matrix = csr_matrix(
            (np.ones(columns.size, dtype=np.float32), columns, indptr), shape=(len(lists), width)
        )
        matrix.sum_duplicates()
    if matrix.shape[0] != n_rows:
        raise ValueError(
            f"relevant has {matrix.shape[0]} rows but recommended has {n_rows}: they must align"
        )
    matrix.data[:] = 1.0
    return matrix


def ranking_metrics(
    recommended: np.ndarray, relevant: list[np.ndarray] | csr_matrix, ks: Sequence[int]
) -> dict[str, np.ndarray]:
    """Per-user HR, NDCG, MRR and Recall at each K, keyed like "ndcg@10".

    Row i of `recommended` is scored against row i of `relevant` (a list of item-index arrays or
    a CSR matrix). Every row must have at least one relevant item: the caller drops the others,
    since Recall and NDCG are undefined for them.
    """
    recommended = np.asarray(recommended)
    if recommended.ndim != 2:
        raise ValueError(f"recommended must be 2-D [users, k], got shape {recommended.shape}")
    if recommended.size and not np.issubdtype(recommended.dtype, np.integer):
        raise ValueError(f"recommended must hold item indices, got dtype {recommended.dtype}")
    n_rows, depth = recommended.shape
    ks = list(ks)
    if not ks:
        raise ValueError("ks must name at least one cut-off")
    for k in ks:
        _check_k(k, depth, what="K (cut-off beyond the recommended list length)")
    if n_rows and recommended.min() < 0:
        raise ValueError("recommended item indices must be non-negative")
    if depth > 1 and n_rows:
        ordered = np.sort(recommended, axis=1)
        if (ordered[:, 1:] == ordered[:, :-1]).any():
            raise ValueError("a recommended list repeats an item; hits would be double-counted")

    max_item = int(recommended.max()) + 1 if recommended.size else 0
    matrix = _relevant_as_csr(relevant, n_rows, max_item)
    n_relevant = np.diff(matrix.indptr)
    if (n_relevant == 0).any():
        raise ValueError(
            f"{int((n_relevant == 0).sum())} users have no relevant items; exclude them first"
        )

    # Look every (user, recommended item) pair up in the relevance matrix at once. Items beyond
    # the relevance matrix's width (possible with list input) cannot be relevant.
    hits = np.zeros((n_rows, depth), dtype=bool)
    inside = recommended < matrix.shape[1]
    row_index = np.broadcast_to(np.arange(n_rows)[:, None], recommended.shape)
    looked_up = matrix[row_index[inside], recommended[inside]]
    hits[inside] = np.asarray(looked_up).ravel() > 0

    discounts = 1.0 / np.log2(np.arange(2, depth + 2))
    ideal = np.cumsum(discounts)  # ideal[n - 1] = best DCG with n hits
    first_hit = np.where(hits.any(axis=1), hits.argmax(axis=1), depth)  # 0-based rank

    result: dict[str, np.ndarray] = {}
    for k in ks:
        top = hits[:, :k]
        n_hits = top.sum(axis=1)
        dcg = top @ discounts[:k]
        idcg = ideal[np.minimum(n_relevant, k) - 1]
        result[f"hr@{k}"] = (n_hits > 0).astype(np.float64)
        result[f"ndcg@{k}"] = dcg / idcg
        result[f"mrr@{k}"] = np.where(first_hit < k, 1.0 / (first_hit + 1), 0.0)
        result[f"recall@{k}"] = n_hits / n_relevant
    return result


def standard_error(values: Sequence[float] | np.ndarray) -> float:
    """Standard error of the mean of `values` (sample standard deviation / √n); 0 for fewer than
    two values, where there is no spread to estimate."""
    values = np.asarray(values, dtype=np.float64)
    return float(np.std(values, ddof=1) / np.sqrt(values.size)) if values.size > 1 else 0.0


def item_coverage(recommended: np.ndarray, k: int, n_items: int) -> float:
    """Share of the catalogue that appears in at least one user's top-k."""
    recommended = np.asarray(recommended)
    if recommended.ndim != 2:
        raise ValueError(f"recommended must be 2-D [users, k], got shape {recommended.shape}")
    if n_items < 1:
        raise ValueError(f"n_items must be at least 1, got {n_items}")
    _check_k(k, recommended.shape[1], what="k (cut-off beyond the recommended list length)")
    top = recommended[:, :k]
    if top.size and (top.min() < 0 or top.max() >= n_items):
        raise ValueError(f"recommended item indices must be in 0..{n_items - 1}")
    return float(np.unique(top).size / n_items)


@dataclass(frozen=True, eq=False)
class EvaluationResult:
    """Per-user metrics for the evaluated users, plus catalogue coverage on all of them."""

    users: np.ndarray
    """Evaluated user indices (those with at least one relevant item)."""
    per_user: dict[str, np.ndarray]
    """Metric name ("ndcg@10") -> values aligned to `users`."""
    recommended: np.ndarray
    """Top-K item indices per evaluated user, [len(users), max K], best first."""
    coverage: dict[str, float]
    """"coverage@K" -> share of items recommended to anyone; always over all evaluated users."""

    def summary(self, mask: np.ndarray | None = None) -> dict[str, float]:
        """Mean of each metric over the users selected by `mask` (all when None).

        Coverage stays on the full user set: it is a catalogue-level property, and a bucket with
        few users would look less diverse only because it has fewer lists. An empty selection gives
        NaN means and "users": 0.
        """
        if mask is None:
            selected = np.ones(self.users.size, dtype=bool)
        else:
            selected = np.asarray(mask)
            if selected.dtype != bool or selected.shape != self.users.shape:
                raise ValueError(
                    f"mask must be a boolean array of shape {self.users.shape}, "
                    f"got {selected.dtype} {selected.shape}"
                )
        count = int(selected.sum())
        out: dict[str, float] = {
            name: float(values[selected].mean()) if count else float("nan")
            for name, values in self.per_user.items()
        }
        out.update(self.coverage)
        out["users"] = count
        return out


def evaluate_scorer(
    scorer: Scorer,
    seen: csr_matrix,
    relevant: csr_matrix,
    ks: Sequence[int],
    coverage_k: int,
    users: np.ndarray | None = None,
    tie_seed: int | None = None,
) -> EvaluationResult:
    """Rank every unseen item for each user and score the lists against `relevant`.

    Only users with at least one relevant item are evaluated: all such users when `users` is
    None, otherwise those of `users` that have one (the result's `users` says which). `tie_seed`:
    how exact ties are ranked (`rank_users`).
    """
    if not issparse(seen) or not issparse(relevant):
        raise ValueError("seen and relevant must be scipy sparse matrices")
    if seen.shape != relevant.shape:
        raise ValueError(f"seen has shape {seen.shape} but relevant has {relevant.shape}")
    relevant = csr_matrix(relevant, dtype=np.float32, copy=True)
    relevant.eliminate_zeros()
    n_users, n_items = relevant.shape
    ks = list(ks)
    if not ks:
        raise ValueError("ks must name at least one cut-off")
    for k in [*ks, coverage_k]:
        _check_k(k, n_items)

    has_relevant = np.diff(relevant.indptr) > 0
    if users is None:
        chosen = np.flatnonzero(has_relevant).astype(np.int64)
    else:
        chosen = check_user_indices(users, n_users)
        chosen = chosen[has_relevant[chosen]]
    if chosen.size == 0:
        raise ValueError("no user to evaluate: none has a relevant item")

    depth = max(*ks, coverage_k)
    recommended = rank_users(scorer, chosen, seen, depth, tie_seed=tie_seed)
    per_user = ranking_metrics(recommended, relevant[chosen], ks)
    coverage = {f"coverage@{coverage_k}": item_coverage(recommended, coverage_k, n_items)}
    return EvaluationResult(
        users=chosen, per_user=per_user, recommended=recommended, coverage=coverage
    )


def activity_buckets(
    train_counts: np.ndarray, bounds: Sequence[int]
) -> list[tuple[str, np.ndarray]]:
    """Split users by training activity: bounds [20, 50, 150] -> "≤20", "21–50", "51–150", ">150".

    Masks are over the entries of `train_counts` (index it by `EvaluationResult.users` first to
    get masks for `summary`). Buckets come back in increasing activity, empty ones included, so
    report tables always have the same rows.
    """
    counts = np.asarray(train_counts)
    if counts.ndim != 1:
        raise ValueError(f"train_counts must be 1-D, got shape {counts.shape}")
    bounds = [int(bound) for bound in bounds]
    if any(later <= earlier for earlier, later in itertools.pairwise(bounds)):
        raise ValueError(f"bounds must be strictly increasing, got {bounds}")
    if not bounds:
        return [("all", np.ones(counts.size, dtype=bool))]

    buckets = [(f"≤{bounds[0]}", counts <= bounds[0])]
    for lower, upper in itertools.pairwise(bounds):
        low = lower + 1
        label = f"{low}–{upper}" if low < upper else f"{upper}"
        buckets.append((label, (counts > lower) & (counts <= upper)))
    buckets.append((f">{bounds[-1]}", counts > bounds[-1]))
    return buckets
