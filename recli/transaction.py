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

A journal is read from disk, so it is not trusted: before anything moves, every path it names is
resolved (symbolic links followed) and must lie inside the artifacts folder or the project's
`metrics/` folder beside it, and every slot must be one plain name inside the stage's staging
folder. A journal that fails this (crafted, or damaged) stops the command with one line and
touches nothing; so does a staging folder that is a link to somewhere else.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from recli.contract import METRICS_FILE
from recli.errors import RecliError

STAGING_DIR = ".staging"
"""Inside the artifacts folder: one sub-folder per stage while it runs or commits."""
JOURNAL = "journal.json"
NEW, OLD = "new", "old"


def staging_root(artifacts: Path) -> Path:
    return Path(artifacts) / STAGING_DIR


def allowed_roots(artifacts: Path) -> list[Path]:
    """Where a journal may put outputs: the artifacts folder and the project's `metrics/`
    (the artifacts folder's sibling, as `dvc.yaml` declares the stages' metrics files)."""
    folder = Path(os.path.realpath(artifacts))
    return [folder, folder.parent / METRICS_FILE.parent]


def inside(path: Path, roots: list[Path]) -> bool:
    """Whether `path`, with every link in it followed, lies strictly inside one of `roots`."""
    real = Path(os.path.realpath(path))
    return any(real != root and real.is_relative_to(root) for root in roots)


def _check_staging_root(artifacts: Path) -> Path:
    """The staging folder, refused when it is a link or leads out of the artifacts folder
    (everything in it is deleted after a commit)."""
    root = staging_root(artifacts)
    if root.is_symlink() or (root.exists() and not inside(root, allowed_roots(artifacts)[:1])):
        raise RecliError(
            f"{root} is a link to somewhere else, not recli's staging folder: remove the link "
            "(recli never creates one) and run the command again"
        )
    return root


def committed(artifacts: Path) -> list[str]:
    """The stages whose outputs are committed but not yet all in place."""
    root = _check_staging_root(artifacts)
    if not root.is_dir():
        return []
    return sorted(path.parent.name for path in root.glob(f"*/{JOURNAL}"))


@contextlib.contextmanager
def _locked(artifacts: Path) -> Iterator[None]:
    """One process at a time rolls forward (a stage and a `recli` command may both try)."""
    root = _check_staging_root(artifacts)
    root.mkdir(parents=True, exist_ok=True)
    # O_NOFOLLOW: a `.lock` planted as a link must not make recli create a file elsewhere.
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        descriptor = os.open(root / ".lock", flags, 0o666)
    except OSError as error:
        raise RecliError(
            f"{root / '.lock'} cannot be opened ({error.strerror}): remove it if it is a link, "
            "and run the command again"
        ) from None
    with os.fdopen(descriptor, "a") as handle:
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


def _untrusted(journal: Path, problem: str) -> RecliError:
    return RecliError(
        f"{journal} {problem}, so recli did not write it and will not act on it: delete "
        f"{journal.parent} and run `dvc repro {journal.parent.name}`"
    )


def read_journal(artifacts: Path, stage: str) -> dict[str, Path]:
    """The journal's `{slot: destination}`, every destination checked to lie inside the
    artifacts folder or `metrics/`, every slot one plain file name (nothing is moved yet)."""
    journal = staging_root(artifacts) / stage / JOURNAL
    staging = [staging_root(artifacts).resolve()]
    for folder in (journal.parent, journal.parent / NEW, journal.parent / OLD):
        if folder.is_symlink() or (folder.exists() and not inside(folder, staging)):
            raise _untrusted(journal, f"sits beside a link ({folder.name}) out of staging")
    try:
        outputs = json.loads(journal.read_text(encoding="utf-8"))["outputs"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise _untrusted(journal, "is not a journal recli can read") from None
    if not isinstance(outputs, dict):
        raise _untrusted(journal, "is not a journal recli can read")
    roots = allowed_roots(artifacts)
    checked: dict[str, Path] = {}
    for slot, relative in outputs.items():
        if (
            not isinstance(relative, str)
            or not slot
            or slot in (".", "..")
            or "/" in slot
            or "\\" in slot
            or "\0" in slot + relative
        ):
            raise _untrusted(journal, "names an output that is not a plain file name")
        destination = Path(artifacts) / relative
        if Path(relative).is_absolute() or not inside(destination, roots):
            raise _untrusted(journal, "names a path outside the artifacts and metrics folders")
        checked[slot] = destination
    return checked


def _roll_forward(artifacts: Path, stage: str) -> None:
    stage_dir = staging_root(artifacts) / stage
    journal = stage_dir / JOURNAL
    if not journal.exists():
        return
    for slot, destination in read_journal(artifacts, stage).items():
        new, old = stage_dir / NEW / slot, stage_dir / OLD / slot
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
    stage_dir = _check_staging_root(artifacts) / stage
    if not stage_dir.exists() or (stage_dir / JOURNAL).exists():
        return False
    shutil.rmtree(stage_dir)
    return True
