"""The `index` stage: Annoy over the fused item vectors, the recall it serves, and a catalogue
that serves exactly what `fuse` chose."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stage_project import upstream_project
from synthetic import blocks_with_random_text, score_spreads

from pipeline import fuse, index
from pipeline.core.config import load_params
from pipeline.core.layout import Layout
from pipeline.core.sections import IndexConfig
from pipeline.data.artifacts import read_fused, read_retrieval
from pipeline.data.serving import write_catalogue
from pipeline.models import search_space
from pipeline.models.fusion import make_fusion
from pipeline.workflow import override, write_params
from recli import catalogue, contract

ANN_KEYS = {
    "n_trees",
    "search_k",
    "recall_target",
    "dimensions",
    "fused_dimensions",
    "trees",
    "rescore",
    "user_rows",
    "ann_recall@10",
    "unseen_user_recall@10",
    "tuning_plans",
    "tuning_query_ms_median",
    "search_k_ladder_exhausted",
    "ann_query_ms_median",
    "exact_query_ms_median",
    "users_measured",
}
"""`metrics/index.json`'s keys: the Annoy index and the recall it serves, nothing tuned."""


@pytest.fixture(scope="module")
def setup():
    return blocks_with_random_text()


def _inputs(setup):
    processed, _, cf, text = setup
    fusion = make_fusion(0.5, score_spreads(text, cf))
    users, items = fusion.fuse(text.users, cf.users), fusion.fuse(text.items, cf.items)
    seen = [set() for _ in range(len(users))]
    for user, item in processed.train.select("user_idx", "item_idx").iter_rows():
        seen[user].add(item)
    return users, items, seen


def test_annoy_dot_index_matches_exact_search(setup, tmp_path: Path) -> None:
    cfg = IndexConfig(n_trees=20, search_k=10000)
    users, items, seen = _inputs(setup)
    measured, basis = index.run(items, users, seen, cfg, tmp_path / "items.ann")
    assert measured["ann_recall@10"] >= 0.98
    # A fixed effort serves the fused vectors in n_trees trees: one plan, nothing chosen.
    assert basis is None
    assert measured["dimensions"] == items.shape[1] == measured["fused_dimensions"]
    assert measured["search_k"] == 10000 and measured["trees"] == 20
    assert [plan["search_k"] for plan in measured["tuning_plans"]] == [10000]
    assert not measured["search_k_ladder_exhausted"]
    assert not (tmp_path / contract.SEARCH_INDEX_FILE).exists()
    # Half of the users choose the effort, the other half report it.
    assert measured["users_measured"] == len(users) // 2


def test_effort_ladders_stop_where_the_flat_index_is_cheaper() -> None:
    assert search_space.efforts(trees=10, n_items=1000, minimum=10) == [100, 200, 400, 800]
    assert search_space.efforts(trees=3, n_items=5, minimum=10) == []  # only the flat index
    assert search_space.efforts(search_space.FLAT_TREES, n_items=1000, minimum=10) == [1000]


def _plan_key(plan: dict[str, Any]) -> tuple[int, int, int, int]:
    return plan["dimensions"], plan["trees"], plan["search_k"], plan["rescore"]


def test_auto_serves_the_cheapest_plan_reaching_the_target(setup, tmp_path: Path) -> None:
    cfg = IndexConfig(n_trees=5, dimensions_grid=[2, 4, 8], recall_target=0.95)
    users, items, seen = _inputs(setup)
    measured, basis = index.run(items, users, seen, cfg, tmp_path / "items.ann")
    plans = measured["tuning_plans"]
    chosen = next(plan for plan in plans if _plan_key(plan) == _plan_key(measured))

    def reaches(plan: dict[str, Any]) -> bool:
        return plan["recall"] - 2 * plan["standard_error"] >= cfg.recall_target

    def work(plan: dict[str, Any]) -> int:
        dimensions, search_k, rescore = plan["dimensions"], plan["search_k"], plan["rescore"]
        return search_space.work(dimensions, search_k, rescore, items.shape[1])

    assert reaches(chosen) and not measured["search_k_ladder_exhausted"]
    assert all(work(plan) >= work(chosen) or not reaches(plan) for plan in plans)
    # Widths narrowest first; a width whose whole flat index misses the target tries no forest.
    widths = [plan["dimensions"] for plan in plans]
    assert widths == sorted(widths) and set(widths) <= {2, 4, 8, items.shape[1]}
    for width in set(widths):
        flat = [p for p in plans if p["dimensions"] == width and p["trees"] == 1]
        if flat and not reaches(flat[0]):
            assert all(p["trees"] == 1 for p in plans if p["dimensions"] == width)
    if measured["dimensions"] < items.shape[1]:
        assert basis is not None and basis.shape == (items.shape[1], measured["dimensions"])
        assert (tmp_path / contract.SEARCH_INDEX_FILE).exists()
        assert 0 <= measured["unseen_user_recall@10"] <= 1
    assert measured["ann_recall@10"] >= 0.9


def test_a_narrow_space_holding_every_score_is_found(tmp_path: Path) -> None:
    # Users and items of rank 6 written in 48 dimensions: 8 directions carry every score.
    rng = np.random.default_rng(0)
    turn = np.linalg.qr(rng.normal(size=(48, 48)))[0][:, :6]
    users = (rng.normal(size=(300, 6)) @ turn.T).astype(np.float32)
    items = (rng.normal(size=(400, 6)) @ turn.T).astype(np.float32)
    seen = [set(rng.choice(400, 5, replace=False).tolist()) for _ in range(300)]
    basis = search_space.score_basis(users, items)
    np.testing.assert_allclose(basis.T @ basis, np.eye(48), atol=1e-8)
    narrow = basis[:, :8]
    np.testing.assert_allclose((users @ narrow) @ (items @ narrow).T, users @ items.T, atol=1e-3)
    cfg = IndexConfig(n_trees=5, dimensions_grid=[8, 16])
    measured, served_basis = index.run(items, users, seen, cfg, tmp_path / "items.ann")
    assert measured["dimensions"] == 8 and served_basis is not None
    assert measured["ann_recall@10"] == 1.0 and measured["unseen_user_recall@10"] == 1.0


def test_candidates_ranked_on_the_fused_vectors_recover_what_the_narrow_space_misses(
    tmp_path: Path,
) -> None:
    # Scores carried by 6 strong directions, plus weak ones in the other 42: a 6-d search
    # orders the near ties wrongly, and ranking its top candidates on the fused vectors does not.
    rng = np.random.default_rng(3)
    turn = np.linalg.qr(rng.normal(size=(48, 48)))[0]
    scale = np.r_[np.full(6, 1.0), np.full(42, 0.12)]
    users = ((rng.normal(size=(400, 48)) * scale) @ turn.T).astype(np.float32)
    items = ((rng.normal(size=(600, 48)) * scale) @ turn.T).astype(np.float32)
    seen = [set(rng.choice(600, 5, replace=False).tolist()) for _ in range(400)]
    cfg = IndexConfig(n_trees=5, dimensions_grid=[6], recall_target=0.97, recall_users=400)
    measured, basis = index.run(items, users, seen, cfg, tmp_path / "items.ann")
    plans = measured["tuning_plans"]
    own_top = next(p for p in plans if p["dimensions"] == 6 and p["rescore"] == 1)
    assert own_top["recall"] < 0.97  # the narrow space's own top 10 falls short
    assert measured["dimensions"] == 6 and measured["rescore"] > 1 and basis is not None
    assert measured["ann_recall@10"] >= 0.97 and measured["user_rows"]
    # The candidates were asked for in order up the ladder, the first reaching served.
    flat = [p["rescore"] for p in plans if p["dimensions"] == 6 and p["trees"] == 1]
    assert flat == list(search_space.RESCORE[: len(flat)]) and flat[-1] == measured["rescore"]
    # The fused file holds every item, then every user: the rows that ranked the candidates.
    from annoy import AnnoyIndex

    fused = AnnoyIndex(48, "dot")
    fused.load(str(tmp_path / "items.ann"))
    assert fused.get_n_items() == 600 + 400
    np.testing.assert_allclose(fused.get_item_vector(600 + 7), users[7], rtol=1e-6)
    assert fused.get_distance(600 + 7, 11) == pytest.approx(float(users[7] @ items[11]), rel=1e-4)
    fused.unload()


def test_the_basis_is_the_same_from_the_same_vectors() -> None:
    rng = np.random.default_rng(1)
    users, items = rng.normal(size=(50, 12)), rng.normal(size=(70, 12))
    first, second = search_space.score_basis(users, items), search_space.score_basis(users, items)
    np.testing.assert_array_equal(first, second)
    largest = np.abs(first).argmax(axis=0)
    assert (first[largest, np.arange(12)] > 0).all()  # signs fixed
    # Blocks of users sum to the same moment as all at once.
    np.testing.assert_allclose(
        search_space.second_moment(users, block=7), users.T @ users / 50, atol=1e-12
    )


def test_low_recall_names_the_setting_to_change() -> None:
    assert index.low_recall_fix(IndexConfig(search_k=4000), False) == (
        "raise index.search_k or set it to auto"
    )
    assert index.low_recall_fix(IndexConfig(), True) == "raise index.n_trees"
    assert index.low_recall_fix(IndexConfig(), False) == "raise index.recall_users"


def test_catalogue_round_trip(setup, tmp_path: Path) -> None:
    processed, _, cf, text = setup
    fused = make_fusion(0.5, (1.0, 1.0)).fuse(text.users, cf.users)
    profiles = [{"cluster": 0, "label": "A", "size": 20}, {"cluster": 1, "label": "B", "size": 20}]
    assignments = {user: int(user >= 20) for user in range(processed.users.height)}
    path = tmp_path / "catalogue.sqlite"
    meta = {"schema_version": catalogue.SCHEMA_VERSION, "text_weight": 0.5}
    write_catalogue(path, processed, fused, assignments, profiles, meta)
    connection = catalogue.connect(path)
    assert catalogue.read_meta(connection)["text_weight"] == 0.5
    vector = connection.execute("SELECT vector FROM users WHERE user_idx = 3").fetchone()[0]
    np.testing.assert_allclose(catalogue.unpack_vector(vector), fused[3], rtol=1e-6)
    (count,) = connection.execute("SELECT COUNT(*) FROM history").fetchone()
    assert count == processed.history_served.height  # every event, held-out splits included
    assert connection.execute("SELECT label FROM clusters WHERE cluster = 1").fetchone() == ("B",)
    with pytest.raises(sqlite3.OperationalError):
        connection.execute("INSERT INTO meta VALUES ('x', '1')")  # opened read-only


def test_a_recall_under_the_target_is_said_with_its_fix() -> None:
    cfg = IndexConfig(recall_target=0.98)
    measured = {"ann_recall@10": 0.9, "search_k": 500, "search_k_ladder_exhausted": True}
    assert index.low_recall_warning(measured, cfg) == (
        "index: warning: recall@10 0.900 is below index.recall_target 0.98 at search_k 500: "
        "raise index.n_trees"
    )
    assert index.low_recall_warning({**measured, "ann_recall@10": 0.98}, cfg) is None


def test_a_query_leaves_out_every_event_of_the_user(setup) -> None:
    processed = setup[0]
    seen = index.served_histories(processed)
    assert len(seen) == processed.users.height
    assert sum(map(len, seen)) == processed.history_served.unique(["user_idx", "item_idx"]).height
    for name in ("train", "validation", "test"):
        for user, item in processed.split(name).select("user_idx", "item_idx").iter_rows():
            assert item in seen[user]


# --------------------------------------------------------------------------------------------
# The stage: what `fuse` chose, served
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny two-block project once `fuse` and `index` have run."""
    root = tmp_path_factory.mktemp("index")
    upstream_project(root)
    fuse.main(root)
    index.main(root)
    return root


def _meta(root: Path) -> dict[str, Any]:
    connection = catalogue.connect(root / "data" / contract.INDEX_DIR / contract.CATALOGUE_FILE)
    try:
        return catalogue.read_meta(connection)
    finally:
        connection.close()


def test_the_catalogue_serves_what_fuse_chose(project: Path) -> None:
    layout = Layout(project)
    settings, fused, meta = read_retrieval(layout), read_fused(layout), _meta(project)
    fusion = settings["fusion"]
    for key in ("text_weight", "sequence_model", "sequence_share", "linear_share"):
        assert meta[key] == fusion[key], key
    assert meta["text_scale"] == fusion["text_scale"] and meta["cf_scale"] == fusion["cf_scale"]
    assert meta["text_dimension"] == fusion["text_dimension"]
    assert meta["dimension"] == fused.items.shape[1]
    assert meta["multi_interest"] == settings["multi_interest"]
    assert meta["explore"] == settings["explore"]
    connection = catalogue.connect(layout.index / contract.CATALOGUE_FILE)
    vector = connection.execute("SELECT vector FROM users WHERE user_idx = 5").fetchone()[0]
    connection.close()
    np.testing.assert_allclose(catalogue.unpack_vector(vector), fused.served_users[5], rtol=1e-6)
    # The fused vectors and their settings are among the files `recli doctor` re-hashes.
    built_from = meta["built_from"]
    for name in ("fused_item_vectors.npy", "retrieval.json"):
        path = layout.fuse / name
        assert built_from[f"fuse/{name}"] == contract.file_digest(path)[: contract.DIGEST_CHARS]
    assert all((layout.artifacts / relative).exists() for relative in built_from)


def test_index_metrics_hold_only_the_annoy_part(project: Path) -> None:
    measured = json.loads((project / "metrics/index.json").read_text(encoding="utf-8"))
    assert set(measured) == ANN_KEYS
    assert measured["n_trees"] == load_params(project / "params.yaml").index.n_trees
    assert measured["ann_recall@10"] >= measured["recall_target"]
    assert measured["search_k"] == _meta(project)["search_k"]


def test_an_annoy_knob_rebuilds_only_the_index(project: Path, tmp_path: Path) -> None:
    other = tmp_path / "project"
    shutil.copytree(project, other)
    knobs = {"index.n_trees": 2, "index.search_k": 20}  # two trees where one flat one served
    write_params(override(load_params(other / "params.yaml"), knobs), other)
    fused_before = {path.name: path.read_bytes() for path in Layout(other).fuse.iterdir()}
    index.main(other)
    assert {path.name: path.read_bytes() for path in Layout(other).fuse.iterdir()} == fused_before
    before, after = _meta(project), _meta(other)
    changed = {key for key in set(before) | set(after) if before.get(key) != after.get(key)}
    searched = {"search_dimension", "search_index_sha256", "search_index_bytes"}
    assert changed <= {"index_sha256", "index_bytes", "search_k"} | searched
    assert "index_sha256" in changed  # fewer trees: another index
    measured = json.loads((other / "metrics/index.json").read_text(encoding="utf-8"))
    assert measured["n_trees"] == 2
    served = Layout(other).index
    for name in (contract.CATALOGUE_FILE, contract.INDEX_FILE):
        assert (served / name).stat().st_mode & 0o222 == 0  # read-only
