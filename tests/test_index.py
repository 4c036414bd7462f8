from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from synthetic import blocks_with_random_text, score_spreads

from pipeline import index
from pipeline.core.config import IndexConfig
from pipeline.models.fusion import make_fusion
from recli import catalogue


@pytest.fixture(scope="module")
def setup():
    return blocks_with_random_text()


def _built(setup, tmp_path: Path, cfg: IndexConfig):
    processed, _, cf, text = setup
    fusion = make_fusion(0.5, score_spreads(text, cf))
    users, items = fusion.fuse(text.users, cf.users), fusion.fuse(text.items, cf.items)
    index.build_annoy(items, cfg, tmp_path / "items.ann")
    seen = [set() for _ in range(len(users))]
    for user, item in processed.train.select("user_idx", "item_idx").iter_rows():
        seen[user].add(item)
    return users, items, seen


def test_annoy_dot_index_matches_exact_search(setup, tmp_path: Path) -> None:
    cfg = IndexConfig(n_trees=20, search_k=10000)
    users, items, seen = _built(setup, tmp_path, cfg)
    measured = index.measure_ann(tmp_path / "items.ann", users, items, seen, cfg)
    assert measured["ann_recall@10"] >= 0.98
    assert measured["search_k"] == 10000 and measured["tuning_recall@10_by_search_k"] == {}
    assert not measured["search_k_ladder_exhausted"]
    # Half of the users choose the effort, the other half report it.
    assert measured["users_measured"] == len(users) // 2


def test_search_ladder_doubles_up_to_an_exhaustive_search() -> None:
    assert index.search_ladder(n_trees=10, n_items=100) == [100, 200, 400, 800, 1000]
    assert index.search_ladder(n_trees=3, n_items=5) == [30]  # never below Annoy's default


def test_auto_search_k_is_the_smallest_effort_reaching_the_target(setup, tmp_path: Path) -> None:
    # One tree is a poor index: the default effort misses neighbours, so the ladder has to climb.
    cfg = IndexConfig(n_trees=1, recall_target=0.999)
    users, items, seen = _built(setup, tmp_path, cfg)
    measured = index.measure_ann(tmp_path / "items.ann", users, items, seen, cfg)
    tried = measured["tuning_recall@10_by_search_k"]
    efforts = [int(effort) for effort in tried]
    assert efforts == index.search_ladder(1, items.shape[0])[: len(efforts)]
    assert measured["search_k"] == efforts[-1]
    errors = measured["tuning_recall@10_standard_error_by_search_k"]
    # Chosen: the first effort whose recall clears the target by two standard errors.
    bounds = [tried[effort] - 2 * errors[effort] for effort in tried]
    assert measured["search_k_ladder_exhausted"] == (bounds[-1] < 0.999)
    if measured["search_k_ladder_exhausted"]:
        assert efforts[-1] == index.search_ladder(1, items.shape[0])[-1]
    assert all(bound < 0.999 for bound in bounds[:-1])
    assert len(efforts) > 1, "the test needs an index whose default effort misses the target"
    assert measured["ann_recall@10"] >= 0.98


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
    index.write_catalogue(path, processed, fused, assignments, profiles, meta)
    connection = catalogue.connect(path)
    assert catalogue.read_meta(connection)["text_weight"] == 0.5
    vector = connection.execute("SELECT vector FROM users WHERE user_idx = 3").fetchone()[0]
    np.testing.assert_allclose(catalogue.unpack_vector(vector), fused[3], rtol=1e-6)
    (count,) = connection.execute("SELECT COUNT(*) FROM history").fetchone()
    assert count == processed.history_served.height  # every event, held-out splits included
    assert connection.execute("SELECT label FROM clusters WHERE cluster = 1").fetchone() == ("B",)
    with pytest.raises(sqlite3.OperationalError):
        connection.execute("INSERT INTO meta VALUES ('x', '1')")  # opened read-only
