"""The cluster sizing table: each stage of the ray backend's largest measured run carried to
100M and 1B events on N workers, by what bounds the stage (`GROWTH`), with the driver memory
that growth implies. A model, not a measurement: the page says so beside it."""

from __future__ import annotations

from typing import Any

from docs_tables.benchmarks import SCALE
from docs_tables.formatting import events_label, source, table
from docs_tables.metrics import Metrics, MissingMetricsError

GROWTH: dict[str, tuple[str, str]] = {
    "preprocess": ("driver", "the driver reads and cleans every event before the split"),
    "finetune": ("fixed", "a fixed step budget (`finetune.max_steps`) on a sampled batch"),
    "embed": ("workers", "texts grow with users and items; encoded by the actor pool"),
    "cluster": ("driver", "the profiles read every training event in the driver"),
    "interests": ("workers", "three passes of a task per partition"),
    "factorize": ("one worker", "ALS is fitted on one worker over every training event"),
    "sequence": ("fixed", "a fixed step budget (`sequence.max_steps`)"),
    "fuse": ("driver", "the driver reads every event for the split matrices"),
    "index": ("driver", "the driver writes every event and user into one SQLite catalogue"),
    "evaluate": ("driver", "the driver reads every event (split matrices, peers)"),
    "export": ("workers", "a task per partition scores its users"),
}
"""Per stage, how its wall time grows with events and why: `workers` ∝ events / workers;
`one worker` and `driver` ∝ events, whatever the workers; `fixed`: the same at any size. The
driver's memory grows with events where the stage is `driver`-bound, else it is held fixed."""

TARGETS = (100_000_000, 1_000_000_000)
WORKERS = (8, 64)


def _hours(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:,.1f} h" if hours < 100 else f"{hours / 24:,.0f} days"


def _gib(mib: float) -> str:
    gib = mib / 1024
    return f"{gib:,.1f} GiB" if gib < 1024 else f"{gib / 1024:,.1f} TiB"


def projected_seconds(seconds: float, growth: str, scale: float, workers: float) -> float:
    """A stage's wall time at `scale` times the measured events and `workers` times the
    measured workers, by its growth (`GROWTH`)."""
    if growth == "fixed":
        return seconds
    if growth == "workers":
        return seconds * scale / workers
    return seconds * scale


def bench_scale_model(metrics: Metrics, name: str = SCALE) -> str:
    """Per stage of the ray run's largest size: what bounds it, its measured time and driver
    peak, and both carried to 100M and 1B events on 8 and 64 workers."""
    ray: dict[str, Any] = metrics.get(name, "ray")
    sizes = [size for size in ray.get("sizes") or [] if size.get("all_stages")]
    if not sizes:
        raise MissingMetricsError(f"`metrics/{name}` → `ray` has no complete run")
    measured = max(sizes, key=lambda size: size["n_events"])
    base_events, base_workers = measured["n_events"], ray.get("workers") or 1
    body = []
    totals = {(events, workers): 0.0 for events in TARGETS for workers in WORKERS}
    for stage, entry in measured["stages"].items():
        growth, why = GROWTH.get(stage, ("driver", "not modelled: counted as the driver's"))
        seconds, driver = float(entry["seconds"]), float(entry["peak_rss_mib"])
        row = [f"`{stage}`", growth, why, f"{seconds:,.0f} s"]
        for events in TARGETS:
            for workers in WORKERS:
                projected = projected_seconds(
                    seconds, growth, events / base_events, workers / base_workers
                )
                totals[(events, workers)] += projected
                row.append(_hours(projected))
        held = driver * TARGETS[-1] / base_events if growth == "driver" else driver
        row += [_gib(driver), _gib(held)]
        body.append(row)
    total = sum(float(entry["seconds"]) for entry in measured["stages"].values())
    total_row = ["all stages", "", "", f"{total:,.0f} s"]
    total_row += [_hours(totals[(events, workers)]) for events in TARGETS for workers in WORKERS]
    body.append([f"**{cell}**" if cell else "" for cell in total_row] + ["", ""])
    label = events_label(base_events)
    header = ["stage", "grows with", "why", f"{label}, {base_workers} workers"]
    header += [f"{events_label(e)}, {w} workers" for e in TARGETS for w in WORKERS]
    header += [f"driver at {label}", f"driver at {events_label(TARGETS[-1])}"]
    return (
        table(header, body, left=3)
        + "\n\n"
        + source(
            f"`metrics/{name}` → `ray` → `sizes` ({label} events, commit "
            f"{measured.get('code')}), carried by `scripts/docs_tables/scale_model.py`"
        )
    )
