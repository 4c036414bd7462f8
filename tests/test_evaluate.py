from __future__ import annotations

import numpy as np
import pytest
from synthetic import make_block_raw, make_raw

from pipeline import evaluate, factorize, preprocess
from pipeline.config import EvaluateConfig, FactorizeConfig, PreprocessConfig

SMALL = EvaluateConfig(ease_reg_grid=[1.0, 10.0], itemknn_neighbors=10)


def _evaluate_all(raw, seed: int = 0) -> dict:
    processed = preprocess.run(raw, PreprocessConfig(min_user_interactions=3))
    matrices = evaluate.SplitMatrices.from_processed(processed)
    factors = factorize.run(
        matrices.train, FactorizeConfig(embedding_size=8, reg=0.1, alpha=10.0, epochs=30, seed=seed)
    )
    scorers, tuning = evaluate.peer_scorers(matrices, SMALL, factors)
    metrics, plot_rows = evaluate.run(matrices, scorers, SMALL)
    return {"metrics": metrics, "plot": plot_rows, "tuning": tuning}


def test_same_inputs_same_metrics() -> None:
    assert _evaluate_all(make_raw()) == _evaluate_all(make_raw())


def test_report_layout_covers_every_model_split_and_bucket() -> None:
    result = _evaluate_all(make_raw())
    metrics = result["metrics"]
    models = ["popularity", "itemknn", "ease", "als"]
    for split in ("validation", "test"):
        assert list(metrics[split]) == models
        for row in metrics[split].values():
            assert {"hr@10", "ndcg@10", "mrr@10", "recall@10", "ndcg@20", "coverage@10"} <= set(row)
            assert all(0.0 <= value <= 1.0 for name, value in row.items() if name != "users")
    # 30 users with 10 training events each all fall in the first activity bucket.
    assert metrics["test_by_activity"]["ease"] == {
        "<=20": {"ndcg@10": metrics["test"]["ease"]["ndcg@10"], "users": 30}
    }
    assert result["plot"][0]["bucket"] == "≤20" and set(models) <= set(result["plot"][0])
    assert result["tuning"]["ease_reg"] in (1.0, 10.0)


def test_collaborative_models_beat_popularity_on_two_disjoint_tastes() -> None:
    # Popularity ignores the user's block; every personalised model should recommend within it.
    metrics = _evaluate_all(make_block_raw())["metrics"]["test"]
    for model in ("itemknn", "ease", "als"):
        assert metrics[model]["hr@10"] > metrics["popularity"]["hr@10"] + 0.2, model


def test_test_ranking_excludes_validation_items() -> None:
    processed = preprocess.run(make_raw(), PreprocessConfig(min_user_interactions=3))
    matrices = evaluate.SplitMatrices.from_processed(processed)
    seen = matrices.seen_for_test.toarray()
    assert (seen[matrices.validation.toarray() > 0] == 1).all()
    assert (seen[matrices.test.toarray() > 0] == 0).all()
    assert matrices.train_counts.sum() == processed.train.height


@pytest.mark.parametrize("bounds", [[5], [5, 11]])
def test_buckets_partition_the_users(bounds) -> None:
    processed = preprocess.run(make_raw(), PreprocessConfig(min_user_interactions=3))
    matrices = evaluate.SplitMatrices.from_processed(processed)
    cfg = EvaluateConfig(ease_reg_grid=[10.0], activity_buckets=bounds)
    scorers = {
        "popularity": lambda users: np.tile(np.arange(40, dtype=np.float32), (len(users), 1))
    }
    metrics, _ = evaluate.run(matrices, scorers, cfg)
    counted = sum(b["users"] for b in metrics["test_by_activity"]["popularity"].values())
    assert counted == metrics["test"]["popularity"]["users"]
