"""The pipeline stages' own summaries: `metrics/preprocess.json`, `metrics/finetune.json` and
`metrics/sequence.json`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from docs_tables.formatting import (
    PAIR_HEADER,
    metric_header,
    model_name,
    num,
    secs,
    source,
    summary,
    table,
)
from docs_tables.metrics import Metrics


def preprocess_summary(metrics: Metrics) -> str:
    """What preprocess read, dropped and kept, and the split sizes."""
    data: dict[str, Any] = metrics.get("preprocess.json")
    labels: list[tuple[str, str, Callable[[Any], str]]] = [
        ("source", "source", str),
        ("strategy", "split", lambda v: f"`{v}`"),
        ("raw_interactions", "events read", num),
        ("users", "users kept", num),
        ("items", "items kept", num),
        ("train_interactions", "training events", num),
        ("validation_interactions", "validation events", num),
        ("test_interactions", "test events", num),
        ("cold_items", "cold items (never in training)", num),
        ("cold_interactions", "events on cold items", num),
    ]
    dropped = [key for key in data if key.startswith("dropped_")]
    rows = summary(data, labels, rest=False)
    rows += [
        [f"dropped: {key.removeprefix('dropped_').replace('_', ' ')}", num(data[key])]
        for key in dropped
    ]
    return table(PAIR_HEADER, rows) + "\n\n" + source("`metrics/preprocess.json`")


def finetune_summary(metrics: Metrics) -> str:
    """The fine-tuning run: pairs, steps, speed and the in-training validation metric."""
    data: dict[str, Any] = metrics.get("finetune.json")
    rows = summary(
        data,
        [
            ("training_pairs", "training pairs (history → next item)", num),
            ("steps", "steps", num),
            ("device", "device", str),
            ("train_seconds", "training time", lambda v: f"{v:.0f} s"),
            ("steps_per_second", "steps per second", lambda v: f"{v:.2f}"),
            ("eval_users", "users in the in-training validation metric", num),
        ],
        rest=False,
    )
    validation = data.get("validation")
    if isinstance(validation, Mapping):
        before, after = validation.get("baseline") or {}, validation.get("final") or {}
        for metric in ("ndcg@10", "hr@10"):
            if metric in before or metric in after:
                rows.append(
                    [
                        f"validation {metric_header(metric)}, before → after",
                        f"{num(before.get(metric), 3)} → {num(after.get(metric), 3)}",
                    ]
                )
    return table(PAIR_HEADER, rows) + "\n\n" + source("`metrics/finetune.json`")


def sequence_training(metrics: Metrics) -> str:
    """How the two sequence models trained: epochs, early stopping, steps, time."""
    data: dict[str, dict[str, Any]] = metrics.get("sequence.json")
    names = {"sasrec": "SASRec", "text": "recli sequence model"}
    header = [
        "model",
        "epochs run",
        "best epoch",
        "steps",
        "sampled negatives",
        "validation NDCG@10",
        "seconds",
    ]
    body = [
        [
            names.get(model, model_name(model)),
            num(row.get("epochs")),
            num(row.get("best_epoch")),
            num(row.get("steps")),
            "none (full softmax)" if row.get("negatives") == 0 else num(row.get("negatives")),
            num(row.get("validation_ndcg@10")),
            secs(row.get("seconds")),
        ]
        for model, row in data.items()
        if isinstance(row, Mapping)
    ]
    return table(header, body) + "\n\n" + source("`metrics/sequence.json`")
