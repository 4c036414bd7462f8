"""Stage outputs replaced as a set: a journal that commits a stage's outputs all at once.

A stage writes every output into its own staging folder, `<artifacts>/.staging/<stage>/new/`,
never over the old files. When it has finished, one atomic rename puts `journal.json` in place:
that is the commit point. The journal lists each output's final path; rolling forward moves each
old output aside into `old/` and the new one into place, then deletes the journal and the staging
folder. Every step can be repeated, so a process killed while rolling forward is finished by the
next one to look (any stage's start, any `recli` command):

- killed before the journal exists: the old outputs are all still in place; the next run of that
  stage deletes the abandoned staging folder;
- killed after: the new outputs are complete in staging, and `roll_forward` puts all of them in
  place.

Only the standard library is used, so the serving side can finish a swap without the training
stack. Paths in the journal are relative to the artifacts folder, so a project can be moved.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

STAGING_DIR = ".staging"
"""Inside the artifacts folder: one sub-folder per stage while it runs or commits."""
JOURNAL = "journal.json"
NEW, OLD = "new", "old"


def staging_root(artifacts: Path) -> Path:
    return Path(artifacts) / STAGING_DIR


def committed(artifacts: Path) -> list[str]:
    """The stages whose outputs are committed but not yet all in place."""
    root = staging_root(artifacts)
    if not root.is_dir():
        return []
    return sorted(path.parent.name for path in root.glob(f"*/{JOURNAL}"))


@contextlib.contextmanager
def _locked(artifacts: Path) -> Iterator[None]:
    """One process at a time rolls forward (a stage and a `recli` command may both try)."""
    root = staging_root(artifacts)
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("a") as handle:
        try:
            import fcntl
        except ImportError:  # no advisory locks on this platform: renames are still idempotent
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_journal(stage_dir: Path, outputs: dict[str, str]) -> None:
    """Commit: atomically publish `{slot: path relative to the artifacts folder}`."""
    temporary = stage_dir / f".{JOURNAL}.tmp"
    with temporary.open("w", encoding="utf-8") as handle:
        json.dump({"outputs": outputs}, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, stage_dir / JOURNAL)


def _roll_forward(artifacts: Path, stage: str) -> None:
    stage_dir = staging_root(artifacts) / stage
    journal = stage_dir / JOURNAL
    if not journal.exists():
        return
    outputs: dict[str, str] = json.loads(journal.read_text(encoding="utf-8"))["outputs"]
    for slot, relative in outputs.items():
        new, old = stage_dir / NEW / slot, stage_dir / OLD / slot
        destination = Path(artifacts) / relative
        if not (new.exists() or new.is_symlink()):
            continue  # moved in by an earlier, interrupted roll-forward
        if destination.exists() or destination.is_symlink():
            _remove(old)  # left by an interrupted attempt: the destination is the old output
            old.parent.mkdir(parents=True, exist_ok=True)
            os.replace(destination, old)
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(new, destination)
    journal.unlink()
    shutil.rmtree(stage_dir, ignore_errors=True)


def roll_forward(artifacts: Path, stage: str | None = None) -> list[str]:
    """Finish every committed swap (or only `stage`'s); returns the stages finished."""
    stages = committed(artifacts)
    if stage is not None:
        stages = [name for name in stages if name == stage]
    if not stages:
        return []
    with _locked(artifacts):
        for name in stages:
            _roll_forward(Path(artifacts), name)
    return stages


def discard(artifacts: Path, stage: str) -> bool:
    """Delete `stage`'s uncommitted staging folder (left by a run that was killed); True if any.

    Only the stage itself calls this, when it starts again: another process may be writing the
    staging folder of a stage that is running now.
    """
    stage_dir = staging_root(artifacts) / stage
    if not stage_dir.exists() or (stage_dir / JOURNAL).exists():
        return False
    shutil.rmtree(stage_dir)
    return True
