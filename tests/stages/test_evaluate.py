from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from stage_project import upstream_project
from synthetic import make_block_raw, make_raw

from pipeline import evaluate, factorize, fuse, preprocess
from pipeline.core.sections import EvaluateConfig, FactorizeConfig, PreprocessConfig
from pipeline.data.interactions import SampledRows
from pipeline.evaluation.protocol import SplitMatrices, evaluate_model
from recli.metrics_source import served_in

SMALL = EvaluateConfig(ease_reg_grid=[1.0, 10.0], itemknn_neighbors_grid=[5, 10])


def _evaluate_all(raw, seed: int = 0) -> dict:
    processed = preprocess.run(raw, PreprocessConfig(min_user_interactions=3, cold_item_fraction=0))
    matrices = SplitMatrices.from_processed(processed)
    factors = factorize.run(
        matrices.train, FactorizeConfig(embedding_size=8, reg=0.1, alpha=10.0, epochs=30, seed=seed)
    )
    scorers, tuning = evaluate.peer_scorers(matrices, SMALL, factors)
    report = evaluate.run(matrices, scorers, SMALL)
    return {"metrics": report.metrics, "plot": report.activity_rows, "tuning": tuning}


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
    assert result["plot"][0]["bucket"] == "<=20" and set(models) <= set(result["plot"][0])
    assert result["tuning"]["ease_reg"] in (1.0, 10.0)
    assert result["tuning"]["itemknn_neighbors"] in (5, 10)
    assert set(result["tuning"]["itemknn_validation_ndcg@10"]) == {"5", "10"}


def test_collaborative_models_beat_popularity_on_two_disjoint_tastes() -> None:
    # Popularity ignores the user's block; every personalised model should recommend within it.
    metrics = _evaluate_all(make_block_raw())["metrics"]["test"]
    for model in ("itemknn", "ease", "als"):
        assert metrics[model]["hr@10"] > metrics["popularity"]["hr@10"] + 0.2, model


@pytest.mark.parametrize("bounds", [[5], [5, 11]])
def test_buckets_partition_the_users(bounds) -> None:
    processed = preprocess.run(make_raw(), PreprocessConfig(min_user_interactions=3))
    matrices = SplitMatrices.from_processed(processed)
    cfg = EvaluateConfig(ease_reg_grid=[10.0], activity_buckets=bounds)
    scorers = {
        "popularity": lambda users: np.tile(np.arange(40, dtype=np.float32), (len(users), 1))
    }
    metrics = evaluate.run(matrices, scorers, cfg).metrics
    counted = sum(b["users"] for b in metrics["test_by_activity"]["popularity"].values())
    assert counted == metrics["test"]["popularity"]["users"]


def _cold_setup():
    processed = preprocess.run(
        make_raw(n_users=40, n_items=60, per_user=15),
        PreprocessConfig(min_user_interactions=3, cold_item_fraction=0.2),
    )
    return processed, SplitMatrices.from_processed(processed)


def test_cold_slice_separates_an_informed_scorer_from_the_random_floor() -> None:
    processed, matrices = _cold_setup()
    oracle_scores = matrices.cold.toarray().astype(np.float32)  # knows who likes which cold item
    scorers = {
        "als": lambda users: np.zeros((len(users), matrices.cold.shape[1]), np.float32),
        "finetuned": lambda users: oracle_scores[users],
    }
    cfg = EvaluateConfig(ease_reg_grid=[10.0])
    cold = evaluate.run(matrices, scorers, cfg, seed=3).metrics["cold_items"]
    assert list(cold) == ["random", "als", "finetuned"]
    assert cold["finetuned"]["hr@10"] == 1.0
    assert cold["random"]["hr@10"] < 1.0
    assert cold["random"]["users"] == len(set(processed.cold["user_idx"]))


def test_metrics_per_cluster_partition_the_users() -> None:
    processed, matrices = _cold_setup()
    n_users = processed.users.height
    first_half = np.arange(n_users) < n_users // 2
    clusters = [("Horror · Sci-Fi", first_half), ("Romance", ~first_half)]
    report = evaluate.run(
        matrices,
        {"popularity": lambda u: np.ones((len(u), 60), np.float32)},
        EvaluateConfig(ease_reg_grid=[10.0]),
        clusters=clusters,
    )
    table = report.by_cluster["popularity"]
    assert set(table) == {"Horror · Sci-Fi", "Romance"}
    assert (
        sum(row["users"] for row in table.values()) == report.metrics["test"]["popularity"]["users"]
    )
    assert [row["cluster"] for row in report.cluster_rows] == ["Horror · Sci-Fi", "Romance"]


def test_reported_numbers_are_the_protocols_numbers() -> None:
    # The table must be exactly `evaluate_model` under the same seed: one protocol, no copy.
    processed = preprocess.run(make_raw(), PreprocessConfig(min_user_interactions=3))
    matrices = SplitMatrices.from_processed(processed)
    scorers, tuning = evaluate.peer_scorers(matrices, SMALL, None, seed=3)
    report = evaluate.run(matrices, scorers, SMALL, seed=3)
    for split in ("validation", "test"):
        direct = evaluate_model(scorers["ease"], matrices, split, SMALL.k, SMALL.coverage_k, 3)
        assert report.metrics[split]["ease"]["ndcg@10"] == round(direct.summary()["ndcg@10"], 5)
    best = tuning["ease_reg"]
    assert tuning["ease_validation_ndcg@10"][str(best)] == max(
        tuning["ease_validation_ndcg@10"].values()
    )
    # The tuned value is the reported validation value of the refit winner.
    assert (
        report.metrics["validation"]["ease"]["ndcg@10"]
        == tuning["ease_validation_ndcg@10"][str(best)]
    )


def test_item_x_item_peers_are_skipped_above_the_item_cap_and_the_record_says_why() -> None:
    processed = preprocess.run(
        make_raw(), PreprocessConfig(min_user_interactions=3, cold_item_fraction=0)
    )
    matrices = SplitMatrices.from_processed(processed)
    capped = SMALL.model_copy(update={"quadratic_peers_max_items": matrices.n_items - 1})
    scorers, tuning = evaluate.peer_scorers(matrices, capped, None)
    assert sorted(scorers) == ["popularity"]
    assert set(tuning["skipped"]) == {"ease", "itemknn"}
    assert (
        f"{matrices.n_items} items > evaluate.quadratic_peers_max_items"
        in tuning["skipped"]["ease"]
    )
    at_cap = SMALL.model_copy(update={"quadratic_peers_max_items": matrices.n_items})
    assert {"ease", "itemknn"} <= set(evaluate.peer_scorers(matrices, at_cap, None)[0])


def test_paired_bucket_differences_read_each_splits_own_events() -> None:
    # The served model against a peer per activity bucket, on test and on validation: each is
    # the mean per-user difference of that split's protocol results, nothing carried across.
    processed = preprocess.run(make_raw(), PreprocessConfig(min_user_interactions=3))
    matrices = SplitMatrices.from_processed(processed)
    factors = factorize.run(matrices.train, FactorizeConfig(embedding_size=8, reg=0.1, seed=0))
    scorers, _ = evaluate.peer_scorers(matrices, SMALL, factors)
    scorers = {"als": scorers["als"], evaluate.SINGLE_VECTOR: scorers["ease"]}
    report = evaluate.run(matrices, scorers, SMALL)
    for split in ("validation", "test"):
        served, als = (
            evaluate_model(scorers[name], matrices, split, SMALL.k, SMALL.coverage_k).per_user[
                "ndcg@10"
            ]
            for name in (evaluate.SINGLE_VECTOR, "als")
        )
        row = report.metrics[f"paired_{split}_by_activity"]["<=20"]["als"]
        assert row["users"] == served.size
        assert row["ndcg@10_difference"] == round(float(np.mean(served - als)), 5)
    assert (
        report.metrics["paired_validation_by_activity"] != report.metrics["paired_test_by_activity"]
    )


def test_the_served_model_is_the_one_fuse_chose_and_the_pairs_are_against_it() -> None:
    processed = preprocess.run(make_raw(), PreprocessConfig(min_user_interactions=3))
    matrices = SplitMatrices.from_processed(processed)
    factors = factorize.run(matrices.train, FactorizeConfig(embedding_size=8, reg=0.1, seed=0))
    peers, _ = evaluate.peer_scorers(matrices, SMALL, factors)
    scorers = {"als": peers["als"], "fused": peers["itemknn"], "multi_interest": peers["ease"]}
    chosen = {"multi_interest": {"whole_user_share": 0.6, "pull": 0.5, "by_default": True}}
    assert evaluate.served_model(chosen) == "multi_interest"
    assert evaluate.served_model({"multi_interest": {"by_default": False}}) == "fused"
    assert evaluate.served_model({"multi_interest": {}}) == "fused"  # chosen before the choice
    report = evaluate.run(matrices, scorers, SMALL, served="multi_interest")
    assert report.metrics["served"] == "multi_interest"
    assert set(report.metrics["paired_test"]) == {"als", "fused"}
    assert served_in(report.metrics) == "multi_interest"
    assert served_in({"test": {}}) == "fused"


REPORTS = (
    "metrics/evaluation.json",
    "metrics/evaluation_by_cluster.json",
    "metrics/plots/ndcg_by_activity.json",
    "metrics/plots/ndcg_by_cluster.json",
    "metrics/plots/accuracy_diversity.json",
)
"""What the stage writes."""


def test_on_a_sample_the_stage_reads_its_rows_only_and_reports_what_whole_arrays_give(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream_project(tmp_path, {"evaluate.max_users": 25})
    fuse.main(tmp_path)
    read_whole = evaluate.read_user_rows
    rows: dict[str, object] = {}

    def recorded(paths: dict[str, Path], stage: str, users: np.ndarray | None):
        vectors = read_whole(paths, stage, users)
        rows[paths["users"].name] = vectors
        return vectors

    monkeypatch.setattr(evaluate, "read_user_rows", recorded)
    evaluate.main(tmp_path)
    sampled = {name: (tmp_path / name).read_bytes() for name in REPORTS}
    # Every user vector scored (ALS, text, sequence and fused; at test too) is the sample's rows.
    assert len(rows) == 6
    for vectors in rows.values():
        for users in (vectors.users, vectors.users_at_test):
            assert isinstance(users, SampledRows) and users.values.shape[0] == 25
            assert len(users) > 25
    # The same stage reading every user's whole arrays, as it did before, reports the same.
    monkeypatch.setattr(
        evaluate, "read_user_rows", lambda paths, stage, users: read_whole(paths, stage, None)
    )
    evaluate.main(tmp_path)
    assert b'"sample": 25' in sampled["metrics/evaluation.json"]
    assert {name: (tmp_path / name).read_bytes() for name in REPORTS} == sampled
