"""The scale benchmark's arithmetic: log-log slopes against events, each size's totals, and
the targets with whether each is met (the time target depends on the data's shape)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

TARGETS: dict[str, float] = {"max_total_minutes_at_10M": 45, "max_peak_gib": 12, "max_slope": 1.2}
"""The scaling targets (of the movie-like shape): all stages within 45 minutes at 10M events, no
stage above 12 GiB, and no stage's wall time or peak memory growing faster than events^1.2."""
TARGET_SIZE = 10_000_000
DRIVER_GIB = 2
"""On the ray backend, what a stage's own process (the driver) may hold at 10M events."""


@dataclass(frozen=True)
class TimeTarget:
    """The total-time target of a data shape: at most `minutes` for all stages at `n_events`
    (`nearest`: judged at the measured size closest to it, else only at exactly that size)."""

    key: str
    minutes: float
    n_events: int
    nearest: bool = False


TIME_TARGETS: dict[str, TimeTarget] = {
    "movies": TimeTarget(
        "max_total_minutes_at_10M", TARGETS["max_total_minutes_at_10M"], TARGET_SIZE
    ),
    "products": TimeTarget("max_total_minutes_at_60k", 15, 60_000, nearest=True),
}
"""Per shape, the total-time target; the other targets are `TARGETS`' for every shape. The
movie-like data at exactly 10M events; the product catalogue, at the size closest to 60k events
(a shop's catalogue, not 10M events)."""


def loglog_slope(sizes: Sequence[float], values: Sequence[float]) -> float | None:
    """The least-squares slope of log(value) against log(size): the exponent b of value ∝ size^b.

    None when fewer than two distinct sizes have a positive value."""
    pairs = [
        (s, v) for s, v in zip(sizes, values, strict=True) if s > 0 and v is not None and v > 0
    ]
    if len({s for s, _ in pairs}) < 2:
        return None
    x = np.log([s for s, _ in pairs])
    y = np.log([v for _, v in pairs])
    x_centred = x - x.mean()
    return float((x_centred * (y - y.mean())).sum() / (x_centred**2).sum())


def slopes(runs: Sequence[dict[str, Any]], stages: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per stage (and `total`): the log-log slopes of seconds and of peak RSS against events,
    over the sizes where the stage (for `total`, every stage) completed."""
    result: dict[str, dict[str, Any]] = {}
    for stage in [*stages, "total"]:
        if stage == "total":
            done = [run for run in runs if run["totals"]["complete"]]
            points = [
                (r["n_events"], r["totals"]["seconds"], r["totals"]["peak_rss_mib"]) for r in done
            ]
        else:
            points = [
                (
                    run["n_events"],
                    run["stages"][stage]["seconds"],
                    run["stages"][stage]["peak_rss_mib"],
                )
                for run in runs
                if run["stages"].get(stage, {}).get("status") == "ok"
            ]
        sizes = [n for n, _, _ in points]
        result[stage] = {
            "seconds": _rounded(loglog_slope(sizes, [s for _, s, _ in points])),
            "peak_rss_mib": _rounded(loglog_slope(sizes, [m for _, _, m in points])),
            "sizes": sizes,
        }
    return result


def _rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def totals(records: dict[str, dict[str, Any]], stages: Sequence[str]) -> dict[str, Any]:
    """Total wall time and largest peak RSS of one size's stages; `complete` when all ran."""
    ran = [record for record in records.values() if "seconds" in record]
    return {
        "seconds": round(sum(record["seconds"] for record in ran), 2),
        "minutes": round(sum(record["seconds"] for record in ran) / 60, 2),
        "peak_rss_mib": max((record["peak_rss_mib"] for record in ran), default=None),
        "complete": all(records.get(stage, {}).get("status") == "ok" for stage in stages),
    }


def _timed_run(runs: Sequence[dict[str, Any]], target: TimeTarget) -> dict[str, Any] | None:
    """The run the time target is judged at, if it ran every stage to completion."""
    if target.nearest and runs:
        at = [min(runs, key=lambda run: (abs(run["n_events"] - target.n_events), run["n_events"]))]
    else:
        at = [run for run in runs if run["n_events"] == target.n_events]
    done = [run for run in at if run["totals"]["complete"] and run["all_stages"]]
    return done[0] if done else None


def judge(
    runs: Sequence[dict[str, Any]],
    per_stage: dict[str, dict[str, Any]],
    shape: str = "movies",
    backend: str = "local",
) -> dict[str, Any]:
    """Each target's measured value and whether it is met (None where it cannot be measured):
    the shape's time target (`TIME_TARGETS`), then the peak memory and slope targets, the
    index's, and on the ray backend the driver's memory at 10M events (`DRIVER_GIB`)."""
    time = TIME_TARGETS[shape]
    targets = {
        time.key: time.minutes,
        "max_peak_gib": TARGETS["max_peak_gib"],
        "max_slope": TARGETS["max_slope"],
    }
    measured: dict[str, Any] = {}
    meets: dict[str, bool | None] = {}
    timed = _timed_run(runs, time)
    minutes = timed["totals"]["minutes"] if timed else None
    measured[time.key] = minutes
    if time.nearest:
        measured[f"{time.key}_events"] = timed["n_events"] if timed else None
    meets[time.key] = None if minutes is None else minutes <= time.minutes
    peaks = [r["totals"]["peak_rss_mib"] for r in runs if r["totals"]["peak_rss_mib"] is not None]
    peak_gib = round(max(peaks) / 1024, 3) if peaks else None
    measured["max_peak_gib"] = peak_gib
    meets["max_peak_gib"] = None if peak_gib is None else peak_gib <= TARGETS["max_peak_gib"]
    steepest: tuple[float, str] | None = None
    for stage, row in per_stage.items():
        if stage == "total":
            continue
        for kind in ("seconds", "peak_rss_mib"):
            if row[kind] is not None and (steepest is None or row[kind] > steepest[0]):
                steepest = (row[kind], f"{stage} {kind}")
    measured["max_slope"] = None if steepest is None else steepest[0]
    measured["max_slope_of"] = None if steepest is None else steepest[1]
    meets["max_slope"] = None if steepest is None else steepest[0] <= TARGETS["max_slope"]
    targets["index_beats_exact"] = True
    measured["index_beats_exact"], meets["index_beats_exact"] = index_verdict(runs)
    if backend == "ray":
        at = [run for run in runs if run["n_events"] == TARGET_SIZE]
        peaks = [
            record["peak_rss_mib"]
            for run in at
            for record in run["stages"].values()
            if record.get("peak_rss_mib") is not None
        ]
        driver = round(max(peaks) / 1024, 3) if peaks else None
        targets["max_driver_gib_at_10M"] = DRIVER_GIB
        measured["max_driver_gib_at_10M"] = driver
        meets["max_driver_gib_at_10M"] = None if driver is None else driver <= DRIVER_GIB
    return {"targets": targets, "measured": measured, "meets": meets}


def index_verdict(runs: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], bool | None]:
    """Per size, the served query's speed-up over exact search (numpy, the fused vectors) and its
    recall; met where at every size it is faster at a recall reaching its target (None where no
    size measured the index)."""
    measured: dict[str, Any] = {}
    verdicts = []
    for run in runs:
        index = run.get("index")
        if not index or not index.get("ann_query_ms_median"):
            continue
        speedup = index["exact_query_ms_median"] / index["ann_query_ms_median"]
        recall = index["ann_recall@10"]
        measured[str(run["n_events"])] = {"speedup": round(speedup, 2), "recall@10": recall}
        verdicts.append(speedup > 1 and recall >= index["recall_target"])
    return measured, (all(verdicts) if verdicts else None)
