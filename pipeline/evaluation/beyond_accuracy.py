"""What a top-k list is like besides accurate: diverse, novel, true to the user's interests.

Per user, from the protocol's ranked lists (`EvaluationResult.recommended`):

- **intra-list diversity@k**: the mean pairwise cosine distance (1 − cosine) of the listed
  items' vectors in the base encoder's space, where items sit by what they are;
- **novelty@k**: the mean self-information −log2 p(i) of the listed items, p(i) the share of
  users with a training event on i (+1 smoothed, so an item nobody had counts as rare);
- **interest coverage@k**: the share of the user's interests (cut from the history the split
  reads) that at least one listed item is closest to, for users with at least two interests;
- **accuracy on novel and familiar events**: HR@k and NDCG@k judged only on the held-out events
  whose item's topic the user had / had not engaged with before (the caller splits them: the
  exploration model knows the topics).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from pipeline.data.artifacts import InterestSets
from pipeline.data.interactions import unit_rows
from pipeline.evaluation.metrics import EvaluationResult, ranking_metrics, standard_error


def intra_list_diversity(recommended: np.ndarray, item_vectors: np.ndarray) -> np.ndarray:
    """Per row of `recommended` (item indices), mean pairwise 1 − cosine of its items."""
    k = recommended.shape[1]
    if k < 2:
        return np.zeros(len(recommended))
    unit = unit_rows(item_vectors.astype(np.float32))
    values = np.empty(len(recommended))
    for start in range(0, len(recommended), 1024):
        block = unit[recommended[start : start + 1024]]
        similarity = np.einsum("uid,ujd->u", block, block)  # sum over all pairs, self included
        values[start : start + len(block)] = 1.0 - (similarity - k) / (k * (k - 1))
    return values


def self_information(train: sp.csr_matrix) -> np.ndarray:
    """−log2 of each item's share of users with a training event on it (+1 smoothed)."""
    users_per_item = np.asarray((train > 0).sum(axis=0)).ravel()
    return -np.log2((users_per_item + 1.0) / (train.shape[0] + 1.0))


def novelty(recommended: np.ndarray, information: np.ndarray) -> np.ndarray:
    """Per row, the mean self-information of its items."""
    return information[recommended].mean(axis=1)


def interest_coverage(
    users: np.ndarray, recommended: np.ndarray, sets: InterestSets, item_vectors: np.ndarray
) -> np.ndarray:
    """Per row, the share of the user's interests some listed item is closest to (cosine to the
    interests' centroids); NaN for a user with fewer than two interests."""
    unit = unit_rows(item_vectors.astype(np.float32))
    rows_of = sets.rows_of(int(max(users.max(initial=0), sets.users.max(initial=0))) + 1)
    values = np.full(len(users), np.nan)
    for position, (user, listed) in enumerate(zip(users.tolist(), recommended, strict=True)):
        rows = rows_of[user]
        if rows.size < 2:
            continue
        nearest = np.argmax(unit[listed] @ sets.centroids[rows].T, axis=1)
        values[position] = np.unique(nearest).size / rows.size
    return values


def finite_mean(values: np.ndarray) -> float | None:
    """The mean of the finite values (5 decimals); None when there are none."""
    finite = values[np.isfinite(values)]
    return round(float(finite.mean()), 5) if finite.size else None


def _mean_and_error(values: np.ndarray) -> dict[str, float | int]:
    values = values[np.isfinite(values)]
    error = standard_error(values)
    return {
        "mean": round(float(values.mean()), 5) if values.size else None,
        "standard_error": round(error, 5),
        "users": int(values.size),
    }


def on_events(
    result: EvaluationResult, events: sp.csr_matrix, k: int
) -> dict[str, dict[str, float | int]]:
    """HR@k and NDCG@k (mean, standard error, users) of `result`'s ranked lists judged only on
    `events` (e.g. the novel ones), for the evaluated users that have one. The lists are the
    protocol's: nothing is re-ranked."""
    rows = events[result.users]
    has = np.diff(rows.indptr) > 0
    if not has.any():
        return {}
    per_user = ranking_metrics(result.recommended[has], rows[has], [k])
    return {
        f"hr@{k}": _mean_and_error(per_user[f"hr@{k}"]),
        f"ndcg@{k}": _mean_and_error(per_user[f"ndcg@{k}"]),
    }


def beyond_accuracy(
    result: EvaluationResult,
    sets: InterestSets,
    item_space: np.ndarray,
    information: np.ndarray,
    events: tuple[sp.csr_matrix, sp.csr_matrix],
    k: int = 10,
) -> dict[str, Any]:
    """Diversity, novelty and interest coverage (`sets`: the interests of the history the split
    reads) of the top `k`, and accuracy on the split's (novel, familiar) `events`, for one model
    on one split."""
    listed = result.recommended[:, :k]
    coverage = interest_coverage(result.users, listed, sets, item_space)
    novel, familiar = events
    return {
        f"ild@{k}": round(float(intra_list_diversity(listed, item_space).mean()), 5),
        f"novelty@{k}": round(float(novelty(listed, information).mean()), 5),
        f"interest_coverage@{k}": finite_mean(coverage),
        "novel_events": on_events(result, novel, k),
        "familiar_events": on_events(result, familiar, k),
    }
