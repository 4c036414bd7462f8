"""The benchmarks' tables: scale (`metrics/bench_scale.json`), start-up
(`metrics/bench_recommend.json`) and SASRec against the reference
(`metrics/bench_sequence.json`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from docs_tables.formatting import (
    PAIR_HEADER,
    events_label,
    is_number,
    num,
    secs,
    share,
    source,
    summary,
    table,
)
from docs_tables.metrics import Metrics, MissingMetricsError

# --------------------------------------------------------------------------------------------
# bench_scale.json
# --------------------------------------------------------------------------------------------
SCALE = "bench_scale.json"
TEXT_RICH = "bench_text_rich.json"
"""The scale benchmark's two reports: the movie-like shape and the description-rich catalogue;
every scale table below reads either (`name`)."""


def bench_scale_stages(metrics: Metrics, name: str = SCALE) -> str:
    """Seconds and peak memory per stage at each size, and the log-log slope against events."""
    data: dict[str, Any] = metrics.get(name)
    sizes = data.get("sizes") or []
    if not sizes:
        raise MissingMetricsError(f"`metrics/{name}` has no `sizes`")
    stages = list(data.get("stages") or [])
    for size in sizes:
        stages += [s for s in size.get("stages", {}) if s not in stages]
    slopes = data.get("slopes") or {}
    header = ["stage"]
    for size in sizes:
        label = events_label(size.get("n_events"))
        header += [f"{label} s", f"{label} MiB"]
    header += ["slope s", "slope MiB"]

    def run_cells(entry: Any) -> list[str]:
        if not isinstance(entry, Mapping):
            return ["—", "—"]
        if entry.get("status", "ok") != "ok":
            return [str(entry.get("status")), "—"]
        return [secs(entry.get("seconds")), num(entry.get("peak_rss_mib"), 0)]

    body = []
    for stage in stages:
        row = [f"`{stage}`"]
        for size in sizes:
            row += run_cells(size.get("stages", {}).get(stage))
        slope = slopes.get(stage) or {}
        row += [num(slope.get("seconds"), 2), num(slope.get("peak_rss_mib"), 2)]
        body.append(row)
    total = ["total"]
    for size in sizes:
        totals = size.get("totals") or {}
        total += [secs(totals.get("seconds")), num(totals.get("peak_rss_mib"), 0)]
    slope = slopes.get("total") or {}
    total += [num(slope.get("seconds"), 2), num(slope.get("peak_rss_mib"), 2)]
    body.append(total)
    return (
        table(header, body)
        + "\n\n"
        + source(
            f"`metrics/{name}` → `sizes` → `stages` and `slopes` "
            "(wall seconds, peak resident MiB; total memory is the largest stage's peak)"
        )
    )


def bench_scale_runs(metrics: Metrics, name: str = SCALE) -> str:
    """The synthetic data at each size and the code it ran."""
    sizes = metrics.get(name, "sizes", expect=list)
    header = ["events", "users", "items", "input MiB", "code", "every stage", "minutes", "peak MiB"]
    body = []
    for size in sizes:
        totals = size.get("totals") or {}
        body.append(
            [
                num(size.get("n_events")),
                num(size.get("n_users")),
                num(size.get("n_items")),
                num(size.get("input_mib"), 1),
                f"`{size['code']}`" if "code" in size else "—",
                num(size.get("all_stages")),
                num(totals.get("minutes"), 1),
                num(totals.get("peak_rss_mib"), 0),
            ]
        )
    return table(header, body, left=0) + "\n\n" + source(f"`metrics/{name}` → `sizes`")


TARGET_NAMES = {
    "max_total_minutes_at_10M": ("every stage at 10M events", "minutes"),
    "max_total_minutes_at_60k": ("every stage at about 60k events", "minutes"),
    "max_peak_gib": ("peak memory of any stage", "GiB"),
    "max_slope": ("steepest log-log slope against events", ""),
    "index_beats_exact": ("served query against exact search (numpy), at every size", ""),
}


def _speedups(per_size: dict[str, Any]) -> str:
    """`×1.8 at 0.1M (recall 0.99), …`: the index target's measured value."""
    return ", ".join(
        f"×{entry['speedup']:.1f} at {events_label(int(events))} (recall {entry['recall@10']:.3f})"
        for events, entry in per_size.items()
    )


def bench_scale_targets(metrics: Metrics, name: str = SCALE) -> str:
    """The benchmark's targets against what it measured."""
    data: dict[str, Any] = metrics.get(name)
    targets = data.get("targets") or {}
    measured = data.get("measured") or {}
    meets = data.get("meets") or {}
    if not targets:
        raise MissingMetricsError(f"`metrics/{name}` has no `targets`")
    body = []
    for key, target in targets.items():
        label, unit = TARGET_NAMES.get(key, (key, ""))
        value = measured.get(key)
        if key == "index_beats_exact":
            met = meets.get(key)
            verdict = "met" if met is True else "missed" if met is False else "—"
            body.append([label, "faster, recall@10 ≥ its target", _speedups(value or {}), verdict])
            continue
        shown = num(value, 2)
        if key == "max_slope" and measured.get("max_slope_of"):
            shown += f" ({measured['max_slope_of']})"
        met = meets.get(key)
        body.append(
            [
                label,
                f"≤ {target:g} {unit}".rstrip(),
                f"{shown} {unit}".rstrip() if value is not None else "—",
                "met" if met is True else "missed" if met is False else "—",
            ]
        )
    return (
        table(["target", "limit", "measured", ""], body)
        + "\n\n"
        + source(f"`metrics/{name}` → `targets`, `measured`, `meets`")
    )


def bench_scale_index(metrics: Metrics, name: str = SCALE) -> str:
    """Per size, how the index serves: the width it searches, its trees and effort, the
    candidates per result the fused vectors rank (where narrower), the recall
    (and for users the search space was not fitted on) and the query time against exact search."""
    sizes: list[dict[str, Any]] = metrics.get(name, "sizes", expect=list)
    body = []
    for run in sizes:
        index = run.get("index")
        if not index:
            continue
        ann, exact = index.get("ann_query_ms_median"), index.get("exact_query_ms_median")
        body.append(
            [
                events_label(run["n_events"]),
                num(run.get("n_items")),
                f"{num(index.get('dimensions'))} of {num(index.get('fused_dimensions'))}",
                "flat" if index.get("trees") == 1 else num(index.get("trees")),
                num(index.get("search_k")),
                "—"
                if index.get("rescore") is None
                or index.get("dimensions") == index.get("fused_dimensions")
                else f"{index['rescore']} × k",
                num(index.get("ann_recall@10"), 3),
                num(index.get("unseen_user_recall@10"), 3),
                "—" if ann is None else f"{ann:.2f} ms",
                "—" if exact is None else f"{exact:.2f} ms",
                "—" if not ann or exact is None else f"×{exact / ann:.1f}",
            ]
        )
    if not body:
        raise MissingMetricsError(f"`metrics/{name}` → `sizes` has no `index` figures")
    header = [
        "events",
        "items",
        "width searched",
        "trees",
        "search_k",
        "candidates ranked fused",
        "recall@10",
        "recall@10, unseen users",
        "served query",
        "exact (numpy)",
        "speed-up",
    ]
    return table(header, body, left=0) + "\n\n" + source(f"`metrics/{name}` → `sizes` → `index`")


def bench_scale_ray(metrics: Metrics, name: str = SCALE) -> str:
    """The ray backend's run (`bench_scale.json` → `ray`): per size and stage, the wall time,
    the driver's peak, the cluster's workers' peak (all of them, and the largest one) and the
    events per second per worker."""
    ray: dict[str, Any] = metrics.get(name, "ray")
    sizes = ray.get("sizes") or []
    if not sizes:
        raise MissingMetricsError(f"`metrics/{name}` → `ray` has no `sizes`")
    body = []
    for size in sizes:
        for stage, entry in size.get("stages", {}).items():
            done = entry.get("status") == "ok"
            body.append(
                [
                    events_label(size.get("n_events")),
                    f"`{stage}`",
                    secs(entry.get("seconds")) if done else str(entry.get("status")),
                    num(entry.get("peak_rss_mib"), 0) if done else "—",
                    num(entry.get("workers_peak_rss_mib"), 0) if done else "—",
                    num(entry.get("worker_peak_rss_mib"), 0) if done else "—",
                    num(entry.get("events_per_second_per_worker"), 0) if done else "—",
                ]
            )
    header = [
        "events",
        "stage",
        "seconds",
        "driver MiB",
        "workers MiB",
        "largest worker MiB",
        "events/s per worker",
    ]
    workers = ray.get("workers")
    return (
        table(header, body, left=2)
        + "\n\n"
        + source(
            f"`metrics/{name}` → `ray` → `sizes` → `stages` ({workers} workers; peaks resident)"
        )
    )


def bench_scale_machine(metrics: Metrics, name: str = SCALE) -> str:
    """The machine the scale benchmark ran on."""
    machine: dict[str, Any] = metrics.get(name, "machine")
    rows = summary(
        machine,
        [
            ("cpu_model", "CPU", str),
            ("cpu_count", "cores", num),
            ("cpus_usable", "cores usable", num),
            ("memory_total_gib", "memory", lambda v: f"{v:.1f} GiB"),
            ("accelerator", "accelerator", str),
            ("auto_precision", "arithmetic (`precision: auto`)", str),
            ("python", "Python", str),
            ("torch", "torch", str),
            ("numpy", "numpy", str),
            ("polars", "polars", str),
            ("platform", "platform", str),
        ],
        rest=False,
    )
    return table(PAIR_HEADER, rows) + "\n\n" + source(f"`metrics/{name}` → `machine`")


# --------------------------------------------------------------------------------------------
# bench_recommend.json
# --------------------------------------------------------------------------------------------
def _ms(value: Any, places: int = 1) -> str:
    return f"{value:.{places}f} ms" if is_number(value) else "—"


def bench_recommend(metrics: Metrics) -> str:
    """`recli recommend`'s start-up against the bare imports it cannot avoid, and a query."""
    data: dict[str, Any] = metrics.get("bench_recommend.json")
    rows = []
    if "baseline_ms_median" in data:
        rows.append(
            [f"`{data.get('baseline_command', 'the baseline')}`", _ms(data["baseline_ms_median"])]
        )
    if "recommend_ms_median" in data:
        text = _ms(data["recommend_ms_median"])
        if is_number(data.get("ratio")):
            text += f" (×{data['ratio']:.2f} the baseline"
            if is_number(data.get("target_ratio")):
                text += f"; target ≤ ×{data['target_ratio']:g}"
            text += ")"
        command = data.get("recommend_command", "recli recommend")
        rows.append([f"`{command}` (whole process)", text])
    if "typer_table_floor_ms_median" in data:
        rows.append(
            [
                "a bare Typer command printing a 10-row rich table, for reference",
                _ms(data["typer_table_floor_ms_median"]),
            ]
        )
    queries = data.get("in_process")
    if isinstance(queries, Mapping):
        if "open_and_query_ms_median" in queries:
            rows.append(
                [
                    "in process: open the catalogue, map the index, query",
                    _ms(queries["open_and_query_ms_median"], 2),
                ]
            )
        if "query_ms_median" in queries:
            text = _ms(queries["query_ms_median"], 2)
            if is_number(queries.get("query_ms_max")):
                text += f" (max {queries['query_ms_max']:.2f})"
            rows.append(["in process: the query alone (Annoy, history filter, reasons)", text])
    integrity = data.get("integrity")
    if isinstance(integrity, Mapping) and "sampled_check_ms_median" in integrity:
        rows.append(
            [
                "tamper check on opening (sizes and sampled digests)",
                _ms(integrity["sampled_check_ms_median"], 3),
            ]
        )
    if "search_ms_median" in data:
        text = _ms(data["search_ms_median"])
        if is_number(data.get("search_target_ms")):
            text += f" (target ≤ {data['search_target_ms']:.0f} ms)"
        command = data.get("search_command", "recli search")
        rows.append([f"`{command}` (whole process, cold)", text])
    if not rows:
        raise MissingMetricsError("`metrics/bench_recommend.json` has no timings")
    runs = data.get("runs")
    users = (queries or {}).get("users") if isinstance(queries, Mapping) else None
    detail = []
    if runs is not None:
        detail.append(f"medians of {num(runs)} runs per command")
    if users is not None:
        detail.append(f"in-process timings over {num(users)} users")
    return (
        table(["what", "median"], rows)
        + "\n\n"
        + source("`metrics/bench_recommend.json`" + (f" ({'; '.join(detail)})" if detail else ""))
    )


def _mib(value: Any) -> str:
    return f"{value / 2**20:.2f} MiB" if is_number(value) else "—"


def bench_recommend_integrity(metrics: Metrics) -> str:
    """What checking the served files costs: every command, and `recli doctor`."""
    data: dict[str, Any] = metrics.get("bench_recommend.json", "integrity")
    rows = summary(
        data,
        [
            (
                "sampled_check_ms_median",
                "every command: sizes and sampled digests, median",
                lambda v: _ms(v, 3),
            ),
            (
                "sampled_check_share_of_recommend",
                "its share of `recli recommend`",
                lambda v: share(v, 2),
            ),
            ("sampled_check_bytes_read", "bytes it reads", lambda v: f"{num(v)} ({_mib(v)})"),
            (
                "served_bytes",
                "bytes served (catalogue and index)",
                lambda v: f"{num(v)} ({_mib(v)})",
            ),
            (
                "full_check_ms_every_served_file",
                "`recli doctor`: sha256 of every served file",
                lambda v: _ms(v, 1),
            ),
        ],
    )
    return (
        table(PAIR_HEADER, rows) + "\n\n" + source("`metrics/bench_recommend.json` → `integrity`")
    )


def bench_recommend_environment(metrics: Metrics) -> str:
    """Where the start-up benchmark ran: timings mean little without it."""
    data: dict[str, Any] = metrics.get("bench_recommend.json")
    environment = data.get("environment")
    if not isinstance(environment, Mapping):
        raise MissingMetricsError("`metrics/bench_recommend.json` has no `environment`")
    rows = summary(
        environment,
        [
            ("cpu", "CPU", str),
            ("cpus", "cores", num),
            ("python", "Python", str),
            ("bytecode_precompiled", "recli's bytecode compiled first", num),
            ("typer", "typer", str),
            ("rich", "rich", str),
            ("annoy", "annoy", str),
            ("platform", "platform", str),
        ],
    )
    catalogue = data.get("catalogue")
    if isinstance(catalogue, Mapping):
        rows.append(
            [
                "catalogue",
                f"{num(catalogue.get('users'))} users, {num(catalogue.get('items'))} items",
            ]
        )
    return (
        table(PAIR_HEADER, rows)
        + "\n\n"
        + source("`metrics/bench_recommend.json` → `environment`, `catalogue`")
    )


# --------------------------------------------------------------------------------------------
# bench_sequence.json
# --------------------------------------------------------------------------------------------
SEQUENCE_VARIANTS = {"sasrec": "SASRec", "sasrec_text": "recli sequence model"}
SEQUENCE_PROTOCOLS = {
    "reference": "reference (no cold items)",
    "default": "the pipeline's split",
}


def bench_sequence(metrics: Metrics) -> str:
    """SASRec and recli's sequence model per model seed, against RecBole's published SASRec."""
    data: dict[str, Any] = metrics.get("bench_sequence.json")
    protocols = data.get("protocols")
    if not isinstance(protocols, Mapping):
        raise MissingMetricsError("`metrics/bench_sequence.json` has no `protocols`")
    header = [
        "split",
        "model",
        "seed",
        "validation NDCG@10",
        "test NDCG@10, history up to the test event",
        "test NDCG@10, training history only",
        "best epoch / epochs run",
    ]
    body = []
    reference = data.get("reference")
    if isinstance(reference, Mapping):
        body.append(
            [
                SEQUENCE_PROTOCOLS["reference"],
                "RecBole 1.2.1 SASRec (published)",
                "—",
                num(reference.get("validation_ndcg@10"), 3),
                num(reference.get("test_ndcg@10_train_validation_history"), 3),
                num(reference.get("test_ndcg@10_train_history"), 3),
                "—",
            ]
        )
    for protocol, entry in protocols.items():
        for variant, label in SEQUENCE_VARIANTS.items():
            runs = (entry.get(variant) or {}).get("runs") or {}
            for seed, run in runs.items():
                body.append(
                    [
                        SEQUENCE_PROTOCOLS.get(protocol, protocol),
                        label,
                        str(seed),
                        num((run.get("validation") or {}).get("ndcg@10"), 3),
                        num((run.get("test_train_validation_history") or {}).get("ndcg@10"), 3),
                        num((run.get("test_train_history") or {}).get("ndcg@10"), 3),
                        f"{num(run.get('best_epoch'))} / {num(run.get('epochs_run'))}",
                    ]
                )
    if not body:
        raise MissingMetricsError("`metrics/bench_sequence.json` has no runs")
    return (
        table(header, body, left=3)
        + "\n\n"
        + source("`metrics/bench_sequence.json` → `reference` and `protocols` → … → `runs`")
    )


# --------------------------------------------------------------------------------------------
# bench_live.json
# --------------------------------------------------------------------------------------------
def bench_live(metrics: Metrics) -> str:
    """Live updates against their targets: one event, a batch, a new user's first list."""
    data: dict[str, Any] = metrics.get("bench_live.json")
    targets, met = data.get("targets") or {}, data.get("met") or {}
    single, batch = data.get("single_event_ms") or {}, data.get("batch") or {}
    first = data.get("new_user_first_list_ms") or {}

    def verdict(key: str) -> str:
        return "—" if key not in met else ("met" if met[key] else "**missed**")

    rows = [
        [
            "one event for a known user (ms)",
            f"{num(single.get('median'), 1)} (p90 {num(single.get('p90'), 1)})",
            f"≤ {num(targets.get('single_event_ms'), 0)}",
            verdict("single_event_ms"),
        ],
        [
            f"a batch of {num(batch.get('events'), 0)} events for {num(batch.get('users'), 0)} "
            "users (events/s)",
            num(batch.get("events_per_s"), 0),
            f"≥ {num(targets.get('batch_events_per_s'), 0)}",
            verdict("batch_events_per_s"),
        ],
        [
            "a new user's first list, from their first events (ms)",
            f"{num(first.get('median'), 1)} (p90 {num(first.get('p90'), 1)})",
            f"≤ {num(targets.get('new_user_first_list_ms'), 0)}",
            verdict("new_user_first_list_ms"),
        ],
        ["loading the models, once per process (s)", secs(data.get("model_load_seconds")), "", ""],
    ]
    cpu = (data.get("machine") or {}).get("cpu_model") or "unknown CPU"
    return (
        table(["measure", "measured (median)", "target", ""], rows)
        + "\n\n"
        + source(f"`metrics/bench_live.json`, {cpu}")
    )
