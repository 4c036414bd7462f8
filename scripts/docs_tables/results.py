"""The evaluation's tables (`metrics/evaluation.json`, `metrics/evaluation_by_cluster.json`):
every model on each split, paired differences, activity buckets, cold items and
beyond-accuracy measures."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from docs_tables.formatting import (
    bold_if,
    folded_columns,
    is_number,
    metric_header,
    model_name,
    num,
    paired,
    served_name,
    source,
    table,
)
from docs_tables.metrics import Metrics
from recli.metrics_source import served_in

METRIC_ORDER = ("hr", "recall", "ndcg", "mrr", "coverage")


def _evaluation_split(metrics: Metrics, split: str, cut: int) -> str:
    rows: dict[str, dict[str, Any]] = metrics.get("evaluation.json", split)
    served = served_in(metrics.get("evaluation.json"))
    suffix = f"@{cut}"
    present = {key for row in rows.values() for key in row if key.endswith(suffix)}
    columns = [f"{name}{suffix}" for name in METRIC_ORDER if f"{name}{suffix}" in present]
    columns += sorted(present - set(columns))
    groups = folded_columns(rows, columns)
    header = ["model", *(" = ".join(metric_header(c) for c in group) for group in groups)]
    header.append("users")
    body = [
        [
            bold_if(served_name(model, served), model == served),
            *(num(row.get(group[0])) for group in groups),
            num(row.get("users")),
        ]
        for model, row in rows.items()
    ]
    return table(header, body) + "\n\n" + source(f"`metrics/evaluation.json` → `{split}`")


def evaluation_test(metrics: Metrics) -> str:
    """Every model on the test split, the metrics at 10."""
    return _evaluation_split(metrics, "test", 10)


def evaluation_validation(metrics: Metrics) -> str:
    """Every model on the validation split, the metrics at 10."""
    return _evaluation_split(metrics, "validation", 10)


def evaluation_test_at_20(metrics: Metrics) -> str:
    """Every model on the test split, the metrics at 20."""
    return _evaluation_split(metrics, "test", 20)


def paired_test(metrics: Metrics) -> str:
    """The served model minus each other model, user by user, on test NDCG@10."""
    rows: dict[str, Any] = metrics.get("evaluation.json", "paired_test")
    body = [
        [model_name(model), paired(entry), num(entry.get("users"))]
        for model, entry in rows.items()
        if isinstance(entry, Mapping)
    ]
    header = ["served model minus", "NDCG@10 difference ± s.e. (z)", "users"]
    return table(header, body) + "\n\n" + source("`metrics/evaluation.json` → `paired_test`")


def _buckets(rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
    seen: list[str] = []
    for by_bucket in rows.values():
        for bucket in by_bucket:
            if bucket not in seen:
                seen.append(bucket)
    return seen


def _bucket_users(rows: Mapping[str, Mapping[str, Any]], bucket: str) -> Any:
    for by_bucket in rows.values():
        entry = by_bucket.get(bucket)
        if isinstance(entry, Mapping) and "users" in entry:
            return entry["users"]
    return None


def _bucket_header(bucket: str, users: Any) -> str:
    # "<=20" reads as "≤20 events"; the number of users in it follows.
    shown = bucket.replace("<=", "≤").replace(">=", "≥")
    return f"{shown} ({num(users)} users)" if users is not None else shown


def evaluation_by_activity(metrics: Metrics) -> str:
    """Test NDCG@10 of every model per activity bucket (training events per user)."""
    rows: dict[str, dict[str, Any]] = metrics.get("evaluation.json", "test_by_activity")
    served = served_in(metrics.get("evaluation.json"))
    buckets = _buckets(rows)
    header = ["model", *(_bucket_header(b, _bucket_users(rows, b)) for b in buckets)]
    body = [
        [
            bold_if(served_name(model, served), model == served),
            *(num((by_bucket.get(b) or {}).get("ndcg@10")) for b in buckets),
        ]
        for model, by_bucket in rows.items()
    ]
    return (
        table(header, body)
        + "\n\n"
        + source("`metrics/evaluation.json` → `test_by_activity` (NDCG@10)")
    )


def _paired_by_activity(metrics: Metrics, key: str) -> str:
    by_bucket: dict[str, dict[str, Any]] = metrics.get("evaluation.json", key)
    buckets = list(by_bucket)
    models: list[str] = []
    for entries in by_bucket.values():
        models += [m for m in entries if m not in models]
    users = {
        bucket: next((e.get("users") for e in entries.values() if isinstance(e, Mapping)), None)
        for bucket, entries in by_bucket.items()
    }
    header = ["served model minus", *(_bucket_header(b, users[b]) for b in buckets)]
    body = [
        [model_name(model), *(paired(by_bucket[b].get(model)) for b in buckets)] for model in models
    ]
    return table(header, body) + "\n\n" + source(f"`metrics/evaluation.json` → `{key}`")


def paired_test_by_activity(metrics: Metrics) -> str:
    """Paired test NDCG@10 differences (served minus each model) per activity bucket."""
    return _paired_by_activity(metrics, "paired_test_by_activity")


def paired_validation_by_activity(metrics: Metrics) -> str:
    """The same on the validation events of the same users."""
    return _paired_by_activity(metrics, "paired_validation_by_activity")


def cold_items(metrics: Metrics) -> str:
    """The cold-item slice: items never in training, ranked among themselves."""
    rows: dict[str, dict[str, Any]] = metrics.get("evaluation.json", "cold_items")
    served = served_in(metrics.get("evaluation.json"))
    columns = ["hr@10", "ndcg@10", "mrr@10"]
    header = ["model", *(metric_header(c) for c in columns), "users"]
    body = [
        [
            bold_if(served_name(model, served), model == served),
            *(num(row.get(c)) for c in columns),
            num(row.get("users")),
        ]
        for model, row in rows.items()
    ]
    note = ""
    items = metrics.optional("preprocess.json", "cold_items")
    if items is not None:
        note = f" and `metrics/preprocess.json` → `cold_items` ({num(items)} items)"
    return table(header, body) + "\n\n" + source(f"`metrics/evaluation.json` → `cold_items`{note}")


def _mean_se(entry: Any, places: int = 3) -> str:
    if not isinstance(entry, Mapping) or not is_number(entry.get("mean")):
        return "—"
    text = f"{entry['mean']:.{places}f}"
    if is_number(entry.get("standard_error")):
        text += f" ± {entry['standard_error']:.{places}f}"
    return text


def beyond_accuracy(metrics: Metrics) -> str:
    """Test NDCG@10 beside diversity, novelty, interest coverage and HR@10 split into events in
    a topic new to the user (novel) and the rest (familiar)."""
    rows: dict[str, dict[str, Any]] = metrics.get("evaluation.json", "beyond_accuracy", "test")
    served = served_in(metrics.get("evaluation.json"))
    test = metrics.optional("evaluation.json", "test") or {}

    def users(kind: str) -> Any:
        for row in rows.values():
            entry = (row.get(kind) or {}).get("hr@10")
            if isinstance(entry, Mapping) and "users" in entry:
                return entry["users"]
        return None

    novel, familiar = users("novel_events"), users("familiar_events")
    header = [
        "model",
        "NDCG@10",
        "intra-list diversity@10",
        "novelty@10",
        "interest coverage@10",
        f"HR@10, novel events ({num(novel)})" if novel is not None else "HR@10, novel events",
        f"HR@10, familiar events ({num(familiar)})"
        if familiar is not None
        else "HR@10, familiar events",
    ]
    body = [
        [
            bold_if(served_name(model, served), model == served),
            num((test.get(model) or {}).get("ndcg@10")),
            num(row.get("ild@10"), 3),
            num(row.get("novelty@10"), 2),
            num(row.get("interest_coverage@10"), 3),
            _mean_se((row.get("novel_events") or {}).get("hr@10")),
            _mean_se((row.get("familiar_events") or {}).get("hr@10")),
        ]
        for model, row in rows.items()
    ]
    return (
        table(header, body)
        + "\n\n"
        + source(
            "`metrics/evaluation.json` → `beyond_accuracy` → `test` "
            "(HR@10 as mean ± standard error over the events)",
            "NDCG@10 from `test`",
        )
    )


BY_CLUSTER_MODELS = (
    "popularity",
    "ease",
    "als",
    "sasrec",
    "finetuned",
    "text_sequence",
    "fused",
    "multi_interest",
)
"""The models shown per interest group: every model would make a table too wide to read;
`metrics/evaluation_by_cluster.json` holds them all."""


def evaluation_by_cluster(metrics: Metrics) -> str:
    """Test NDCG@10 per interest group for the main models."""
    data: dict[str, dict[str, Any]] = metrics.get("evaluation_by_cluster.json")
    models = [m for m in BY_CLUSTER_MODELS if m in data] or list(data)[:8]
    groups: list[str] = []
    for model in models:
        groups += [g for g in data[model] if g not in groups]
    header = ["interest group", "users", *(model_name(m) for m in models)]
    body = []
    for group in groups:
        users = next(
            (data[m][group].get("users") for m in models if group in data[m]),
            None,
        )
        body.append(
            [
                group,
                num(users),
                *(num((data[m].get(group) or {}).get("ndcg@10")) for m in models),
            ]
        )
    return (
        table(header, body)
        + "\n\n"
        + source("`metrics/evaluation_by_cluster.json` (test NDCG@10; every model is in the file)")
    )
