from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from pipeline import cluster
from pipeline.config import ClusterConfig
from pipeline.preprocess import Processed
from recli.errors import RecliError


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _groups(sizes: list[int], dim: int = 16, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """Users in tight bunches around orthogonal directions: group g lies along axis g."""
    rng = np.random.default_rng(seed)
    rows = []
    for group, size in enumerate(sizes):
        centre = np.zeros(dim)
        centre[group] = 1.0
        rows.append(centre + noise * rng.standard_normal((size, dim)))
    return _unit(np.vstack(rows))


def _processed(
    liked: list[list[int]],
    genres: list[list[str]],
    tags: list[list[str]] | None = None,
) -> Processed:
    """A `Processed` built by hand: user u liked the items `liked[u]` in training."""
    n_items = len(genres)
    train = pl.DataFrame(
        {
            "user_idx": [u for u, items in enumerate(liked) for _ in items],
            "item_idx": [i for items in liked for i in items],
        },
        schema={"user_idx": pl.Int32, "item_idx": pl.Int32},
    ).with_columns(pl.lit(1.0, pl.Float32).alias("rating"), pl.lit(0, pl.Int64).alias("timestamp"))
    items = pl.DataFrame(
        {
            "item_idx": list(range(n_items)),
            "item_id": [str(100 + i) for i in range(n_items)],
            "title": [f"Film {i}" for i in range(n_items)],
            "genres": genres,
            "tags": tags if tags is not None else [[] for _ in range(n_items)],
        },
        schema_overrides={
            "item_idx": pl.Int32,
            "genres": pl.List(pl.String),
            "tags": pl.List(pl.String),
        },
    )
    users = pl.DataFrame(
        {"user_idx": list(range(len(liked))), "user_id": [str(u) for u in range(len(liked))]},
        schema_overrides={"user_idx": pl.Int32},
    )
    empty = train.clear()
    return Processed(
        train=train, validation=empty, test=empty, cold=empty, items=items, users=users
    )


def _cluster_of(clustering: cluster.Clustering, user: int) -> int:
    return clustering.assignments["cluster"][user]


# --------------------------------------------------------------------------------------------
# KMeans and the choice of k
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def three_groups() -> tuple[np.ndarray, np.ndarray, Processed]:
    users = _groups([12, 10, 8])
    items = _unit(np.eye(16)[:3])
    # Each group likes its own item: enough for profiles, irrelevant to the assignments.
    group = [0] * 12 + [1] * 10 + [2] * 8
    processed = _processed([[g] for g in group], [["A"], ["B"], ["C"]])
    return users, items, processed


def test_recovers_well_separated_groups_largest_first(three_groups) -> None:
    users, items, processed = three_groups
    clustering = cluster.run(users, items, processed, ClusterConfig(k=3))
    # Ids are ordered by size, and the groups were built largest first: the mapping is identity.
    expected = [0] * 12 + [1] * 10 + [2] * 8
    assert clustering.assignments["cluster"].to_list() == expected
    assert [p["size"] for p in clustering.profiles] == [12, 10, 8]
    assert clustering.centroids.shape == (3, 16) and clustering.centroids.dtype == np.float32
    assert clustering.metrics["silhouette"] > 0.9
    assert clustering.metrics["largest_share"] == pytest.approx(12 / 30, abs=1e-4)
    assert (clustering.metrics["size_min"], clustering.metrics["size_max"]) == (8, 12)


def test_auto_picks_the_true_number_of_groups(three_groups) -> None:
    users, items, processed = three_groups
    clustering = cluster.run(users, items, processed, ClusterConfig(k="auto", k_range=(2, 6)))
    assert clustering.metrics["k"] == 3
    by_k = clustering.metrics["silhouette_by_k"]
    assert list(by_k) == ["2", "3", "4", "5", "6"]
    assert max(by_k, key=by_k.get) == "3"
    assert clustering.metrics["silhouette"] == by_k["3"]


def test_distance_is_to_the_assigned_centroid(three_groups) -> None:
    users, items, processed = three_groups
    clustering = cluster.run(users, items, processed, ClusterConfig(k=3))
    labels = clustering.assignments["cluster"].to_numpy()
    expected = np.linalg.norm(users - clustering.centroids[labels], axis=1)
    np.testing.assert_allclose(clustering.assignments["distance"].to_numpy(), expected, rtol=1e-5)


def test_same_seed_same_assignments() -> None:
    users = _unit(np.random.default_rng(3).standard_normal((60, 8)))
    processed = _processed([[0]] * 60, [["A"]])
    items = _unit(np.ones((1, 8)))
    cfg = ClusterConfig(k=5, seed=7)
    first = cluster.run(users, items, processed, cfg)
    again = cluster.run(users, items, processed, cfg)
    assert first.assignments.equals(again.assignments)
    np.testing.assert_array_equal(first.centroids, again.centroids)


def test_k_must_be_below_the_number_of_users() -> None:
    users = _groups([3, 2])
    processed = _processed([[0]] * 5, [["A"]])
    items = _unit(np.ones((1, 16)))
    with pytest.raises(RecliError, match=r"cluster\.k \(5\) must be below the number of users"):
        cluster.run(users, items, processed, ClusterConfig(k=5))


def test_auto_range_is_clipped_to_the_users_or_refused() -> None:
    items = _unit(np.ones((1, 16)))
    users = _groups([3, 2])
    clustering = cluster.run(
        users, items, _processed([[0]] * 5, [["A"]]), ClusterConfig(k="auto", k_range=(2, 20))
    )
    assert clustering.metrics["k_range_searched"] == [2, 4]
    with pytest.raises(RecliError, match=r"cluster\.k_range"):
        cluster.run(users[:2], items, _processed([[0]] * 2, [["A"]]), ClusterConfig(k="auto"))


def test_users_without_history_are_left_unassigned(three_groups) -> None:
    users, items, processed = three_groups
    users = users.copy()
    users[5] = 0.0
    clustering = cluster.run(users, items, processed, ClusterConfig(k=3))
    row = clustering.assignments.row(5, named=True)
    assert row["cluster"] is None and row["distance"] is None
    assert clustering.assignments["cluster"].null_count() == 1
    assert clustering.metrics["users"] == 29
    assert clustering.metrics["users_without_history"] == 1


def test_embeddings_that_do_not_match_the_processed_data_are_refused(three_groups) -> None:
    users, items, processed = three_groups
    with pytest.raises(RecliError, match="dvc repro embed"):
        cluster.run(users[:-1], items, processed, ClusterConfig(k=3))


# --------------------------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def horror_and_romance() -> cluster.Clustering:
    """Six horror fans and six romance fans (equal sizes: look clusters up by user).

    Items 0-3 Horror (0 and 1 also tagged `gore`), 4 Horror tagged `cult`, 5-8 Romance.
    Horror fans: items 0, 1, 2, 3, 5 each; the first one also item 4 (31 interactions).
    Romance fans: items 5, 6, 7, 8, 0 each (30 interactions). 61 in all.
    """
    genres = [["Horror"]] * 5 + [["Romance"]] * 4
    tags = [["gore"], ["gore"], [], [], ["cult"], [], [], [], []]
    horror_fans = [[0, 1, 2, 3, 5] for _ in range(6)]
    horror_fans[0] = [*horror_fans[0], 4]
    romance_fans = [[5, 6, 7, 8, 0] for _ in range(6)]
    users = _groups([6, 6])
    items = _unit(np.eye(16)[:9] + 0.1)
    processed = _processed(horror_fans + romance_fans, genres, tags)
    return cluster.run(users, items, processed, ClusterConfig(k=2, top_terms=5))


def _profile_of(clustering: cluster.Clustering, user: int) -> dict:
    return clustering.profiles[_cluster_of(clustering, user)]


def test_top_term_is_the_over_represented_genre_with_the_hand_computed_lift(
    horror_and_romance,
) -> None:
    horror = _profile_of(horror_and_romance, 0)
    top = horror["top_terms"][0]
    assert (top["term"], top["kind"]) == ("Horror", "genre")
    # Horror: 25 of the cluster's 31 interactions, 31 of all 61.
    assert top["lift"] == pytest.approx((25 / 31) / (31 / 61), abs=1e-4)
    assert top["share"] == pytest.approx(25 / 31, abs=1e-4)
    assert top["interactions"] == 25

    romance = _profile_of(horror_and_romance, 6)
    assert romance["top_terms"][0]["term"] == "Romance"
    # Romance: 24 of 30 in the cluster, 30 of 61 overall.
    assert romance["top_terms"][0]["lift"] == pytest.approx((24 / 30) / (30 / 61), abs=1e-4)


def test_terms_are_ranked_by_lift_and_rare_terms_are_excluded(horror_and_romance) -> None:
    horror = _profile_of(horror_and_romance, 0)
    terms = [(t["kind"], t["term"]) for t in horror["top_terms"]]
    # gore: 12 of 31 in the cluster, 18 of 61 overall.
    assert terms == [("genre", "Horror"), ("tag", "gore")]
    assert horror["top_terms"][1]["lift"] == pytest.approx((12 / 31) / (18 / 61), abs=1e-4)
    lifts = [t["lift"] for t in horror["top_terms"]]
    assert lifts == sorted(lifts, reverse=True)
    # `cult` has the highest lift of all ((1/31) / (1/61) ≈ 1.97) but one interaction of 31.
    assert ("tag", "cult") not in terms
    assert horror["label"] == "Horror · #gore"


def test_profiles_are_ordered_and_json_ready(horror_and_romance) -> None:
    profiles = horror_and_romance.profiles
    assert [p["cluster"] for p in profiles] == [0, 1]
    assert sum(p["share"] for p in profiles) == pytest.approx(1.0)
    assert json.loads(json.dumps(profiles)) == profiles


def test_exemplars_are_supported_items_that_set_the_cluster_apart() -> None:
    # Cluster A: four users symmetric around the x axis, so its centroid points along x.
    # Cluster B: three users around the z axis.
    a = [[1, 0.1, 0], [1, -0.1, 0], [1, 0, 0.1], [1, 0, -0.1]]
    b = [[0.1, 0, 1], [-0.1, 0, 1], [0, 0.1, 1]]
    users = _unit(np.array(a + b))
    # Item 0 lies exactly on A's centroid but only one A user liked it: not recognisable.
    # Items 1, 2, 3 lean away from x by growing angles; all are liked by at least 3 A users.
    # Item 5 is what everyone likes, between x and z: nearer A's centroid than item 3, but it
    # does not tell A from B.
    items = _unit(
        np.array([[1, 0, 0], [1, 0.2, 0], [1, 0.5, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0.8]])
    )
    liked = [[0, 1, 2, 3, 5], [1, 2, 3, 5], [1, 2, 3, 5], [1, 2, 5], [4, 5], [4, 5], [4, 5]]
    processed = _processed(liked, [["Drama"]] * 4 + [["Horror"]] * 2)
    clustering = cluster.run(users, items, processed, ClusterConfig(k=2, exemplars=3))
    profile = _profile_of(clustering, 0)
    assert float(items[5] @ [1, 0, 0]) > float(items[3] @ [1, 0, 0])
    assert [e["item_idx"] for e in profile["exemplars"]] == [1, 2, 3]
    first = profile["exemplars"][0]
    assert (first["item_id"], first["title"], first["users"]) == ("101", "Film 1", 4)
    # Its similarity: cosine with the direction from everyone's mean to A's centroid.
    centroids = clustering.centroids
    sizes = np.array([p["size"] for p in clustering.profiles])[:, None]
    direction = centroids[0] - (sizes * centroids).sum(axis=0) / sizes.sum()
    direction /= np.linalg.norm(direction)
    assert first["similarity"] == pytest.approx(float(items[1] @ direction), abs=1e-4)
    assert 0 not in [item["item_idx"] for item in profile["top_items"]]


def test_exemplars_skip_a_title_already_shown() -> None:
    users = _groups([4, 3])
    items = _unit(np.eye(16)[:4] + 0.01)
    liked = [[0, 1, 2]] * 4 + [[3]] * 3
    processed = _processed(liked, [["Drama"]] * 4)
    processed = Processed(
        **{
            **processed.__dict__,
            "items": processed.items.with_columns(
                pl.Series("title", ["Twice", "Twice", "Once", "Other"])
            ),
        }
    )
    clustering = cluster.run(users, items, processed, ClusterConfig(k=2, exemplars=3))
    titles = [e["title"] for e in _profile_of(clustering, 0)["exemplars"]]
    assert sorted(titles) == ["Once", "Twice"]


def test_labels_are_unique_when_clusters_share_top_terms() -> None:
    # Two groups watch different Horror films, a third watches Romance: both Horror groups have
    # the same terms, so only their exemplars can tell them apart.
    genres = [["Horror"]] * 8 + [["Romance"]] * 4
    liked = [[0, 1, 2, 3]] * 6 + [[4, 5, 6, 7]] * 5 + [[8, 9, 10, 11]] * 4
    users = _groups([6, 5, 4])
    items = _unit(np.vstack([np.tile(np.eye(16)[g], (4, 1)) for g in range(3)]) + 0.01)
    clustering = cluster.run(users, items, _processed(liked, genres), ClusterConfig(k=3))
    labels = [p["label"] for p in clustering.profiles]
    assert len(set(labels)) == 3
    assert labels[0].startswith("Horror — Film ") and labels[1].startswith("Horror — Film ")
    assert labels[2] == "Romance"


def test_identical_labels_and_exemplars_fall_back_to_the_cluster_id() -> None:
    terms = [[{"term": "Drama", "kind": "genre", "share": 0.5, "lift": 1.2}]] * 2
    exemplars = [[{"title": "Film 1"}]] * 2
    assert cluster._labels(terms, exemplars) == [
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
    assert cluster._labels([terms], [[]]) == ["B · C · D"]


def test_user_interests_are_the_users_own_lifts_with_support(horror_and_romance) -> None:
    genres = [["Horror"]] * 5 + [["Romance"]] * 4
    tags = [["gore"], ["gore"], [], [], ["cult"], [], [], [], []]
    horror_fans = [[0, 1, 2, 3, 5] for _ in range(6)]
    horror_fans[0] = [*horror_fans[0], 4]
    processed = _processed(horror_fans + [[5, 6, 7, 8, 0]] * 6, genres, tags)
    interests = cluster.user_interests(processed.train, processed.items, keep=5)
    first = interests.filter(pl.col("user_idx") == 0)
    # User 0: 5 of 6 events Horror, against 31 of 61 overall. gore (2 events) and cult (1) are
    # above the population's share but below the 3-event support floor.
    assert first["term"].to_list() == ["Horror"]
    assert first["lift"][0] == pytest.approx((5 / 6) / (31 / 61), abs=1e-4)
    romance_fan = interests.filter(pl.col("user_idx") == 6)
    assert romance_fan["term"].to_list() == ["Romance"]
    assert romance_fan["lift"][0] == pytest.approx((4 / 5) / (30 / 61), abs=1e-4)
    assert horror_and_romance.interests.equals(interests)


def test_label_agreement_counts_members_who_lean_towards_their_groups_terms(
    horror_and_romance,
) -> None:
    processed = _processed(
        [[0, 1, 2, 3, 5, 4]] + [[0, 1, 2, 3, 5]] * 5 + [[5, 6, 7, 8, 0]] * 6,
        [["Horror"]] * 5 + [["Romance"]] * 4,
        [["gore"], ["gore"], [], [], ["cult"], [], [], [], []],
    )
    profiles = horror_and_romance.profiles
    horror = _cluster_of(horror_and_romance, 0)
    romance = _cluster_of(horror_and_romance, 6)
    # Every member over-represents every term of their group (Horror and #gore; Romance).
    members = horror_and_romance.assignments.select("user_idx", "cluster")
    assert cluster.label_agreement(processed.train, processed.items, members, profiles) == 1.0
    assert horror_and_romance.metrics["label_agreement"] == 1.0
    assert horror_and_romance.metrics["label_agreement_random"] < 1.0
    # A romance fan put among the horror fans leans towards neither Horror nor #gore: 11 of 12.
    moved = pl.DataFrame(
        {"user_idx": list(range(12)), "cluster": [horror] * 7 + [romance] * 5},
        schema={"user_idx": pl.Int32, "cluster": pl.Int32},
    )
    assert cluster.label_agreement(
        processed.train, processed.items, moved, profiles
    ) == pytest.approx(11 / 12)


def test_taste_vectors_are_idf_weighted_history_means() -> None:
    items = np.eye(3, dtype=np.float32)
    # Item 0 is liked by 3 of 4 users (idf ln 4/3), item 1 by one (idf ln 4); user 3 has none.
    processed = _processed([[0, 1], [0], [0], []], [["A"], ["B"], ["C"]])
    vectors = cluster.taste_vectors(processed.train, items, 4)
    expected = np.array([np.log(4 / 3), np.log(4), 0.0])
    np.testing.assert_allclose(vectors[0], expected / np.linalg.norm(expected), rtol=1e-5)
    np.testing.assert_allclose(vectors[1], [1, 0, 0])
    np.testing.assert_array_equal(vectors[3], [0, 0, 0])
    assert vectors.dtype == np.float32

    embeddings = cluster.UserItemVectors(users=np.ones((4, 3), np.float32), items=items)
    recent = cluster.user_vectors(embeddings, processed, ClusterConfig(representation="recent"))
    assert recent is embeddings.users
    taste = cluster.user_vectors(embeddings, processed, ClusterConfig(representation="taste"))
    np.testing.assert_array_equal(taste, vectors)


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------
def test_write_read_round_trip(tmp_path, horror_and_romance) -> None:
    cfg = ClusterConfig(k=2)
    metrics_file = tmp_path / "metrics" / "cluster.json"
    plot_file = tmp_path / "metrics" / "plots" / "cluster_sizes.json"
    cluster.write(horror_and_romance, cfg, tmp_path / "cluster", metrics_file, plot_file)

    loaded = cluster.read(tmp_path / "cluster", metrics_file)
    assert loaded.assignments.schema == pl.Schema(
        {"user_idx": pl.Int32, "cluster": pl.Int32, "distance": pl.Float32}
    )
    assert loaded.assignments.equals(horror_and_romance.assignments)
    np.testing.assert_array_equal(loaded.centroids, horror_and_romance.centroids)
    assert loaded.profiles == horror_and_romance.profiles
    assert loaded.metrics == horror_and_romance.metrics
    assert loaded.interests.equals(horror_and_romance.interests)
    sizes = json.loads(plot_file.read_text(encoding="utf-8"))
    assert sizes == [{"cluster": p["label"], "users": p["size"]} for p in loaded.profiles]
    assert json.loads((tmp_path / "cluster" / "config.json").read_text())["k"] == 2


def test_release_era_is_a_term_exact_year_recently_decade_before() -> None:
    import polars as pl

    from pipeline.cluster import _item_terms

    items = pl.DataFrame(
        {
            "item_idx": [0, 1, 2],
            "genres": [["Drama"], [], ["Comedy"]],
            "tags": [[], [], []],
            "year": [1997, 1974, None],
        },
        schema_overrides={"year": pl.Int32, "tags": pl.List(pl.String)},
    )
    terms = _item_terms(items).filter(pl.col("kind") == "era").sort("item_idx")
    assert terms["term"].to_list() == ["1997 films", "1970s films"]
