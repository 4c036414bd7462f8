"""The evaluation table `recli metrics` shows, read from the working tree or a git revision.

The evaluate stage writes `metrics/evaluation.json` (`{split: {model: {metric: value}}}`) and DVC
tracks it in git, so an older run's table is one `git show REV:metrics/evaluation.json` away: that
is how `--rev` compares two runs without checking anything out. Paths are relative to the current
folder (the project root), as DVC's are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from recli.contract import METRICS_FILE
from recli.errors import RecliError
from recli.inputs import shown

SPLITS = ("test", "validation")
"""The splits `recli metrics --split` accepts."""
SINGLE_VECTOR = "fused"
"""The served model of an evaluation file that names none (files from before it was chosen)."""

Rows = dict[str, dict[str, float]]
"""One split's table: model → metric → value (`users` counts the users evaluated)."""


class MetricsTable(NamedTuple):
    """One split of the evaluation, the columns to show, and the same split at `--rev`."""

    split: str
    rows: Rows
    columns: list[str]
    baseline: Rows | None
    """The split as committed at the revision compared with; None without `--rev`."""
    served: str = SINGLE_VECTOR
    """The model `recli recommend` serves (`served_in`)."""


def served_in(evaluation: Mapping[str, Any]) -> str:
    """The served model an evaluation (or a check built from one) names under `served`, else
    the single fused vector: the one place the rule is written (the docs and checks read it)."""
    return str(evaluation.get("served", SINGLE_VECTOR))


def read_metrics(rev: str | None = None) -> dict[str, Any]:
    """The whole evaluation file: the working tree's, or the one committed at git `rev`."""
    if rev is None:
        if not METRICS_FILE.exists():
            raise RecliError(
                f"{METRICS_FILE} not found: run `dvc repro` first (from the project root)"
            )
        text = METRICS_FILE.read_text(encoding="utf-8")
    else:
        text = _git_show(rev)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise RecliError(f"{METRICS_FILE} is corrupted: run `dvc repro -f evaluate`") from None


def _git_show(rev: str) -> str:
    """The metrics file at `rev`. The revision is resolved to a commit first, after
    `--end-of-options`, so text such as `--output=FILE` is only ever read as a revision name and
    never reaches git as an option; `git show` then gets the full commit id."""
    import subprocess  # only `--rev` needs it

    missing = RecliError(
        f"no {METRICS_FILE} at git revision '{rev[:60]}': pass a commit, tag or branch that has one"
    )
    if not rev or "\0" in rev:
        raise missing
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if len(commit) < 40 or not all(c in "0123456789abcdef" for c in commit):
            raise missing
        return subprocess.run(
            ["git", "show", f"{commit}:{METRICS_FILE.as_posix()}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except (subprocess.CalledProcessError, FileNotFoundError, UnicodeDecodeError):
        raise missing from None


def load_table(split: str, rev: str | None = None, cutoff: int | None = 10) -> MetricsTable:
    """The split's table with the metrics at `cutoff` (`@10`; None or 0: every metric), and the
    same split at `rev` when given. The columns are those of the first model's row."""
    current = read_metrics()
    if split not in SPLITS or split not in current:
        raise RecliError(f"unknown split '{shown(split)}': use --split test or --split validation")
    baseline = read_metrics(rev)[split] if rev is not None else None
    rows: Rows = current[split]
    columns = [name for name in next(iter(rows.values())) if name != "users"]
    if cutoff:
        columns = [name for name in columns if name.endswith(f"@{cutoff}")]
        if not columns:
            raise RecliError(f"no metrics at --k {cutoff}: use a cut-off from evaluate.k in params")
    return MetricsTable(split, rows, columns, baseline, served_in(current))
