"""The settings chosen on validation: the peers' (`metrics/evaluation.json` → `tuning`) and
the fuse stage's fusion, multi-interest and exploration settings and the index stage's search.
Every read of `metrics/fuse.json` and `metrics/index.json` is in this module."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from docs_tables.formatting import (
    PAIR_HEADER,
    bold_if,
    cell,
    is_number,
    model_name,
    num,
    source,
    summary,
    table,
)
from docs_tables.metrics import Metrics, MissingMetricsError


# --------------------------------------------------------------------------------------------
# evaluation.json → tuning
# --------------------------------------------------------------------------------------------
def evaluation_tuning(metrics: Metrics) -> str:
    """The peers' settings chosen on validation: EASE's λ and ItemKNN's neighbourhood size."""
    tuning: dict[str, Any] = metrics.get("evaluation.json", "tuning")
    parts = []
    grids = (
        ("ease_reg", "ease_validation_ndcg@10", "EASE λ"),
        ("itemknn_neighbors", "itemknn_validation_ndcg@10", "ItemKNN neighbours"),
    )
    for chosen_key, grid_key, label in grids:
        grid = tuning.get(grid_key)
        if not isinstance(grid, Mapping):
            continue
        chosen = tuning.get(chosen_key)
        body = [
            [
                bold_if(f"{float(value):g}", is_number(chosen) and float(value) == chosen),
                bold_if(num(score), is_number(chosen) and float(value) == chosen),
            ]
            for value, score in grid.items()
        ]
        parts.append(table([label, "validation NDCG@10"], body, left=0))
    skipped = tuning.get("skipped")
    if skipped:
        parts.append(f"Skipped: {cell(json.dumps(skipped))}")
    if not parts:
        raise MissingMetricsError("`metrics/evaluation.json` → `tuning` has no grids")
    return (
        "\n\n".join(parts)
        + "\n\n"
        + source("`metrics/evaluation.json` → `tuning` (the chosen setting in bold)")
    )


# --------------------------------------------------------------------------------------------
# fuse.json and index.json
# --------------------------------------------------------------------------------------------
def index_summary(metrics: Metrics) -> str:
    """What the fuse stage chose on validation and how the index stage's search performs."""
    data: dict[str, Any] = {**metrics.get("fuse.json"), **metrics.get("index.json")}
    rows = summary(
        data,
        [
            ("text_weight", "text weight (share of the fused vector)", lambda v: f"{v:g}"),
            ("sequence_model", "sequence model on the behaviour side", model_name),
            (
                "sequence_share",
                "its share of the behaviour side (the rest: ALS)",
                lambda v: f"{v:g}",
            ),
            (
                "linear_share",
                "reduced-rank EASE's share of the behaviour side",
                lambda v: f"{v:g}",
            ),
            ("fused_dimensions", "fused vector width", num),
            ("dimensions", "width the index searches", num),
            ("trees", "trees (1: a flat index searched whole)", num),
            ("search_k", "Annoy search effort (`search_k`)", num),
            (
                "rescore",
                "candidates per result, ranked on the fused vectors (narrower search only)",
                num,
            ),
            ("recall_target", "recall@10 target", lambda v: f"{v:g}"),
            (
                "ann_recall@10",
                "recall@10 served, against exact search (reporting half)",
                lambda v: num(v, 3),
            ),
            (
                "unseen_user_recall@10",
                "recall@10 for users the search space was not fitted on",
                lambda v: num(v, 3),
            ),
            ("search_k_ladder_exhausted", "every plan tried fell short", num),
            ("users_measured", "users measured", num),
            ("ann_query_ms_median", "Annoy query, median", lambda v: f"{v:.2f} ms"),
            ("exact_query_ms_median", "exact search (numpy), median", lambda v: f"{v:.2f} ms"),
        ],
        rest=False,
    )
    return table(PAIR_HEADER, rows) + "\n\n" + source("`metrics/fuse.json`, `metrics/index.json`")


def index_recall_ladder(metrics: Metrics) -> str:
    """Every way to serve measured on the tuning half of the users: the search space's width,
    the trees, the effort, its recall@10 and query time (the served plan in bold)."""
    plans: list[dict[str, Any]] = metrics.get("index.json", "tuning_plans", expect=list)
    keys = ("dimensions", "trees", "search_k", "rescore")
    chosen = tuple(metrics.optional("index.json", key) for key in keys)
    times = metrics.optional("index.json", "tuning_query_ms_median") or [None] * len(plans)
    fused = metrics.optional("index.json", "fused_dimensions")
    body = []
    for plan, query_ms in zip(plans, times, strict=True):
        served = tuple(plan.get(key) for key in keys) == chosen
        recall = f"{num(plan['recall'], 3)} ± {plan['standard_error']:.3f}"
        cells = [
            num(plan["dimensions"]),
            "flat (searched whole)" if plan["trees"] == 1 else num(plan["trees"]),
            num(plan["search_k"]),
            "—" if plan["dimensions"] == fused else f"{plan['rescore']} × k",
            recall,
            "—" if query_ms is None else f"{query_ms:.2f} ms",
        ]
        body.append([bold_if(cell, served) for cell in cells])
    header = [
        "width searched",
        "trees",
        "search_k",
        "candidates ranked fused",
        "recall@10 (tuning half)",
        "query, median",
    ]
    return (
        table(header, body, left=0)
        + "\n\n"
        + source(
            "`metrics/index.json` → `tuning_plans` and `tuning_query_ms_median` "
            "(the served plan in bold)"
        )
    )


def _fusion_grid(data: Mapping[str, Any]) -> tuple[str, dict[str, float]]:
    for key, value in data.items():
        if key.startswith("validation_ndcg@10_by_text_weight") and isinstance(value, Mapping):
            return key, value
    raise MissingMetricsError(
        "`metrics/fuse.json` has no `validation_ndcg@10_by_text_weight…` grid"
    )


def fusion_grid(metrics: Metrics) -> str:
    """For each behaviour side tried, the text weight validation liked best and its score."""
    data: dict[str, Any] = metrics.get("fuse.json")
    key, grid = _fusion_grid(data)
    best: dict[tuple[str, ...], tuple[float, float]] = {}
    for setting, score in grid.items():
        weight, *side = setting.split("/")
        side_key = tuple(side)
        if side_key not in best or score > best[side_key][1]:
            best[side_key] = (float(weight), score)

    def number(text: str) -> float | None:
        try:
            return float(text)
        except ValueError:
            return None

    served = (
        data.get("text_weight"),
        data.get("sequence_model"),
        data.get("sequence_share"),
        data.get("linear_share"),
    )
    body = []
    for side, (weight, score) in best.items():
        model = side[0] if side else ""
        share_value = number(side[1]) if len(side) > 1 else None
        linear_value = number(side[2]) if len(side) > 2 else None
        is_served = (weight, model, share_value, linear_value) == served
        sequence = "— (ALS alone)" if not share_value else model_name(model)
        body.append(
            [
                bold_if(sequence, is_served),
                bold_if(f"{share_value:g}" if share_value is not None else "—", is_served),
                bold_if(f"{linear_value:g}" if linear_value is not None else "—", is_served),
                bold_if(f"{weight:g}", is_served),
                bold_if(num(score), is_served),
            ]
        )
    header = [
        "sequence model",
        "its share of the behaviour side",
        "reduced-rank EASE's share",
        "best text weight",
        "validation NDCG@10",
    ]
    return (
        table(header, body)
        + "\n\n"
        + source(
            f"`metrics/fuse.json` → `{key}`, best text weight per behaviour side "
            "(the served setting in bold; a dash: not part of that search)"
        )
    )


def multi_interest_tuning(metrics: Metrics) -> str:
    """The multi-interest model's settings tried on validation."""
    data: dict[str, Any] = metrics.get("fuse.json", "multi_interest")
    grid = next(
        (v for k, v in data.items() if k.startswith("validation_by") and isinstance(v, Mapping)),
        None,
    )
    if grid is None:
        raise MissingMetricsError("`metrics/fuse.json` → `multi_interest` has no validation grid")
    served = (data.get("whole_user_share"), data.get("pull"))
    body = []
    for setting, row in grid.items():
        share_text, _, pull_text = setting.partition("/")
        is_served = (float(share_text), float(pull_text or "nan")) == served
        body.append(
            [
                bold_if(f"{float(share_text):g}", is_served),
                bold_if(f"{float(pull_text):g}" if pull_text else "—", is_served),
                bold_if(num(row.get("ndcg@10")), is_served),
                bold_if(num(row.get("interest_coverage@10"), 3), is_served),
            ]
        )
    single = data.get("single_vector_validation_ndcg@10")
    if is_number(single):
        body.append(["single vector (fused)", "—", num(single), "—"])
    header = ["whole-user share", "pull", "validation NDCG@10", "interest coverage@10"]
    return (
        table(header, body, left=0)
        + "\n\n"
        + source("`metrics/fuse.json` → `multi_interest` (the served setting in bold)")
    )


def explore_tuning(metrics: Metrics) -> str:
    """Exploration's two weights, tuned on the novel validation events."""
    data: dict[str, Any] = metrics.get("fuse.json", "explore")
    parts = []
    grids = (
        (
            "novel_validation_topic_mrr_by_similarity_weight",
            "similarity_weight",
            "similarity weight",
            "topic MRR",
        ),
        (
            "novel_validation_ndcg@10_by_topic_weight",
            "topic_weight",
            "topic weight",
            "NDCG@10",
        ),
    )
    for grid_key, chosen_key, label, metric in grids:
        grid = data.get(grid_key)
        if not isinstance(grid, Mapping):
            continue
        chosen = data.get(chosen_key)
        body = []
        for value, score in grid.items():
            is_chosen = is_number(chosen) and float(value) == chosen
            body.append([bold_if(f"{float(value):g}", is_chosen), bold_if(num(score), is_chosen)])
        parts.append(table([label, f"{metric}, novel validation events"], body, left=0))
    if not parts:
        raise MissingMetricsError("`metrics/fuse.json` → `explore` has no grids")
    events = data.get("novel_validation_events")
    counted = f", over {num(events)} novel validation events" if events is not None else ""
    return (
        "\n\n".join(parts)
        + "\n\n"
        + source(f"`metrics/fuse.json` → `explore` (the chosen weight in bold{counted})")
    )
