"""Stage `evaluate`: every model, full ranking, the same split, validation and test.

Protocol: each model is fit on the training split only. Validation ranks every item not in the
user's training history; test ranks every item not in training or validation (the validation event
is known by then, so recommending it again would be a free hit). Hyper-parameters (EASE's λ) are
chosen on validation; test numbers are reported.

Cold items (`preprocess.cold_item_fraction`) never reach training. In the main table they are not
candidates; the cold-item slice ranks only them, for the users who interacted with them, so
collaborative models (which have nothing to go on) meet text models (which read the item's text)
and a seeded random ranking as the floor.

Outputs: `metrics/evaluation.json` (DVC metrics), `metrics/evaluation_by_cluster.json` (test
metrics per interest cluster), and DVC plot data `metrics/plots/ndcg_by_activity.json` and
`metrics/plots/ndcg_by_cluster.json` (test NDCG@10 per bucket / cluster, one column per model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from pipeline import io
from pipeline.config import EvaluateConfig, load_params
from pipeline.factorize import Factors
from pipeline.interactions import interaction_matrix
from pipeline.metrics import EvaluationResult, Scorer, activity_buckets, evaluate_scorer
from pipeline.peers import EASE, ItemKNN, Popularity, tune_ease
from pipeline.preprocess import Processed

METRICS_FILE = Path("metrics/evaluation.json")
CLUSTER_METRICS_FILE = Path("metrics/evaluation_by_cluster.json")
ACTIVITY_PLOT_FILE = Path("metrics/plots/ndcg_by_activity.json")
CLUSTER_PLOT_FILE = Path("metrics/plots/ndcg_by_cluster.json")
PLOT_METRIC = "ndcg@10"
# Models that take part in the cold-item slice: the floor, one collaborative model, the text models.
COLD_SLICE_MODELS = ("random", "als", "zero_shot", "finetuned", "fused")


@dataclass(frozen=True)
class SplitMatrices:
    """The binary matrices every model is evaluated against."""

    train: sp.csr_matrix
    validation: sp.csr_matrix
    test: sp.csr_matrix
    cold: sp.csr_matrix
    """Every event with a cold item: the relevant set of the cold-item slice."""
    cold_items: np.ndarray = field(repr=False)
    """bool [n_items]: items held out of training entirely."""
    train_counts: np.ndarray = field(repr=False)

    @cached_property
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
            cold=interaction_matrix(processed.cold, *shape),
            cold_items=processed.items.sort("item_idx")["cold"].to_numpy(),
            train_counts=np.diff(train.indptr),
        )


def restricted(scorer: Scorer, candidates: np.ndarray) -> Scorer:
    """`scorer` with every item outside the boolean `candidates` mask scored -inf."""
    if candidates.all():
        return scorer
    excluded = ~candidates

    def score(users: np.ndarray) -> np.ndarray:
        scores = np.array(scorer(users), dtype=np.float32, copy=True)
        scores[:, excluded] = -np.inf
        return scores

    return score


def with_random_ties(scorer: Scorer, seed: int) -> Scorer:
    """`scorer` with exactly equal scores put in a seeded random order; other orders unchanged.

    A model that cannot tell items apart (ALS on items it never saw, popularity among items with
    the same count) would otherwise be ranked by item index, and catalogue order is not neutral:
    MovieLens numbers older, more popular films first. Each tie gets noise below half the
    smallest gap between distinct scores in that user's row, so no real preference flips.
    """

    def score(users: np.ndarray) -> np.ndarray:
        scores = np.array(scorer(users), dtype=np.float64, copy=True)
        for row, user in zip(scores, users, strict=True):
            finite = np.unique(row[np.isfinite(row)])
            gap = float(np.min(np.diff(finite))) if len(finite) > 1 else 1.0
            noise = np.random.default_rng([seed, int(user)]).random(len(row))
            row += 0.5 * gap * noise
        return scores

    return score


def evaluate_model(
    scorer: Scorer,
    matrices: SplitMatrices,
    cfg: EvaluateConfig,
    split: str = "test",
    seed: int = 0,
) -> EvaluationResult:
    """Per-user results of one model on the warm validation or test split, exactly as `run` does:
    cold items are not candidates, exact ties are broken at random, seen items are masked."""
    prepared = with_random_ties(restricted(scorer, ~matrices.cold_items), seed)
    if split == "validation":
        return evaluate_scorer(prepared, matrices.train, matrices.validation, cfg.k, cfg.coverage_k)
    if split == "test":
        return evaluate_scorer(
            prepared, matrices.seen_for_test, matrices.test, cfg.k, cfg.coverage_k
        )
    raise ValueError(f"unknown split {split!r}: use 'validation' or 'test'")


def random_scorer(n_items: int, seed: int) -> Scorer:
    """Seeded uniform scores, the same for a user whatever batch it comes in: the floor."""

    def score(users: np.ndarray) -> np.ndarray:
        return np.stack(
            [np.random.default_rng([seed, int(user)]).random(n_items) for user in users]
        ).astype(np.float32)

    return score


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


@dataclass(frozen=True)
class Report:
    metrics: dict[str, Any]
    """validation / test / test_by_activity / cold_items tables, per model."""
    activity_rows: list[dict[str, Any]]
    """Plot rows: test NDCG@10 per activity bucket, one column per model."""
    by_cluster: dict[str, Any] = field(default_factory=dict)
    """Test metrics per interest cluster, per model."""
    cluster_rows: list[dict[str, Any]] = field(default_factory=list)


def _by_group(
    result: EvaluationResult, groups: list[tuple[str, np.ndarray]]
) -> dict[str, dict[str, float | int]]:
    """Test NDCG@10 and user count per group of users (masks over all users)."""
    table: dict[str, dict[str, float | int]] = {}
    for label, user_mask in groups:
        mask = user_mask[result.users]
        if mask.any():
            table[label] = {
                PLOT_METRIC: round(float(result.summary(mask)[PLOT_METRIC]), 5),
                "users": int(mask.sum()),
            }
    return table


def _plot_rows(key: str, tables: dict[str, dict[str, dict[str, Any]]], labels: list[str]) -> list:
    return [
        {
            key: label,
            **{
                model: table[label][PLOT_METRIC]
                for model, table in tables.items()
                if label in table
            },
        }
        for label in labels
    ]


def run(
    matrices: SplitMatrices,
    scorers: dict[str, Callable[[np.ndarray], np.ndarray]],
    cfg: EvaluateConfig,
    clusters: list[tuple[str, np.ndarray]] | None = None,
    seed: int = 0,
) -> Report:
    """Evaluate every scorer on validation, test, per bucket, per cluster and on cold items.

    `clusters` are (label, boolean mask over users) pairs; `seed` drives the random floor of the
    cold-item slice.
    """
    metrics: dict[str, Any] = {"validation": {}, "test": {}, "test_by_activity": {}}
    buckets = activity_buckets(matrices.train_counts, cfg.activity_buckets)
    buckets = [(_bucket_key(label), mask) for label, mask in buckets]
    by_cluster: dict[str, Any] = {}
    for name, scorer in scorers.items():
        validation = evaluate_model(scorer, matrices, cfg, "validation", seed)
        test = evaluate_model(scorer, matrices, cfg, "test", seed)
        metrics["validation"][name] = _round(validation.summary())
        metrics["test"][name] = _round(test.summary())
        metrics["test_by_activity"][name] = _by_group(test, buckets)
        if clusters:
            by_cluster[name] = _by_group(test, clusters)

    if matrices.cold.nnz:
        cold_scorers = {"random": random_scorer(matrices.cold.shape[1], seed), **scorers}
        metrics["cold_items"] = {
            name: _round(
                evaluate_scorer(
                    with_random_ties(restricted(cold_scorers[name], matrices.cold_items), seed),
                    matrices.train,
                    matrices.cold,
                    cfg.k,
                    cfg.coverage_k,
                ).summary()
            )
            for name in COLD_SLICE_MODELS
            if name in cold_scorers
        }
    activity_rows = _plot_rows("bucket", metrics["test_by_activity"], [b for b, _ in buckets])
    for row, (_, mask) in zip(activity_rows, buckets, strict=True):
        # A numeric x for DVC's line templates (bucket labels are categories).
        counts = matrices.train_counts[mask]
        row["median_training_events"] = int(np.median(counts)) if len(counts) else None
    return Report(
        metrics=metrics,
        activity_rows=activity_rows,
        by_cluster=by_cluster,
        cluster_rows=_plot_rows("cluster", by_cluster, [label for label, _ in clusters or []]),
    )


def cluster_groups(
    n_users: int, assignments: pl.DataFrame, profiles: list[dict[str, Any]]
) -> list[tuple[str, np.ndarray]]:
    """(label, user mask) per interest cluster, from the `cluster` stage's outputs."""
    cluster_of = np.full(n_users, -1)
    cluster_of[assignments["user_idx"].to_numpy()] = assignments["cluster"].to_numpy()
    return [(profile["label"], cluster_of == profile["cluster"]) for profile in profiles]


def main() -> None:
    from pipeline import cluster, embed, factorize, index, preprocess

    params = load_params()
    processed = preprocess.read()
    matrices = SplitMatrices.from_processed(processed)
    scorers, tuning = peer_scorers(matrices, params.evaluate, factorize.read())
    clustering = cluster.read()
    scorers["zero_shot"] = embed.read("zero_shot").score
    scorers["finetuned"] = embed.read("finetuned").score
    scorers["fused"] = index.read_fused().score
    report = run(
        matrices,
        scorers,
        params.evaluate,
        clusters=cluster_groups(
            processed.users.height, clustering.assignments, clustering.profiles
        ),
        seed=params.preprocess.split.seed,
    )
    metrics = {**report.metrics, "tuning": tuning}
    io.write_json(METRICS_FILE, metrics)
    io.write_json(CLUSTER_METRICS_FILE, report.by_cluster)
    io.write_json(ACTIVITY_PLOT_FILE, report.activity_rows)
    io.write_json(CLUSTER_PLOT_FILE, report.cluster_rows)
    for name, summary in metrics["test"].items():
        ndcg, hit_rate = summary["ndcg@10"], summary["hr@10"]
        print(f"evaluate: test {name:<12} ndcg@10={ndcg:.4f} hr@10={hit_rate:.4f}")


if __name__ == "__main__":
    io.run_stage(main)
