"""Stage `evaluate`: every model, full ranking, the same split, validation and test.

Every number goes through `pipeline.evaluation.protocol` (split, candidates, ties, metrics), the
same rules every tuning loop uses. Each model is fit on the training split only; hyper-parameters
(EASE's λ, ItemKNN's neighbours) are chosen on validation; test numbers are reported, each model
reading the history up to the test event (training + validation events; nothing refit).

Cold items (`preprocess.cold_item_fraction`) never reach training. The cold-item slice ranks only
them, for the users who interacted with them, so collaborative models (which have nothing to go
on) meet text models (which read the item's text) and a seeded random ranking as the floor.

Beside the peers and the single fused vector (`fused`), two of recli's own read the user's
several interests (`pipeline.models.exploration`, tuned by `fuse` on validation):
`multi_interest` (one list per interest from the same fused vectors, dealt by weight) and
`explore` (items of topics new to the user first). The served model, compared pairwise with
every other, is what `recli recommend` shows without flags: the multi-interest lists where
`fuse` found them more accurate than the single vector on validation, else the single vector
(`served_model`; the metrics name it under `served`). Every model's lists are also described
beyond accuracy (`pipeline.evaluation.beyond_accuracy`: diversity, novelty, interest coverage,
accuracy on novel and familiar events).

Above `evaluate.max_users` users every model ranks one seeded sample of them, and only the
sample's rows of each model's user vectors are read (through memory maps, `read_vectors`); the
item vectors are read whole.

Outputs: `metrics/evaluation.json` (DVC metrics), `metrics/evaluation_by_cluster.json` (test
metrics per interest cluster), and DVC plot data `metrics/plots/ndcg_by_activity.json`,
`metrics/plots/ndcg_by_cluster.json` (test NDCG@10 per bucket / cluster, one column per model)
and `metrics/plots/accuracy_diversity.json` (test NDCG@10 against diversity, per model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline.core import io
from pipeline.core.config import Params, load_params
from pipeline.core.layout import Layout, writes
from pipeline.core.sections import EvaluateConfig
from pipeline.data.artifacts import (
    Factors,
    embedding_paths,
    factor_paths,
    fused_paths,
    linear_paths,
    read_clustering,
    read_processed,
    read_retrieval,
    read_user_rows,
    sequence_paths,
)
from pipeline.data.interactions import UserItemVectors
from pipeline.evaluation.beyond_accuracy import beyond_accuracy, self_information
from pipeline.evaluation.metrics import EvaluationResult, Scorer, activity_buckets
from pipeline.evaluation.paired import paired_by_group, paired_differences
from pipeline.evaluation.protocol import (
    Model,
    SplitMatrices,
    SplitScorers,
    evaluate_model,
    random_scorer,
    select_on_validation,
)
from pipeline.models.exploration import (
    ExplorationInputs,
    exploration_inputs,
    novel_topic_ranks,
    topic_rank_summary,
)
from pipeline.models.peers import ItemKNN, Popularity, itemknn_grid, quadratic_skip, tuned_ease

PLOT_METRIC = "ndcg@10"
# Models that take part in the cold-item slice: the floor, the collaborative and sequence models
# (which have nothing to go on for an unseen item), the models that read text.
COLD_SLICE_MODELS = (
    "random", "als", "sasrec", "zero_shot", "finetuned", "text_sequence", "fused"
)  # fmt: skip
SINGLE_VECTOR = "fused"
"""The single fused vector per user: what `recli recommend` serves unless `fuse` chose the
multi-interest lists (`MULTI_INTEREST`) by default."""
MULTI_INTEREST = "multi_interest"
PEERS = ("popularity", "itemknn", "ease", "als", "sasrec")
"""The well-known models recli is compared with (the rest are recli's own)."""


def _round(summary: dict[str, float]) -> dict[str, float | int]:
    return {
        name: int(value) if name == "users" else round(float(value), 5)
        for name, value in summary.items()
    }


def _bucket_key(label: str) -> str:
    # Plain-ASCII keys keep `dvc metrics show/diff` columns readable in any terminal.
    return label.replace("≤", "<=").replace("–", "-")


def peer_scorers(
    matrices: SplitMatrices, cfg: EvaluateConfig, factors: Factors | None, seed: int = 0
) -> tuple[dict[str, Model], dict[str, Any]]:
    """Fit the peers on the training split, tuning them on validation; return them (each scoring
    the test split from the training + validation history) and what tuning chose (every value
    tried, for the record). Above `cfg.quadratic_peers_max_items` items EASE and ItemKNN are
    left out, and the record says why."""
    train = matrices.train
    popularity = Popularity().fit(train).score  # the same list whatever the history
    als: dict[str, Model] = {} if factors is None else {"als": SplitScorers.from_vectors(factors)}
    reason = quadratic_skip(matrices.n_items, cfg.quadratic_peers_max_items)
    if reason is not None:
        return {"popularity": popularity, **als}, {"skipped": {"ease": reason, "itemknn": reason}}
    ease, by_reg = tuned_ease(matrices, cfg.ease_reg_grid, seed)
    best_neighbors, by_neighbors = select_on_validation(
        itemknn_grid(train, cfg.itemknn_neighbors_grid), matrices, seed
    )
    # Refit the winners: the tuning loop keeps no model alive.
    history_at_test = matrices.seen("test")
    knn = ItemKNN(neighbors=best_neighbors).fit(train)
    scorers: dict[str, Model] = {
        "popularity": popularity,
        "itemknn": SplitScorers(knn.score, knn.with_history(history_at_test)),
        "ease": SplitScorers(ease.score, ease.with_history(history_at_test)),
        **als,
    }
    tuning = {
        "ease_reg": ease.reg,
        "ease_validation_ndcg@10": {str(reg): round(score, 5) for reg, score in by_reg.items()},
        "itemknn_neighbors": best_neighbors,
        "itemknn_validation_ndcg@10": {
            str(size): round(score, 5) for size, score in by_neighbors.items()
        },
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
    trade_off_rows: list[dict[str, Any]] = field(default_factory=list)
    """Plot rows: test NDCG@10 against diversity, novelty and interest coverage, per model."""


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
    scorers: dict[str, Model],
    cfg: EvaluateConfig,
    clusters: list[tuple[str, np.ndarray]] | None = None,
    seed: int = 0,
    lists: Callable[[EvaluationResult, str], dict[str, Any]] | None = None,
    served: str = SINGLE_VECTOR,
) -> Report:
    """Evaluate every scorer on validation, test, per bucket, per cluster and on cold items,
    and the `served` model's paired differences with every other.

    `clusters` are (label, boolean mask over users) pairs; `seed` drives the random floor of the
    cold-item slice; `lists(result, split)` describes a model's ranked lists beyond accuracy
    (`pipeline.evaluation.beyond_accuracy`), reported per split and model under `beyond_accuracy`.
    """
    metrics: dict[str, Any] = {
        "served": served,
        "validation": {},
        "test": {},
        "test_by_activity": {},
    }
    described: dict[str, dict[str, Any]] = {"validation": {}, "test": {}}
    buckets = activity_buckets(matrices.train_counts, cfg.activity_buckets)
    buckets = [(_bucket_key(label), mask) for label, mask in buckets]
    by_cluster: dict[str, Any] = {}
    tests: dict[str, EvaluationResult] = {}
    validations: dict[str, EvaluationResult] = {}
    for name, scorer in scorers.items():
        validation = evaluate_model(scorer, matrices, "validation", cfg.k, cfg.coverage_k, seed)
        test = evaluate_model(scorer, matrices, "test", cfg.k, cfg.coverage_k, seed)
        tests[name], validations[name] = test, validation
        metrics["validation"][name] = _round(validation.summary())
        metrics["test"][name] = _round(test.summary())
        metrics["test_by_activity"][name] = _by_group(test, buckets)
        if clusters:
            by_cluster[name] = _by_group(test, clusters)
        if lists is not None:
            described["validation"][name] = lists(validation, "validation")
            described["test"][name] = lists(test, "test")
    if lists is not None:
        metrics["beyond_accuracy"] = described

    if matrices.cold.nnz:
        cold_scorers: dict[str, Model] = {
            "random": random_scorer(matrices.n_items, seed),
            **scorers,
        }
        metrics["cold_items"] = {
            name: _round(
                evaluate_model(
                    cold_scorers[name], matrices, "cold", cfg.k, cfg.coverage_k, seed
                ).summary()
            )
            for name in COLD_SLICE_MODELS
            if name in cold_scorers
        }
    if served in tests:
        metrics["paired_test"] = paired_differences(tests, served, PLOT_METRIC)
        # Per bucket too: a bucket of a hundred users moves NDCG@10 by hundredths, so "loses in
        # this bucket" means something only next to its standard error. The same users' own
        # validation events are a second look at a bucket (the fusion weights were chosen on
        # them, over all users, so that look leans a little towards the served model).
        metrics["paired_test_by_activity"] = paired_by_group(tests, buckets, served, PLOT_METRIC)
        metrics["paired_validation_by_activity"] = paired_by_group(
            validations, buckets, served, PLOT_METRIC
        )
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
        trade_off_rows=[
            {
                "model": name,
                PLOT_METRIC: metrics["test"][name][PLOT_METRIC],
                **{key: value for key, value in row.items() if not isinstance(value, dict)},
            }
            for name, row in described["test"].items()
        ],
    )


def served_model(retrieval: dict[str, Any]) -> str:
    """The model `recli recommend` serves without flags, as `fuse` chose it (`retrieval.json`):
    the multi-interest lists where they were more accurate on validation, else the single
    fused vector."""
    return MULTI_INTEREST if retrieval["multi_interest"].get("by_default") else SINGLE_VECTOR


def interest_models(
    fused: UserItemVectors,
    inputs: ExplorationInputs,
    matrices: SplitMatrices,
    retrieval: dict[str, Any],
    params: Params,
) -> dict[str, Model]:
    """The multi-interest and explore models as `fuse` tuned them, each split reading its own
    history (interests, topics engaged with, fused user vector)."""
    multi, explore = retrieval["multi_interest"], retrieval["explore"]
    depth = max(params.evaluate.k)
    vectors = {"validation": fused.users, "test": fused.test_users}

    def multi_interest(split: str) -> Scorer:
        return inputs.multi_interest(
            split,
            vectors[split],
            fused.items,
            matrices.seen(split),  # type: ignore[arg-type]
            matrices.candidates(split),  # type: ignore[arg-type]
            multi["whole_user_share"],
            multi["pull"],
            depth,
        )

    def exploring(split: str) -> Scorer:
        return inputs.explore(
            split,
            vectors[split],
            fused.items,
            explore["score_scale"],
            explore["topic_weight"],
            explore["similarity_weight"],
        )

    return {
        MULTI_INTEREST: SplitScorers(multi_interest("validation"), multi_interest("test")),
        "explore": SplitScorers(exploring("validation"), exploring("test")),
    }


def next_topic_report(
    inputs: ExplorationInputs, matrices: SplitMatrices, retrieval: dict[str, Any]
) -> dict[str, Any]:
    """How well exploration's topic ranking predicts the topic of each novel test event (the
    user's next new interest), next to ranking topics by how often they are taken up at all
    and to a random order."""
    novel, _ = inputs.novel(matrices.test, "test")
    weight = retrieval["explore"]["similarity_weight"]
    return {
        "timeline_and_similarity": topic_rank_summary(
            *novel_topic_ranks(inputs, "test", novel, weight)
        ),
        "timeline_only": topic_rank_summary(*novel_topic_ranks(inputs, "test", novel, 0.0)),
        "take_up_rate_only": topic_rank_summary(*novel_topic_ranks(inputs, "test", novel, None)),
    }


def cluster_groups(
    n_users: int, assignments: pl.DataFrame, profiles: list[dict[str, Any]]
) -> list[tuple[str, np.ndarray]]:
    """(label, user mask) per interest cluster, from the `cluster` stage's outputs."""
    cluster_of = np.full(n_users, -1)
    cluster_of[assignments["user_idx"].to_numpy()] = assignments["cluster"].to_numpy()
    return [(profile["label"], cluster_of == profile["cluster"]) for profile in profiles]


def read_vectors(layout: Layout, users: np.ndarray | None) -> dict[str, UserItemVectors]:
    """The models scored by dot products of vectors other stages wrote, in report order: the
    text encoders, the sequence models, EASE at the rank it is fused in (what the rank limit
    costs; absent without `factorize`'s EASE part) and the served fused vectors. Of each, the
    item vectors and the evaluated `users`' rows (None: every user's; `read_user_rows`)."""
    files: dict[str, tuple[dict[str, Path] | None, str]] = {
        "zero_shot": (embedding_paths(layout, "zero_shot"), "embed"),
        "finetuned": (embedding_paths(layout, "finetuned"), "embed"),
        "sasrec": (sequence_paths("sasrec", layout), "sequence"),
        "text_sequence": (sequence_paths("text", layout), "sequence"),
        "ease_low_rank": (linear_paths(layout), "factorize"),
        "fused": (fused_paths(layout), "fuse"),
    }
    return {
        name: read_user_rows(paths, stage, users)
        for name, (paths, stage) in files.items()
        if paths is not None
    }


def model_scorers(
    matrices: SplitMatrices,
    factors: Factors | None,
    vectors: dict[str, UserItemVectors],
    inputs: ExplorationInputs,
    retrieval: dict[str, Any],
    params: Params,
) -> tuple[dict[str, Model], dict[str, Any]]:
    """Every model evaluated, in report order: the peers (tuned on validation, `peer_scorers`),
    the vector models (`read_vectors`) and the interest models read from the fused vectors
    (`interest_models`); and what tuning the peers chose."""
    scorers, tuning = peer_scorers(matrices, params.evaluate, factors, params.preprocess.split.seed)
    scorers.update({name: SplitScorers.from_vectors(found) for name, found in vectors.items()})
    scorers.update(interest_models(vectors["fused"], inputs, matrices, retrieval, params))
    return scorers, tuning


def lists_beyond_accuracy(
    matrices: SplitMatrices, inputs: ExplorationInputs, item_space: np.ndarray
) -> Callable[[EvaluationResult, str], dict[str, Any]]:
    """`run`'s `lists`: a model's ranked lists of a split described beyond accuracy in
    `item_space`, against the split's interests and its novel events."""
    information = self_information(matrices.train)

    def lists(result: EvaluationResult, split: str) -> dict[str, Any]:
        relevant = matrices.relevant(split)  # type: ignore[arg-type]
        events = inputs.novel(relevant, split)
        return beyond_accuracy(result, inputs.sets[split], item_space, information, events)

    return lists


def evaluation_metrics(
    report: Report,
    tuning: dict[str, Any],
    inputs: ExplorationInputs,
    matrices: SplitMatrices,
    retrieval: dict[str, Any],
    n_users: int,
    max_users: int | None,
) -> dict[str, Any]:
    """`metrics/evaluation.json`: the report's tables, what tuning chose, the next-new-topic
    ranking, and the user sample when there is one."""
    metrics = {**report.metrics, "tuning": tuning}
    metrics["next_new_topic"] = next_topic_report(inputs, matrices, retrieval)
    if matrices.evaluated is not None:
        metrics["users_evaluated"] = {
            "sample": int(matrices.evaluated.size),
            "of": n_users,
            "why": f"more users than evaluate.max_users ({max_users})",
        }
    return metrics


def write_report(metrics: dict[str, Any], report: Report, layout: Layout) -> None:
    io.write_json(layout.evaluation, metrics)
    io.write_json(layout.metrics_file("evaluation_by_cluster"), report.by_cluster)
    io.write_json(layout.plot_file("ndcg_by_activity"), report.activity_rows)
    io.write_json(layout.plot_file("ndcg_by_cluster"), report.cluster_rows)
    io.write_json(layout.plot_file("accuracy_diversity"), report.trade_off_rows)


@writes("evaluate")
def main(layout: Layout) -> None:
    params = load_params(layout.params)
    seed = params.preprocess.split.seed
    processed = read_processed(layout)
    matrices = SplitMatrices.from_processed(processed, params.evaluate.max_users, seed)
    clustering = read_clustering(layout)
    inputs = exploration_inputs(processed, layout, params.interests.half_life)
    retrieval = read_retrieval(layout)
    factors = read_user_rows(factor_paths(layout), "factorize", matrices.evaluated)
    vectors = read_vectors(layout, matrices.evaluated)
    scorers, tuning = model_scorers(matrices, factors, vectors, inputs, retrieval, params)
    item_space = io.read_npy(embedding_paths(layout, params.interests.encoder)["items"], "embed")
    report = run(
        matrices,
        scorers,
        params.evaluate,
        clusters=cluster_groups(
            processed.users.height, clustering.assignments, clustering.profiles
        ),
        seed=seed,
        lists=lists_beyond_accuracy(matrices, inputs, item_space),
        served=served_model(retrieval),
    )
    metrics = evaluation_metrics(
        report,
        tuning,
        inputs,
        matrices,
        retrieval,
        processed.users.height,
        params.evaluate.max_users,
    )
    write_report(metrics, report, layout)
    for name, summary in metrics["test"].items():
        ndcg, hit_rate = summary["ndcg@10"], summary["hr@10"]
        print(f"evaluate: test {name:<12} ndcg@10={ndcg:.4f} hr@10={hit_rate:.4f}")


if __name__ == "__main__":
    io.run_stage(main)
