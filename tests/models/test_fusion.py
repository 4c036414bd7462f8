"""Fusion of the text and collaborative sides: the score split, the weight chosen on validation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
from synthetic import blocks_with_random_text, score_spreads

from pipeline.core.sections import FuseConfig
from pipeline.data.artifacts import Embeddings
from pipeline.evaluation.protocol import SplitMatrices
from pipeline.models.fusion import (
    TUNING_USERS,
    behaviour,
    make_fusion,
    mixture,
    tune_fusion,
    tuning_view,
)
from recli import contract
from recli.errors import RecliError


@pytest.fixture(scope="module")
def setup():
    return blocks_with_random_text()


def test_fused_dot_product_is_the_weighted_sum_of_scaled_scores(setup) -> None:
    _, _, cf, text = setup
    spreads = score_spreads(text, cf)
    fusion = make_fusion(0.3, spreads)
    users, items = fusion.fuse(text.users, cf.users), fusion.fuse(text.items, cf.items)
    expected = (
        0.3 * text.score(np.arange(3)) / spreads[0] + 0.7 * cf.score(np.arange(3)) / spreads[1]
    )
    np.testing.assert_allclose(users[:3] @ items.T, expected, rtol=1e-4, atol=1e-4)


def test_the_tuning_scorer_scores_exactly_as_the_fused_vectors(setup) -> None:
    _, _, cf, text = setup
    fusion = make_fusion(0.4, score_spreads(text, cf))
    users = np.array([5, 0, 3])
    np.testing.assert_array_equal(
        fusion.validation_scorer(text, cf)(users), fusion.fuse_all(text, cf).score(users)
    )


def test_tuning_prefers_the_informative_side(setup) -> None:
    _, matrices, cf, text = setup
    cfg = FuseConfig(weight_grid=[0.0, 0.5, 1.0])
    fusion, side, by_weight = tune_fusion(text, cf, matrices, cfg)
    assert side is cf and fusion.sequence_model is None
    assert list(by_weight) == ["0.0", "0.5", "1.0"]
    assert fusion.text_weight == 0.0  # random text only hurts
    assert by_weight["0.0"] > by_weight["1.0"]
    fixed, _, only = tune_fusion(text, cf, matrices, FuseConfig(text_weight=0.5))
    assert fixed.text_weight == 0.5 and list(only) == ["0.5"]


def test_fused_vectors_follow_the_serving_layout(setup) -> None:
    _, _, cf, text = setup
    fusion = make_fusion(0.3, (1.0, 1.0))
    fused = fusion.fuse(text.items, cf.items)
    width = text.items.shape[1]
    for row, text_row, cf_row in zip(fused, text.items, cf.items, strict=True):
        np.testing.assert_allclose(contract.text_part(row, width), fusion.text_scale * text_row)
        np.testing.assert_allclose(
            contract.collaborative_part(row, width), fusion.cf_scale * cf_row
        )


def test_behaviour_side_scores_are_the_weighted_sum_of_scaled_als_and_sequence(setup) -> None:
    cf = setup[2]
    rng = np.random.default_rng(3)
    sequence = Embeddings(
        users=rng.normal(size=cf.users.shape).astype(np.float32),
        items=rng.normal(size=cf.items.shape).astype(np.float32),
    )
    side = behaviour(cf, sequence, 0.25, seed=0)
    users = np.arange(4)
    # Each part is divided by its own score spread, over the same sampled users.
    sample = np.random.default_rng(0).choice(len(cf.users), size=len(cf.users), replace=False)
    expected = 0.75 * cf.score(users) / np.std(cf.score(sample)) + 0.25 * sequence.score(
        users
    ) / np.std(sequence.score(sample))
    np.testing.assert_allclose(side.score(users), expected, rtol=1e-4, atol=1e-4)


def test_tuning_picks_the_sequence_model_that_helps_on_validation(setup) -> None:
    _, matrices, cf, text = setup
    rng = np.random.default_rng(5)
    # An oracle "sequence model" that knows each user's validation item, and a useless one.
    oracle_users = matrices.validation.toarray().astype(np.float32)
    oracle = Embeddings(users=oracle_users, items=np.eye(matrices.n_items, dtype=np.float32))
    noise = Embeddings(
        users=rng.normal(size=(oracle_users.shape[0], 8)).astype(np.float32),
        items=rng.normal(size=(matrices.n_items, 8)).astype(np.float32),
    )
    cfg = FuseConfig(weight_grid=[0.0, 0.5], sequence_share_grid=[0.0, 0.5, 1.0])
    fusion, side, table = tune_fusion(
        text, cf, matrices, cfg, sequences={"oracle": oracle, "noise": noise}
    )
    assert fusion.sequence_model == "oracle" and fusion.sequence_share > 0
    assert side.users.shape[1] == cf.users.shape[1] + oracle_users.shape[1]
    assert set(table) == {
        f"{w}/{name}/{s}"
        for w in (0.0, 0.5)
        for name, s in [("als", 0.0), *((m, s) for m in ("oracle", "noise") for s in (0.5, 1.0))]
    }


def test_tuning_ranks_a_seeded_sample_of_the_evaluated_users() -> None:
    def matrices(n_users: int, evaluated: np.ndarray | None = None) -> SplitMatrices:
        empty = sp.csr_matrix((n_users, 3), dtype=np.float32)
        return SplitMatrices(empty, empty, empty, empty, np.zeros(3, bool), evaluated)

    small = matrices(TUNING_USERS)
    assert tuning_view(small, seed=0) is small  # nothing to cut
    view = tuning_view(matrices(3 * TUNING_USERS), seed=0)
    assert view.evaluated.size == TUNING_USERS
    assert np.array_equal(view.evaluated, np.unique(view.evaluated))  # sorted, distinct
    assert np.array_equal(view.evaluated, tuning_view(matrices(3 * TUNING_USERS), 0).evaluated)
    capped = np.arange(0, 4 * TUNING_USERS, 2)  # an evaluation sample already drawn
    within = tuning_view(matrices(4 * TUNING_USERS, capped), seed=0).evaluated
    assert within.size == TUNING_USERS and np.isin(within, capped).all()


def test_a_mixture_of_three_models_scores_their_scaled_weighted_sum(setup) -> None:
    cf = setup[2]
    rng = np.random.default_rng(4)

    def noise(width: int) -> Embeddings:
        return Embeddings(
            users=rng.normal(size=(len(cf.users), width)).astype(np.float32),
            items=rng.normal(size=(len(cf.items), width)).astype(np.float32),
            users_served=rng.normal(size=(len(cf.users), width)).astype(np.float32),
        )

    cf = replace(cf, users_served=rng.normal(size=cf.users.shape).astype(np.float32))
    first, second = noise(5), noise(3)
    parts = [(cf, 0.5), (first, 0.3), (second, 0.2)]
    side = mixture(parts, seed=0)
    assert side.items.shape[1] == cf.items.shape[1] + 5 + 3
    sample = np.random.default_rng(0).choice(len(cf.users), size=len(cf.users), replace=False)
    users = np.arange(4)
    spreads = [np.std(vectors.score(sample)) for vectors, _ in parts]
    expected = sum(
        share * vectors.score(users) / spread
        for (vectors, share), spread in zip(parts, spreads, strict=True)
    )
    np.testing.assert_allclose(side.score(users), expected, rtol=1e-4, atol=1e-4)
    # Served users: each model's own, scaled and weighted the same way.
    served = sum(
        share * (vectors.served_users[users] @ vectors.items.T) / spread
        for (vectors, share), spread in zip(parts, spreads, strict=True)
    )
    np.testing.assert_allclose(
        side.served_users[users] @ side.items.T, served, rtol=1e-4, atol=1e-4
    )


def test_a_part_without_served_users_makes_the_mixture_unservable(setup) -> None:
    cf = replace(setup[2], users_served=None)
    rng = np.random.default_rng(5)
    other = Embeddings(
        users=rng.normal(size=(len(cf.users), 3)).astype(np.float32),
        items=rng.normal(size=(len(cf.items), 3)).astype(np.float32),
        users_served=rng.normal(size=(len(cf.users), 3)).astype(np.float32),
    )
    side = mixture([(cf, 0.5), (other, 0.5)], seed=0)  # evaluable: its split users are there
    assert side.score(np.arange(3)).shape == (3, len(cf.items))
    with pytest.raises(RecliError, match="served variant"):
        side.served_users  # noqa: B018


def test_tuning_gives_the_linear_part_the_share_validation_asks_for(setup) -> None:
    _, matrices, cf, text = setup
    oracle_users = matrices.validation.toarray().astype(np.float32)
    oracle = Embeddings(users=oracle_users, items=np.eye(matrices.n_items, dtype=np.float32))
    cfg = FuseConfig(weight_grid=[0.0, 0.5], linear_share_grid=[0.0, 0.3, 1.0])
    fusion, side, table = tune_fusion(text, cf, matrices, cfg, linear=oracle)
    assert fusion.linear_share > 0 and fusion.sequence_model is None
    assert side.items.shape[1] == cf.items.shape[1] + matrices.n_items
    assert {"0.0", "0.5"} < set(table)
    assert {f"{w}/als/0.0/{p}" for w in (0.0, 0.5) for p in (0.0, 0.3, 1.0)} < set(table)
    # Share 0 is the first pass's winner again, scored the same.
    best_first = max(table["0.0"], table["0.5"])
    assert max(table["0.0/als/0.0/0.0"], table["0.5/als/0.0/0.0"]) == best_first
    without, plain, _ = tune_fusion(text, cf, matrices, cfg)
    assert without.linear_share == 0.0 and plain is cf
