"""Benchmark live updates (`pipeline.live.LiveUpdater`, what `recli add` and `recli ingest` run)
on a built project, in one process with the models loaded once.

Targets (docs/live.md): one event for a known user in at most 50 ms; a batch of 10,000 events at
2,000 events/s or more; a new user's first recommendation within 200 ms of their first events.

It works on a scratch copy of the project's `params.yaml` and `data/` (the download cache and
the exports left out), so the project's own live log is never written. The events are seeded
draws: users from the catalogue, items each user has not had, times after every built event.

Usage, from the repository root after `dvc repro`:

    python benchmarks/live.py                           # 50 single events, a 10,000-event batch
    python benchmarks/live.py --single 100 --batch 20000 --out /tmp/live.json

It prints a small table and writes JSON to `--out` (default `metrics/bench_live.json`): the CPU,
the medians and 90th percentiles, each target and whether it was met.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scaling.report import machine

from pipeline.data.raw import INTERACTIONS_SCHEMA
from pipeline.live import LiveUpdater, one_event
from recli.serve import Served

LEFT_OUT = ("external", "export", "live")
"""Folders of `data/` the scratch copy does without."""
TARGETS = {"single_event_ms": 50.0, "batch_events_per_s": 2000.0, "new_user_first_list_ms": 200.0}


def scratch_copy(project: Path, folder: Path) -> Path:
    """`project`'s params and artifacts, copied into `folder`."""
    shutil.copy2(project / "params.yaml", folder / "params.yaml")
    shutil.copytree(
        project / "data",
        folder / "data",
        ignore=lambda where, names: [
            n for n in names if Path(where) == project / "data" and n in LEFT_OUT
        ],
    )
    return folder


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 2),
        "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 2),
        "runs": len(ordered),
    }


def run(project: Path, single: int, batch: int, newcomers: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="recli-live-bench-") as folder:
        root = scratch_copy(project, Path(folder))
        started = time.perf_counter()
        updater = LiveUpdater(root)
        updater.model  # noqa: B018 (loads the models: what a process pays once)
        load_seconds = time.perf_counter() - started
        connection = updater.served.connection
        latest = connection.execute("SELECT MAX(timestamp) FROM history").fetchone()[0] or 0
        at = int(latest) + 1
        n_items = updater.served.n_items
        item_ids = [
            row[0] for row in connection.execute("SELECT item_id FROM items ORDER BY item_idx")
        ]
        users = updater.served.user_ids()

        def unseen(user_id: str) -> str:
            seen = set(updater.served.history_indices(updater.user_index[user_id]))
            while True:
                item = int(rng.integers(n_items))
                if item not in seen:
                    return item_ids[item]

        # One event for a known user, one transaction each (the first also warms the models).
        updater.add(one_event(users[0], unseen(users[0]), at, None), "warm-up")
        timings = []
        for user_id in rng.choice(users, size=min(single, len(users)), replace=False):
            event = one_event(str(user_id), unseen(str(user_id)), at, None)
            began = time.perf_counter()
            updater.add(event, "bench single")
            timings.append((time.perf_counter() - began) * 1000)

        # A batch: seeded users and items, one transaction.
        chosen = rng.choice(users, size=batch)
        rows = pl.DataFrame(
            {
                "user_id": [str(user) for user in chosen],
                "item_id": [item_ids[int(item)] for item in rng.integers(n_items, size=batch)],
                "rating": [None] * batch,
                "timestamp": list(range(at + 1, at + 1 + batch)),
            },
            schema=dict(INTERACTIONS_SCHEMA),
        )
        began = time.perf_counter()
        added = updater.add(rows, "bench batch")
        batch_seconds = time.perf_counter() - began

        # New users: their first three events, then their first list from a fresh `Served`
        # (what a `recli recommend` process opens).
        first_lists = []
        for number in range(newcomers):
            user_id = f"bench-newcomer-{number}"
            items = rng.choice(len(item_ids), size=3, replace=False)
            events = pl.concat([one_event(user_id, item_ids[int(i)], at, None) for i in items])
            began = time.perf_counter()
            updater.add(events, "bench newcomer")
            with Served(root / "data") as served:
                listed = served.recommend(user_id, k=10)
            first_lists.append((time.perf_counter() - began) * 1000)
            assert len(listed.items) == 10
        updater.close()

    report = {
        "machine": machine(),
        "project_users": len(users),
        "project_items": n_items,
        "model_load_seconds": round(load_seconds, 2),
        "single_event_ms": _percentiles(timings),
        "batch": {
            "events": added.events,
            "users": len(added.users),
            "seconds": round(batch_seconds, 2),
            "events_per_s": round(added.events / batch_seconds, 1),
        },
        "new_user_first_list_ms": _percentiles(first_lists),
        "targets": TARGETS,
    }
    report["met"] = {
        "single_event_ms": report["single_event_ms"]["median"] <= TARGETS["single_event_ms"],
        "batch_events_per_s": report["batch"]["events_per_s"] >= TARGETS["batch_events_per_s"],
        "new_user_first_list_ms": report["new_user_first_list_ms"]["median"]
        <= TARGETS["new_user_first_list_ms"],
    }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--single", type=int, default=50, help="single events, one user each")
    parser.add_argument("--batch", type=int, default=10_000, help="events in the batch")
    parser.add_argument("--newcomers", type=int, default=20, help="new users timed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("metrics/bench_live.json"))
    arguments = parser.parse_args()
    report = run(
        arguments.project, arguments.single, arguments.batch, arguments.newcomers, arguments.seed
    )
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(
        f"CPU: {report['machine'].get('cpu_model')}; models loaded in "
        f"{report['model_load_seconds']} s"
    )
    single, batch = report["single_event_ms"], report["batch"]
    first = report["new_user_first_list_ms"]
    print(
        f"one event, known user: median {single['median']} ms, p90 {single['p90']} ms "
        f"(target {TARGETS['single_event_ms']:g} ms)"
    )
    print(
        f"batch: {batch['events']} events for {batch['users']} users in {batch['seconds']} s, "
        f"{batch['events_per_s']} events/s (target {TARGETS['batch_events_per_s']:g})"
    )
    print(
        f"new user, first list: median {first['median']} ms, p90 {first['p90']} ms "
        f"(target {TARGETS['new_user_first_list_ms']:g} ms)"
    )


if __name__ == "__main__":
    sys.exit(main())
