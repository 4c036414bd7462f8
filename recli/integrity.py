"""What is served is what was built: the index stage's record of every served file, and checks.

The index stage writes `index/manifest.json` last, after the catalogue, the Annoy index and the
encoder it serves with are final. For each file (a path relative to the artifacts folder) it
records the size, the full sha256 and a *sampled* digest: BLAKE2b over the size and `SAMPLES`
blocks of `BLOCK` bytes spread evenly through the file, the first and last blocks included.

- `check_sampled` runs every time `recli` opens the artifacts. It reads at most 64 KiB a file,
  however large the file. It catches what commonly happens: an edit through SQLite changes the
  catalogue's header (its change counter, or its journal mode), a file replaced by other bytes
  of the same size changes every block, a truncated or grown file changes its size. An edit of a
  few bytes in the middle of a file can fall between the samples.
- `check_full` re-hashes every byte (`recli doctor`), which catches that too.

A file that differs raises `RecliError` naming the file and the fix. The manifest is itself read
from disk, so its paths must lie inside the artifacts folder (`recli.transaction.inside`). It
guards against accidents, careless edits and damage, not against someone who rewrites the
manifest as well: that takes a signature, which needs a key the artifacts folder does not hold.

Standard library only, and not `hashlib`: its import loads OpenSSL, a noticeable share of
`recli recommend`'s start-up (`python -X importtime` shows it), while `_blake2`, which `hashlib`
itself wraps for BLAKE2, is a small built-in module. The full sha256 (only `recli doctor`) uses
`hashlib`. What the check costs is measured by `benchmarks/recommend.py`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

try:
    from _blake2 import blake2b
except ImportError:  # not CPython: the public module, slower to import, same digest
    from hashlib import blake2b

from recli import transaction
from recli.contract import INDEX_DIR, file_digest
from recli.errors import RecliError

MANIFEST_FILE = "manifest.json"
"""Inside `INDEX_DIR`: the record of every served file."""
FORMAT = 1
BLOCK = 4096
"""Bytes per sample: one SQLite page at its default size."""
SAMPLES = 16
REBUILD = "run `dvc repro -f index` to rebuild what is served"


def manifest_path(artifacts: Path) -> Path:
    return Path(artifacts) / INDEX_DIR / MANIFEST_FILE


def sampled_digest(path: Path) -> str:
    """BLAKE2b (16 bytes) over the file's size and `SAMPLES` evenly spread blocks."""
    digest = blake2b(digest_size=16)
    with Path(path).open("rb") as handle:
        size = handle.seek(0, 2)
        digest.update(size.to_bytes(8, "little"))
        if size <= SAMPLES * BLOCK:
            handle.seek(0)
            digest.update(handle.read())
            return digest.hexdigest()
        step = (size - BLOCK) / (SAMPLES - 1)
        for number in range(SAMPLES):
            handle.seek(round(number * step))
            digest.update(handle.read(BLOCK))
    return digest.hexdigest()


def record(artifacts: Path, files: Iterable[Path], located: dict[Path, Path] | None = None) -> dict:
    """The manifest for `files` (paths under `artifacts`); `located` maps a file to where its
    bytes are now, when that differs (a stage's staged copy before its commit)."""
    located = located or {}
    entries: dict[str, dict[str, Any]] = {}
    for path in files:
        where = located.get(Path(path), Path(path))
        relative = Path(path).relative_to(artifacts).as_posix()
        entries[relative] = {
            "bytes": where.stat().st_size,
            "sha256": file_digest(where),
            "sampled": sampled_digest(where),
        }
    return {"format": FORMAT, "files": entries}


def _entries(artifacts: Path) -> dict[str, dict[str, Any]]:
    """The manifest's `{relative path: entry}`, parsed and typed (paths not yet checked)."""
    path = manifest_path(artifacts)
    if not path.exists():
        raise RecliError(
            f"{path} not found: these artifacts carry no record of what was built, {REBUILD}"
        )
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
        return {
            str(name): {
                "bytes": int(entry["bytes"]),
                "sha256": str(entry["sha256"]),
                "sampled": str(entry["sampled"]),
            }
            for name, entry in files.items()
        }
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        raise RecliError(f"{path} is damaged: {REBUILD}") from None


def read_manifest(artifacts: Path) -> dict[str, dict[str, Any]]:
    """`{relative path: entry}`, every path checked to lie inside the artifacts folder (before
    anything opens the files the manifest names)."""
    entries = _entries(artifacts)
    roots = transaction.allowed_roots(artifacts)[:1]
    for name in entries:
        if Path(name).is_absolute() or not transaction.inside(Path(artifacts) / name, roots):
            raise RecliError(
                f"{manifest_path(artifacts)} names {name[:80]!r}, outside the artifacts folder: "
                f"it was edited, {REBUILD}"
            )
    return entries


def _changed(path: Path, why: str) -> RecliError:
    return RecliError(f"{path} {why} since the index stage built it: {REBUILD}")


def _entry(entries: dict[str, dict[str, Any]], artifacts: Path, path: Path) -> dict[str, Any]:
    name = Path(path).relative_to(artifacts).as_posix()
    if name not in entries:
        raise RecliError(f"{manifest_path(artifacts)} has no record of {name}: {REBUILD}")
    return entries[name]


def check_sampled(artifacts: Path, paths: Iterable[Path]) -> None:
    """Raise unless each of `paths` has its recorded size and sampled digest (cheap). Only
    entries for `paths`, which the caller names, are looked up: no path is taken from disk."""
    entries = _entries(artifacts)
    for path in paths:
        entry = _entry(entries, artifacts, path)
        if not path.exists():
            raise RecliError(f"{path} not found: {REBUILD}")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise _changed(path, f"is {size} bytes, not the {entry['bytes']} recorded,")
        if sampled_digest(path) != entry["sampled"]:
            raise _changed(path, "was modified")


def check_full(artifacts: Path) -> list[tuple[str, str | None]]:
    """Every recorded file re-hashed: `(relative path, problem or None)` for each."""
    entries = read_manifest(artifacts)
    results: list[tuple[str, str | None]] = []
    for name, entry in entries.items():
        path = Path(artifacts) / name
        if not path.exists():
            results.append((name, f"{path} not found: {REBUILD}"))
            continue
        actual = file_digest(path)
        if path.stat().st_size != entry["bytes"] or actual != entry["sha256"]:
            results.append(
                (
                    name,
                    f"{path} was modified since the index stage built it (sha256 "
                    f"{actual[:16]}, recorded {entry['sha256'][:16]}): {REBUILD}",
                )
            )
        else:
            results.append((name, None))
    return results
