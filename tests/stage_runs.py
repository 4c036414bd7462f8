"""Stages run the way DVC runs them, in a scratch project with good inputs and an earlier run's
outputs: what the bad-input and interruption tests start from.

`make_project` writes a small, clean bring-your-own dataset (8 users × 5 events over 10 items, no
ties, no problems), valid params and `SENTINELS`, the outputs of an earlier good run that every
failing stage must leave byte for byte as they were. `run_stage` runs `python -m
pipeline.<stage>` there; `one_error_line` checks a failure's promise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]

# A small, clean bring-your-own dataset: 8 users × 5 events over 10 items, no ties, no problems.
HEADER = "user_id,item_id,rating,timestamp\n"
GOOD_ROWS = "".join(
    f"{user},{100 + (user + 2 * event) % 10},{(user + event) % 5 + 1},{1000 * user + event}\n"
    for user in range(1, 9)
    for event in range(5)
)
ITEMS = "item_id,title\n" + "".join(f"{100 + i},Film {i} ({1990 + i})\n" for i in range(10))
BASE_PARAMS: dict[str, Any] = {
    "data": {
        "source": "files",
        "files": {
            "interactions": "data/input/ratings.csv",
            "items": "data/input/movies.csv",
            "item_columns": {"genres": None},
        },
    },
    "preprocess": {"min_user_interactions": 3, "cold_item_fraction": 0.0},
}
# Outputs of an earlier, good run: every failing stage must leave them exactly as they were.
SENTINELS = {
    "data/processed/train.parquet": b"previous good train split",
    "data/factorize/user_factors.npy": b"previous good user factors",
    "data/cluster/assignments.parquet": b"previous good assignments",
    "metrics/preprocess.json": b'{"previous": "good run"}\n',
}


def code_env(**extra: str) -> dict[str, str]:
    """This process's environment with the project's own code first on `PYTHONPATH`, and
    `extra` variables."""
    env = dict(os.environ)
    # The project's own code, run from a scratch folder, as DVC runs it from the project root.
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def run_stage(project: Path, stage: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"pipeline.{stage}"],
        cwd=project,
        env=code_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """A failed stage's whole stderr: exactly one `error:` line, exit code 1, no traceback."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert "\x1b" not in line, "stderr is a pipe here: no colour codes"
    assert line.startswith("error: "), line
    return line


def write_params(project: Path, **sections: Any) -> None:
    params = json.loads(json.dumps(BASE_PARAMS))  # a deep copy
    for section, values in sections.items():
        params[section] = {**params.get(section, {}), **values}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def outputs(project: Path) -> dict[str, bytes]:
    """Every file a stage may write (all of `data/` but the inputs, and `metrics/`)."""
    return {
        path.relative_to(project).as_posix(): path.read_bytes()
        for folder in ("data", "metrics")
        for path in sorted((project / folder).rglob("*"))
        if path.is_file() and "input" not in path.relative_to(project).parts
    }


def summary(project: Path) -> dict[str, Any]:
    return json.loads((project / "metrics/preprocess.json").read_text())


def make_project(folder: Path) -> Path:
    """`folder` as a project with good inputs, valid params and the outputs of an earlier run."""
    (folder / "data/input").mkdir(parents=True)
    (folder / "data/input/ratings.csv").write_text(HEADER + GOOD_ROWS)
    (folder / "data/input/movies.csv").write_text(ITEMS)
    write_params(folder)
    for relative, content in SENTINELS.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(content)
    return folder
