"""The in-process pipeline runner and its small-configuration helpers (`pipeline.workflow`)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal
from synthetic import make_raw, small_pipeline_params

from pipeline import workflow
from pipeline.core.config import Params, load_params, parse_params
from pipeline.data.source import load_files
from recli.errors import RecliError
from recli.serve import Served

REPO = Path(__file__).resolve().parents[2]


def test_stages_are_dvc_yaml_stages_in_order() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    assert tuple(stages) == workflow.STAGES
    for name, stage in stages.items():
        assert stage["cmd"] == f"python -m pipeline.{name}"


def test_override_replaces_dotted_keys_and_keeps_the_rest() -> None:
    params = Params()
    changed = workflow.override(
        params, {"factorize.embedding_size": 16, "preprocess.split.strategy": "random_holdout"}
    )
    assert changed.factorize.embedding_size == 16
    assert changed.preprocess.split.strategy == "random_holdout"
    assert changed.factorize.epochs == params.factorize.epochs
    assert params.factorize.embedding_size == 64  # the input is untouched


def test_override_names_an_unknown_key() -> None:
    with pytest.raises(RecliError, match=r"factorize\.embeding_size"):
        workflow.override(Params(), {"factorize.embeding_size": 16})
    with pytest.raises(RecliError, match=r"nosuch\.key"):
        workflow.override(Params(), {"nosuch.key": 1})


def test_override_validates_the_value() -> None:
    with pytest.raises(RecliError, match=r"factorize\.embedding_size"):
        workflow.override(Params(), {"factorize.embedding_size": 0})


def test_small_overrides_are_valid_keys() -> None:
    small = workflow.override(Params(), workflow.SMALL_OVERRIDES)
    assert small.finetune.max_steps == workflow.SMALL_OVERRIDES["finetune.max_steps"]


def test_sample_keeps_the_most_popular_items_and_whole_users() -> None:
    raw = make_raw(n_users=30, n_items=40, per_user=12)
    sampled = workflow.sample(raw, n_users=10, n_items=15, seed=3)

    counts = raw.interactions.group_by("item_id").len()
    fifteenth = counts.sort("len", descending=True)["len"][14]
    kept = counts.filter(pl.col("item_id").is_in(sampled.items["item_id"].implode()))
    assert kept["len"].min() >= fifteenth  # only the most-interacted items
    assert sampled.interactions["user_id"].n_unique() == 10
    assert set(sampled.items["item_id"]) == set(sampled.interactions["item_id"])
    # A sampled user keeps every event on a kept item.
    user = sampled.interactions["user_id"][0]
    expected = raw.interactions.filter(
        (pl.col("user_id") == user) & pl.col("item_id").is_in(sampled.items["item_id"].implode())
    )
    assert sampled.interactions.filter(pl.col("user_id") == user).height == expected.height


def test_sample_is_seeded() -> None:
    raw = make_raw(n_users=30, n_items=40)
    first = workflow.sample(raw, n_users=10, n_items=None, seed=1)
    assert_frame_equal(first.interactions, workflow.sample(raw, 10, None, seed=1).interactions)
    other = workflow.sample(raw, n_users=10, n_items=None, seed=2)
    assert set(first.interactions["user_id"]) != set(other.interactions["user_id"])
    assert workflow.sample(raw, n_users=100).interactions.height == raw.interactions.height


def test_write_files_round_trips_through_the_files_source(tmp_path: Path) -> None:
    raw = make_raw(n_users=5, n_items=8, per_user=4)
    config = workflow.write_files(raw, tmp_path)
    assert config.source == "files"
    assert config.files.interactions == Path("data/input/interactions.csv")
    with contextlib.chdir(tmp_path):
        back = load_files(config.files)
    assert_frame_equal(back.interactions, raw.interactions)
    assert_frame_equal(back.items, raw.items)


def test_small_project_writes_inputs_and_params(tmp_path: Path) -> None:
    source = tmp_path / "source"
    params = workflow.override(
        Params(), {"data": workflow.write_files(make_raw(), source).model_dump(mode="json")}
    )
    project = tmp_path / "project"
    with contextlib.chdir(source):
        small = workflow.small_project(params, project, n_users=12, n_items=20)

    assert load_params(project / "params.yaml") == small
    assert small.finetune.max_steps == workflow.SMALL_OVERRIDES["finetune.max_steps"]
    with contextlib.chdir(project):
        raw = load_files(small.data.files)
    assert raw.interactions["user_id"].n_unique() == 12
    assert raw.items.height <= 20


def test_run_all_refuses_unknown_stages(tmp_path: Path) -> None:
    with pytest.raises(RecliError, match="serve"):
        workflow.run_all(Params(), tmp_path, stages=["preprocess", "serve"])


@pytest.mark.slow
def test_run_all_builds_what_dvc_repro_builds(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    params = parse_params(small_pipeline_params(tmp_path, tiny_encoder_dir))
    before = Path.cwd()

    report = workflow.run_all(params, tmp_path)

    assert Path.cwd() == before
    assert tuple(report) == workflow.STAGES
    assert all(stage["seconds"] >= 0 for stage in report.values())
    assert report["preprocess"]["output"].startswith("preprocess: read 480 events, kept 480")
    assert "preprocess: 40 users" in report["preprocess"]["output"]
    assert load_params(tmp_path / "params.yaml") == params
    metrics = json.loads((tmp_path / "metrics/evaluation.json").read_text(encoding="utf-8"))
    assert {"popularity", "als", "finetuned", "fused"} <= set(metrics["test"])
    with Served(tmp_path / "data") as served:
        result = served.recommend(served.first_user_id(), k=3)
    assert len(result.items) == 3
    # The interest models are in the table, described beyond accuracy, and the served
    # multi-interest setting keeps to its tolerance on validation (or is the most accurate).
    assert {"multi_interest", "explore"} <= set(metrics["test"])
    for split in ("validation", "test"):
        for row in metrics["beyond_accuracy"][split].values():
            assert 0.0 <= row["ild@10"] <= 2.0 and row["novelty@10"] >= 0.0
    chosen = json.loads((tmp_path / "metrics/fuse.json").read_text(encoding="utf-8"))
    multi = chosen["multi_interest"]
    table = multi["validation_by_share/pull"]
    row = table[f"{multi['whole_user_share']}/{multi['pull']}"]
    floor = (1 - params.fuse.interest_tolerance) * multi["single_vector_validation_ndcg@10"]
    assert row["ndcg@10"] >= floor or row["ndcg@10"] == max(r["ndcg@10"] for r in table.values())
    assert set(metrics["next_new_topic"]) == {
        "timeline_and_similarity",
        "timeline_only",
        "take_up_rate_only",
    }
