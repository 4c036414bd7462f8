"""Paired comparison of one model's ranked lists with every other model's, user by user.

Two models judged on the same test item of the same user differ far less from user to user than
either's metric does, so the mean per-user difference and its standard error tell a real gap
from noise where two separate error bars overlap. The `evaluate` stage compares the served model
with every other this way, over all users and per activity bucket.
"""

from __future__ import annotations

import numpy as np

from pipeline.evaluation.metrics import EvaluationResult, standard_error


def paired_differences(
    results: dict[str, EvaluationResult],
    served: str,
    metric: str,
    user_mask: np.ndarray | None = None,
) -> dict[str, dict[str, float | int]]:
    """Per-user `metric` of `served` minus each other model's, on the same users: mean, standard
    error and their ratio (a paired comparison is far tighter than two separate error bars,
    since both lists are judged on the same test item of the same user). `user_mask` (over all
    users) restricts the comparison to some users, e.g. an activity bucket."""
    mine = results[served]
    selected = np.ones(mine.users.size, dtype=bool) if user_mask is None else user_mask[mine.users]
    table: dict[str, dict[str, float | int]] = {}
    for name, other in results.items():
        if name == served:
            continue
        if not np.array_equal(mine.users, other.users):
            raise ValueError(f"{served} and {name} were evaluated on different users")
        difference = (mine.per_user[metric] - other.per_user[metric])[selected]
        error = standard_error(difference)
        mean = float(np.mean(difference))
        table[name] = {
            f"{metric}_difference": round(mean, 5),
            "standard_error": round(error, 5),
            "z": round(mean / error, 2) if error > 0 else 0.0,
            "users": int(difference.size),
        }
    return table


def paired_by_group(
    results: dict[str, EvaluationResult],
    groups: list[tuple[str, np.ndarray]],
    served: str,
    metric: str,
) -> dict[str, dict[str, dict[str, float | int]]]:
    """`paired_differences` of the `served` model in each group of `groups` ((label, mask over
    all users) pairs, e.g. activity buckets) with a user among those evaluated."""
    return {
        label: paired_differences(results, served, metric, mask)
        for label, mask in groups
        if mask[results[served].users].any()
    }
