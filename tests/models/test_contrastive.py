"""Contrastive fine-tuning's pieces (`pipeline.models.contrastive`): batches without a text
twice, drawn as the library's sampler draws them, log q of each positive, and the dropout and
precision switches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from word_blocks import PROBE_TEXTS, TEXT, block_processed

from pipeline.data.artifacts import Processed
from pipeline.data.text import TrainingPairs
from pipeline.models.contrastive import (
    mixed_precision,
    no_duplicate_batches,
    positive_log_frequency,
    set_dropout,
)
from pipeline.models.encoder import load_encoder


@pytest.fixture(scope="module")
def processed() -> Processed:
    return block_processed()


def test_mixed_precision_on_cpu_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.models import encoder

    full = {"bf16": False, "fp16": False}
    assert mixed_precision("mps") == full
    assert mixed_precision("cpu", "float32") == full
    assert mixed_precision("cpu", "bfloat16") == {"bf16": True, "fp16": False}
    monkeypatch.setattr(encoder, "_cpu_has_native_bf16", lambda: False)
    assert mixed_precision("cpu") == full
    monkeypatch.setattr(encoder, "_cpu_has_native_bf16", lambda: True)
    assert mixed_precision("cpu") == {"bf16": True, "fp16": False}


@pytest.mark.parametrize(("bf16_supported", "expected"), [(True, "bf16"), (False, "fp16")])
def test_mixed_precision_on_cuda_prefers_bf16(
    monkeypatch: pytest.MonkeyPatch, bf16_supported: bool, expected: str
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16_supported)
    chosen = mixed_precision("cuda")
    assert chosen == {"bf16": expected == "bf16", "fp16": expected == "fp16"}


def test_set_dropout_switches_training_noise_off_and_back(tiny_encoder_dir: Path) -> None:
    import torch

    model = load_encoder(str(tiny_encoder_dir), "cpu")
    features = model.tokenize(PROBE_TEXTS)

    def twice() -> tuple[torch.Tensor, torch.Tensor]:
        model.train()
        with torch.no_grad():
            return tuple(model(dict(features))["sentence_embedding"] for _ in range(2))

    assert set_dropout(model, None) == 0  # None leaves the model's own layers
    set_count = set_dropout(model, 0.5)
    assert set_count > 0
    first, second = twice()
    assert not torch.allclose(first, second)  # dropout on: two passes differ
    assert set_dropout(model, 0.0) == set_count
    first, second = twice()
    assert torch.equal(first, second)  # dropout off: training-mode passes are identical
    model.eval()


def _sentence_transformers_batches(
    pairs: TrainingPairs, batch_size: int, n_batches: int, seed: int
) -> list[list[int]]:
    """What sentence-transformers' own no-duplicates sampler draws from the full pair table."""
    import itertools

    import datasets
    import torch
    from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

    dataset = datasets.Dataset.from_dict(pairs.table().to_dict(as_series=False))
    sampler = NoDuplicatesBatchSampler(
        dataset, batch_size, drop_last=False, generator=torch.Generator(), seed=seed
    )
    drawn: list[list[int]] = []
    for epoch in itertools.count():
        sampler.set_epoch(epoch)
        drawn += list(sampler)
        if len(drawn) >= n_batches:
            return drawn[:n_batches]
    raise AssertionError("unreachable")


@pytest.mark.parametrize(("batch_size", "n_batches"), [(8, 5), (8, 40), (64, 3)])
def test_no_duplicate_batches_draw_what_the_library_sampler_draws(
    processed: Processed, batch_size: int, n_batches: int
) -> None:
    pairs = TrainingPairs(processed.train, processed.items, TEXT.history_items, seed=3)
    batches = no_duplicate_batches(pairs, batch_size, n_batches, seed=5)
    assert len(batches) == n_batches
    assert batches == _sentence_transformers_batches(pairs, batch_size, n_batches, seed=5)
    for batch in batches:  # no text twice in a batch, across both columns
        texts = [text for pair in batch for text in (pairs.anchor(pair), pairs.positive(pair))]
        assert len(texts) == len(set(texts))
    # 40 batches of 8 are more than the 280 pairs: the second pass reshuffles them all.
    assert n_batches * batch_size < len(pairs) or sorted({p for b in batches for p in b}) == list(
        range(len(pairs))
    )


def test_only_the_pairs_the_step_budget_reaches_become_text(
    processed: Processed, monkeypatch: pytest.MonkeyPatch
) -> None:
    pairs = TrainingPairs(processed.train, processed.items, TEXT.history_items, seed=3)
    asked: set[int] = set()
    anchor = TrainingPairs.anchor

    def counting(self: TrainingPairs, pair: int) -> str:
        asked.add(pair)
        return anchor(self, pair)

    monkeypatch.setattr(TrainingPairs, "anchor", counting)
    batches = no_duplicate_batches(pairs, 4, 3, seed=0)
    used = {pair for batch in batches for pair in batch}
    assert len(used) == 12 and used <= asked and len(asked) < len(pairs) / 4


def test_log_q_counts_every_pair_whose_positive_has_the_same_text(
    processed: Processed,
) -> None:
    pairs = TrainingPairs(processed.train, processed.items, TEXT.history_items, seed=3)
    positives = pairs.table()["positive"]
    counts = positives.value_counts()
    expected = dict(zip(counts["positive"], counts["count"], strict=True))
    log_q = positive_log_frequency(pairs)
    assert np.allclose(log_q, [np.log(expected[text] / len(pairs)) for text in positives])
