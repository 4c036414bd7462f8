"""Reading `metrics/*.json`: each file once, and an absent file or key as
`MissingMetricsError`, which a block renders as one line instead of a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
METRICS = REPO / "metrics"

WRITTEN_BY = {
    "bench_live.json": "python benchmarks/live.py",
    "bench_recommend.json": "python benchmarks/recommend.py",
    "bench_scale.json": "python benchmarks/scale.py",
    "bench_sequence.json": "python benchmarks/sequence.py",
    "bench_text_rich.json": "python benchmarks/scale.py --shape products --sizes 60000",
    "byo_check.json": "python scripts/check_byo.py path/to/ml-latest-small",
    "byo_sparse_check.json": "python scripts/check_byo.py path/to/ml-latest-small --sessions 8 "
    "--out metrics/byo_sparse_check.json",
    "byo_text_only_check.json": "python scripts/check_byo.py path/to/ml-latest-small --sessions 8 "
    "--text-only --out metrics/byo_text_only_check.json",
    "peer_check.json": "python scripts/check_peers.py",
}
"""The scripts that write the metrics files `dvc repro` does not: a missing table names its
command, so a reader knows what to run."""


class MissingMetricsError(Exception):
    """A metrics file, or a section a table needs, is not there."""


class Metrics:
    """The metrics folder, each file read once. `get` raises `MissingMetricsError` for an absent
    file or key, which the block renderer turns into one line instead of a traceback."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._cache: dict[str, Any] = {}

    def file(self, name: str) -> Any:
        if name not in self._cache:
            path = self.folder / name
            try:
                self._cache[name] = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise MissingMetricsError(f"`metrics/{name}` is not there") from None
            except json.JSONDecodeError as error:
                raise MissingMetricsError(f"`metrics/{name}` is not valid JSON ({error})") from None
        return self._cache[name]

    def get(self, name: str, *keys: str, expect: type = dict) -> Any:
        """`metrics/<name>` → keys…, which must be an `expect` (a JSON object unless said
        otherwise); `MissingMetricsError` names the first key not found or the wrong shape."""
        value = self.file(name)
        for depth, key in enumerate(keys):
            if not isinstance(value, dict) or key not in value:
                where = " → ".join(f"`{k}`" for k in keys[: depth + 1])
                raise MissingMetricsError(f"`metrics/{name}` has no {where}")
            value = value[key]
        if not isinstance(value, expect):
            where = "".join(f" → `{k}`" for k in keys)
            shape = {dict: "a JSON object", list: "a JSON list"}.get(expect, expect.__name__)
            raise MissingMetricsError(f"`metrics/{name}`{where} is not {shape}")
        return value

    def optional(self, name: str, *keys: str) -> Any:
        """Like `get`, but any shape, and None where the file or a key is absent."""
        try:
            return self.get(name, *keys, expect=object)
        except MissingMetricsError:
            return None
