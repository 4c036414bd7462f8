"""Stage `sequence` on a task only an order-aware model can solve, and its outputs on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline import preprocess, sequence
from pipeline.core import parallel
from pipeline.core.config import Params
from pipeline.core.layout import Layout
from pipeline.core.sections import PreprocessConfig, SequenceConfig
from pipeline.data.artifacts import (
    read_sequence_model,
    read_sequence_vectors,
    write_processed,
)
from pipeline.data.source import RawData
from pipeline.evaluation.protocol import SplitMatrices, SplitScorers, evaluate_model
from pipeline.models.sasrec_training import FittedSequence, histories
from pipeline.workflow import write_params

N_ITEMS = 12
CFG = SequenceConfig(
    embedding_size=16, layers=1, heads=1, dropout=0.0, learning_rate=5e-3, epochs=30, patience=30
)


def cycle_raw(n_users: int = 48, length: int = 9, seed: int = 0) -> RawData:
    """Each user walks the cycle 0 → 1 → … → 11 → 0 from a random start: the next item is always
    the one after the last, which no bag of items can tell."""
    rng = np.random.default_rng(seed)
    users, items, stamps = [], [], []
    for user in range(n_users):
        start = int(rng.integers(N_ITEMS))
        for step in range(length):
            users.append(str(user))
            items.append(str(100 + (start + step) % N_ITEMS))
            stamps.append(step)
    interactions = pl.DataFrame(
        {"user_id": users, "item_id": items, "rating": [1.0] * len(users), "timestamp": stamps},
        schema_overrides={"timestamp": pl.Int64},
    )
    catalogue = pl.DataFrame(
        {
            "item_id": [str(100 + i) for i in range(N_ITEMS)],
            "title": [f"Step {i}" for i in range(N_ITEMS)],
            "year": [None] * N_ITEMS,
            "genres": [[] for _ in range(N_ITEMS)],
            "tags": [[] for _ in range(N_ITEMS)],
            "description": [None] * N_ITEMS,
        },
        schema_overrides={
            "year": pl.Int32,
            "genres": pl.List(pl.String),
            "tags": pl.List(pl.String),
            "description": pl.String,
        },
    )
    return RawData(interactions=interactions, items=catalogue, users=None, source="cycles")


@pytest.fixture(scope="module")
def processed():
    return preprocess.run(cycle_raw(), PreprocessConfig(min_user_interactions=3))


@pytest.fixture(scope="module")
def fitted(processed):
    text = np.random.default_rng(1).normal(size=(N_ITEMS, 8)).astype(np.float32)
    return sequence.run(processed, text, CFG, seed=0)


def test_both_models_learn_the_order(processed, fitted) -> None:
    vectors, report, _ = fitted
    matrices = SplitMatrices.from_processed(processed)
    for name in ("sasrec", "text"):
        model = SplitScorers.from_vectors(vectors[name])
        for split in ("validation", "test"):
            hit = evaluate_model(model, matrices, split, [1], 1).summary()["hr@1"]
            # By then a user has seen 7 or 8 of the 12 items: a guess among the rest hits
            # a quarter of the time at best.
            assert hit > 0.7, (name, split, hit)
        assert report[name]["validation_ndcg@10"] > 0.7
        assert 1 <= report[name]["best_epoch"] <= report[name]["epochs"] <= CFG.epochs


def test_the_test_state_reads_the_validation_event(fitted) -> None:
    vectors, _, _ = fitted
    for name in ("sasrec", "text"):
        model = vectors[name]
        assert model.users_at_test is not None
        assert not np.allclose(model.users, model.users_at_test)


def test_main_writes_every_output(processed, fitted, tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    write_processed(processed, layout)
    text = np.random.default_rng(1).normal(size=(N_ITEMS, 8)).astype(np.float32)
    from pipeline.data.artifacts import write_embeddings
    from pipeline.data.interactions import UserItemVectors

    users = np.zeros((processed.users.height, 8), np.float32)
    write_embeddings("finetuned", UserItemVectors(users, text), layout)
    params = Params().model_copy(update={"sequence": CFG})
    write_params(params, tmp_path)
    sequence.main(tmp_path)
    for name in ("sasrec", "text"):
        loaded = read_sequence_vectors(name, layout)
        np.testing.assert_allclose(loaded.users, fitted[0][name].users, atol=1e-5)
        assert loaded.users_at_test is not None
    metrics = json.loads(layout.metrics_file("sequence").read_text())
    assert set(metrics) == {"sasrec", "text"}
    # The saved weights are the model: restored, they give the served states of every history.
    served_histories = histories(processed.history_served, processed.users.height)
    for name, flags in sequence.MODELS.items():
        chosen = sequence.settings(CFG, **flags).model_copy(update={"device": "cpu"})
        restored = FittedSequence.restore(read_sequence_model(name, layout), chosen)
        np.testing.assert_allclose(
            restored.user_states(served_histories), fitted[0][name].users_served, atol=1e-5
        )
        np.testing.assert_allclose(restored.item_vectors(), fitted[0][name].items, atol=1e-6)
    curve = json.loads(layout.plot_file("sequence_validation").read_text())
    assert curve[0]["epoch"] == 1 and {"sasrec", "text"} <= set(curve[0])


def test_parallel_workers_give_what_one_process_gives(processed, fitted) -> None:
    """Two workers (one thread each) return exactly what fitting each model in this process on
    one thread returns: the order the workers finish in changes nothing."""
    import torch

    vectors, report, _ = fitted
    if sequence.worker_count(CFG, len(sequence.MODELS)) == 1:
        text = np.random.default_rng(1).normal(size=(N_ITEMS, 8)).astype(np.float32)
        vectors, report, _ = sequence.run(processed, text, CFG.model_copy(update={"workers": 2}))
    text = np.random.default_rng(1).normal(size=(N_ITEMS, 8)).astype(np.float32)
    threads = torch.get_num_threads()
    try:
        for name, flags in sequence.MODELS.items():
            alone, measured, _ = sequence.fit_model(processed, text, CFG, flags, 0, None, threads=1)
            for part in ("users", "items", "users_at_test", "users_served"):
                np.testing.assert_array_equal(getattr(alone, part), getattr(vectors[name], part))
            assert measured["curve"] == report[name]["curve"]
    finally:
        torch.set_num_threads(threads)


def test_worker_count() -> None:
    assert sequence.worker_count(CFG.model_copy(update={"workers": 1}), 2) == 1
    assert sequence.worker_count(CFG.model_copy(update={"workers": 4}), 2) == 2
    expected = min(2, parallel.usable_cores())
    assert sequence.worker_count(CFG.model_copy(update={"device": "cpu"}), 2) == expected


def test_above_max_users_only_the_evaluated_users_get_split_states(processed) -> None:
    """Validation ranks a seeded sample of users; the others' training and test-time states
    are never read, so they are not computed (zero), while every user gets a served state."""
    text = np.random.default_rng(1).normal(size=(N_ITEMS, 8)).astype(np.float32)
    cfg = CFG.model_copy(update={"epochs": 4, "workers": 1})
    flags = sequence.MODELS["sasrec"]
    vectors, _, _ = sequence.fit_model(processed, text, cfg, flags, 0, max_users=10)
    evaluated = SplitMatrices.from_processed(processed, 10, 0).evaluated
    others = np.setdiff1d(np.arange(processed.users.height), evaluated)
    for states in (vectors.users, vectors.users_at_test):
        assert np.abs(states[evaluated]).sum(axis=1).min() > 0
        assert not states[others].any()
    assert np.abs(vectors.users_served).sum(axis=1).min() > 0
