"""Training SASRec (`pipeline.models.sasrec_training`): it learns order, is reproducible, leaves
cold items to their text, stops early on validation, and reads whatever history it is given at
scoring time."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
import torch

from pipeline.data.interactions import UserItemVectors
from pipeline.evaluation.metrics import Scorer
from pipeline.evaluation.protocol import SplitMatrices, evaluate_model
from pipeline.models.sasrec import IGNORE, PAD, SequenceModel, SequenceSettings
from pipeline.models.sasrec_training import (
    _batch_loss,
    append_histories,
    fit,
    histories,
    negatives_for,
    training_windows,
)

CYCLE = 24
"""Items on the ring the synthetic users walk around."""
SMALL = SequenceSettings(
    max_length=10,
    embedding_size=32,
    layers=2,
    heads=2,
    dropout=0.1,
    learning_rate=5e-3,
    batch_size=32,
    epochs=4,
    patience=5,
    eval_every=1,
    negatives=0,
    seed=0,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Tiny models gain nothing from more threads, and on a busy two-core machine a second
    # thread spinning against another process made every step several times slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def ring_walks(n_users: int = 240, length: int = 10, seed: int = 0) -> list[np.ndarray]:
    """Each user walks `length` steps around the ring from a random start, clockwise or not.

    The set of items a user has seen is an arc that either direction could have produced, so
    the next item is one of the arc's two ends: an order-blind model can get at most about half
    of them first, an order-aware one all of them.
    """
    rng = np.random.default_rng(seed)
    walks = []
    for _ in range(n_users):
        start, step = int(rng.integers(CYCLE)), int(rng.choice([-1, 1]))
        walks.append((start + step * np.arange(length)) % CYCLE)
    return walks


def as_matrix(per_user: list[np.ndarray], n_items: int) -> sp.csr_matrix:
    rows = np.repeat(np.arange(len(per_user)), [len(items) for items in per_user])
    columns = np.concatenate(per_user).astype(np.int64)
    values = np.ones(columns.size, dtype=np.float32)
    matrix = sp.csr_matrix((values, (rows, columns)), shape=(len(per_user), n_items))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def leave_last_two_out(walks: list[np.ndarray], n_items: int) -> tuple[list, list, SplitMatrices]:
    train = [walk[:-2] for walk in walks]
    validation = [walk[-2:-1] for walk in walks]
    test = [walk[-1:] for walk in walks]
    matrices = SplitMatrices(
        train=as_matrix(train, n_items),
        validation=as_matrix(validation, n_items),
        test=as_matrix(test, n_items),
        cold=sp.csr_matrix((len(walks), n_items), dtype=np.float32),
        cold_items=np.zeros(n_items, dtype=bool),
    )
    return train, validation, matrices


def hit_rate_at_1(scorer: Scorer, matrices: SplitMatrices, split: str = "validation") -> float:
    return evaluate_model(scorer, matrices, split, [1], 1, seed=0).summary()["hr@1"]


@pytest.fixture(scope="module")
def ring() -> dict:
    walks = ring_walks()
    train, validation, matrices = leave_last_two_out(walks, CYCLE)
    fitted = fit(train, CYCLE, SMALL.but(epochs=20))
    return {
        "walks": walks,
        "train": train,
        "validation": validation,
        "matrices": matrices,
        "fitted": fitted,
    }


# --------------------------------------------------------------------------------------------
# it learns order
# --------------------------------------------------------------------------------------------
def test_the_next_step_on_the_ring_comes_first_where_order_blind_models_guess(ring) -> None:
    matrices = ring["matrices"]
    sasrec = ring["fitted"].vectors(ring["train"])
    popularity = np.asarray(matrices.train.sum(axis=0)).ravel().astype(np.float32)
    cooccurrence = (matrices.train.T @ matrices.train).toarray()
    np.fill_diagonal(cooccurrence, 0.0)
    bag = matrices.train @ cooccurrence  # how often each item appears beside the user's items

    assert hit_rate_at_1(sasrec.score, matrices) >= 0.9
    assert hit_rate_at_1(lambda users: np.tile(popularity, (len(users), 1)), matrices) <= 0.2
    assert hit_rate_at_1(lambda users: np.asarray(bag[users]), matrices) <= 0.65


def test_at_test_time_the_validation_event_is_read_and_the_last_item_decides(ring) -> None:
    fitted, train, validation = ring["fitted"], ring["train"], ring["validation"]
    both = append_histories(train, validation)
    before, after = fitted.vectors(train), fitted.vectors(both)
    assert not np.allclose(before.users, after.users)
    # Read from train alone the next step is the validation item; with it read, the test item.
    nexts_before = (before.users @ before.items.T).argmax(axis=1)
    nexts_after = (after.users @ after.items.T).argmax(axis=1)
    walks = ring["walks"]
    assert np.mean(nexts_before == [walk[-2] for walk in walks]) >= 0.9
    assert np.mean(nexts_after == [walk[-1] for walk in walks]) >= 0.9
    # Through the protocol, which masks the validation item at test.
    assert hit_rate_at_1(after.score, ring["matrices"], "test") >= 0.9


def test_changing_only_the_last_item_changes_the_state(ring) -> None:
    fitted = ring["fitted"]
    history = np.array([3, 4, 5, 6])
    other = np.array([3, 4, 5, 9])
    states = fitted.user_states([history, other])
    assert not np.allclose(states[0], states[1], atol=1e-4)


# --------------------------------------------------------------------------------------------
# reproducibility and batching
# --------------------------------------------------------------------------------------------
def small_histories(n_users: int = 40, n_items: int = 30, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 25, size=n_users)
    return [rng.choice(n_items, size=int(size), replace=False) for size in sizes]


def test_the_same_seed_gives_identical_vectors_and_another_seed_does_not() -> None:
    train = small_histories()
    first = fit(train, 30, SMALL).vectors(train)
    second = fit(train, 30, SMALL).vectors(train)
    np.testing.assert_array_equal(first.users, second.users)
    np.testing.assert_array_equal(first.items, second.items)
    reseeded = fit(train, 30, SMALL.but(seed=1)).vectors(train)
    assert not np.allclose(first.items, reseeded.items)


def test_fitting_leaves_the_callers_random_state_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit(small_histories(), 30, SMALL)
    torch.testing.assert_close(torch.rand(3), expected)


def test_a_users_vector_does_not_depend_on_its_batch() -> None:
    train = small_histories()
    fitted = fit(train, 30, SMALL)
    together = fitted.user_states(train, batch_size=512)
    one_by_one = fitted.user_states(train, batch_size=1)
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    alone = fitted.user_states([train[7]])
    np.testing.assert_allclose(alone[0], together[7], atol=1e-5)


def test_vectors_are_float32_and_an_empty_history_is_a_zero_vector() -> None:
    train = small_histories()
    fitted = fit(train, 30, SMALL)
    queried = [*train[:3], np.array([], dtype=np.int64), train[3]]
    vectors = fitted.vectors(queried)
    assert isinstance(vectors, UserItemVectors)
    assert vectors.users.shape == (5, SMALL.embedding_size)
    assert vectors.items.shape == (30, SMALL.embedding_size)
    assert vectors.users.dtype == np.float32 and vectors.items.dtype == np.float32
    assert not vectors.users[3].any()
    assert np.abs(vectors.users[[0, 1, 2, 4]]).sum(axis=1).min() > 0
    assert vectors.score(np.array([0, 3])).shape == (2, 30)
    # A history longer than the window is read through its most recent items.
    long = np.concatenate([np.arange(30), np.arange(30)])[:45]
    np.testing.assert_allclose(
        fitted.user_states([long])[0], fitted.user_states([long[-SMALL.max_length :]])[0], atol=1e-5
    )


# --------------------------------------------------------------------------------------------
# cold items
# --------------------------------------------------------------------------------------------
def cold_setup(n_items: int = 30) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Histories over items 0..24; items 25..29 are cold, and item 29 has item 3's text."""
    rng = np.random.default_rng(2)
    train = [rng.choice(25, size=int(rng.integers(3, 20)), replace=False) for _ in range(40)]
    text = rng.normal(size=(n_items, 16)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    text[29] = text[3]
    cold = np.zeros(n_items, dtype=bool)
    cold[25:] = True
    return train, text, cold


def test_with_ids_only_a_cold_item_is_the_zero_vector() -> None:
    train, _, cold = cold_setup()
    items = fit(train, 30, SMALL, cold_items=cold).item_vectors()
    assert not items[cold].any()
    assert np.abs(items[~cold]).sum(axis=1).min() > 0
    # Indices work as well as a mask.
    by_index = fit(train, 30, SMALL, cold_items=np.flatnonzero(cold)).item_vectors()
    np.testing.assert_array_equal(by_index, items)


def test_with_text_cold_items_are_scored_by_their_text() -> None:
    train, text, cold = cold_setup()
    settings = SMALL.but(use_text=True)
    fitted = fit(train, 30, settings, text_vectors=text, cold_items=cold)
    vectors = fitted.vectors(train)
    items = vectors.items
    assert not np.allclose(items[25], items[26])
    # Item 29 is cold with item 3's text: its vector is exactly item 3's text part (item 3 adds
    # its id embedding), so every user scores it by what item 3's text says.
    model = fitted.model.eval()
    with torch.no_grad():
        text_part = model.adapter(model.text[[3]]).cpu().numpy()[0]
        id_part = (model.item_ids.weight[3] * model.warm[3]).cpu().numpy()
    np.testing.assert_allclose(items[29], text_part, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(items[3], text_part + id_part, rtol=1e-5, atol=1e-6)
    assert np.abs(text_part).sum() > 0 and np.abs(id_part).sum() > 0

    # Text alone: the same text is the same vector, cold or warm.
    text_only = SMALL.but(use_text=True, use_ids=False)
    items = fit(train, 30, text_only, text_vectors=text, cold_items=cold).item_vectors()
    np.testing.assert_array_equal(items[29], items[3])


def test_a_cold_item_in_a_training_history_is_refused() -> None:
    train, _, cold = cold_setup()
    with pytest.raises(ValueError, match="cold item"):
        fit([*train, np.array([1, 27])], 30, SMALL, cold_items=cold)


def test_fitting_with_text_needs_the_text_vectors() -> None:
    with pytest.raises(ValueError, match="text_vectors"):
        fit(small_histories(), 30, SMALL.but(use_text=True))


# --------------------------------------------------------------------------------------------
# early stopping
# --------------------------------------------------------------------------------------------
def test_early_stopping_keeps_the_best_epochs_weights() -> None:
    train = small_histories()
    scripted = iter([0.1, 0.5, 0.3, 0.2, 0.4, 0.45, 0.9])
    seen: list[UserItemVectors] = []

    def validate(vectors: UserItemVectors) -> float:
        assert vectors.users.shape == (len(train), SMALL.embedding_size)
        seen.append(vectors)
        return next(scripted)

    settings = SMALL.but(epochs=20, patience=3)
    fitted = fit(train, 30, settings, validate=validate)
    assert fitted.best_epoch == 2 and fitted.best_score == 0.5
    assert len(fitted.log) == 5  # epochs 3, 4 and 5 bring nothing better: stop
    assert [entry["validation"] for entry in fitted.log] == [0.1, 0.5, 0.3, 0.2, 0.4]
    final = fitted.vectors(train)
    np.testing.assert_array_equal(final.items, seen[1].items)
    np.testing.assert_array_equal(final.users, seen[1].users)
    assert not fitted.model.training


def test_eval_every_scores_only_some_epochs() -> None:
    calls: list[int] = []
    settings = SMALL.but(epochs=4, eval_every=2)
    train = small_histories()
    fitted = fit(train, 30, settings, validate=lambda v: calls.append(1) or 0.0)
    assert len(calls) == 2
    assert [entry["validation"] is None for entry in fitted.log] == [True, False, True, False]
    windows = len(training_windows(train, SMALL.max_length)[0])
    steps = -(-windows // SMALL.batch_size)
    assert all(entry["loss"] > 0 and entry["steps"] == steps for entry in fitted.log)


def test_the_step_budget_ends_training_mid_epoch_and_scores_the_last_weights() -> None:
    train = small_histories()
    windows = len(training_windows(train, SMALL.max_length)[0])
    per_epoch = -(-windows // SMALL.batch_size)
    scores: list[int] = []
    settings = SMALL.but(epochs=50, eval_every=4, max_steps=per_epoch + 1)
    fitted = fit(train, 30, settings, validate=lambda v: scores.append(1) or 0.0)
    assert fitted.steps == per_epoch + 1
    assert [entry["steps"] for entry in fitted.log] == [per_epoch, 1]
    # Epoch 2 is not a scoring epoch, but the budget ran out there: it is scored.
    assert len(scores) == 1 and fitted.best_epoch == 2


def test_auto_negatives_take_the_full_softmax_on_small_catalogues_only() -> None:
    assert negatives_for("auto", 1682) == 0
    assert negatives_for("auto", 30_000) == 2048
    assert negatives_for(500, 300) == 0  # a sample as large as the catalogue is all of it
    assert negatives_for(64, 300) == 64


def test_the_sampled_softmax_is_the_full_one_when_the_sample_holds_every_item() -> None:
    torch.manual_seed(0)
    model = SequenceModel(30, SMALL, None, np.zeros(30, dtype=bool))
    model.eval()
    tokens = torch.tensor([[3, 5, 7, PAD], [2, 4, 6, 8]])
    targets = torch.tensor([[4, 6, IGNORE, IGNORE], [3, 5, 7, 9]])
    full, count = _batch_loss(model, tokens, targets, None)
    every = torch.arange(30)
    sampled, sampled_count = _batch_loss(model, tokens, targets, None, every[torch.randperm(30)])
    assert count == sampled_count == 6
    torch.testing.assert_close(full, sampled)
    # A smaller sample is an easier softmax: the loss can only go down.
    fewer, _ = _batch_loss(model, tokens, targets, None, torch.tensor([0, 1]))
    assert fewer.item() < full.item()


def test_sampled_training_still_learns_the_ring() -> None:
    walks = ring_walks()
    train, _, matrices = leave_last_two_out(walks, CYCLE)
    fitted = fit(train, CYCLE, SMALL.but(epochs=20, negatives=4))
    assert fitted.negatives == 4
    assert hit_rate_at_1(fitted.vectors(train).score, matrices) >= 0.9


# --------------------------------------------------------------------------------------------
# histories and training windows
# --------------------------------------------------------------------------------------------
def test_histories_are_in_time_order_with_ties_in_row_order() -> None:
    events = pl.DataFrame(
        {
            "user_idx": [2, 0, 2, 2, 0, 2],
            "item_idx": [5, 1, 9, 4, 3, 7],
            "timestamp": [30, 10, 10, 20, 5, 20],
        }
    )
    result = histories(events, 4)
    assert [h.tolist() for h in result] == [[3, 1], [], [9, 4, 7, 5], []]
    assert all(h.dtype == np.int64 for h in result)
    joined = append_histories(result, [np.array([8]), np.array([2]), np.array([]), np.array([])])
    assert [h.tolist() for h in joined] == [[3, 1, 8], [2], [9, 4, 7, 5], []]


def test_every_training_event_but_the_first_is_a_target_exactly_once() -> None:
    sequence = np.arange(120) % 37
    inputs, targets = training_windows([sequence, np.array([4]), np.array([6, 2])], max_length=50)
    assert inputs.shape[1] == targets.shape[1] == 50
    real = targets != IGNORE
    assert (real == (inputs != PAD)).all()
    wanted = np.concatenate([sequence[1:], [2]])
    assert sorted(targets[real].tolist()) == sorted(wanted.tolist())
    # Within a window each target follows its input (inputs are item + 1).
    assert (inputs[:, 1:][real[:, 1:]] - 1 == targets[:, :-1][real[:, 1:]]).all()


def test_the_sampled_softmax_projects_only_the_items_it_reads_or_scores() -> None:
    torch.manual_seed(0)
    text = np.random.default_rng(0).standard_normal((30, 8)).astype(np.float32)
    cold = np.zeros(30, dtype=bool)
    cold[[5, 9]] = True
    model = SequenceModel(30, SMALL.but(use_text=True), text, cold)
    model.eval()
    chosen = torch.tensor([9, 0, 4, 29])
    torch.testing.assert_close(model.item_vectors(chosen), model.item_vectors()[chosen])
    # The loss over a sample equals the one written out over the whole item table.
    tokens = torch.tensor([[3, 5, 7, PAD], [2, 4, 1, 8]])
    targets = torch.tensor([[4, 6, IGNORE, IGNORE], [3, 0, 7, 2]])
    sampled = torch.tensor([11, 12, 0, 20])
    loss, count = _batch_loss(model, tokens, targets, None, sampled)
    items = model.item_vectors()
    real = targets != IGNORE
    candidates = torch.unique(torch.cat([targets[real], sampled]))
    logits = model(tokens, items)[real] @ items[candidates].T
    wanted = torch.searchsorted(candidates, targets[real])
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, wanted))
    assert count == 6
