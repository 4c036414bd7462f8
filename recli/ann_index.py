"""Opening the Annoy index that the catalogue describes, with the checks that cost nothing, and
searching it (`retrieve`: the nearest-neighbour search behind `recommend`, `similar` and `search`).

A missing, empty or truncated file, a catalogue that records no dimension or a metric Annoy does
not know, and a file Annoy cannot map each raise a `RecliError` naming the file and the fix,
instead of Annoy's exception and the copy its C++ prints on the process's stderr. Whether the
index holds the catalogue's items is checked by the caller (`recli.serve.Served.index`); whether
it is the very file the catalogue was built with takes a full sha256 and is `recli doctor`'s job.

`retrieve` lives here, next to the loading, because it is about Annoy alone (how many neighbours to
ask for, when an approximate search must become exact), not about any one query; so does
`rescored`, the search in a narrower space whose candidates the fused vectors rank, which the
index stage measures exactly as `recli` serves it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from annoy import AnnoyIndex

from recli import catalogue
from recli.catalogue import MetaKey
from recli.errors import RecliError

REBUILD = "run `dvc repro -f index`"


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Annoy's C++ prints its own copy of a load error on file descriptor 2; ours is enough."""
    try:
        sys.stderr.flush()
        saved: int | None = os.dup(2)
    except (OSError, ValueError):  # no usable stderr: nothing to silence
        saved = None
    if saved is None:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def load_index(
    path: Path,
    meta: dict[str, Any],
    catalogue_path: Path,
    dimension_key: MetaKey = MetaKey.DIMENSION,
    bytes_key: MetaKey = MetaKey.INDEX_BYTES,
) -> AnnoyIndex:
    """Map the index at `path` with the dimension (`meta[dimension_key]`) and metric the
    catalogue's `meta` records: the fused vectors' index, or with `MetaKey.SEARCH_DIMENSION` and
    `MetaKey.SEARCH_INDEX_BYTES` the one over the search space.

    A size that differs from `meta[bytes_key]` (when recorded) means a truncated copy.
    """
    if not path.exists():
        raise RecliError(f"{path} not found: run `dvc repro` to build the index and catalogue")
    size = path.stat().st_size
    expected_size = meta.get(bytes_key)
    if size == 0 or (expected_size is not None and size != int(expected_size)):
        raise RecliError(f"{path} is truncated ({size} bytes): {REBUILD}")
    dimension = int(catalogue.meta_value(meta, dimension_key, catalogue_path))
    metric = str(meta.get(MetaKey.METRIC, "dot"))
    try:
        index = AnnoyIndex(dimension, metric)
    except ValueError:
        raise RecliError(
            f"{catalogue_path} names an unknown metric '{metric}': {REBUILD}"
        ) from None
    try:
        with _native_stderr_silenced():
            index.load(str(path))
    except OSError:
        raise RecliError(f"{path} is truncated or corrupted: {REBUILD}") from None
    return index


def retrieve(
    index: AnnoyIndex, vector: Sequence[float], seen: set[int], k: int, search_k: int = -1
) -> list[tuple[int, float]]:
    """The top-k unseen items of one query vector, as (item, dot product), best first.

    Annoy is asked for k + |seen| neighbours and `seen` (the history) is dropped: the query whose
    recall the index stage measures. An approximate search (`search_k`, -1: Annoy's default) can
    come back short; then every leaf is visited (exact).
    """
    n_items = index.get_n_items()
    wanted = min(k + len(seen), n_items)
    chosen: list[tuple[int, float]] = []
    for effort in (search_k, index.get_n_trees() * n_items):
        neighbours, scores = index.get_nns_by_vector(
            vector, wanted, search_k=effort, include_distances=True
        )
        chosen = [(i, s) for i, s in zip(neighbours, scores, strict=True) if i not in seen][:k]
        if len(chosen) == k:
            break
    return chosen


def rescored(
    index: AnnoyIndex,
    vector: Sequence[float],
    seen: set[int],
    k: int,
    search_k: int,
    rescore: int,
    score: Callable[[int], float],
) -> list[tuple[int, float]]:
    """The top-k unseen items of a query searched in a narrower space than the one it is
    scored in: `retrieve` asks `index` for `rescore` × k candidates near `vector` (the query in
    the searched space), and `score(item)` (the query's own dot product with the item) ranks
    them, best first (ties by item)."""
    unseen = index.get_n_items() - len(seen)
    wanted = max(k, min(rescore * k, unseen))
    found = retrieve(index, vector, seen, wanted, search_k)
    scored = [(item, score(item)) for item, _ in found]
    return sorted(scored, key=lambda pair: (-pair[1], pair[0]))[:k]
