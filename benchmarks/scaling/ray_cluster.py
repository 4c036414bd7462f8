"""The Ray cluster a `--backend ray` run is measured on, and the memory its workers hold.

`local_cluster` starts one head node on this machine (`ray start --head --block`, `cpus` CPUs:
that many workers), for every stage of every size, and stops it at the end; the stages join it
through `RAY_ADDRESS`, as they would join a real cluster. A stage's own process is the driver,
whose peak the runner takes from `os.wait4` as for the local backend; `WorkerMemory` samples,
while a stage runs, the resident memory of the cluster's worker processes (the head's descendants
Ray names `ray::…`: the tasks, actors and training workers), so a stage's record says what the
driver and what the workers held at their peaks. Ray's own daemons (the GCS, the raylet, the
object store's shared memory) are not counted: they are the cluster's, not the stage's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SAMPLE_SECONDS = 0.2
"""How often the workers' memory is sampled while a stage runs."""
START_SECONDS = 120
"""How long the head node may take to accept connections."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class Cluster(str):
    """A running head node's address (what `RAY_ADDRESS` takes), with the head's process id:
    the cluster's worker processes are its descendants."""

    pid: int


@contextlib.contextmanager
def local_cluster(cpus: int) -> Iterator[Cluster]:
    """A Ray head node on this machine with `cpus` CPUs, for the duration; its address."""
    port = _free_port()
    ray = Path(sys.executable).with_name("ray")
    with tempfile.TemporaryDirectory(prefix="recli-bench-ray-") as temporary:
        command = [
            str(ray),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            f"--num-cpus={cpus}",
            "--num-gpus=0",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temporary}",
        ]
        env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
        log = Path(temporary) / "head.log"
        with open(log, "wb") as out:
            head = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
            try:
                deadline = time.monotonic() + START_SECONDS
                while not _listening(port):
                    if head.poll() is not None or time.monotonic() > deadline:
                        tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
                        raise SystemExit(f"the Ray head node did not start:\n{tail}")
                    time.sleep(0.5)
                address = Cluster(f"127.0.0.1:{port}")
                address.pid = head.pid
                yield address
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(head.pid, signal.SIGTERM)
                try:
                    head.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(head.pid, signal.SIGKILL)
                    head.wait()


def worker_rss(head: int) -> list[int]:
    """Resident bytes of every Ray worker process (named `ray::…`) of the cluster whose head
    node is process `head`: its descendants only, so another cluster on the machine (a test
    suite's) is not counted."""
    import psutil

    sizes = []
    try:
        descendants = psutil.Process(head).children(recursive=True)
    except psutil.NoSuchProcess:
        return sizes
    for process in descendants:
        try:
            cmdline = process.cmdline()
            rss = process.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if cmdline and cmdline[0].startswith("ray::"):
            sizes.append(int(rss))
    return sizes


class WorkerMemory:
    """Samples `worker_rss` in a thread while a stage runs: the peak of the workers' total and of
    any one worker, and the most workers seen at once."""

    def __init__(self, head: int) -> None:
        self.head = head
        self.peak_total = 0
        self.peak_one = 0
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            sizes = worker_rss(self.head)
            self.peak_total = max(self.peak_total, sum(sizes))
            self.peak_one = max(self.peak_one, max(sizes, default=0))
            self.most = max(self.most, len(sizes))
            self._stop.wait(SAMPLE_SECONDS)

    def __enter__(self) -> WorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def record(self) -> dict[str, Any]:
        """The figures a stage's record keeps (MiB)."""
        return {
            "workers_peak_rss_mib": round(self.peak_total / 2**20, 1),
            "worker_peak_rss_mib": round(self.peak_one / 2**20, 1),
            "workers_seen": self.most,
        }
