"""User-vector outputs assembled from the partitions' pieces, one piece in memory at a time.

A per-user task writes the rows it computed, with their row numbers, as one small `.npz` beside
the output (`write_piece`); the stage's process then copies every piece into a memory-mapped
`.npy` (`assemble`) and removes the pieces. Each file has one writer, so this is safe on any
storage the workers share (a network file system included), and the stage's process never holds
more than one partition's rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PIECE_GLOB = "{name}.piece-*.npz"


def piece_file(folder: Path, name: str, part: int) -> Path:
    return Path(folder) / f"{name}.piece-{part:05d}.npz"


def write_piece(folder: Path, name: str, part: int, rows: np.ndarray, values: np.ndarray) -> int:
    """Rows `rows` of output `name` from partition `part`; returns how many."""
    path = piece_file(folder, name, part)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp.npz")
    np.savez(temporary, rows=np.asarray(rows, dtype=np.int64), values=values)
    temporary.replace(path)
    return len(rows)


def assemble(
    folder: Path, name: str, destination: Path, shape: tuple[int, int], dtype: type = np.float32
) -> int:
    """`destination`: an `.npy` of `shape` with every piece of `name` under `folder` copied
    into its rows (rows no piece has stay zero); removes the pieces and returns the rows
    written."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    target = np.lib.format.open_memmap(destination, mode="w+", dtype=dtype, shape=shape)
    written = 0
    for path in sorted(Path(folder).glob(PIECE_GLOB.format(name=name))):
        with np.load(path, allow_pickle=False) as piece:
            target[piece["rows"]] = piece["values"]
            written += len(piece["rows"])
        path.unlink()
    target.flush()
    del target
    return written
