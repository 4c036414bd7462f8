"""Stage `evaluate`: every model, full ranking, the same split, validation and test.

Protocol: each model is fit on the training split only. Validation ranks every item not in the
user's training history; test ranks every item not in training or validation (the validation event
is known by then, so recommending it again would be a free hit). Hyper-parameters (EASE's λ) are
chosen on validation; test numbers are reported.

Outputs: `metrics/evaluation.json` (DVC metrics) and `metrics/plots/ndcg_by_activity.json` (DVC
plot data: test NDCG@10 per user-activity bucket, one column per model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from pipeline import io
from pipeline.config import EvaluateConfig, load_params
from pipeline.factorize import Factors, interaction_matrix
from pipeline.metrics import EvaluationResult, Scorer, activity_buckets, evaluate_scorer
from pipeline.peers import EASE, ItemKNN, Popularity, tune_ease
from pipeline.preprocess import Processed

METRICS_FILE = Path("metrics/evaluation.json")
ACTIVITY_PLOT_FILE = Path("metrics/plots/ndcg_by_activity.json")
PLOT_METRIC = "ndcg@10"


@dataclass(frozen=True)
class SplitMatrices:
    """The binary matrices every model is evaluated against."""

    train: sp.csr_matrix
    validation: sp.csr_matrix
    test: sp.csr_matrix
    train_counts: np.ndarray = field(repr=False)

    @property
    def seen_for_test(self) -> sp.csr_matrix:
        seen = (self.train + self.validation).tocsr()
        seen.data[:] = 1.0
        return seen

    @classmethod
    def from_processed(cls, processed: Processed) -> SplitMatrices:
        shape = (processed.users.height, processed.items.height)
        train = interaction_matrix(processed.train, *shape)
        return cls(
            train=train,
            validation=interaction_matrix(processed.validation, *shape),
            test=interaction_matrix(processed.test, *shape),
            train_counts=np.diff(train.indptr),
        )


def _round(summary: dict[str, float]) -> dict[str, float | int]:
    return {
        name: int(value) if name == "users" else round(float(value), 5)
        for name, value in summary.items()
    }


def _bucket_key(label: str) -> str:
    # Plain-ASCII keys keep `dvc metrics show/diff` columns readable in any terminal.
    return label.replace("≤", "<=").replace("–", "-")


def peer_scorers(
    matrices: SplitMatrices, cfg: EvaluateConfig, factors: Factors | None
) -> tuple[dict[str, Scorer], dict[str, Any]]:
    """Fit the peers on the training split; return their scorers and what tuning chose."""
    train = matrices.train
    best_reg, by_reg = tune_ease(train, matrices.validation, train, cfg.ease_reg_grid)
    scorers: dict[str, Scorer] = {
        "popularity": Popularity().fit(train).score,
        "itemknn": ItemKNN(neighbors=cfg.itemknn_neighbors).fit(train).score,
        "ease": EASE(reg=best_reg).fit(train).score,
    }
    if factors is not None:
        scorers["als"] = factors.score
    tuning = {
        "ease_reg": best_reg,
        "ease_validation_ndcg@10": {str(reg): round(score, 5) for reg, score in by_reg.items()},
    }
    return scorers, tuning


def run(
    matrices: SplitMatrices,
    scorers: dict[str, Callable[[np.ndarray], np.ndarray]],
    cfg: EvaluateConfig,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Evaluate every scorer on validation and test; return (metrics, activity plot rows)."""
    metrics: dict[str, Any] = {"validation": {}, "test": {}, "test_by_activity": {}}
    buckets = activity_buckets(matrices.train_counts, cfg.activity_buckets)
    plot_rows = [{"bucket": label} for label, _ in buckets]
    for name, scorer in scorers.items():
        validation = evaluate_scorer(
            scorer, matrices.train, matrices.validation, cfg.k, cfg.coverage_k
        )
        test: EvaluationResult = evaluate_scorer(
            scorer, matrices.seen_for_test, matrices.test, cfg.k, cfg.coverage_k
        )
        metrics["validation"][name] = _round(validation.summary())
        metrics["test"][name] = _round(test.summary())
        by_bucket: dict[str, Any] = {}
        for row, (label, user_mask) in zip(plot_rows, buckets, strict=True):
            mask = user_mask[test.users]
            if not mask.any():
                continue
            summary = test.summary(mask)
            by_bucket[_bucket_key(label)] = {
                PLOT_METRIC: round(float(summary[PLOT_METRIC]), 5),
                "users": int(mask.sum()),
            }
            row[name] = round(float(summary[PLOT_METRIC]), 5)
        metrics["test_by_activity"][name] = by_bucket
    return metrics, plot_rows


def main() -> None:
    from pipeline import factorize, preprocess

    params = load_params()
    processed = preprocess.read()
    matrices = SplitMatrices.from_processed(processed)
    scorers, tuning = peer_scorers(matrices, params.evaluate, factorize.read())
    metrics, plot_rows = run(matrices, scorers, params.evaluate)
    metrics["tuning"] = tuning
    io.write_json(METRICS_FILE, metrics)
    io.write_json(ACTIVITY_PLOT_FILE, plot_rows)
    for name, summary in metrics["test"].items():
        ndcg, hit_rate = summary["ndcg@10"], summary["hr@10"]
        print(f"evaluate: test {name:<12} ndcg@10={ndcg:.4f} hr@10={hit_rate:.4f}")


if __name__ == "__main__":
    io.run_stage(main)
