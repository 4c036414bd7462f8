"""The `fuse` stage: what it chooses on validation, what it writes, and that no Annoy knob reaches
it (a change to `index.*` must re-run no tuning)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from kill_points import outputs
from stage_project import TEXT_DIMENSION, upstream_project

from pipeline import fuse
from pipeline.core.config import load_params
from pipeline.core.layout import Layout
from pipeline.core.sections import FuseConfig, IndexConfig
from pipeline.data.artifacts import read_embeddings, read_factors, read_fused, read_retrieval
from pipeline.workflow import override, write_params

REPO = Path(__file__).resolve().parents[2]
TUNING_KEYS = {
    "text_weight",
    "sequence_model",
    "sequence_share",
    "linear_share",
    "validation_ndcg@10_by_text_weight/sequence_model/share[/linear_share]",
    "multi_interest",
    "explore",
}
"""`metrics/fuse.json`'s keys: what was chosen on validation and every setting tried."""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny two-block project once `fuse` has run."""
    root = tmp_path_factory.mktemp("fuse")
    upstream_project(root)
    fuse.main(root)
    return root


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def test_fusion_prefers_the_side_that_knows_the_blocks(project: Path) -> None:
    # The text vectors and both sequence models are random; ALS finds the two blocks.
    record = _json(project / "metrics/fuse.json")
    assert record["text_weight"] == 0.05  # the smallest text weight of the grid
    assert record["sequence_model"] is None and record["sequence_share"] == 0.0
    assert record["linear_share"] == 0.0  # factorize wrote no reduced-rank EASE here
    grid = record["validation_ndcg@10_by_text_weight/sequence_model/share[/linear_share]"]
    assert max(grid, key=grid.get) == "0.05/als/0.0"
    assert set(record) == TUNING_KEYS


def test_fused_vectors_are_laid_out_text_then_behaviour(project: Path) -> None:
    layout = Layout(project)
    fused, fusion = read_fused(layout), read_retrieval(layout)["fusion"]
    text, factors = read_embeddings("finetuned", layout), read_factors(layout)
    assert fusion["text_dimension"] == TEXT_DIMENSION
    assert fused.items.shape[1] == TEXT_DIMENSION + factors.items.shape[1]
    np.testing.assert_allclose(
        fused.items[:, :TEXT_DIMENSION], fusion["text_scale"] * text.items, rtol=1e-6
    )
    np.testing.assert_allclose(
        fused.items[:, TEXT_DIMENSION:], fusion["cf_scale"] * factors.items, rtol=1e-6
    )
    # Served users are every user's vector from every event they have: what `index` serves.
    np.testing.assert_allclose(
        fused.served_users[:, TEXT_DIMENSION:],
        fusion["cf_scale"] * factors.users_served,
        rtol=1e-6,
    )
    assert fused.users_at_test is not None


def test_retrieval_settings_are_the_ones_the_record_chose(project: Path) -> None:
    settings = read_retrieval(Layout(project))
    record = _json(project / "metrics/fuse.json")
    assert set(settings) == {"fusion", "multi_interest", "explore"}
    for key in ("text_weight", "sequence_model", "sequence_share", "linear_share"):
        assert settings["fusion"][key] == record[key]
    multi = record["multi_interest"]
    assert settings["multi_interest"] == {
        "whole_user_share": multi["whole_user_share"],
        "pull": multi["pull"],
        "by_default": multi["by_default"],
    }
    chosen = multi["validation_by_share/pull"][f"{multi['whole_user_share']}/{multi['pull']}"]
    # Served by default exactly when the lists beat the single vector on validation.
    single = multi["single_vector_validation_ndcg@10"]
    assert multi["by_default"] == (chosen["ndcg@10"] > single)
    explore = settings["explore"]
    assert explore["topic_weight"] == record["explore"]["topic_weight"]
    assert explore["similarity_weight"] == record["explore"]["similarity_weight"]
    assert explore["score_scale"] > 0 and explore["half_life"] == 20.0


def test_an_annoy_knob_changes_nothing_fuse_writes(project: Path, tmp_path: Path) -> None:
    other = tmp_path / "project"
    shutil.copytree(project, other)
    params = override(
        load_params(other / "params.yaml"),
        {
            "index.metric": "angular",
            "index.n_trees": 3,
            "index.search_k": 77,
            "index.recall_target": 0.5,
            "index.recall_users": 10,
            "index.seed": 7,
        },
    )
    write_params(params, other)
    fuse.main(other)
    assert outputs(other, "fuse") == outputs(project, "fuse")


def test_fuse_dvc_params_hold_no_annoy_knob() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    read = stages["fuse"]["params"]
    assert "fuse" in read
    assert not [key for key in read if key == "index" or key.startswith("index.")]
    # Each knob belongs to one stage: the seed is the only name the two sections share.
    assert set(FuseConfig.model_fields) & set(IndexConfig.model_fields) == {"seed"}
    assert stages["index"]["params"] == ["index"]


def test_no_code_fuse_runs_reads_the_index_section() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    # Its code deps are exactly what it imports (tests/stages/test_structure.py checks that).
    code = [dep for dep in stages["fuse"]["deps"] if dep.endswith(".py")]
    assert "pipeline/models/retrieval.py" in code and "pipeline/models/fusion.py" in code
    for dep in code:
        source = (REPO / dep).read_text(encoding="utf-8")
        if "class IndexConfig" in source or "class Params" in source:
            continue  # where the sections are defined and put together
        assert "IndexConfig" not in source and "params.index" not in source, dep
