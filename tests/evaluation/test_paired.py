"""Paired differences (`pipeline.evaluation.paired`): per-user means with their standard error,
worked out on paper."""

from __future__ import annotations

import numpy as np

from pipeline.evaluation.metrics import EvaluationResult
from pipeline.evaluation.paired import paired_differences


def test_paired_differences_are_per_user_means_with_their_standard_error() -> None:
    def result(values: list[float]) -> EvaluationResult:
        users = np.arange(len(values))
        return EvaluationResult(
            users=users,
            per_user={"ndcg@10": np.array(values)},
            recommended=np.zeros((len(values), 10), dtype=np.int64),
            coverage={},
        )

    results = {"served": result([1.0, 0.5, 0.0, 1.0]), "peer": result([0.0, 0.5, 0.0, 0.0])}
    everyone = paired_differences(results, "served", "ndcg@10")["peer"]
    # Differences 1, 0, 0, 1: mean 0.5, sample sd 0.57735, standard error 0.57735 / 2.
    assert everyone["ndcg@10_difference"] == 0.5
    assert everyone["standard_error"] == round(0.57735027 / 2, 5)
    assert everyone["users"] == 4
    mask = np.array([True, True, False, False])  # users 0 and 1: differences 1 and 0
    bucket = paired_differences(results, "served", "ndcg@10", mask)["peer"]
    assert bucket["ndcg@10_difference"] == 0.5 and bucket["users"] == 2
    assert bucket["standard_error"] == 0.5
