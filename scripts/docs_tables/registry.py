"""Which function writes which block: `TABLES`, and `render_table` for one block's body."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from pathlib import Path

from docs_tables.benchmarks import (
    TEXT_RICH,
    bench_live,
    bench_recommend,
    bench_recommend_environment,
    bench_recommend_integrity,
    bench_scale_index,
    bench_scale_machine,
    bench_scale_ray,
    bench_scale_runs,
    bench_scale_stages,
    bench_scale_targets,
    bench_sequence,
)
from docs_tables.checks import (
    byo_check,
    byo_check_summary,
    byo_seconds,
    byo_sparse_check,
    byo_sparse_check_summary,
    byo_text_only_check,
    byo_text_only_check_summary,
    byo_text_only_labels,
    peer_check_full,
    peer_check_full_summary,
    peer_check_lightest,
    peer_check_summary,
)
from docs_tables.interests import (
    cluster_summary,
    interests_sparse,
    interests_summary,
    next_new_topic,
    topics_summary,
)
from docs_tables.metrics import METRICS, WRITTEN_BY, Metrics, MissingMetricsError
from docs_tables.results import (
    beyond_accuracy,
    cold_items,
    evaluation_by_activity,
    evaluation_by_cluster,
    evaluation_test,
    evaluation_test_at_20,
    evaluation_validation,
    paired_test,
    paired_test_by_activity,
    paired_validation_by_activity,
)
from docs_tables.scale_model import bench_scale_model
from docs_tables.stages import finetune_summary, preprocess_summary, sequence_training
from docs_tables.tuning import (
    evaluation_tuning,
    explore_tuning,
    fusion_grid,
    index_recall_ladder,
    index_summary,
    multi_interest_tuning,
)

TABLES: dict[str, Callable[[Metrics], str]] = {
    "evaluation-test": evaluation_test,
    "evaluation-validation": evaluation_validation,
    "evaluation-test-at-20": evaluation_test_at_20,
    "paired-test": paired_test,
    "evaluation-by-activity": evaluation_by_activity,
    "paired-test-by-activity": paired_test_by_activity,
    "paired-validation-by-activity": paired_validation_by_activity,
    "cold-items": cold_items,
    "beyond-accuracy": beyond_accuracy,
    "next-new-topic": next_new_topic,
    "evaluation-tuning": evaluation_tuning,
    "evaluation-by-cluster": evaluation_by_cluster,
    "preprocess-summary": preprocess_summary,
    "finetune-summary": finetune_summary,
    "sequence-training": sequence_training,
    "cluster-summary": cluster_summary,
    "interests-summary": interests_summary,
    "interests-sparse": interests_sparse,
    "topics-summary": topics_summary,
    "index-summary": index_summary,
    "index-recall-ladder": index_recall_ladder,
    "fusion-grid": fusion_grid,
    "multi-interest-tuning": multi_interest_tuning,
    "explore-tuning": explore_tuning,
    "peer-check-summary": peer_check_summary,
    "peer-check-full": peer_check_full,
    "peer-check-full-summary": peer_check_full_summary,
    "peer-check-lightest": peer_check_lightest,
    "byo-check": byo_check,
    "byo-check-summary": byo_check_summary,
    "byo-sparse-check": byo_sparse_check,
    "byo-sparse-check-summary": byo_sparse_check_summary,
    "byo-text-only-check": byo_text_only_check,
    "byo-text-only-check-summary": byo_text_only_check_summary,
    "byo-text-only-labels": byo_text_only_labels,
    "byo-seconds": byo_seconds,
    "bench-scale-stages": bench_scale_stages,
    "bench-scale-runs": bench_scale_runs,
    "bench-scale-targets": bench_scale_targets,
    "bench-scale-index": bench_scale_index,
    "bench-scale-ray": bench_scale_ray,
    "bench-scale-model": bench_scale_model,
    "bench-scale-machine": bench_scale_machine,
    "bench-text-rich-stages": partial(bench_scale_stages, name=TEXT_RICH),
    "bench-text-rich-runs": partial(bench_scale_runs, name=TEXT_RICH),
    "bench-text-rich-targets": partial(bench_scale_targets, name=TEXT_RICH),
    "bench-text-rich-machine": partial(bench_scale_machine, name=TEXT_RICH),
    "bench-recommend": bench_recommend,
    "bench-recommend-integrity": bench_recommend_integrity,
    "bench-recommend-environment": bench_recommend_environment,
    "bench-sequence": bench_sequence,
    "bench-live": bench_live,
}
"""Block name → the function that writes its table."""


class UnknownTableError(ValueError):
    """A page names a block no function renders."""


def render_table(name: str, metrics: Metrics | Path = METRICS) -> str:
    """The Markdown of one block's body. A missing file or section gives one line saying so
    (the page still builds); an unknown name raises `UnknownTableError`."""
    if name not in TABLES:
        raise UnknownTableError(name)
    source_metrics = metrics if isinstance(metrics, Metrics) else Metrics(metrics)
    try:
        return TABLES[name](source_metrics)
    except MissingMetricsError as missing:
        files = re.findall(r"`metrics/([^`]+)`", str(missing))
        command = WRITTEN_BY.get(files[0], "dvc repro") if files else "dvc repro"
        return f"*Not rendered: {missing}; `{command}` writes it.*"
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as error:
        # A metrics file of another shape than this renderer knows (a value of another type):
        # the page still builds, and the note says which table to look at.
        return f"*Not rendered: the metrics for '{name}' have an unexpected shape ({error!r}).*"
