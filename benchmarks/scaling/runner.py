"""Running the scale benchmark: each stage in a child process of its own, as `dvc repro` runs
it (`run_stage`), and every size from data generation (of the chosen shape, `SHAPES`) to the
written report (`bench`)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.core.config import load_params
from pipeline.workflow import STAGES, override, write_params
from scaling import REPO
from scaling.products import product_events
from scaling.ray_cluster import Cluster, WorkerMemory, local_cluster
from scaling.report import budgets, code_version, count_label, machine
from scaling.summary import judge, slopes, totals
from scaling.synthetic import synthetic_events, write_inputs

SHAPES: dict[str, Callable[[int, int], tuple[pl.DataFrame, pl.DataFrame]]] = {
    "movies": synthetic_events,
    "products": product_events,
}
"""The data shapes, each its generator of (interactions, items) for (events, seed): `movies`
(`synthetic`: dense users, genres) and `products` (`products`: sparse users, long titles and
descriptions, no genres)."""


def _tail(path: Path, lines: int) -> list[str]:
    """The last non-empty `lines` lines of a log (progress bars' carriage returns split too)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8", errors="replace").replace("\r", "\n")
    return [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]


def _kill(process: subprocess.Popen[bytes], signum: int) -> None:
    """Send `signum` to the stage's process group (it runs in a session of its own)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def run_stage(
    stage: str, root: Path, timeout: float | None = None, address: Cluster | None = None
) -> dict[str, Any]:
    """Run one stage's `main(root)` in a child process; its wall time, peak RSS and outcome.

    `status` is `ok`, `failed` (non-zero exit), `killed` (a signal, such as the kernel's
    out-of-memory killer) or `timeout` (past `timeout` seconds: SIGTERM, then SIGKILL 30 s later).
    Peak memory is the child's own max RSS (`os.wait4`), not that of any process it starts. With
    a Ray cluster's `address` the stage joins it (`RAY_ADDRESS`), and the record adds the peak
    memory of the cluster's workers while it ran (`ray_cluster.WorkerMemory`).
    """
    logs = root / "bench_logs"
    logs.mkdir(parents=True, exist_ok=True)
    code = (
        f"from pathlib import Path; from pipeline import {stage}; {stage}.main(Path({str(root)!r}))"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    env.setdefault("TQDM_DISABLE", "1")  # progress bars would fill the stderr log
    if address is not None:
        env["RAY_ADDRESS"] = str(address)
    workers = WorkerMemory(address.pid) if address is not None else contextlib.nullcontext()
    timed_out = threading.Event()
    timers: list[threading.Timer] = []
    with (
        open(logs / f"{stage}.out", "wb") as out,
        open(logs / f"{stage}.err", "wb") as err,
        workers,
    ):
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        if timeout is not None:

            def expire() -> None:
                timed_out.set()
                # Armed before the SIGTERM, so the `finally` below always sees it to cancel.
                timers.append(threading.Timer(30, _kill, (process, signal.SIGKILL)))
                timers[-1].start()
                _kill(process, signal.SIGTERM)

            timers.append(threading.Timer(timeout, expire))
            timers[0].start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:  # Ctrl-C: take the stage down too
            _kill(process, signal.SIGKILL)
            os.waitpid(process.pid, 0)
            process.returncode = -signal.SIGKILL
            raise
        finally:
            for timer in timers:
                timer.cancel()
        seconds = time.perf_counter() - started
    exit_code = os.waitstatus_to_exitcode(status)
    process.returncode = exit_code  # reaped here, not by Popen
    if timed_out.is_set():
        outcome = "timeout"
    elif exit_code < 0:
        outcome = "killed"
    else:
        outcome = "ok" if exit_code == 0 else "failed"
    printed = _tail(logs / f"{stage}.out", 1)
    record: dict[str, Any] = {
        "status": outcome,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # ru_maxrss is KiB on Linux
        "exit_code": exit_code,
        "last_line": printed[0] if printed else "",
    }
    if isinstance(workers, WorkerMemory):
        record.update(workers.record())
    if outcome != "ok":
        why = f"signal {signal.Signals(-exit_code).name}" if exit_code < 0 else f"exit {exit_code}"
        if outcome == "timeout":
            why = f"past the {timeout:g} s timeout ({why})"
        record["error"] = "\n".join([why, *_tail(logs / f"{stage}.err", 20)])[-4000:]
    return record


def _write_json(report: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".tmp")
    partial.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    partial.replace(out)


def _summarise(report: dict[str, Any]) -> None:
    report["slopes"] = slopes(report["sizes"], report["stages"])
    report.update(
        judge(report["sizes"], report["slopes"], report["shape"], report.get("backend", "local"))
    )


INDEX_FIGURES = (
    "fused_dimensions",
    "dimensions",
    "trees",
    "search_k",
    "rescore",
    "recall_target",
    "ann_recall@10",
    "unseen_user_recall@10",
    "ann_query_ms_median",
    "exact_query_ms_median",
)
"""What the index stage's metrics say of the served query, kept per size."""


def served_index(root: Path) -> dict[str, Any]:
    """The served query's width, recall and latency against exact search, from the index
    stage's `metrics/index.json` in the scratch project at `root`."""
    measured = json.loads((root / "metrics" / "index.json").read_text(encoding="utf-8"))
    return {key: measured.get(key) for key in INDEX_FIGURES}


def bench(
    sizes: Sequence[int],
    out: Path,
    work: Path | None = None,
    keep: bool = False,
    stages: Sequence[str] = STAGES,
    timeout: float | None = None,
    seed: int = 42,
    add: bool = False,
    shape: str = "movies",
    backend: str = "local",
    workers: int = 2,
) -> dict[str, Any]:
    """Generate each size of `shape` (one of `SHAPES`), run `stages` on it in child processes,
    write `out` after every stage; the report. With `add`, the sizes already in `out` (measured
    with the same shape, params and seed) are kept unless run again, so the sizes can be measured
    in separate sittings.

    `backend: ray` runs every stage with `engine.backend: ray` on a Ray cluster of `workers`
    CPUs started on this machine for the whole run (`ray_cluster.local_cluster`); its report is
    kept under `out`'s `ray` key, beside the local backend's, and each stage's record adds its
    workers' peak memory and its events per second per worker."""
    if shape not in SHAPES:
        raise SystemExit(f"unknown shape {shape!r}: use one of {list(SHAPES)}")
    if backend not in ("local", "ray"):
        raise SystemExit(f"unknown backend {backend!r}: use local or ray")
    unknown = [stage for stage in stages if stage not in STAGES]
    if unknown:
        raise SystemExit(f"unknown stage(s) {unknown}: use some of {list(STAGES)}")
    stages = [stage for stage in STAGES if stage in stages]  # dvc.yaml order
    base = load_params(REPO / "params.yaml")
    if backend == "ray":
        base = override(base, {"engine.backend": "ray", "engine.workers": workers})
    scratch = Path(tempfile.mkdtemp(prefix="recli-bench-scale-")) if work is None else work
    report: dict[str, Any] = {
        "machine": machine(),
        "shape": shape,
        "backend": backend,
        **({"workers": workers} if backend == "ray" else {}),
        "seed": seed,
        "stages": stages,
        **budgets(base),
        "sizes": [],
    }
    document = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}

    def write() -> None:
        if backend == "ray":
            _write_json({**document, "ray": report}, out)
        else:
            _write_json({**report, **({"ray": document["ray"]} if "ray" in document else {})}, out)

    earlier = document.get("ray", {}) if backend == "ray" else document
    if add and earlier:
        if (
            earlier.get("params_sha256") != report["params_sha256"]
            or earlier.get("seed") != seed
            or earlier.get("shape", "movies") != shape
        ):
            raise SystemExit(f"{out} was measured with other params, seed or shape: drop --add")
        report["sizes"] = [run for run in earlier["sizes"] if run["n_events"] not in set(sizes)]
    cluster = local_cluster(workers) if backend == "ray" else contextlib.nullcontext(None)
    try:
        with cluster as address:
            for n_events in sorted(set(sizes)):
                _bench_size(n_events, report, scratch, base, stages, timeout, seed, address, write)
                if not keep:
                    shutil.rmtree(scratch / f"events-{n_events}", ignore_errors=True)
    finally:
        if work is None and not keep:
            shutil.rmtree(scratch, ignore_errors=True)
    return report


def _bench_size(
    n_events: int,
    report: dict[str, Any],
    scratch: Path,
    base: Any,
    stages: Sequence[str],
    timeout: float | None,
    seed: int,
    address: Cluster | None,
    write: Callable[[], None],
) -> None:
    """One size of `bench`: generate it, run the stages, record each into `report`."""
    root = (scratch / f"events-{n_events}").resolve()
    if root.exists():
        shutil.rmtree(root)
    started = time.perf_counter()
    interactions, items = SHAPES[report["shape"]](n_events, seed)
    data = write_inputs(interactions, items, root)
    write_params(override(base, {"data": data}), root)
    inputs = root / "data" / "input"
    run: dict[str, Any] = {
        "n_events": n_events,
        "code": code_version(),
        "n_users": interactions["user_id"].n_unique(),
        "n_items": items.height,
        "n_items_with_events": interactions["item_id"].n_unique(),
        "generate_seconds": round(time.perf_counter() - started, 2),
        "input_mib": round(sum(f.stat().st_size for f in inputs.iterdir()) / 2**20, 1),
        "all_stages": list(stages) == list(STAGES),
        "stages": {},
        "totals": totals({}, stages),
    }
    del interactions, items
    report["sizes"] = [entry for entry in report["sizes"] if entry["n_events"] != n_events]
    report["sizes"].append(run)
    report["sizes"].sort(key=lambda entry: entry["n_events"])
    print(
        f"{count_label(n_events)} events: {run['n_users']} users, {run['n_items']} items "
        f"({run['generate_seconds']:.1f} s to generate) in {root}",
        flush=True,
    )
    failed: str | None = None
    for stage in stages:
        if failed is not None:
            run["stages"][stage] = {"status": "skipped", "reason": failed}
            continue
        # Written before the stage starts: a run that is itself stopped shows where.
        run["stages"][stage] = {"status": "running", "started": time.strftime("%FT%T%z")}
        write()
        record = run_stage(stage, root, timeout, address)
        if address is not None and record["status"] == "ok" and record["seconds"] > 0:
            per_worker = n_events / record["seconds"] / report["workers"]
            record["events_per_second_per_worker"] = round(per_worker, 1)
        run["stages"][stage] = record
        if stage == "index" and record["status"] == "ok":
            run["index"] = served_index(root)
        if record["status"] != "ok":
            failed = f"{stage} {record['status']}"
        print(
            f"  {stage:<10} {record['status']:<7} {record['seconds']:8.1f} s "
            f"{record['peak_rss_mib']:8.0f} MiB  {record['last_line'][:80]}",
            flush=True,
        )
        run["totals"] = totals(run["stages"], stages)
        _summarise(report)
        write()
    run["totals"] = totals(run["stages"], stages)
    _summarise(report)
    write()
