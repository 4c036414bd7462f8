"""Serving from an index that searches a narrower space than the fused one: the queries find
their items there, every score shown is still the fused model's own, and the checks that guard
the fused index guard this one too."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from cli_artifacts import build_artifacts, edit_catalogue, invoke

from recli import contract, integrity, serve
from recli.catalogue import MetaKey
from recli.contract import dot
from recli.errors import RecliError

SEARCH_DIMENSION = 6
"""Of the fused 36 (32 text + 4 behaviour): the users' block axes are among the first."""


@pytest.fixture(scope="module")
def narrow(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return build_artifacts(tmp_path_factory.mktemp("narrow"), search_dimension=SEARCH_DIMENSION)


def test_recommend_finds_in_the_narrow_space_and_scores_in_the_fused_one(narrow) -> None:
    with serve.Served(narrow["root"]) as served:
        assert served.narrower_search and served.search_index.f == SEARCH_DIMENSION
        assert served.index.f == narrow["text_dimension"] + 4
        user = served.user(narrow["user_id"])
        assert user.search_vector is not None and len(user.search_vector) == SEARCH_DIMENSION
        result = served.recommend(narrow["user_id"], k=5)
        ids = [entry.item.item_id for entry in result.items]
        assert ids[0] == narrow["expected_top_item_id"]
        assert set(ids) <= narrow["block_a_item_ids"] and not set(ids) & narrow["history_item_ids"]
        for entry in result.items:
            fused = dot(user.vector, served.index.get_item_vector(entry.item.item_idx))
            assert entry.score == pytest.approx(fused, rel=1e-6)
            assert entry.text_score + entry.collaborative_score == pytest.approx(entry.score)
        scores = [entry.score for entry in result.items]
        assert scores == sorted(scores, reverse=True)


def test_a_users_row_ranks_the_candidates_as_their_vector_does(narrow) -> None:
    with serve.Served(narrow["root"]) as served:
        assert served.user_rows
        assert served.index.get_n_items() == served.n_items + served.n_users
        user = served.user(narrow["user_id"])
        row = served.user_row(user)
        assert row == served.n_items + user.user_idx
        assert served.index.get_item_vector(row) == pytest.approx(user.vector, rel=1e-6)
        seen = set(served.history_indices(user.user_idx))
        in_annoy = served.find(user.vector, user.search_vector, seen, 6, row)
        in_python = served.find(user.vector, user.search_vector, seen, 6)
        assert [item for item, _ in in_annoy] == [item for item, _ in in_python]
        assert [score for _, score in in_annoy] == pytest.approx(
            [score for _, score in in_python], rel=1e-5
        )
        # The narrow search asked for 3 × k candidates and the fused scores ranked them: the
        # best 6 of an exact ranking of every unseen item.
        exact = sorted(
            (-dot(user.vector, served.index.get_item_vector(item)), item)
            for item in range(served.n_items)
            if item not in seen
        )
        assert [item for item, _ in in_annoy] == [item for _, item in exact[:6]]


def test_an_index_missing_the_users_rows_is_one_true_line(narrow, tmp_path: Path) -> None:
    copy = tmp_path / "artifacts"
    shutil.copytree(narrow["root"], copy)
    with serve.Served(copy) as served:
        n_items, n_users = served.n_items, served.n_users
    edit_catalogue(copy, ("UPDATE meta SET value = 'false' WHERE key = 'user_rows'", ()))
    with serve.Served(copy) as served, pytest.raises(RecliError) as caught:
        served.recommend(narrow["user_id"], k=3)
    assert str(caught.value).startswith(
        f"{copy / contract.INDEX_DIR / contract.INDEX_FILE} holds {n_items + n_users} rows "
        f"but the catalogue has {n_items} items:"
    )


def test_the_search_vectors_are_the_fused_ones_turned_onto_the_basis(narrow) -> None:
    with serve.Served(narrow["root"]) as served:
        user = served.user(narrow["user_id"])
        assert served.to_search(user.vector) == pytest.approx(user.search_vector, abs=1e-5)
        means = served.interest_search_means(user.user_idx)
        assert means and set(means) == {i for i, *_ in served.interest_vectors(user.user_idx)}


def test_every_query_serves_from_the_narrow_space(narrow) -> None:
    with serve.Served(narrow["root"]) as served:
        by_interest = served.recommend(narrow["user_id"], k=4, by_interest=True)
        assert len(by_interest.items) == 4
        item, neighbours = served.similar(narrow["item_id"], k=3)
        assert len(neighbours) == 3 and item.item_id not in {n.item.item_id for n in neighbours}
        vector = served.index.get_item_vector(item.item_idx)
        for neighbour in neighbours:
            other = served.index.get_item_vector(neighbour.item.item_idx)
            assert neighbour.score == pytest.approx(dot(vector, other), rel=1e-6)
        found = served.search([0.0] * narrow["text_dimension"], k=3)
        assert len(found) == 3


def test_the_cli_recommends_and_the_doctor_checks_the_narrow_index(narrow) -> None:
    root = narrow["root"]
    screen = invoke(root, "recommend", narrow["user_id"], "-k", "3")
    assert screen.exit_code == 0, screen.output
    searched = (Path(contract.INDEX_DIR) / contract.SEARCH_INDEX_FILE).as_posix()
    assert searched in integrity.read_manifest(root)
    doctor = invoke(root, "doctor")
    assert doctor.exit_code == 0, doctor.output
    assert f"searched in {SEARCH_DIMENSION}-d" in doctor.output


def test_a_truncated_search_index_is_one_true_line(narrow, tmp_path: Path) -> None:
    copy = tmp_path / "artifacts"
    shutil.copytree(narrow["root"], copy)
    path = copy / contract.INDEX_DIR / contract.SEARCH_INDEX_FILE
    path.write_bytes(path.read_bytes()[:100])
    with serve.Served(copy) as served, pytest.raises(RecliError) as caught:
        served.recommend(narrow["user_id"], k=3)
    assert "search.ann" in str(caught.value) and "dvc repro" in str(caught.value)
    assert MetaKey.SEARCH_DIMENSION in served.meta
