"""The checks run outside `dvc repro`: the peers over several split seeds
(`metrics/peer_check.json`) and the bring-your-own path on ml-latest-small
(`metrics/byo_check.json`, `metrics/byo_sparse_check.json`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from docs_tables.formatting import (
    PAIR_HEADER,
    bold_if,
    is_number,
    model_name,
    num,
    paired,
    secs,
    served_name,
    signed,
    source,
    summary,
    table,
)
from docs_tables.metrics import Metrics, MissingMetricsError
from recli.metrics_source import SINGLE_VECTOR, served_in

# --------------------------------------------------------------------------------------------
# peer_check.json
# --------------------------------------------------------------------------------------------
PROTOCOL_NAMES = {
    "leave_last_out": "leave-last-out",
    "random_holdout": "random holdout 70/10/20",
    "leave_last_out_full": "leave-last-out, every stage",
}


def _mean_sd(entry: Any, places: int = 3) -> str:
    if not isinstance(entry, Mapping) or not is_number(entry.get("mean")):
        return "—"
    text = f"{entry['mean']:.{places}f}"
    return text + (f" ± {entry['sd']:.{places}f}" if is_number(entry.get("sd")) else "")


def peer_check_summary(metrics: Metrics) -> str:
    """The peers under the reference protocols over several split seeds: mean ± sd."""
    data: dict[str, Any] = metrics.get("peer_check.json")
    protocols = [
        p
        for p, v in data.items()
        if isinstance(v, Mapping)
        and isinstance(v.get("summary"), Mapping)
        and p != "leave_last_out_full"
    ]
    if not protocols:
        raise MissingMetricsError("`metrics/peer_check.json` has no protocol summaries")
    models: list[str] = []
    for p in protocols:
        models += [m for m in data[p]["summary"] if m not in models]
    header = ["protocol", "seeds", *(model_name(m) for m in models)]
    body = [
        [
            PROTOCOL_NAMES.get(p, p),
            ", ".join(str(r.get("seed")) for r in data[p].get("runs", [])) or "—",
            *(_mean_sd(data[p]["summary"].get(m)) for m in models),
        ]
        for p in protocols
    ]
    fraction = data.get("cold_item_fraction")
    note = f", cold-item fraction {fraction:g}" if is_number(fraction) else ""
    metric = data.get("metric", "test NDCG@10")
    return (
        table(header, body, left=2)
        + "\n\n"
        + source(f"`metrics/peer_check.json` ({metric}, mean ± sd over the seeds{note})")
    )


FULL_CHECK_MODELS = (
    "popularity",
    "itemknn",
    "ease",
    "als",
    "sasrec",
    "finetuned",
    "text_sequence",
    "fused",
)


def peer_check_full(metrics: Metrics) -> str:
    """Every stage per split seed: each model's test NDCG@10 and the served model against the
    best peer."""
    data: dict[str, Any] = metrics.get("peer_check.json", "leave_last_out_full")
    runs = data.get("runs") or []
    if not runs:
        raise MissingMetricsError("`metrics/peer_check.json` → `leave_last_out_full` has no runs")
    present = {m for run in runs for m in run.get("test", {})}
    models = [m for m in FULL_CHECK_MODELS if m in present]
    header = [
        "seed",
        *(model_name(m) for m in models),
        "served ÷ best peer",
        "paired served − best peer",
    ]
    body = []
    for run in runs:
        test = run.get("test", {})
        ratio = run.get("served_over_best_peer")
        body.append(
            [
                str(run.get("seed")),
                *(bold_if(num(test.get(m)), m == served_in(run)) for m in models),
                f"×{ratio:.3f}" if is_number(ratio) else "—",
                paired(run.get("paired_vs_best_peer")),
            ]
        )
    overall = data.get("summary")
    if isinstance(overall, Mapping):
        means = overall.get("models") or {}
        ratio = overall.get("served_over_best_peer")
        difference = overall.get("mean_difference")
        spread = overall.get("difference_sd_across_seeds")
        body.append(
            [
                "mean",
                *(
                    bold_if(num((means.get(m) or {}).get("mean")), m == SINGLE_VECTOR)
                    for m in models
                ),
                f"×{ratio:.3f}" if is_number(ratio) else "—",
                signed(difference)
                + (f" (sd {spread:.4f} across seeds)" if is_number(spread) else ""),
            ]
        )
    return (
        table(header, body)
        + "\n\n"
        + source("`metrics/peer_check.json` → `leave_last_out_full` (test NDCG@10)")
    )


def peer_check_full_summary(metrics: Metrics) -> str:
    """The across-seed verdicts: best peer, seeds ahead, the lightest users."""
    overall: dict[str, Any] = metrics.get("peer_check.json", "leave_last_out_full", "summary")
    runs = metrics.optional("peer_check.json", "leave_last_out_full", "runs") or []
    rows = []
    if "best_peer" in overall:
        rows.append(["best peer", model_name(overall["best_peer"])])
    if "seeds_served_ahead" in overall:
        rows.append(
            [
                "seeds where the served model is ahead",
                f"{overall['seeds_served_ahead']} of {len(runs)}",
            ]
        )
    if is_number(overall.get("served_over_best_peer")):
        rows.append(["served ÷ best peer, on the mean", f"×{overall['served_over_best_peer']:.3f}"])
    light = overall.get("lightest_users")
    if isinstance(light, Mapping):
        bucket = str(light.get("bucket", "")).replace("<=", "≤")
        rows.append(
            [
                f"lightest users ({bucket} training events): served − that bucket's best peer, "
                "mean over seeds",
                signed(light.get("mean_difference_vs_bucket_best_peer"))
                + (
                    f" (sd {light['difference_sd_across_seeds']:.4f})"
                    if is_number(light.get("difference_sd_across_seeds"))
                    else ""
                ),
            ]
        )
        if "seeds_served_ahead_or_level" in light:
            rows.append(
                [
                    "lightest users: seeds where the served model is ahead",
                    f"{light['seeds_served_ahead_or_level']} of {num(light.get('seeds'))}",
                ]
            )
    return (
        table(PAIR_HEADER, rows)
        + "\n\n"
        + source("`metrics/peer_check.json` → `leave_last_out_full` → `summary`")
    )


def peer_check_lightest(metrics: Metrics) -> str:
    """The lightest users per split seed: the served model against that bucket's best peer."""
    runs = metrics.get("peer_check.json", "leave_last_out_full", "runs", expect=list)
    body = []
    for run in runs:
        light = run.get("lightest_users")
        if not isinstance(light, Mapping):
            continue
        body.append(
            [
                str(run.get("seed")),
                str(light.get("bucket", "")).replace("<=", "≤"),
                num(light.get("users")),
                num(light.get("served")),
                model_name(str(light.get("best_peer"))),
                num(light.get("best_peer_score")),
                paired(light.get("paired_vs_best_peer")),
            ]
        )
    if not body:
        raise MissingMetricsError("`metrics/peer_check.json` runs have no `lightest_users`")
    header = [
        "seed",
        "training events",
        "users",
        "served",
        "best peer there",
        "its NDCG@10",
        "paired served − best peer",
    ]
    return (
        table(header, body, left=2)
        + "\n\n"
        + source("`metrics/peer_check.json` → `leave_last_out_full` → `runs` → `lightest_users`")
    )


# --------------------------------------------------------------------------------------------
# byo_check.json, byo_sparse_check.json
# --------------------------------------------------------------------------------------------
def _byo_models(metrics: Metrics, name: str) -> str:
    data: dict[str, Any] = metrics.get(name)
    test = data.get("test_ndcg@10") or {}
    validation = data.get("validation_ndcg@10") or {}
    cold = data.get("cold_items_hr@10") or {}
    if not test and not validation:
        raise MissingMetricsError(f"`metrics/{name}` has no `test_ndcg@10`")
    models = list(test) + [m for m in validation if m not in test]
    served = served_in(data)
    body = [
        [
            bold_if(served_name(m, served), m == served),
            bold_if(num(test.get(m)), m == served),
            num(validation.get(m)),
            num(cold.get(m), 3) if m in cold else "—",
        ]
        for m in models
    ]
    if "random" in cold:
        body.append([model_name("random"), "—", "—", num(cold["random"], 3)])
    header = ["model", "test NDCG@10", "validation NDCG@10", "cold-item HR@10"]
    return (
        table(header, body)
        + "\n\n"
        + source(f"`metrics/{name}` → `test_ndcg@10`, `validation_ndcg@10`, `cold_items_hr@10`")
    )


def _byo_summary(metrics: Metrics, name: str) -> str:
    data: dict[str, Any] = metrics.get(name)
    rows: list[list[str]] = []
    if "data" in data:
        rows.append(["data", str(data["data"])])
    pre = data.get("preprocess")
    if isinstance(pre, Mapping):
        for key, label in (
            ("users", "users"),
            ("items", "items"),
            ("train_interactions", "training events"),
            ("cold_items", "cold items"),
        ):
            if key in pre:
                rows.append([label, num(pre[key])])
        dropped = {k: v for k, v in pre.items() if k.startswith("dropped_") and v}
        for key, value in dropped.items():
            rows.append([f"dropped: {key.removeprefix('dropped_').replace('_', ' ')}", num(value)])
    if "best_peer" in data:
        rows.append(["best peer", model_name(data["best_peer"])])
    if is_number(data.get("served_over_best_peer")):
        rows.append(["served ÷ best peer", f"×{data['served_over_best_peer']:.3f}"])
    if isinstance(data.get("paired_vs_best_peer"), Mapping):
        entry = data["paired_vs_best_peer"]
        rows.append(
            [
                f"paired served − best peer ({num(entry.get('users'))} users)",
                paired(entry),
            ]
        )
    fusion = data.get("fusion")
    if isinstance(fusion, Mapping):
        rows += summary(
            fusion,
            [
                ("text_weight", "text weight chosen", lambda v: f"{v:g}"),
                ("sequence_model", "sequence model chosen", model_name),
                ("sequence_share", "its share of the behaviour side", lambda v: f"{v:g}"),
                ("linear_share", "reduced-rank EASE's share", lambda v: f"{v:g}"),
            ],
            rest=False,
        )
    if is_number(data.get("ann_recall@10")):
        rows.append(["ANN recall@10", num(data["ann_recall@10"], 3)])
    if "search_k" in data:
        rows.append(["search_k", num(data["search_k"])])
    return table(PAIR_HEADER, rows) + "\n\n" + source(f"`metrics/{name}`")


def byo_check(metrics: Metrics) -> str:
    """Every model on ml-latest-small read through the bring-your-own path."""
    return _byo_models(metrics, "byo_check.json")


def byo_check_summary(metrics: Metrics) -> str:
    """What the ml-latest-small check read, chose and found."""
    return _byo_summary(metrics, "byo_check.json")


def byo_sparse_check(metrics: Metrics) -> str:
    """Every model on the sparse data made from ml-latest-small."""
    return _byo_models(metrics, "byo_sparse_check.json")


def byo_sparse_check_summary(metrics: Metrics) -> str:
    """What the sparse check read, chose and found."""
    return _byo_summary(metrics, "byo_sparse_check.json")


TEXT_ONLY = "byo_text_only_check.json"


def byo_text_only_check(metrics: Metrics) -> str:
    """Every model on the sparse, text-only data made from ml-latest-small."""
    return _byo_models(metrics, TEXT_ONLY)


def byo_text_only_check_summary(metrics: Metrics) -> str:
    """What the sparse text-only check read, chose and found."""
    return _byo_summary(metrics, TEXT_ONLY)


LABEL_MEASURES = (
    (("label_agreement",), "label agreement"),
    (("label_agreement_random",), "its floor: random members"),
    (("label_agreement_shuffled_interests",), "its floor: items dealt across a user's interests"),
    (("label_agreement_shuffled_items",), "its floor: items dealt across topics"),
    (("labels_distinct_share", "distinct_labels_share"), "distinct labels (share)"),
    (("label_terms_whole_words",), "label terms that are whole words (share)"),
    (("label_coverage",), "items carrying one of their group's label terms (share)"),
    (("labels_with_a_title",), "labels told apart by a title"),
    (("labels_from_a_title",), "labels that are a title (share)"),
    (("labels_from_the_topic",), "labels taken from the medoid's topic (share)"),
)
"""Rows of the label table: the keys a grouping's metrics may spell the measure with, and the
row's name (the topics spell distinct labels their own way)."""


def byo_text_only_labels(metrics: Metrics) -> str:
    """The labels of every grouping on the text-only check, and the global groups' labels."""
    labels: dict[str, Any] = metrics.get(TEXT_ONLY, "labels")
    groupings = [name for name in ("groups", "topics", "interests") if name in labels]
    body = []
    for keys, label in LABEL_MEASURES:
        cells = [
            next((labels[name][k] for k in keys if k in labels[name]), None) for name in groupings
        ]
        if any(is_number(cell) for cell in cells):
            body.append([label, *(num(cell, 3) if is_number(cell) else "—" for cell in cells)])
    names = labels.get("group_labels") or []
    text = table(["measure", *groupings], body)
    if names:
        text += "\n\nThe interest groups' labels: " + "; ".join(f"*{name}*" for name in names) + "."
    return text + "\n\n" + source(f"`metrics/{TEXT_ONLY}` → `labels`")


BYO_CHECKS = ("byo_check.json", "byo_sparse_check.json", TEXT_ONLY)
"""The bring-your-own checks' files, in the order their columns are shown."""


def _byo_files() -> str:
    """The checks' files as a sentence names them."""
    named = [f"`metrics/{name}`" for name in BYO_CHECKS]
    return ", ".join(named[:-1]) + " and " + named[-1]


def byo_seconds(metrics: Metrics) -> str:
    """Seconds per stage of both bring-your-own checks (only the stages each run timed)."""
    columns = []
    for name in BYO_CHECKS:
        seconds = metrics.optional(name, "seconds")
        if isinstance(seconds, Mapping):
            label = metrics.optional(name, "data") or name
            columns.append((str(label), seconds))
    if not columns:
        raise MissingMetricsError(f"none of {_byo_files()} is there")
    stages: list[str] = []
    for _, seconds in columns:
        stages += [s for s in seconds if s not in stages]
    body = [
        [f"`{stage}`", *(secs(seconds.get(stage)) for _, seconds in columns)] for stage in stages
    ]
    body.append(
        [
            "all stages timed",
            *(secs(sum(v for v in seconds.values() if is_number(v))) for _, seconds in columns),
        ]
    )
    return (
        table(["stage", *(f"{label} (s)" for label, _ in columns)], body)
        + "\n\n"
        + source(f"{_byo_files()} → `seconds` (a dash: not run)")
    )
