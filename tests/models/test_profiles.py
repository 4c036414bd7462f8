"""Profiles of hand-made groupings: terms and lifts worked out on paper, exemplars, labels, and
how well the profiles describe their members."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl
import pytest
from hand_built import HORROR_FANS, ROMANCE_FANS, groups, horror_and_romance, processed_from, unit

from pipeline.core.sections import ClusterConfig
from pipeline.data.artifacts import Processed
from pipeline.models.profiles import (
    LABEL_SEPARATOR,
    MIN_LABEL_LIFT,
    cluster_profiles,
    label_agreement,
    label_clusters,
    label_weight,
)
from pipeline.models.terms import user_term_shares
from recli.contract import term_text


def profiles_of(
    processed: Processed,
    membership: list[int],
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    cfg: ClusterConfig,
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The profiles of users grouped by hand (user u in cluster `membership[u]`), and the
    centroids they were computed with (each group's mean vector, where KMeans would settle)."""
    labels = np.asarray(membership)
    centroids = np.vstack(
        [user_vectors[labels == cluster].mean(axis=0) for cluster in range(labels.max() + 1)]
    ).astype(np.float32)
    users = np.arange(len(labels))
    profiles = cluster_profiles(labels, centroids, users, item_vectors, processed, cfg)
    return profiles, centroids


HORROR, ROMANCE = 0, 1


@pytest.fixture(scope="module")
def horror_and_romance_profiles() -> list[dict[str, Any]]:
    """The horror fans as cluster 0, the romance fans as cluster 1."""
    membership = [HORROR] * len(HORROR_FANS) + [ROMANCE] * len(ROMANCE_FANS)
    items = unit(np.eye(16)[:9] + 0.1)
    cfg = ClusterConfig(k=2, top_terms=5)
    return profiles_of(horror_and_romance(), membership, groups([6, 6]), items, cfg)[0]


# --------------------------------------------------------------------------------------------
# Terms
# --------------------------------------------------------------------------------------------
def test_top_term_is_the_over_represented_genre_with_the_hand_computed_lift(
    horror_and_romance_profiles,
) -> None:
    horror = horror_and_romance_profiles[HORROR]
    top = horror["top_terms"][0]
    assert (top["term"], top["kind"]) == ("Horror", "genre")
    # Horror: 25 of the cluster's 31 interactions, 31 of all 61.
    assert top["lift"] == pytest.approx((25 / 31) / (31 / 61), abs=1e-4)
    assert top["share"] == pytest.approx(25 / 31, abs=1e-4)
    assert top["interactions"] == 25

    romance = horror_and_romance_profiles[ROMANCE]
    assert romance["top_terms"][0]["term"] == "Romance"
    # Romance: 24 of 30 in the cluster, 30 of 61 overall.
    assert romance["top_terms"][0]["lift"] == pytest.approx((24 / 30) / (30 / 61), abs=1e-4)


def test_terms_are_ranked_by_label_weight_and_rare_terms_are_excluded(
    horror_and_romance_profiles,
) -> None:
    horror = horror_and_romance_profiles[HORROR]
    terms = [(t["kind"], t["term"]) for t in horror["top_terms"]]
    # gore: 12 of 31 in the cluster, 18 of 61 overall.
    assert terms == [("genre", "Horror"), ("tag", "gore")]
    assert horror["top_terms"][1]["lift"] == pytest.approx((12 / 31) / (18 / 61), abs=1e-4)
    weights = [label_weight(t) for t in horror["top_terms"]]
    assert weights == sorted(weights, reverse=True)
    # `cult` has the highest lift of all ((1/31) / (1/61) ≈ 1.97) but one interaction of 31.
    assert ("tag", "cult") not in terms
    assert horror["label"] == "Horror · #gore"


def test_profiles_are_ordered_and_json_ready(horror_and_romance_profiles) -> None:
    profiles = horror_and_romance_profiles
    assert [p["cluster"] for p in profiles] == [0, 1]
    assert [p["size"] for p in profiles] == [6, 6]
    assert sum(p["share"] for p in profiles) == pytest.approx(1.0)
    assert json.loads(json.dumps(profiles)) == profiles


# --------------------------------------------------------------------------------------------
# Exemplars
# --------------------------------------------------------------------------------------------
def test_exemplars_are_supported_items_that_set_the_cluster_apart() -> None:
    # Cluster A: four users symmetric around the x axis, so its centroid points along x.
    # Cluster B: three users around the z axis.
    a = [[1, 0.1, 0], [1, -0.1, 0], [1, 0, 0.1], [1, 0, -0.1]]
    b = [[0.1, 0, 1], [-0.1, 0, 1], [0, 0.1, 1]]
    users = unit(np.array(a + b))
    # Item 0 lies exactly on A's centroid but only one A user liked it: not recognisable.
    # Items 1, 2, 3 lean away from x by growing angles; all are liked by at least 3 A users.
    # Item 5 is what everyone likes, between x and z: nearer A's centroid than item 3, but it
    # does not tell A from B.
    items = unit(np.array([[1, 0, 0], [1, 0.2, 0], [1, 0.5, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0.8]]))
    liked = [[0, 1, 2, 3, 5], [1, 2, 3, 5], [1, 2, 3, 5], [1, 2, 5], [4, 5], [4, 5], [4, 5]]
    processed = processed_from(liked, [["Drama"]] * 4 + [["Horror"]] * 2)
    profiles, centroids = profiles_of(
        processed, [0] * 4 + [1] * 3, users, items, ClusterConfig(k=2, exemplars=3)
    )
    profile = profiles[0]
    assert float(items[5] @ [1, 0, 0]) > float(items[3] @ [1, 0, 0])
    assert [e["item_idx"] for e in profile["exemplars"]] == [1, 2, 3]
    first = profile["exemplars"][0]
    assert (first["item_id"], first["title"], first["users"]) == ("101", "Film 1", 4)
    # Its similarity: cosine with the direction from everyone's mean to A's centroid.
    sizes = np.array([p["size"] for p in profiles])[:, None]
    direction = centroids[0] - (sizes * centroids).sum(axis=0) / sizes.sum()
    direction /= np.linalg.norm(direction)
    assert first["similarity"] == pytest.approx(float(items[1] @ direction), abs=1e-4)
    assert 0 not in [item["item_idx"] for item in profile["top_items"]]


def test_exemplars_skip_a_title_already_shown() -> None:
    items = unit(np.eye(16)[:4] + 0.01)
    liked = [[0, 1, 2]] * 4 + [[3]] * 3
    processed = processed_from(liked, [["Drama"]] * 4)
    processed = Processed(
        **{
            **processed.__dict__,
            "items": processed.items.with_columns(
                pl.Series("title", ["Twice", "Twice", "Once", "Other"])
            ),
        }
    )
    profiles, _ = profiles_of(
        processed, [0] * 4 + [1] * 3, groups([4, 3]), items, ClusterConfig(k=2, exemplars=3)
    )
    titles = [e["title"] for e in profiles[0]["exemplars"]]
    assert sorted(titles) == ["Once", "Twice"]


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------
def test_labels_are_unique_when_clusters_share_top_terms() -> None:
    # Two groups watch different Horror films, a third watches Romance: both Horror groups have
    # the same terms, so only their exemplars can tell them apart.
    genres = [["Horror"]] * 8 + [["Romance"]] * 4
    liked = [[0, 1, 2, 3]] * 6 + [[4, 5, 6, 7]] * 5 + [[8, 9, 10, 11]] * 4
    items = unit(np.vstack([np.tile(np.eye(16)[g], (4, 1)) for g in range(3)]) + 0.01)
    membership = [0] * 6 + [1] * 5 + [2] * 4
    profiles, _ = profiles_of(
        processed_from(liked, genres), membership, groups([6, 5, 4]), items, ClusterConfig(k=3)
    )
    labels = [p["label"] for p in profiles]
    assert len(set(labels)) == 3
    assert labels[0].startswith("Horror — Film ") and labels[1].startswith("Horror — Film ")
    assert labels[2] == "Romance"


def test_identical_labels_and_exemplars_fall_back_to_the_cluster_id() -> None:
    terms = [[{"term": "Drama", "kind": "genre", "share": 0.5, "lift": 1.2}]] * 2
    exemplars = [[{"title": "Film 1"}]] * 2
    assert label_clusters(terms, exemplars) == [
        "Drama — Film 1 (cluster 0)",
        "Drama — Film 1 (cluster 1)",
    ]


def test_labels_name_the_terms_that_carry_most_of_the_activity() -> None:
    # share × ln(lift): B 0.162, C 0.139, D 0.069, A 0.066. Ranked by lift alone it would be
    # D, A, C: rare terms that describe few of the group's events.
    terms = [
        {"term": term, "kind": "genre", "lift": lift, "share": share}
        for term, lift, share in (
            ("D", 4.0, 0.05),
            ("A", 3.0, 0.06),
            ("C", 2.0, 0.2),
            ("B", 1.5, 0.4),
        )
    ]
    assert label_clusters([terms], [[]]) == ["B · C · D"]


def _label_leads_the_shown_terms(profile: dict[str, Any]) -> list[str]:
    """The label's terms, checked to be the first terms shown beside it, in its order."""
    named = profile["label"].split(LABEL_SEPARATOR)
    shown = [term_text(t) for t in profile["top_terms"] if t["lift"] >= MIN_LABEL_LIFT]
    assert shown[: len(named)] == named, profile
    return named


def test_the_label_is_made_of_the_first_terms_shown_beside_it() -> None:
    # Cluster 0 (users 0-5): items 0-3 (Comedy) and item 8 (Animation), 30 events. Cluster 1
    # (users 6-11): items 4, 5 (Comedy) and 9-11 (Drama), 30 events. Of all 60 events Comedy
    # carries 36, Animation 6, Drama 18. Cluster 0: Comedy share 0.8, lift 1.333, weight
    # 0.8 ln 1.333 = 0.230; Animation share 0.2, lift 2, weight 0.139. The label names Comedy
    # first, so the terms shown beside it must not lead with Animation's higher lift.
    genres = [["Comedy"]] * 8 + [["Animation"]] + [["Drama"]] * 3
    liked = [[0, 1, 2, 3, 8]] * 6 + [[4, 5, 9, 10, 11]] * 6
    items = unit(np.eye(16)[:12] + 0.01)
    profiles, _ = profiles_of(
        processed_from(liked, genres), [0] * 6 + [1] * 6, groups([6, 6]), items, ClusterConfig(k=2)
    )
    comedy = profiles[0]
    assert _label_leads_the_shown_terms(comedy) == ["Comedy", "Animation"]
    assert [(t["term"], t["lift"]) for t in comedy["top_terms"]] == [
        ("Comedy", pytest.approx(0.8 / 0.6, abs=1e-4)),
        ("Animation", pytest.approx(0.2 / 0.1, abs=1e-4)),
    ]
    assert _label_leads_the_shown_terms(profiles[1]) == ["Drama"]


def test_a_term_added_to_tell_clashing_labels_apart_is_shown_with_them() -> None:
    # Clusters 0 and 1 both watch Horror (items 0-3) and one more film: Horror-Thriller (item 4)
    # for cluster 0, Horror-Mystery (item 5) for cluster 1; cluster 2 watches Romance. With one
    # top term each, both labels would read "Horror": each gains its second genre, which must
    # then be among the terms shown, right after Horror.
    genres = [["Horror"]] * 4 + [["Horror", "Thriller"], ["Horror", "Mystery"]] + [["Romance"]] * 4
    liked = [[0, 1, 2, 3, 4]] * 5 + [[0, 1, 2, 3, 5]] * 5 + [[6, 7, 8, 9]] * 5
    items = unit(np.eye(16)[:10] + 0.01)
    profiles, _ = profiles_of(
        processed_from(liked, genres),
        [0] * 5 + [1] * 5 + [2] * 5,
        groups([5, 5, 5]),
        items,
        ClusterConfig(k=3, top_terms=1),
    )
    assert [_label_leads_the_shown_terms(p) for p in profiles] == [
        ["Horror", "Thriller"],
        ["Horror", "Mystery"],
        ["Romance"],
    ]


def test_a_label_names_no_term_below_the_shown_lift() -> None:
    # Nothing reaches MIN_LABEL_LIFT: the screen would show no term, so the label is the
    # exemplar's title rather than a term the list beside it leaves out.
    weak = [[_term("Drama", 1.05, 0.6)]]
    assert label_clusters(weak, [[{"title": "Heat"}]]) == ["Like Heat"]


def test_labels_without_terms_name_the_first_exemplar_or_the_cluster() -> None:
    assert label_clusters([[], []], [[{"title": "Heat"}], []]) == ["Like Heat", "Cluster 1"]


# --------------------------------------------------------------------------------------------
# How well the profiles describe their members
# --------------------------------------------------------------------------------------------
def test_label_agreement_counts_members_who_lean_towards_their_groups_terms(
    horror_and_romance_profiles,
) -> None:
    processed = horror_and_romance()
    profiles = horror_and_romance_profiles
    # Every member over-represents every term of their group (Horror and #gore; Romance).
    members = pl.DataFrame(
        {"user_idx": list(range(12)), "cluster": [HORROR] * 6 + [ROMANCE] * 6},
        schema={"user_idx": pl.Int32, "cluster": pl.Int32},
    )
    assert label_agreement(processed.train, processed.items, members, profiles) == 1.0
    # A romance fan put among the horror fans leans towards neither Horror nor #gore: 11 of 12.
    moved = members.with_columns(pl.Series("cluster", [HORROR] * 7 + [ROMANCE] * 5, pl.Int32))
    assert label_agreement(processed.train, processed.items, moved, profiles) == pytest.approx(
        11 / 12
    )
    # The shares can be computed once for several assignments: the same answer.
    shares = user_term_shares(processed.train, processed.items)
    assert label_agreement(
        processed.train, processed.items, moved, profiles, shares
    ) == pytest.approx(11 / 12)


def test_label_agreement_is_none_without_terms() -> None:
    processed = horror_and_romance()
    members = pl.DataFrame({"user_idx": [0], "cluster": [0]})
    profiles = [{"cluster": 0, "top_terms": []}]
    assert label_agreement(processed.train, processed.items, members, profiles) is None


def _term(term: str, lift: float, share: float, kind: str = "genre") -> dict:
    return {"term": term, "kind": kind, "lift": lift, "share": share}


def test_clashing_labels_gain_the_term_that_sets_each_cluster_apart() -> None:
    shared = [_term("Thriller", 2.0, 0.4), _term("Mystery", 1.8, 0.3)]
    first = [*shared, _term("1997 films", 3.0, 0.3, "era")]
    second = [*shared, _term("1997 films", 3.0, 0.3, "era")]
    # Deeper in their pools: the first also leans to Horror, the second to Crime.
    pools = [[*first, _term("Horror", 1.5, 0.1)], [*second, _term("Crime", 1.6, 0.1)]]
    labels = label_clusters([first, second], [[{"title": "A"}], [{"title": "B"}]], pools)
    assert labels == ["Thriller · Mystery · Horror", "Thriller · Mystery · Crime"]


def test_an_era_joins_a_label_only_when_nothing_else_sets_it_apart() -> None:
    first = [_term("Drama", 1.5, 0.5), _term("1950s films", 4.0, 0.3, "era")]
    second = [_term("Drama", 1.5, 0.5), _term("1990s films", 2.0, 0.3, "era")]
    third = [_term("Comedy", 1.5, 0.5), _term("1950s films", 4.0, 0.3, "era")]
    labels = label_clusters([first, second, third], [[], [], []])
    # The Drama groups differ only by when they watched; the Comedy group needs no era.
    assert labels == ["Drama · 1950s films", "Drama · 1990s films", "Comedy"]
