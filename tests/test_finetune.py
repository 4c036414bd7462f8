"""Stage `finetune` on a tiny task with a known answer, with the tiny random encoder.

The task: two taste blocks of users, each touching only its block's items, and every item titled
by one distinct word. A user history is a list of titles, so to rank the right block first the
encoder must learn which words belong together: the random encoder cannot (HR@10 near chance),
a few seconds of contrastive training can.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline import finetune, preprocess
from pipeline.core.config import FinetuneConfig, PreprocessConfig, TextConfig
from pipeline.core.layout import Layout
from pipeline.data.source import RawData
from pipeline.data.text import TrainingPairs
from pipeline.evaluation.protocol import evaluate_model
from pipeline.models.encoder import encode, load_encoder
from recli.errors import RecliError

# One distinct word per item title (block A: the first 15, block B: the rest).
WORDS = (
    "apple", "river", "castle", "tiger", "violin", "desert", "rocket", "garden", "pirate",
    "winter", "candle", "forest", "dragon", "island", "mirror", "thunder", "harbor", "velvet",
    "comet", "meadow", "falcon", "glacier", "lantern", "orchid", "prairie", "quartz", "saddle",
    "tundra", "walnut", "zephyr",
)  # fmt: skip
ITEMS_PER_BLOCK = 15
USERS_PER_BLOCK = 20
EVENTS_PER_USER = 8
TEXT = TextConfig(history_items=3, max_seq_length=32)
PROBE_TEXTS = ["Recently liked: Apple; River", "Tiger", "Walnut. Genres: Drama"]


def block_raw(seed: int = 0) -> RawData:
    """Block A users touch only items 0-14, block B users only items 15-29; one word per title."""
    rng = np.random.default_rng(seed)
    users, items, stamps = [], [], []
    for block in range(2):
        for user in range(USERS_PER_BLOCK):
            chosen = rng.choice(ITEMS_PER_BLOCK, size=EVENTS_PER_USER, replace=False)
            users += [str(block * USERS_PER_BLOCK + user)] * EVENTS_PER_USER
            items += [str(100 + block * ITEMS_PER_BLOCK + item) for item in chosen]
            stamps += list(range(EVENTS_PER_USER))
    interactions = pl.DataFrame(
        {"user_id": users, "item_id": items, "rating": [4.0] * len(users), "timestamp": stamps},
        schema_overrides={"timestamp": pl.Int64},
    )
    n_items = 2 * ITEMS_PER_BLOCK
    catalogue = pl.DataFrame(
        {
            "item_id": [str(100 + item) for item in range(n_items)],
            "title": [word.title() for word in WORDS[:n_items]],
            "year": [None] * n_items,
            "genres": [[] for _ in range(n_items)],
            "tags": [[] for _ in range(n_items)],
            "description": [None] * n_items,
        },
        schema_overrides={
            "year": pl.Int32,
            "genres": pl.List(pl.String),
            "tags": pl.List(pl.String),
            "description": pl.String,
        },
    )
    return RawData(interactions=interactions, items=catalogue, users=None, source="word-blocks")


@pytest.fixture(scope="module")
def processed() -> preprocess.Processed:
    # No cold-item slice: every item stays a candidate, so the known answer stays simple.
    cfg = PreprocessConfig(min_user_interactions=3, cold_item_fraction=0.0)
    return preprocess.run(block_raw(), cfg)


def config(encoder_dir: Path, **overrides: object) -> FinetuneConfig:
    # A random 32-wide encoder learns at a far higher rate than a pretrained one tolerates.
    values: dict[str, object] = {
        "base_model": str(encoder_dir),
        "max_steps": 150,
        "batch_size": 8,
        "learning_rate": 3e-3,
        "eval_steps": 50,
        "eval_users": 40,
        "device": "cpu",
        "seed": 1,
    }
    values.update(overrides)
    return FinetuneConfig.model_validate(values)


def probe(model_dir: Path) -> np.ndarray:
    return encode(load_encoder(str(model_dir), "cpu", TEXT.max_seq_length), PROBE_TEXTS)


@pytest.fixture(scope="module")
def trained(
    processed: preprocess.Processed,
    tiny_encoder_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[finetune.FinetuneResult, FinetuneConfig, Path]:
    output_dir = tmp_path_factory.mktemp("finetune")
    cfg = config(tiny_encoder_dir)
    return finetune.run(processed, TEXT, cfg, output_dir), cfg, output_dir


def test_training_lowers_the_loss_and_ranks_the_users_block_first(trained) -> None:
    result, cfg, _ = trained
    losses = [point["loss"] for point in result.loss_curve]
    # Chance level is ln(batch_size) = 2.08; the floor is about ln(4) = 1.39, since a batch holds
    # about four positives from the anchor's own block and the next item within it is random.
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    baseline, final = result.baseline, result.final
    assert final is not None
    assert final["hr@10"] >= 0.9 > baseline["hr@10"]  # all 9 unseen block items fit in a top 10
    assert final["ndcg@10"] > baseline["ndcg@10"] + 0.05
    assert result.steps == cfg.max_steps and result.eval_users == 2 * USERS_PER_BLOCK


def test_outputs_model_config_metrics_and_plots(
    trained, processed: preprocess.Processed, tmp_path: Path
) -> None:
    result, cfg, output_dir = trained
    model_dir = output_dir / "model"
    assert result.model_dir == model_dir
    assert (model_dir / "model.safetensors").exists() and (model_dir / "tokenizer.json").exists()
    assert not list(model_dir.glob("*.bin")) and not list(output_dir.glob(".*"))
    model = load_encoder(str(model_dir), "cpu")
    assert model.get_embedding_dimension() == 32

    saved = json.loads((output_dir / "config.json").read_text())
    assert saved["text"] == TEXT.model_dump(mode="json")
    assert saved["finetune"] == cfg.model_dump(mode="json")
    pairs = TrainingPairs(processed.train, processed.items, TEXT.history_items, cfg.seed)
    assert saved["training_pairs"] == len(pairs) == result.training_pairs
    assert saved["device"] == "cpu" and saved["torch_version"]

    layout = Layout(tmp_path)
    finetune.write_metrics(result, layout)
    files = [
        layout.metrics_file("finetune"),
        layout.plot_file("finetune_loss"),
        layout.plot_file("finetune_validation"),
    ]
    metrics, loss, validation = (json.loads(path.read_text()) for path in files)
    assert metrics["validation"]["baseline"] == result.baseline
    assert metrics["validation"]["final"] == result.final
    assert metrics["steps"] == cfg.max_steps and metrics["steps_per_second"] > 0
    assert metrics["training_pairs"] == len(pairs) and metrics["device"] == "cpu"
    assert loss and all(set(point) == {"step", "loss"} for point in loss)
    assert loss[0]["step"] == 1 and loss[-1]["step"] == cfg.max_steps
    assert [point["step"] for point in validation] == [0, 50, 100, 150]
    assert all(set(point) == {"step", "ndcg@10", "hr@10"} for point in validation)
    assert validation[0] == {"step": 0, **result.baseline}
    assert validation[-1] == {"step": cfg.max_steps, **result.final}


def test_final_evaluation_added_when_steps_do_not_end_on_an_eval_step(
    processed: preprocess.Processed, tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    cfg = config(tiny_encoder_dir, max_steps=7, eval_steps=5)
    result = finetune.run(processed, TEXT, cfg, tmp_path)
    assert [point["step"] for point in result.validation_curve] == [0, 5, 7]
    assert result.final == {key: result.validation_curve[-1][key] for key in ("ndcg@10", "hr@10")}


def test_zero_steps_saves_the_base_model_with_the_baseline_only(
    processed: preprocess.Processed, tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    cfg = config(tiny_encoder_dir, max_steps=0)
    result = finetune.run(processed, TEXT, cfg, tmp_path)
    np.testing.assert_allclose(
        probe(tmp_path / "model"), probe(tiny_encoder_dir), rtol=0, atol=1e-6
    )
    assert result.steps == 0 and result.final is None and result.loss_curve == []
    assert result.validation_curve == [{"step": 0, **result.baseline}]
    metrics = result.metrics()
    assert set(metrics["validation"]) == {"baseline"} and metrics["steps_per_second"] is None
    assert json.loads((tmp_path / "config.json").read_text())["finetune"]["max_steps"] == 0


def test_same_seed_same_weights_on_cpu(
    processed: preprocess.Processed, tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    cfg = config(tiny_encoder_dir, max_steps=12, eval_steps=6)
    first = finetune.run(processed, TEXT, cfg, tmp_path / "first")
    second = finetune.run(processed, TEXT, cfg, tmp_path / "second")
    np.testing.assert_allclose(
        probe(first.model_dir), probe(second.model_dir), rtol=1e-6, atol=1e-7
    )
    assert first.loss_curve == second.loss_curve
    assert first.validation_curve == second.validation_curve
    other = finetune.run(processed, TEXT, cfg.model_copy(update={"seed": 2}), tmp_path / "other")
    assert not np.allclose(probe(first.model_dir), probe(other.model_dir))


def test_the_evaluator_ranks_through_the_protocol(
    processed: preprocess.Processed, tiny_encoder_dir: Path
) -> None:
    # Cold items are the protocol's business: marked cold, they never reach a validation list.
    cold = np.zeros(processed.items.height, dtype=bool)
    cold[[0, 3, 17, 22]] = True
    with_cold = dataclasses.replace(
        processed, items=processed.items.with_columns(pl.Series("cold", cold))
    )
    evaluator = finetune.RecommendationEvaluator(with_cold, TEXT, n_users=40, seed=0, tie_seed=3)
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
    processed: preprocess.Processed, tiny_encoder_dir: Path
) -> None:
    evaluator = finetune.RecommendationEvaluator(processed, TEXT, n_users=6, seed=0, n_items=12)
    targets = np.unique(evaluator.matrices.validation[evaluator.users].indices)
    assert evaluator.items.size == 12 and np.isin(targets, evaluator.items).all()
    assert len(evaluator.item_texts) == 12  # only these are encoded
    again = finetune.RecommendationEvaluator(processed, TEXT, n_users=6, seed=0, n_items=12)
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
    whole = finetune.RecommendationEvaluator(processed, TEXT, n_users=6, seed=0, n_items=10_000)
    assert np.array_equal(whole.items, np.arange(processed.items.height))


def test_evaluator_sample_is_seeded_and_capped(processed: preprocess.Processed) -> None:
    first = finetune.RecommendationEvaluator(processed, TEXT, n_users=10, seed=5)
    again = finetune.RecommendationEvaluator(processed, TEXT, n_users=10, seed=5)
    everyone = finetune.RecommendationEvaluator(processed, TEXT, n_users=1000, seed=5)
    assert first.users.size == 10 and np.array_equal(first.users, again.users)
    assert everyone.users.size == 2 * USERS_PER_BLOCK


def test_batch_larger_than_the_data_is_a_clear_error(
    processed: preprocess.Processed, tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(RecliError, match=r"finetune\.batch_size"):
        finetune.run(processed, TEXT, config(tiny_encoder_dir, batch_size=10_000), tmp_path)


def test_mixed_precision_on_cpu_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.models import encoder

    full = {"bf16": False, "fp16": False}
    assert finetune.mixed_precision("mps") == full
    assert finetune.mixed_precision("cpu", "float32") == full
    assert finetune.mixed_precision("cpu", "bfloat16") == {"bf16": True, "fp16": False}
    monkeypatch.setattr(encoder, "_cpu_has_native_bf16", lambda: False)
    assert finetune.mixed_precision("cpu") == full
    monkeypatch.setattr(encoder, "_cpu_has_native_bf16", lambda: True)
    assert finetune.mixed_precision("cpu") == {"bf16": True, "fp16": False}


@pytest.mark.parametrize(("bf16_supported", "expected"), [(True, "bf16"), (False, "fp16")])
def test_mixed_precision_on_cuda_prefers_bf16(
    monkeypatch: pytest.MonkeyPatch, bf16_supported: bool, expected: str
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16_supported)
    chosen = finetune.mixed_precision("cuda")
    assert chosen == {"bf16": expected == "bf16", "fp16": expected == "fp16"}


def test_set_dropout_switches_training_noise_off_and_back(tiny_encoder_dir: Path) -> None:
    import torch

    model = load_encoder(str(tiny_encoder_dir), "cpu")
    features = model.tokenize(PROBE_TEXTS)

    def twice() -> tuple[torch.Tensor, torch.Tensor]:
        model.train()
        with torch.no_grad():
            return tuple(model(dict(features))["sentence_embedding"] for _ in range(2))

    assert finetune.set_dropout(model, None) == 0  # None leaves the model's own layers
    set_count = finetune.set_dropout(model, 0.5)
    assert set_count > 0
    first, second = twice()
    assert not torch.allclose(first, second)  # dropout on: two passes differ
    assert finetune.set_dropout(model, 0.0) == set_count
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
    processed: preprocess.Processed, batch_size: int, n_batches: int
) -> None:
    pairs = TrainingPairs(processed.train, processed.items, TEXT.history_items, seed=3)
    batches = finetune.no_duplicate_batches(pairs, batch_size, n_batches, seed=5)
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
    processed: preprocess.Processed, monkeypatch: pytest.MonkeyPatch
) -> None:
    pairs = TrainingPairs(processed.train, processed.items, TEXT.history_items, seed=3)
    asked: set[int] = set()
    anchor = TrainingPairs.anchor

    def counting(self: TrainingPairs, pair: int) -> str:
        asked.add(pair)
        return anchor(self, pair)

    monkeypatch.setattr(TrainingPairs, "anchor", counting)
    batches = finetune.no_duplicate_batches(pairs, 4, 3, seed=0)
    used = {pair for batch in batches for pair in batch}
    assert len(used) == 12 and used <= asked and len(asked) < len(pairs) / 4


def test_log_q_counts_every_pair_whose_positive_has_the_same_text(
    processed: preprocess.Processed,
) -> None:
    pairs = TrainingPairs(processed.train, processed.items, TEXT.history_items, seed=3)
    positives = pairs.table()["positive"]
    counts = positives.value_counts()
    expected = dict(zip(counts["positive"], counts["count"], strict=True))
    log_q = finetune.positive_log_frequency(pairs)
    assert np.allclose(log_q, [np.log(expected[text] / len(pairs)) for text in positives])
