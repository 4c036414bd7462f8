"""`recli metrics --rev`: a revision typed by the user reaches git only as a revision."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git project with one committed metrics file."""
    root = tmp_path / "project"
    (root / "metrics").mkdir(parents=True)
    (root / "metrics" / "evaluation.json").write_text(
        json.dumps({"test": {"ease": {"ndcg@10": 0.05}}})
    )
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "metrics"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", "baseline"], cwd=root, check=True)
    return root


def _recli(root: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100"}
    return subprocess.run(
        [sys.executable, "-m", "recli", *arguments],
        cwd=root,
        capture_output=True,
        text=True,
        env=environment,
    )


@pytest.mark.parametrize(
    "template",
    ["--rev=--output={target}", "--rev=-o{target}"],
)
def test_a_revision_that_looks_like_an_option_writes_nothing(project: Path, template: str) -> None:
    target = project.parent / "trap"
    # git would write `<rev>:metrics/evaluation.json`, i.e. into `trap:metrics/`, had it taken
    # the revision for its `--output` option
    (project.parent / "trap:metrics").mkdir()
    result = _recli(project, "metrics", template.format(target=target))
    assert result.returncode == 1
    assert list((project.parent / "trap:metrics").iterdir()) == []
    assert sorted(path.name for path in project.parent.iterdir()) == ["project", "trap:metrics"]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no metrics/evaluation.json at git revision" in lines[0]
    assert "corrupted" not in result.stderr


def test_a_real_revision_still_compares(project: Path) -> None:
    (project / "metrics" / "evaluation.json").write_text(
        json.dumps({"test": {"ease": {"ndcg@10": 0.08}}})
    )
    result = _recli(project, "metrics", "--rev", "HEAD")
    assert result.returncode == 0, result.stderr
    assert "+0.0300" in result.stdout
    assert _recli(project, "metrics", "--rev", "HEAD~5").returncode == 1
