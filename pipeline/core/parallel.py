"""Running independent pieces of a stage in worker processes, on the cores this process has.

Workers are spawned, never forked: a forked child would inherit the parent's thread pools
(torch's, BLAS's) in whatever state they were. Results come back in the order the pieces were
given, whichever worker finishes first, so a stage's output does not depend on the number of
workers.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def usable_cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def in_processes(
    function: Callable[..., T], arguments: Sequence[tuple[Any, ...]], workers: int
) -> list[T]:
    """`[function(*args) for args in arguments]`, with up to `workers` pieces at once in spawned
    processes (in this process when `workers` is 1 or there is one piece)."""
    if workers <= 1 or len(arguments) <= 1:
        return [function(*args) for args in arguments]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(arguments)), mp_context=context) as pool:
        futures = [pool.submit(function, *args) for args in arguments]
        return [future.result() for future in futures]
