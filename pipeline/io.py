"""Artifact reads and writes: atomic, typed, never pickle.

Every write goes to a temporary file in the destination's directory and is renamed into place, so a
stage killed midway leaves the previous good output intact (a rename within one filesystem is
atomic). Reads check that the artifact exists and say which stage produces it when it does not.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from recli.errors import RecliError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(destination: Path) -> Iterator[Path]:
    """Yield a temporary path next to `destination`; rename it into place on success only."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent
    )
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        # mkstemp creates 0600 files; give the artifact the permissions any new file would get.
        if temporary_path.is_file():
            temporary_path.chmod(0o666 & ~_UMASK)
        os.replace(temporary_path, destination)
    finally:
        temporary_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(destination: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `destination`; swap it into place on success.

    The old directory is moved aside only once the new one is complete, so a run killed midway
    leaves the previous good output intact. (Two renames, not one: POSIX has no portable atomic
    directory exchange, so there is a moment with no `destination` - never a half-written one.)
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(
        tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
    )
    # mkdtemp makes the directory private (0700); the output should get the usual permissions.
    temporary.chmod(0o777 & ~_UMASK)
    try:
        yield temporary
        if destination.exists():
            retired = Path(
                tempfile.mkdtemp(
                    prefix=f".{destination.name}.", suffix=".old", dir=destination.parent
                )
            )
            os.replace(destination, retired / destination.name)
            os.replace(temporary, destination)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(temporary, destination)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def require(path: Path, produced_by: str) -> Path:
    """Fail with a clear message when an input artifact is missing."""
    path = Path(path)
    if not path.exists():
        raise RecliError(f"{path} is missing: run `dvc repro {produced_by}` to produce it")
    return path


def write_json(path: Path, payload: Any) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(
            json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )


def read_json(path: Path, produced_by: str) -> Any:
    try:
        return json.loads(require(path, produced_by).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise RecliError(
            f"{path} is corrupted ({error.msg}): run `dvc repro -f {produced_by}`"
        ) from None
    except UnicodeDecodeError:
        # Every JSON artifact is written as UTF-8: other bytes mean a damaged file.
        raise RecliError(
            f"{path} is corrupted (not UTF-8 text): run `dvc repro -f {produced_by}`"
        ) from None


def write_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as temporary, temporary.open("wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)


def read_npy(path: Path, produced_by: str) -> np.ndarray:
    try:
        return np.load(require(path, produced_by), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        # numpy takes any file without an .npy header for pickled data and suggests loading it
        # unsafely; that advice is not ours to pass on.
        reason = "not a plain .npy array" if "pickle" in str(error) else _first_line(error)
        raise RecliError(
            f"{path} is corrupted ({reason}): run `dvc repro -f {produced_by}`"
        ) from None


def write_parquet(path: Path, frame: Any) -> None:
    """Write a polars DataFrame atomically."""
    with atomic_path(path) as temporary:
        frame.write_parquet(temporary)


def read_parquet(path: Path, produced_by: str) -> Any:
    import polars as pl

    try:
        return pl.read_parquet(require(path, produced_by))
    except (pl.exceptions.ComputeError, OSError) as error:
        raise RecliError(
            f"{path} is corrupted ({_first_line(error)}): run `dvc repro -f {produced_by}`"
        ) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _red(text: str) -> str:
    """`text` in red on a terminal; plain where stderr is a file or a pipe (logs, CI), or when
    NO_COLOR is set."""
    colour = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    return f"\x1b[31m{text}\x1b[0m" if colour else text


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's `main()`, turning a `RecliError` into one red line and exit code 1.

    SIGTERM (`kill`, a cancelled CI job) is treated like Ctrl-C, so temporary files are cleaned up
    on the way out; the outputs of earlier runs are never touched either way.
    """

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    try:
        main()
    except RecliError as error:
        print(f"{_red('error:')} {error}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print("interrupted: earlier outputs are untouched", file=sys.stderr)
        raise SystemExit(130) from None
