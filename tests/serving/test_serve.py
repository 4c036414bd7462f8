from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from recli import contract, explain, inputs, queries, serve
from recli.errors import RecliError
from recli.results import Item


def test_recommend_gives_the_known_answer(facts: dict[str, Any]) -> None:
    with serve.Served(facts["root"]) as served:
        result = served.recommend(facts["user_id"], k=5)
    ids = [r.item.item_id for r in result.items]
    assert ids[0] == facts["expected_top_item_id"]
    assert len(ids) == 5 and len(set(ids)) == 5
    assert not set(ids) & facts["history_item_ids"]
    assert set(ids) <= facts["block_a_item_ids"]
    scores = [r.score for r in result.items]
    assert scores == sorted(scores, reverse=True)
    for recommendation in result.items:
        assert recommendation.because is not None
        assert recommendation.because.item.item_id in facts["history_item_ids"]
        assert recommendation.text_score + recommendation.collaborative_score == pytest.approx(
            recommendation.score
        )
    assert result.cluster is not None and result.cluster.label == facts["cluster_label"]
    # The profile lists the expected item among the group's favourites (lift 2.0).
    assert result.items[0].cluster_lift == 2.0
    assert result.text_weight == 0.5
    assert 0 < len(result.recent) <= queries.RECENT_SHOWN
    assert {entry.item.item_id for entry in result.recent} <= facts["history_item_ids"]


def test_because_is_the_most_similar_history_item(facts: dict[str, Any]) -> None:
    with serve.Served(facts["root"]) as served:
        result = served.recommend(facts["user_id"], k=3)
        history = served.history_indices(served.user(facts["user_id"]).user_idx)
        for recommendation in result.items:
            best = max(
                served.index.get_distance(recommendation.item.item_idx, h)
                for h in history[: explain.WHY_HISTORY_ITEMS]
            )
            assert recommendation.because is not None
            assert recommendation.because.similarity == pytest.approx(best)


def test_history_is_newest_first(facts: dict[str, Any]) -> None:
    with serve.Served(facts["root"]) as served:
        user = served.user(facts["user_id"])
        history = served.history(user.user_idx)
    stamps = [entry.timestamp for entry in history]
    assert stamps == sorted(stamps, reverse=True)
    assert {entry.item.item_id for entry in history} == facts["history_item_ids"]


def test_similar_and_search_stay_in_the_block(facts: dict[str, Any]) -> None:
    with serve.Served(facts["root"]) as served:
        item, neighbours = served.similar(facts["item_id"], k=4)
        assert item.item_id == facts["item_id"]
        assert all(n.item.item_id != facts["item_id"] for n in neighbours)
        assert {n.item.item_id for n in neighbours} <= facts["block_a_item_ids"]
        text = [1.0] + [0.0] * (facts["text_dimension"] - 1)  # block A's text axis
        query = served.text_query(text)
        assert len(query) == served.meta["dimension"]
        assert not any(contract.collaborative_part(query, facts["text_dimension"]))
        found = served.search(text, k=3)
        assert {n.item.item_id for n in found} <= facts["block_a_item_ids"]
        with pytest.raises(RecliError, match="encoder gives 3-d vectors"):
            served.text_query([1.0, 0.0, 0.0])


def _terms_of(item: Item) -> set[str]:
    """Genres, `#tags` and the release era, spelled as the profiles spell them."""
    era = (
        []
        if item.year is None
        else [f"{item.year} films" if item.year >= 1990 else f"{item.year // 10 * 10}s films"]
    )
    return {*item.genres, *(f"#{tag}" for tag in item.tags), *era}


def test_user_interests_are_their_own_lifts(facts: dict[str, Any]) -> None:
    with serve.Served(facts["root"]) as served:
        user = served.user(facts["user_id"])
        history = [entry.item for entry in served.history(user.user_idx)]
        # Everyone's events, as the catalogue serves them (every split).
        everyone = [
            entry.item
            for other in served.user_ids()
            for entry in served.history(served.user(other).user_idx)
        ]
    total = len(everyone)
    assert user.over_represented, "the fixture user over-represents something"
    lifts = []
    for term in user.over_represented:
        name = contract.term_text(term)
        carried = sum(name in _terms_of(item) for item in history)
        overall = sum(name in _terms_of(item) for item in everyone)
        # Hand-computed: the user's share of events carrying the term over everyone's.
        assert term["lift"] == pytest.approx((carried / len(history)) / (overall / total), abs=1e-3)
        assert carried >= 3 and term["lift"] > 1
        lifts.append(term["lift"])
    assert lifts == sorted(lifts, reverse=True)
    assert user.term_names(1, with_lift=True) == [facts["user_term"]]


def test_profiles_with_missing_optional_keys(facts: dict[str, Any]) -> None:
    with serve.Served(facts["root"]) as served:
        groups = served.clusters()
        assert [g.label for g in groups] == ["Block A · Action", "Block B"]
        block_b = served.cluster(1)
        assert block_b.top_items == [] and block_b.term_names() == ["Drama"]
        assert served.cluster_members(1, 3) == ["20", "21", "22"]
        profile = served.user_profile("25", history_limit=2)
        assert len(profile.history) == 2
        assert profile.top_genres and profile.cluster is not None
        with pytest.raises(RecliError, match=r"unknown cluster 7.*ids 0–1"):
            served.cluster(7)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("999", r"unknown user id '999': the catalogue has 40 users \(ids 0–39\); nearest: 39, 38"),
        ("", "empty user id"),
        ("  ", "empty user id"),
        ("abc", "user id 'abc' is not a number"),
        # However many digits, a number: int() alone refuses more than 4300.
        ("7" * 5000, r"unknown user id '7{39}…': the catalogue has 40 users .*nearest: 39, 38"),
        ("-" + "7" * 5000, r"unknown user id '-7{38}…': .*nearest: 0, 1"),
        (" +1_0" + "0" * 5000, r"unknown user id ' \+1_0{35}…': .*nearest: 39, 38"),
    ],
)
def test_bad_user_ids(facts: dict[str, Any], given: str, message: str) -> None:
    with serve.Served(facts["root"]) as served, pytest.raises(RecliError, match=message):
        served.recommend(given)


def test_non_numeric_catalogue_suggests_close_ids() -> None:
    error = inputs.unknown_id("user", "alce", ["alice", "bob", "carol"], "recommend")
    assert "nearest: alice" in str(error)


@pytest.mark.parametrize(
    ("k", "message"), [(0, "at least 1"), (-3, "at least 1"), (31, "between 1 and 22$")]
)
def test_bad_k(facts: dict[str, Any], k: int, message: str) -> None:
    with serve.Served(facts["root"]) as served, pytest.raises(RecliError, match=message):
        served.recommend(facts["user_id"], k)


def test_missing_artifacts(tmp_path: Path) -> None:
    with pytest.raises(RecliError, match="dvc repro"):
        serve.Served(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecliError, match=r"catalogue.sqlite not found: run `dvc repro`"):
        serve.Served(tmp_path / "empty")


def test_truncated_index_is_caught_cheaply(copy: Path, facts: dict[str, Any]) -> None:
    path = copy / "index" / "items.ann"
    data = path.read_bytes()
    for size in (0, len(data) // 2, len(data) - 7):
        path.write_bytes(data[:size])
        with serve.Served(copy) as served, pytest.raises(RecliError, match="dvc repro -f index"):
            served.recommend(facts["user_id"])


def test_serving_imports_no_numpy(facts: dict[str, Any]) -> None:
    code = (
        "import sys; from recli import serve; "
        f"serve.Served({str(facts['root'])!r}).recommend({facts['user_id']!r}); "
        "print(sorted(m for m in ('numpy', 'polars', 'torch') if m in sys.modules))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "[]"
