"""The Ray backend on a real local cluster against the local backend, on one small project.

The local run builds the project once (every stage, tiny random encoder). The Ray runs start
from copies of it: the deterministic work (the factorize stage, whose fit runs as one task on a
worker and its fold-in as one per partition; the export) must give the very same bytes from the
same inputs; the whole pipeline on Ray must run end to end and give the same results within
floating-point rounding (the encoder's batches are made up differently there, which moves a text
vector by about 1e-6; every later stage is the same code).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import safetensors.numpy
from stage_project import stage_md5s
from synthetic import small_pipeline_params

from pipeline import workflow
from pipeline.core.config import EngineConfig, Params, load_params, parse_params
from pipeline.engine.runner import Engine
from recli.serve import Served

pytestmark = pytest.mark.slow

EMBEDDINGS = (
    "item_embeddings.npy",
    "user_embeddings.npy",
    "user_embeddings_at_test.npy",
    "user_embeddings_served.npy",
    "zero_shot_item_embeddings.npy",
    "zero_shot_user_embeddings_at_test.npy",
)


def _params(root: Path, encoder: Path) -> Params:
    raw = small_pipeline_params(root, encoder)
    raw["export"].update(k=5, user_block=7, item_block=16)  # several blocks of each
    raw["engine"]["partitions"] = 5
    # No dropout in the sequence models: its masks are drawn per worker, so a data-parallel run
    # could only match a one-worker run in distribution.
    raw["sequence"].update(dropout=0.0, batch_size=32)
    return parse_params(raw)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    """The small project, every stage run on the local backend."""
    root = tmp_path_factory.mktemp("local")
    workflow.run_all(_params(root, tiny_encoder_dir), root)
    return root


def _on_ray(local: Path, target: Path) -> Params:
    """A copy of the local project, set to run on Ray."""
    shutil.copytree(local, target)
    return workflow.override(load_params(local / "params.yaml"), {"engine.backend": "ray"})


def _lists(folder: Path) -> pl.DataFrame:
    """Every list of an export folder (`data/export` or one `recli export` wrote)."""
    parts = sorted((folder / "top_k").glob("part-*.parquet"))
    assert parts, f"no lists under {folder}"
    return pl.concat([pl.read_parquet(part) for part in parts])


def _export(root: Path) -> pl.DataFrame:
    """The export stage's lists of a project."""
    return _lists(root / "data/export")


def test_the_export_is_the_same_lists_on_both_backends(
    local: Path, tmp_path: Path, ray_cluster: Any
) -> None:
    params = _on_ray(local, tmp_path / "ray")
    report = workflow.run_all(params, tmp_path / "ray", stages=["export"])
    assert "on the ray backend" in report["export"]["output"]
    for part in sorted((local / "data/export/top_k").glob("part-*.parquet")):
        mine = pl.read_parquet(tmp_path / "ray/data/export/top_k" / part.name)
        assert mine.equals(pl.read_parquet(part)), part.name
    lists = _export(local)
    assert lists["user_id"].n_unique() == 40
    assert lists.group_by("user_id").len()["len"].to_list() == [5] * 40


def test_factorize_on_ray_writes_the_local_bytes(
    local: Path, tmp_path: Path, ray_cluster: Any
) -> None:
    # The fit (every training event) is one task on a worker, the fold-in one per partition.
    on_ray = stage_md5s("factorize", local, tmp_path / "ray", {"engine.backend": "ray"})
    local_files = sorted((local / "data/factorize").iterdir())
    assert on_ray == {path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in local_files}
    assert {"item_factors.npy", "user_factors_served.npy"} <= set(on_ray)


def test_the_pipeline_runs_end_to_end_on_ray(
    local: Path, tmp_path: Path, tiny_encoder_dir: Path, ray_cluster: Any
) -> None:
    root = tmp_path / "ray"
    local_params = _params(root, tiny_encoder_dir)
    # Two workers train on batches twice their own size: half each makes the local run's batch.
    halves = {
        "finetune.batch_size": local_params.finetune.batch_size // 2,
        "sequence.batch_size": local_params.sequence.batch_size // 2,
    }
    params = workflow.override(local_params, {"engine.backend": "ray", **halves})
    report = workflow.run_all(params, root)

    for stage in ("embed", "export"):
        assert "on the ray backend" in report[stage]["output"], report[stage]["output"]
    assert "2 workers on Ray" in report["finetune"]["output"]
    assert "2 workers on Ray" in report["sequence"]["output"]
    # The same partitions, byte for byte in content.
    for part in sorted((local / "data/processed/by_user").glob("part-*.parquet")):
        mine = pl.read_parquet(root / "data/processed/by_user" / part.name)
        assert mine.equals(pl.read_parquet(part))
    for name in EMBEDDINGS:
        np.testing.assert_allclose(
            np.load(root / "data/embed" / name), np.load(local / "data/embed" / name), atol=1e-5
        )
    ours = json.loads((root / "metrics/evaluation.json").read_text(encoding="utf-8"))["test"]
    theirs = json.loads((local / "metrics/evaluation.json").read_text(encoding="utf-8"))["test"]
    assert set(ours) == set(theirs)
    for model, row in theirs.items():
        for metric in ("ndcg@10", "hr@10"):
            assert ours[model][metric] == pytest.approx(row[metric], abs=1e-3), (model, metric)
    assert _export(root).height == _export(local).height


def test_auto_workers_are_the_clusters_cpus(ray_cluster: Any) -> None:
    engine = Engine(EngineConfig(backend="ray"))
    with engine.session():
        assert engine.workers() == 2
    assert Engine(EngineConfig(backend="ray", workers=3)).workers() == 3
    assert Engine(EngineConfig()).workers() == 1


def _recli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Any:
    """The real console script, as a user runs it."""
    script = Path(sys.executable).parent / "recli"
    return subprocess.run(
        [str(script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_recli_export_writes_the_same_lists_on_both_backends(
    local: Path, tmp_path: Path, ray_cluster: Any
) -> None:
    address = ray_cluster.get_runtime_context().gcs_address
    on_ray = _recli(
        "export",
        str(tmp_path / "ray"),
        "-k",
        "3",
        "--backend",
        "ray",
        cwd=local,
        env={"RAY_ADDRESS": address},
    )
    assert on_ray.returncode == 0, on_ray.stderr
    assert "on the ray backend" in on_ray.stdout
    here = _recli("export", str(tmp_path / "here"), "-k", "3", "--backend", "local", cwd=local)
    assert here.returncode == 0, here.stderr
    ours, theirs = _lists(tmp_path / "ray"), _lists(tmp_path / "here")
    assert ours.equals(theirs)
    assert ours["rank"].max() == 3 and ours["user_id"].n_unique() == 40
    # The first three of the stage's five are the same lists.
    stage = _export(local).filter(pl.col("rank") <= 3)
    assert theirs.sort("user_id", "rank").equals(stage.sort("user_id", "rank"))
    record = json.loads((tmp_path / "here/export.json").read_text(encoding="utf-8"))
    assert record["k"] == 3 and record["backend"] == "local" and record["rows"] == ours.height


def test_recli_export_never_replaces_a_folder_it_did_not_write(local: Path, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine", encoding="utf-8")
    result = _recli("export", str(precious), cwd=local)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "not an earlier export" in result.stderr
    assert [path.name for path in precious.iterdir()] == ["notes.txt"]
    bad_k = _recli("export", str(tmp_path / "new"), "-k", "0", cwd=local)
    assert bad_k.returncode == 1 and "-k must be between 1 and 1000" in bad_k.stderr
    assert not (tmp_path / "new").exists()
    elsewhere = _recli("export", str(tmp_path / "new"), cwd=tmp_path)
    assert elsewhere.returncode == 1 and "has no params.yaml" in elsewhere.stderr


def test_fine_tuning_on_two_nodes_is_one_worker_on_the_whole_batch(
    local: Path, tmp_path: Path, tiny_encoder_dir: Path, ray_cluster: Any
) -> None:
    """Two workers on two nodes, each with half of every batch and the other half's positives as
    negatives, train as one worker on the whole batch: disjoint shards, identical weights on
    both, and weights within rounding of the one-worker run (the gradient is the same sum,
    added up in another order across the two workers)."""
    steps = {"finetune.max_steps": 3, "finetune.eval_steps": 3}
    on_ray = _on_ray(local, tmp_path / "ray")
    report = workflow.run_all(
        workflow.override(on_ray, {**steps, "finetune.batch_size": 4}),
        tmp_path / "ray",
        stages=["finetune"],
    )
    assert "2 workers on Ray" in report["finetune"]["output"]
    ranks = json.loads((tmp_path / "ray/data/finetune/workers.json").read_text(encoding="utf-8"))
    assert [rank["rank"] for rank in ranks] == [0, 1]
    assert ranks[0]["node"] != ranks[1]["node"]  # one worker on each node
    assert all(len(rank["batches"]) == 3 for rank in ranks)
    assert not set(ranks[0]["batches"]) & set(ranks[1]["batches"])
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]

    one = tmp_path / "one"
    shutil.copytree(local, one)
    single = load_params(local / "params.yaml")
    workflow.run_all(
        workflow.override(single, {**steps, "finetune.batch_size": 8}), one, stages=["finetune"]
    )
    ours = safetensors.numpy.load_file(tmp_path / "ray/data/finetune/model/model.safetensors")
    theirs = safetensors.numpy.load_file(one / "data/finetune/model/model.safetensors")
    base = safetensors.numpy.load_file(tiny_encoder_dir / "model.safetensors")
    moved = max(float(np.abs(theirs[name] - base[name]).max()) for name in theirs)
    apart = max(float(np.abs(ours[name] - theirs[name]).max()) for name in theirs)
    assert apart < 0.01 * moved, (apart, moved)  # measured here: 0.0002 of the move


def test_sequence_models_on_two_nodes_are_one_worker_on_the_whole_batch(
    local: Path, tmp_path: Path, ray_cluster: Any
) -> None:
    """The sequence models data-parallel on two workers against one worker on batches twice as
    large: disjoint shares of every batch, identical weights on both workers, and the same
    validation scores epoch by epoch within rounding (the gradient is the same sum, added up in
    another order)."""
    few = {"sequence.epochs": 2, "sequence.eval_every": 1, "sequence.batch_size": 16}
    report = workflow.run_all(
        workflow.override(_on_ray(local, tmp_path / "ray"), few),
        tmp_path / "ray",
        stages=["sequence"],
    )
    assert "2 workers on Ray" in report["sequence"]["output"]
    workers = json.loads((tmp_path / "ray/data/sequence/workers.json").read_text("utf-8"))
    assert set(workers) == {"sasrec", "text"}
    for ranks in workers.values():
        assert [rank["rank"] for rank in ranks] == [0, 1]
        assert ranks[0]["node"] != ranks[1]["node"]
        assert len(ranks[0]["batches"]) == len(ranks[1]["batches"]) > 0
        assert not set(ranks[0]["batches"]) & set(ranks[1]["batches"])
        assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]

    one = tmp_path / "one"
    shutil.copytree(local, one)
    single = workflow.override(
        load_params(local / "params.yaml"), {**few, "sequence.batch_size": 32}
    )
    workflow.run_all(single, one, stages=["sequence"])
    ours = json.loads((tmp_path / "ray/metrics/plots/sequence_validation.json").read_text("utf-8"))
    theirs = json.loads((one / "metrics/plots/sequence_validation.json").read_text("utf-8"))
    assert len(ours) == len(theirs) == 2
    for mine, reference in zip(ours, theirs, strict=True):
        for model in ("sasrec", "text"):
            assert mine[model] == pytest.approx(reference[model], abs=1e-4), (model, mine)
    vectors = np.load(tmp_path / "ray/data/sequence/text_item_vectors.npy")
    reference = np.load(one / "data/sequence/text_item_vectors.npy")
    np.testing.assert_allclose(vectors, reference, atol=1e-4)


def test_the_export_is_what_recli_recommend_serves_as_the_whole_user_list(local: Path) -> None:
    """The same items, scores and reasons as `recli recommend --whole-user`, for every user
    (the index answers this small catalogue exactly; the export always searches exactly)."""
    lists = _export(local)
    with Served(local / "data") as served:
        users = served.user_ids()
        assert len(users) == 40
        for user_id in users:
            answer = served.recommend(user_id, k=5, by_interest=False).items
            mine = lists.filter(pl.col("user_id") == user_id).sort("rank")
            assert mine["item_id"].to_list() == [row.item.item_id for row in answer], user_id
            np.testing.assert_allclose(
                mine["score"].to_numpy(), [row.score for row in answer], rtol=1e-5, atol=1e-6
            )
            expected = [None if row.because is None else row.because.item.item_id for row in answer]
            assert mine["because_item_id"].to_list() == expected, user_id


def test_a_stage_run_as_dvc_runs_it_trains_on_ray(
    local: Path, tmp_path: Path, ray_cluster: Any
) -> None:
    """`python -m pipeline.finetune`, as `dvc repro` runs it: the stage's functions live in
    `__main__` there, and the workers must import them, not receive copies (a copied training
    loop lost transformers' `__version__` on MovieLens-100K)."""
    params = workflow.override(
        _on_ray(local, tmp_path / "ray"),
        {"finetune.max_steps": 2, "finetune.eval_steps": 2, "finetune.batch_size": 4},
    )
    workflow.write_params(params, tmp_path / "ray")
    address = ray_cluster.get_runtime_context().gcs_address
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.finetune"],
        cwd=tmp_path / "ray",
        capture_output=True,
        text=True,
        env={**os.environ, "RAY_ADDRESS": address},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 workers on Ray" in result.stdout
    config = json.loads((tmp_path / "ray/data/finetune/config.json").read_text("utf-8"))
    assert config["workers"] == 2 and config["transformers_version"]
