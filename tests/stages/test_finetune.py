"""Stage `finetune` on a tiny task with a known answer, with the tiny random encoder.

The task: two taste blocks of users, each touching only its block's items, and every item titled
by one distinct word. A user history is a list of titles, so to rank the right block first the
encoder must learn which words belong together: the random encoder cannot (HR@10 near chance),
a few seconds of contrastive training can.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from word_blocks import PROBE_TEXTS, TEXT, USERS_PER_BLOCK, block_processed

from pipeline import finetune
from pipeline.core.layout import Layout
from pipeline.core.sections import FinetuneConfig
from pipeline.data.artifacts import Processed
from pipeline.data.text import TrainingPairs
from pipeline.models.encoder import encode, load_encoder
from recli.errors import RecliError


@pytest.fixture(scope="module")
def processed() -> Processed:
    return block_processed()


def config(encoder_dir: Path, **overrides: object) -> FinetuneConfig:
    # A random 32-wide encoder learns at a far higher rate than a pretrained one tolerates.
    values: dict[str, object] = {
        "base_model": str(encoder_dir),
        "max_steps": 150,
        "batch_size": 8,
        "learning_rate": 3e-3,
        "max_seq_length": 24,  # trained shorter than TEXT embeds, as by default
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
    processed: Processed,
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
    trained, processed: Processed, tmp_path: Path
) -> None:
    result, cfg, output_dir = trained
    model_dir = output_dir / "model"
    assert result.model_dir == model_dir
    assert (model_dir / "model.safetensors").exists() and (model_dir / "tokenizer.json").exists()
    assert not list(model_dir.glob("*.bin")) and not list(output_dir.glob(".*"))
    model = load_encoder(str(model_dir), "cpu")
    assert model.get_embedding_dimension() == 32
    # Trained at the shorter fine-tuning length, saved to embed and serve at the text length.
    assert cfg.max_seq_length < TEXT.max_seq_length == model.max_seq_length

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
    processed: Processed, tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    cfg = config(tiny_encoder_dir, max_steps=7, eval_steps=5)
    result = finetune.run(processed, TEXT, cfg, tmp_path)
    assert [point["step"] for point in result.validation_curve] == [0, 5, 7]
    assert result.final == {key: result.validation_curve[-1][key] for key in ("ndcg@10", "hr@10")}


def test_zero_steps_saves_the_base_model_with_the_baseline_only(
    processed: Processed, tiny_encoder_dir: Path, tmp_path: Path
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
    processed: Processed, tiny_encoder_dir: Path, tmp_path: Path
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


def test_batch_larger_than_the_data_is_a_clear_error(
    processed: Processed, tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(RecliError, match=r"finetune\.batch_size"):
        finetune.run(processed, TEXT, config(tiny_encoder_dir, batch_size=10_000), tmp_path)


def _weights(model_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    found = list(model_dir.rglob("model.safetensors"))
    assert len(found) == 1, found
    return load_file(str(found[0]))


def test_frozen_layers_keep_the_embeddings_and_lowest_layers_as_they_were(
    processed: Processed, tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    cfg = config(tiny_encoder_dir, max_steps=12, eval_steps=6, frozen_layers=1)
    result = finetune.run(processed, TEXT, cfg, tmp_path)
    before, after = _weights(tiny_encoder_dir), _weights(result.model_dir)
    frozen = [name for name in before if "embeddings." in name or ".layer.0." in name]
    trained = [name for name in before if ".layer.1." in name]
    assert frozen and trained
    for name in frozen:
        np.testing.assert_array_equal(before[name], after[name], err_msg=name)
    assert all(not np.array_equal(before[name], after[name]) for name in trained)
    assert result.metrics()["frozen_parameters"] == sum(before[name].size for name in frozen)
    with pytest.raises(RecliError, match=r"frozen_layers is 3 but the encoder has 2 layers"):
        finetune.run(processed, TEXT, config(tiny_encoder_dir, frozen_layers=3), tmp_path)
