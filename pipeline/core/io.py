"""Artifact reads and writes: atomic, typed, never pickle.

Every write goes to a temporary file in the destination's directory and is renamed into place, so a
writer killed midway leaves the previous good output intact (a rename within one filesystem is
atomic). Inside `stage_outputs` (every stage's `main` runs in one) the writes to the stage's
declared outputs go to its staging folder instead, and the whole set is committed at the end
(`recli.transaction`): after any interruption either all old or all new outputs are in place.
Reads of an output the stage has already written read the staged copy. Reads check that the
artifact exists and say which stage produces it when it does not.
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

from recli import transaction
from recli.errors import RecliError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


class StageOutputs:
    """The declared outputs of the running stage, and where this run writes each of them."""

    def __init__(self, artifacts: Path, stage: str, outputs: list[Path]) -> None:
        self.artifacts = Path(os.path.abspath(artifacts))
        self.stage = stage
        self.folder = transaction.staging_root(self.artifacts) / stage
        self.outputs = [Path(os.path.abspath(path)) for path in outputs]
        self.committed = False

    def _staged(self, number: int) -> Path:
        return self.folder / transaction.NEW / f"{number}-{self.outputs[number].name}"

    @property
    def staging(self) -> list[tuple[Path, Path]]:
        """(declared output, where this run writes it) for each output: what the stage's layout
        is given (`Layout.staged`), so that nothing it writes reaches the live outputs early."""
        return [(output, self._staged(number)) for number, output in enumerate(self.outputs)]

    def commit(self) -> None:
        """Publish the journal and put every written output in place; an interrupting signal
        that arrives meanwhile is held until the commit ends (`run_stage` then reports it)."""
        journal = {
            f"{number}-{self.outputs[number].name}": os.path.relpath(
                self.outputs[number], self.artifacts
            )
            for number in range(len(self.outputs))
            if self._staged(number).exists()
        }
        with _signals_held(self.stage):
            transaction.write_journal(self.folder, journal)
            self.committed = True
            transaction.roll_forward(self.artifacts, self.stage)
            _FINISHED.append(self.stage)


_HOLDING: list[str] = []
"""The stage whose commit is under way (empty otherwise): signals wait until it ends."""
_HELD: list[int] = []
"""Signals that arrived during a commit, delivered as KeyboardInterrupt once it ends."""


@contextlib.contextmanager
def _signals_held(stage: str) -> Iterator[None]:
    """Hold SIGINT/SIGTERM while `stage` commits; raise KeyboardInterrupt afterwards if one came.

    A flag, not a signal mask: Python runs its handlers between bytecodes, so a signal that
    reached the process just before a mask was set would still raise inside the commit. With the
    flag the handler itself sees the commit under way and only records the signal.
    """
    _HOLDING.append(stage)
    try:
        yield
    finally:
        _HOLDING.clear()
    if _HELD:
        _HELD.clear()
        raise KeyboardInterrupt


def _interrupt(signum: int, frame: object) -> None:
    """SIGINT and SIGTERM: stop the stage, except during a commit, which is let finish."""
    if _HOLDING:
        if not _HELD:
            print(
                f"{signal.Signals(signum).name} received: waiting for {_HOLDING[0]} to finish "
                "putting its new outputs in place",
                file=sys.stderr,
                flush=True,
            )
        _HELD.append(signum)
        return
    raise KeyboardInterrupt


_FINISHED: list[str] = []  # stages of this process whose outputs were committed


def _strays(output: Path) -> list[Path]:
    """Temporaries that writers killed by earlier versions left beside or inside `output`."""
    found = list(output.parent.glob(f".{output.name}.*.tmp"))
    found += output.parent.glob(f".{output.name}.*.old")
    if output.is_dir():
        found += [path for path in output.rglob(".*.tmp")]
    return found


@contextlib.contextmanager
def stage_outputs(artifacts: Path, stage: str, outputs: list[Path]) -> Iterator[StageOutputs]:
    """Run a stage so that its `outputs` are replaced as a set, or not at all.

    First finishes any committed swap an interrupted run left (of any stage), deletes this
    stage's abandoned staging folder and stray temporaries. The block writes its outputs to
    their staging places (`StageOutputs.staging`); the outputs written are committed only if the
    block ends normally.
    """
    transaction.roll_forward(artifacts)
    transaction.discard(artifacts, stage)
    for output in outputs:
        for stray in _strays(Path(output)):
            shutil.rmtree(stray) if stray.is_dir() else stray.unlink(missing_ok=True)
    running = StageOutputs(artifacts, stage, outputs)
    running.folder.mkdir(parents=True)
    try:
        yield running
        running.commit()
    finally:
        if not running.committed:
            shutil.rmtree(running.folder, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(destination: Path) -> Iterator[Path]:
    """Yield a temporary path next to `destination`; rename it into place on success only."""
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
    directory exchange, so there is a moment with no `destination` - never a half-written one.
    Inside `stage_outputs` the destination is in staging, where nothing else reads it.)
    """
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


def interruption_message(finished: list[str]) -> str:
    """What is true after an interruption: which set of outputs is in place, and what the
    next `dvc repro` does (DVC records a stage only when its command exits 0)."""
    if finished:
        stage = finished[-1]
        return (
            f"interrupted after {stage} put its new outputs in place: DVC did not record the "
            f"run, so the next `dvc repro` runs {stage} again"
        )
    return (
        "interrupted before the stage committed: the previous run's outputs are in place, "
        "untouched; the next `dvc repro` runs the stage again"
    )


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's `main()`, turning a `RecliError` into one red line and exit code 1.

    SIGTERM (`kill`, a cancelled CI job) is treated like Ctrl-C, so temporary files are cleaned up
    on the way out. Interrupted before its commit, a stage leaves the outputs of earlier runs
    untouched; a signal during the commit waits until every new output is in place, and the
    line printed says which set is in place.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        main()
    except RecliError as error:
        print(f"{_red('error:')} {error}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print(interruption_message(_FINISHED), file=sys.stderr)
        raise SystemExit(130) from None
