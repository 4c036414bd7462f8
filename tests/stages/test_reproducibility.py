"""Reproducibility: the same params give the same numbers (across processes and hash seeds),
nothing loads pickles, and served artifacts from another run are noticed by `recli doctor`.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_artifacts import build_artifacts
from stage_runs import REPO, code_env
from synthetic import make_raw
from typer.testing import CliRunner

from pipeline import cluster, evaluate, factorize, index, preprocess
from pipeline.core.sections import (
    ClusterConfig,
    EvaluateConfig,
    FactorizeConfig,
    FuseConfig,
    IndexConfig,
    PreprocessConfig,
    SplitConfig,
)
from pipeline.data.artifacts import Embeddings
from pipeline.data.serving import seal
from pipeline.evaluation.protocol import SplitMatrices
from pipeline.models.fusion import tune_fusion
from recli.cli import app
from recli.contract import file_digest

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent


# --------------------------------------------------------------------------------------------
# Reproducibility: same params, same numbers (across processes and hash seeds)
# --------------------------------------------------------------------------------------------
def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def small_pipeline(
    split_seed: int = 42, factorize_seed: int = 42, workdir: Path | None = None
) -> dict[str, Any]:
    """preprocess → factorize → cluster → fusion → Annoy → evaluate on synthetic data, JSON-ready.

    The text side is a fixed random "encoder" (vectors drawn from seed 0), so every difference
    comes from the stages' own random choices.
    """
    raw = make_raw(n_users=30, n_items=40, per_user=12)  # with timestamp ties for the split
    processed = preprocess.run(
        raw,
        PreprocessConfig(
            min_user_interactions=3, cold_item_fraction=0.1, split=SplitConfig(seed=split_seed)
        ),
    )
    matrices = SplitMatrices.from_processed(processed)
    factors = factorize.run(
        matrices.train, FactorizeConfig(embedding_size=8, epochs=5, seed=factorize_seed)
    )
    rng = np.random.default_rng(0)
    text = Embeddings(
        users=rng.normal(size=(processed.users.height, 16)).astype(np.float32),
        items=rng.normal(size=(processed.items.height, 16)).astype(np.float32),
    )
    clustering = cluster.run(text.users, text.items, processed, ClusterConfig(k=3, seed=7))
    evaluate_cfg = EvaluateConfig(ease_reg_grid=[1.0, 10.0], activity_buckets=[5, 10])
    fuse_cfg = FuseConfig(weight_grid=[0.0, 0.5, 1.0], seed=3)
    index_cfg = IndexConfig(n_trees=5, seed=3)
    fusion, _, by_weight = tune_fusion(text, factors, matrices, fuse_cfg, seed=split_seed)
    fused_items = fusion.fuse(text.items, factors.items)
    annoy_digest = None
    if workdir is not None:
        index.build_annoy(fused_items, index_cfg, workdir / "items.ann")
        annoy_digest = file_digest(workdir / "items.ann")
    scorers, tuning = evaluate.peer_scorers(matrices, evaluate_cfg, factors, seed=split_seed)
    scorers["fused"] = lambda users: fusion.fuse(text.users, factors.users)[users] @ fused_items.T
    report = evaluate.run(matrices, scorers, evaluate_cfg, seed=split_seed)
    return json.loads(
        json.dumps(
            {
                "preprocess": processed.summary,
                "test_events": _digest(processed.test.to_numpy()),
                "factors": [_digest(factors.users), _digest(factors.items)],
                "cluster": clustering.metrics,
                "assignments": clustering.assignments["cluster"].to_list(),
                "fusion": [fusion.text_weight, by_weight],
                "annoy": annoy_digest,
                "evaluation": report.metrics,
                "tuning": tuning,
            }
        )
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return small_pipeline(workdir=tmp_path_factory.mktemp("first"))


def test_same_params_same_numbers_in_process(reference: dict[str, Any], tmp_path: Path) -> None:
    assert small_pipeline(workdir=tmp_path) == reference
    assert reference["evaluation"]["test"]["als"]["users"] > 0
    assert reference["annoy"] is not None


def test_same_params_same_numbers_in_another_process(
    reference: dict[str, Any], tmp_path: Path
) -> None:
    # Another interpreter with another string-hash seed: set and dict orders may not leak out.
    code = (
        "import json, sys; from pathlib import Path; "
        "from test_reproducibility import small_pipeline; "
        "print(json.dumps(small_pipeline(workdir=Path(sys.argv[1]))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        env=code_env(
            PYTHONPATH=os.pathsep.join([str(HERE), str(TESTS), str(REPO)]), PYTHONHASHSEED="12345"
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == reference


def test_seeds_reach_the_split_and_the_factors(reference: dict[str, Any]) -> None:
    other_split = small_pipeline(split_seed=7)
    assert other_split["test_events"] != reference["test_events"]
    assert other_split["evaluation"] != reference["evaluation"]
    other_factors = small_pipeline(factorize_seed=7)
    assert other_factors["test_events"] == reference["test_events"]
    assert other_factors["factors"] != reference["factors"]


# --------------------------------------------------------------------------------------------
# No unsafe loading anywhere in the code
# --------------------------------------------------------------------------------------------
PICKLING_MODULES = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "joblib", "shelve"}
PICKLING_ATTRIBUTES = {"read_pickle", "to_pickle"}


def unsafe_loading(tree: ast.AST) -> list[str]:
    """Every pickle import or use, `allow_pickle=True`, `trust_remote_code=True`, and every
    `torch.load` without `weights_only=True`, as `line: what`."""
    found = []
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module]
        found += [
            f"{node.lineno}: import {name}"
            for name in modules
            if name.split(".")[0] in PICKLING_MODULES
        ]
        if isinstance(node, ast.Attribute) and node.attr in PICKLING_ATTRIBUTES:
            found.append(f"{node.lineno}: .{node.attr}")
        if not isinstance(node, ast.Call):
            continue
        keywords = {
            keyword.arg: getattr(keyword.value, "value", None)
            for keyword in node.keywords
            if keyword.arg
        }
        for name in ("allow_pickle", "trust_remote_code"):
            if keywords.get(name) is True:
                found.append(f"{node.lineno}: {name}=True")
        function = ast.unparse(node.func)
        if function.endswith("torch.load") and keywords.get("weights_only") is not True:
            found.append(f"{node.lineno}: {function}() without weights_only=True")
    return found


def test_the_checker_finds_what_it_looks_for() -> None:
    code = (
        "import pickle\nfrom joblib import load\nimport numpy as np\nimport torch\n"
        "np.load('x', allow_pickle=True)\ntorch.load('m')\ntorch.load('m', weights_only=True)\n"
        "frame.to_pickle('x')\n"
    )
    assert unsafe_loading(ast.parse(code)) == [
        "1: import pickle",
        "2: import joblib",
        "5: allow_pickle=True",
        "6: torch.load() without weights_only=True",
        "8: .to_pickle",
    ]


def test_no_pickle_anywhere() -> None:
    sources = [
        path
        for folder in ("pipeline", "recli", "scripts", "tests")
        for path in sorted((REPO / folder).rglob("*.py"))
    ]
    assert len(sources) > 20
    problems = [
        f"{path.relative_to(REPO)}:{problem}"
        for path in sources
        for problem in unsafe_loading(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert problems == []
    dependencies = (REPO / "pyproject.toml").read_text()
    assert not re.search(r"\b(joblib|dill|cloudpickle)\b", dependencies)


# --------------------------------------------------------------------------------------------
# Served artifacts from another run: `recli doctor` notices
# --------------------------------------------------------------------------------------------
def _set_meta(root: Path, key: str, value: Any) -> None:
    connection = sqlite3.connect(root / "index" / "catalogue.sqlite")
    connection.execute("UPDATE meta SET value = ? WHERE key = ?", (json.dumps(value), key))
    connection.commit()
    connection.close()
    seal(root)  # as the index stage would have recorded it


def test_doctor_reports_an_upstream_file_changed_since_the_index(tmp_path: Path) -> None:
    root = build_artifacts(tmp_path / "artifacts")["root"]
    upstream = root / "processed" / "train.parquet"
    upstream.parent.mkdir()
    upstream.write_bytes(b"the training split the index was built from")
    _set_meta(root, "built_from", {"processed/train.parquet": file_digest(upstream)[:16]})
    runner = CliRunner()
    env = {"COLUMNS": "250", "RECLI_ARTIFACTS": None}

    fresh = runner.invoke(app, ["--artifacts", str(root), "doctor"], env=env)
    assert fresh.exit_code == 0, fresh.output
    assert "1 match the catalogue" in fresh.stdout

    upstream.write_bytes(b"a newer training split")  # preprocess re-ran, index did not
    stale = runner.invoke(app, ["--artifacts", str(root), "doctor"], env=env)
    assert stale.exit_code == 1
    assert "changed since the index was built (processed/train.parquet)" in stale.stdout
    (line,) = stale.stderr.strip().splitlines()
    assert line == "error: 1 problem(s) (upstream files): fix them as the table says"
