"""`Engine`: a function over the user partitions, in this process or as tasks on a Ray cluster.

On the local backend the pieces run one after another in the stage's process; on Ray each is a
task of one CPU, placed by the cluster. Either way the results come back in the order the pieces
were given, and each piece is computed by the same function on the same inputs, so a stage's
output does not depend on the backend. What the stage's own process (the Ray driver) holds is
what it passes to the pieces and what they return: the stages keep both bounded by the
catalogue (item vectors, titles, a count per partition), never by the events or the users.

`Engine.session()` joins `engine.address` (else `RAY_ADDRESS`, else starts a cluster on this
machine, stopped when the stage ends); a process already connected to Ray (a notebook, the
tests' shared cluster) keeps its connection.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import polars as pl

from pipeline.core.config import EngineConfig
from recli.errors import RecliError

T = TypeVar("T")

SHARED_BYTES = 1 << 20
"""Arrays larger than this are put in the object store once and shared by the tasks."""
MAX_AUTO_WORKERS = 8
"""`engine.workers: auto` asks for one model-holding actor per cluster CPU, up to this many."""


def import_ray() -> Any:
    """The `ray` module, or one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RecliError(
            'engine.backend is ray but Ray is not installed: pip install -e ".[ray]" '
            "(or set engine.backend: local)"
        ) from None
    return ray


class Engine:
    """Runs the per-user pieces of a stage on the configured backend."""

    def __init__(self, cfg: EngineConfig) -> None:
        self.cfg = cfg

    @property
    def is_ray(self) -> bool:
        return self.cfg.backend == "ray"

    @property
    def name(self) -> str:
        return self.cfg.backend

    @contextlib.contextmanager
    def session(self) -> Iterator[Engine]:
        """Connected to the cluster for the duration (nothing to do on the local backend)."""
        if not self.is_ray:
            yield self
            return
        ray = import_ray()
        if ray.is_initialized():
            yield self
            return
        address = self.cfg.address or os.environ.get("RAY_ADDRESS") or None
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
            raise RecliError(
                f"cannot join the Ray cluster at {address}: {first} (start it with `ray start "
                "--head`, or fix engine.address / RAY_ADDRESS)"
            ) from None
        try:
            yield self
        finally:
            ray.shutdown()

    def workers(self) -> int:
        """How many model-holding actors to start: `engine.workers`, or one per CPU of the
        cluster (at most `MAX_AUTO_WORKERS`); 1 on the local backend."""
        if not self.is_ray:
            return 1
        if self.cfg.workers != "auto":
            return int(self.cfg.workers)
        cpus = int(import_ray().cluster_resources().get("CPU", 1))
        return max(1, min(MAX_AUTO_WORKERS, cpus))

    def map(self, function: Callable[..., T], arguments: Sequence[tuple[Any, ...]]) -> list[T]:
        """`[function(*args) for args in arguments]`: here, or one Ray task per piece."""
        if not self.is_ray:
            return [function(*args) for args in arguments]
        ray = import_ray()
        remote = ray.remote(num_cpus=1, max_retries=2)(call)
        target = importable(function)
        shared: dict[int, Any] = {}  # a large argument goes to the object store once, not per task
        pieces = [tuple(_for_workers(value, shared, ray) for value in args) for args in arguments]
        return ray.get([remote.remote(target, *args) for args in pieces])


def importable(function: Callable[..., Any]) -> tuple[str, str]:
    """`(module, name)` a worker imports `function` by. A stage run as DVC runs it (`python -m
    pipeline.factorize`) defines its functions in `__main__`, which a worker would otherwise get
    as a copy of the function and of everything it refers to, modules included, and not every
    module survives the copy (transformers' lazy module lost its `__version__`)."""
    module = function.__module__
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        if spec is None:
            raise RecliError(f"{function.__name__} must be importable to run on Ray workers")
        module = spec.name
    return module, function.__qualname__


def call(target: tuple[str, str], *args: Any) -> Any:
    """On a worker: import `target` (`importable`'s answer) and call it with `args`."""
    module, name = target
    return getattr(importlib.import_module(module), name)(*args)


def _for_workers(value: Any, shared: dict[int, Any], ray: Any) -> Any:
    """An argument as a task on any node needs it: a path made absolute against this process's
    folder (which every node sees at the same path: shared storage), a large array or table put
    in the object store once for all the tasks that take it."""
    if isinstance(value, Path):
        return value.absolute()
    size = value.nbytes if isinstance(value, np.ndarray) else None
    if isinstance(value, pl.DataFrame):
        size = value.estimated_size()
    if size is not None and size > SHARED_BYTES:
        if id(value) not in shared:
            shared[id(value)] = ray.put(value)
        return shared[id(value)]
    return value
