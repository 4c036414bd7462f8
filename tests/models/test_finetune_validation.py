"""The in-training validation of the encoder (`pipeline.models.finetune_validation`) on the
word-blocks task: it ranks through the evaluation protocol, on a seeded and capped sample."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from word_blocks import TEXT, USERS_PER_BLOCK, block_processed

from pipeline.data.artifacts import Processed
from pipeline.evaluation.protocol import evaluate_model
from pipeline.models.encoder import encode, load_encoder
from pipeline.models.finetune_validation import RecommendationEvaluator


@pytest.fixture(scope="module")
def processed() -> Processed:
    return block_processed()


def test_the_evaluator_ranks_through_the_protocol(
    processed: Processed, tiny_encoder_dir: Path
) -> None:
    # Cold items are the protocol's business: marked cold, they never reach a validation list.
    cold = np.zeros(processed.items.height, dtype=bool)
    cold[[0, 3, 17, 22]] = True
    with_cold = dataclasses.replace(
        processed, items=processed.items.with_columns(pl.Series("cold", cold))
    )
    evaluator = RecommendationEvaluator(with_cold, TEXT, n_users=40, seed=0, tie_seed=3)
    model = load_encoder(str(tiny_encoder_dir), "cpu", TEXT.max_seq_length)
    ranked = evaluator.rank(model)
    assert np.array_equal(evaluator.matrices.cold_items, cold)
    assert not np.isin(ranked.recommended, np.flatnonzero(cold)).any()
    # The in-training number is exactly the protocol's number for the same vectors and users.
    users = encode(model, evaluator.user_texts)
    items = encode(model, evaluator.item_texts)
    row = {user: position for position, user in enumerate(evaluator.users)}
    direct = evaluate_model(
        lambda batch: users[[row[int(user)] for user in batch]] @ items.T,
        evaluator.matrices,
        "validation",
        [10],
        10,
        seed=3,
        users=evaluator.users,
    )
    assert evaluator(model)["ndcg@10"] == pytest.approx(direct.summary()["ndcg@10"], abs=1e-6)


def test_on_a_large_catalogue_the_evaluator_ranks_the_targets_among_an_item_sample(
    processed: Processed, tiny_encoder_dir: Path
) -> None:
    evaluator = RecommendationEvaluator(processed, TEXT, n_users=6, seed=0, n_items=12)
    targets = np.unique(evaluator.matrices.validation[evaluator.users].indices)
    assert evaluator.items.size == 12 and np.isin(targets, evaluator.items).all()
    assert len(evaluator.item_texts) == 12  # only these are encoded
    again = RecommendationEvaluator(processed, TEXT, n_users=6, seed=0, n_items=12)
    assert np.array_equal(evaluator.items, again.items)
    ranked = evaluator.rank(load_encoder(str(tiny_encoder_dir), "cpu", TEXT.max_seq_length))
    # Items outside the sample are never scored: they only fill a list once the user's unseen
    # sampled candidates run out (the fill is in the seeded tie order, as every -inf is equal).
    seen = evaluator.matrices.seen("validation")
    candidates = evaluator.matrices.candidates("validation")
    for user, row in zip(ranked.users, ranked.recommended, strict=True):
        scoreable = np.zeros(processed.items.height, dtype=bool)
        scoreable[evaluator.items] = True
        scoreable &= candidates
        scoreable[seen[user].indices] = False
        first = min(int(scoreable.sum()), row.size)
        assert scoreable[row[:first]].all() and not scoreable[row[first:]].any()
    whole = RecommendationEvaluator(processed, TEXT, n_users=6, seed=0, n_items=10_000)
    assert np.array_equal(whole.items, np.arange(processed.items.height))


def test_evaluator_sample_is_seeded_and_capped(processed: Processed) -> None:
    first = RecommendationEvaluator(processed, TEXT, n_users=10, seed=5)
    again = RecommendationEvaluator(processed, TEXT, n_users=10, seed=5)
    everyone = RecommendationEvaluator(processed, TEXT, n_users=1000, seed=5)
    assert first.users.size == 10 and np.array_equal(first.users, again.users)
    assert everyone.users.size == 2 * USERS_PER_BLOCK
