"""Stage `export`: every user's top k unseen items, with a reason for each, as parquet.

The lists are the served fused vector's (`recli recommend --whole-user` with exact search
instead of the index's approximate one): the user's served fused vector against every item's
fused vector, items the user has seen left out, scored by blocks (`pipeline.models.top_k`). The
work goes partition by partition (`data/processed/by_user/`) on the configured engine: in this
process, or as Ray tasks that each read a partition and their users' rows of the served vectors,
so the stage's own process holds the item vectors and titles, never the users. Both backends run
the same function on the same partitions and write the same lists.

Outputs under `data/export/`: `top_k/part-NNNNN.parquet` (one per partition: `user_id`, `rank`
from 1, `item_id`, `score`, `because_item_id` and `reason`, "because <title>") and
`export.json` (users, rows, k, the backend, seconds). `recli export` writes the same files for
any k into any folder.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from pipeline.core import io
from pipeline.core.config import ExportConfig, load_params
from pipeline.core.layout import Layout, writes
from pipeline.data.artifacts import fused_files, read_items, served_fused_users_file
from pipeline.engine.partitions import (
    by_user_folder,
    local_matrix,
    partition_files,
    read_partition,
)
from pipeline.engine.runner import Engine
from pipeline.models.top_k import because, block_top_k
from recli.errors import RecliError
from recli.explain import WHY_HISTORY_ITEMS

TOP_K_DIR = "top_k"


def _recent(events: pl.DataFrame, users: np.ndarray) -> list[np.ndarray]:
    """Each user's `WHY_HISTORY_ITEMS` most recent items, newest first, in `users` order."""
    lists = (
        events.group_by("user_idx", maintain_order=True)
        .agg(pl.col("item_idx").tail(WHY_HISTORY_ITEMS).reverse())
        .select("user_idx", "item_idx")
    )
    by_user = dict(lists.iter_rows())
    return [np.asarray(by_user[int(user)], dtype=np.int64) for user in users]


def export_partition(
    path: Path,
    part: int,
    user_vectors: Path,
    items: np.ndarray,
    catalogue: pl.DataFrame,
    cfg: ExportConfig,
    out: Path,
) -> int:
    """The top-k lists of one partition's users, as `out/part-NNNNN.parquet`; returns its rows.
    `user_vectors`: the served fused user vectors' `.npy` (only this partition's rows are read);
    `catalogue`: `item_id` and `title` in item-index order."""
    # One BLAS thread, as in a Ray task: a matrix product's rounding depends on how many
    # threads share it, and the lists must be the same bytes on both backends.
    with threadpool_limits(limits=1, user_api="blas"):
        events = read_partition(path)
        users, seen = local_matrix(events, items.shape[0])
        vectors = np.load(user_vectors, mmap_mode="r", allow_pickle=False)
        recent = _recent(events, users)
        ids = events.unique("user_idx", maintain_order=True)["user_id"]
        frames: list[pl.DataFrame] = []
        for start in range(0, len(users), cfg.user_block):
            block = slice(start, start + cfg.user_block)
            top, scores = block_top_k(
                np.asarray(vectors[users[block]]), items, seen[block], cfg.k, cfg.item_block
            )
            top[~np.isfinite(scores)] = -1
            why = because(items, top, recent[block])
            frames.append(_rows(ids[block], top, scores, why, catalogue))
        frame = pl.concat(frames) if frames else _rows(ids[:0], *_empty(cfg.k), catalogue)
        io.write_parquet(Path(out) / TOP_K_DIR / f"part-{part:05d}.parquet", frame)
        return frame.height


def _empty(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An empty partition's arrays (no users, k columns)."""
    return np.empty((0, k), np.int64), np.empty((0, k), np.float32), np.empty((0, k), np.int64)


def _rows(
    ids: pl.Series, top: np.ndarray, scores: np.ndarray, why: np.ndarray, catalogue: pl.DataFrame
) -> pl.DataFrame:
    """One row per (user, recommended item), in rank order."""
    k = top.shape[1]
    present = (top >= 0).ravel()
    reasons = pl.Series(why.ravel()[present])
    reasons = reasons.set(reasons < 0, None)  # no history: no reason
    titles = catalogue["title"].gather(reasons)
    return pl.DataFrame(
        {
            "user_id": ids.gather(np.repeat(np.arange(len(ids)), k)[present]),
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), len(ids))[present],
            "item_id": catalogue["item_id"].gather(top.ravel()[present]),
            "score": scores.ravel()[present].astype(np.float32),
            "because_item_id": catalogue["item_id"].gather(reasons),
            "reason": ("because " + titles).fill_null("no history"),
        }
    )


def run(
    engine: Engine,
    partitions: Path,
    user_vectors: Path,
    items: np.ndarray,
    catalogue: pl.DataFrame,
    cfg: ExportConfig,
    out: Path,
) -> dict[str, Any]:
    """Every partition's lists on `engine` into `out/top_k/`; returns what `export.json` says."""
    started = time.perf_counter()
    pieces = [
        (path, part, user_vectors, items, catalogue, cfg, out)
        for part, path in enumerate(partition_files(partitions))
    ]
    rows = engine.map(export_partition, pieces)
    return {
        "k": cfg.k,
        "rows": int(sum(rows)),
        "partitions": len(pieces),
        "backend": engine.name,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _inputs(layout: Layout) -> tuple[np.ndarray, pl.DataFrame, Path]:
    """The fused item vectors, `item_id, title` in item-index order, the served user vectors'
    file: what every export reads (the users' rows only inside the partitions' tasks)."""
    items = io.read_npy(fused_files(layout)[0], "fuse")
    catalogue = read_items(layout).sort("item_idx").select("item_id", "title")
    return items, catalogue, io.require(served_fused_users_file(layout), "fuse")


def _export(layout: Layout, engine: Engine, cfg: ExportConfig, out: Path) -> dict[str, Any]:
    items, catalogue, users = _inputs(layout)
    with engine.session():
        record = run(engine, by_user_folder(layout), users, items, catalogue, cfg, out)
    io.write_json(out / "export.json", record)
    print(
        f"export: top {record['k']} for every user, {record['rows']} rows in "
        f"{record['partitions']} partitions on the {record['backend']} backend, "
        f"{record['seconds']} s"
    )
    return record


@writes("export")
def main(layout: Layout) -> None:
    params = load_params(layout.params)
    _export(layout, Engine(params.engine), params.export, layout.export)


def export_to(
    root: Path, to: Path, k: int | None = None, backend: str | None = None
) -> dict[str, Any]:
    """`recli export`: the project's top-k lists (its params, with `k` and `backend` when
    given) into `to`, which must be new or an earlier export (never any other folder: it is
    replaced whole). Returns what `export.json` says."""
    layout = Layout(root)
    params = load_params(layout.params)
    if k is not None and not 1 <= k <= 1000:
        raise RecliError(f"--k must be between 1 and 1000 (got {k}): e.g. --k 20")
    cfg = params.export if k is None else params.export.but(k=k)
    engine_cfg = params.engine if backend is None else params.engine.but(backend=backend)
    to = Path(to)
    if to.exists() and not (to / "export.json").is_file():
        raise RecliError(
            f"{to} exists and is not an earlier export (no export.json): name a new folder"
        )
    with io.atomic_directory(to) as folder:
        return _export(layout, Engine(engine_cfg), cfg, folder)


def _command_line(arguments: list[str]) -> None:
    """`python -m pipeline.export`: the stage; with `--to`, an export for `recli export`."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.export")
    parser.add_argument("--to", type=Path, help="write here instead of data/export")
    parser.add_argument("--k", type=int, help="items per user (default: export.k)")
    parser.add_argument("--backend", choices=["local", "ray"], help="default: engine.backend")
    parsed = parser.parse_args(arguments)
    if parsed.to is None:
        main()
    else:
        export_to(Path("."), parsed.to, parsed.k, parsed.backend)


if __name__ == "__main__":
    io.run_stage(lambda: _command_line(sys.argv[1:]))
