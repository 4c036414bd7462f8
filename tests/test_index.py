from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from synthetic import blocks_with_random_text

from pipeline import index
from pipeline.config import IndexConfig
from pipeline.fusion import make_fusion, score_spreads
from recli import catalogue


@pytest.fixture(scope="module")
def setup():
    return blocks_with_random_text()


def test_annoy_dot_index_matches_exact_search(setup, tmp_path: Path) -> None:
    processed, _, cf, text = setup
    fusion = make_fusion(0.5, score_spreads(text, cf, seed=0))
    users, items = fusion.fuse(text.users, cf.users), fusion.fuse(text.items, cf.items)
    cfg = IndexConfig(n_trees=20)
    index.build_annoy(items, cfg, tmp_path / "items.ann")
    seen = [set() for _ in range(len(users))]
    for user, item in processed.train.select("user_idx", "item_idx").iter_rows():
        seen[user].add(item)
    measured = index.measure_ann(tmp_path / "items.ann", users, items, seen, cfg)
    assert measured["ann_recall@10"] >= 0.98
    assert measured["users_measured"] == len(users)


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
    assert count == processed.train.height
    assert connection.execute("SELECT label FROM clusters WHERE cluster = 1").fetchone() == ("B",)
    with pytest.raises(sqlite3.OperationalError):
        connection.execute("INSERT INTO meta VALUES ('x', '1')")  # opened read-only
