"""Stage `finetune`: contrastive fine-tuning of the sentence encoder on "after these, this" pairs.

Each training pair is (a user's recent history as text, the text of the item they picked next);
`MultipleNegativesRankingLoss` pulls each history towards its own next item and away from every
other positive in the batch. The script reads as the usual sentence-transformers recipe:

1. model, 2. data, 3. loss, 4. evaluator (run once before training as the zero-shot baseline),
5. training arguments, 6. trainer, 7. save.

The in-training metric is validation NDCG@10 / HR@10 on a seeded sample of `finetune.eval_users`
users, through the evaluation protocol `evaluate` reports with (`pipeline.evaluation.protocol`: seen
items masked, cold items never candidates, ties broken at random), so the curve in
`metrics/plots/finetune_validation.json` says whether fine-tuning helps the task we care about,
not just whether the loss goes down.

Outputs: `data/finetune/model/` (sentence-transformers directory, `model.safetensors` and the
tokenizer), `data/finetune/config.json` (the effective config next to the model),
`metrics/finetune.json`, and the curves `metrics/plots/finetune_loss.json` and
`metrics/plots/finetune_validation.json`.
`finetune.max_steps: 0` saves the base model untouched with the baseline metric only (zero-shot).
"""

from __future__ import annotations

import functools
import itertools
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import polars as pl
import sentence_transformers
import torch
import transformers
from sentence_transformers import (
    SentenceTransformer,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)
from sentence_transformers.base.evaluation import BaseEvaluator
from sentence_transformers.base.sampler import DefaultBatchSampler
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from transformers import TrainerCallback

from pipeline.core import io
from pipeline.core.config import FinetuneConfig, TextConfig, load_params
from pipeline.core.layout import Layout, writes
from pipeline.data.artifacts import Processed, read_processed
from pipeline.data.text import TrainingPairs, user_texts
from pipeline.evaluation.metrics import EvaluationResult
from pipeline.evaluation.protocol import SplitMatrices, evaluate_model
from pipeline.models.encoder import encode, load_encoder, pick_device, pick_precision
from recli import contract
from recli.errors import RecliError

CUTOFF = 10
"""Validation metrics are NDCG@10 and HR@10, the headline cut-off of `evaluate`."""
METRIC_NAMES = (f"ndcg@{CUTOFF}", f"hr@{CUTOFF}")
LOSS_POINTS = 40
"""Aim for about this many points on the loss curve, whatever `max_steps` is."""
ENCODE_BATCH_SIZE = 128


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------
def positive_log_frequency(pairs: TrainingPairs) -> np.ndarray:
    """log q(item) for each pair: the share of all pairs whose positive has that pair's text."""
    items = pairs.positive_items()
    per_item = np.bincount(items, minlength=len(pairs.item_texts))
    # Two items with the same text are one positive to the loss.
    texts = pl.DataFrame({"text": pairs.item_texts, "pairs": per_item})
    per_text = texts.with_columns(pl.col("pairs").sum().over("text"))["pairs"].to_numpy()
    return np.log(per_text[items] / len(pairs)).astype(np.float32)


def no_duplicate_batches(
    pairs: TrainingPairs, batch_size: int, n_batches: int, seed: int
) -> list[list[int]]:
    """The first `n_batches` batches of pair indices in which no text occurs twice.

    The same positive twice in a batch would be a false in-batch negative, and popular items are
    the positive of many pairs. Each pass over the pairs walks a seeded shuffle (torch's, seeded
    with `seed` + pass, as sentence-transformers' no-duplicates sampler does, so a run draws the
    batches it always drew) and fills each batch greedily: a pair sharing a text with the batch
    waits, in its place, for a later batch. Only the pairs walked past are ever turned into text,
    so the cost follows the step budget, not the number of pairs.
    """
    values: dict[int, frozenset[str]] = {}

    def texts(pair: int) -> frozenset[str]:
        if pair not in values:
            values[pair] = frozenset((pairs.anchor(pair), pairs.positive(pair)))
        return values[pair]

    batches: list[list[int]] = []
    n_pairs = len(pairs)
    for epoch in range(n_batches):  # every pass yields at least one batch
        generator = torch.Generator().manual_seed(seed + epoch)
        order = torch.randperm(n_pairs, generator=generator, dtype=torch.int32).numpy()
        cursor, waiting = 0, []  # next fresh position; pairs that clashed, in shuffled order
        while (waiting or cursor < n_pairs) and len(batches) < n_batches:
            batch: list[int] = []
            taken: set[str] = set()
            clashed: list[int] = []
            walked = 0
            fresh = (int(order[position]) for position in range(cursor, n_pairs))
            for pair in itertools.chain(waiting, fresh):
                walked += 1
                if not taken.isdisjoint(texts(pair)):
                    clashed.append(pair)
                    continue
                batch.append(pair)
                if len(batch) == batch_size:
                    break
                taken.update(texts(pair))
            cursor += max(0, walked - len(waiting))
            waiting = clashed + waiting[walked:]
            batches.append(batch)
        if len(batches) == n_batches:
            break
    return batches


class PlannedBatches(DefaultBatchSampler):
    """Consecutive runs of a dataset laid out batch after batch (`no_duplicate_batches`)."""

    def __init__(self, dataset: datasets.Dataset, sizes: list[int], **trainer_kwargs: Any) -> None:
        # The trainer passes its batch size, seed and generator: the plan already used them.
        super().__init__(dataset, batch_size=max(sizes), drop_last=False)
        if sum(sizes) != len(dataset):
            raise ValueError(f"{len(dataset)} rows do not match batches of {sum(sizes)}")
        self.bounds = np.concatenate([[0], np.cumsum(sizes)]).tolist()

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def __iter__(self) -> Iterator[list[int]]:
        for start, end in itertools.pairwise(self.bounds):
            yield list(range(start, end))


class PopularityCorrectedRankingLoss(torch.nn.Module):
    """In-batch softmax over the batch's positives, with the sampling bias taken out ("logQ").

    With in-batch negatives an item appears as a negative as often as it is some pair's positive,
    i.e. in proportion to its popularity q. Plain in-batch softmax therefore learns
    log p(item | user) - log q(item): it is trained to push popular items down, which costs
    accuracy wherever popularity matters (Yi et al., RecSys 2019). Subtracting log q from every
    logit makes the sampled softmax an estimate of the full one, so the dot product learns
    log p(item | user) itself. The dataset's `label` column carries log q of each pair's positive.
    """

    def __init__(self, model: SentenceTransformer, scale: float = 20.0) -> None:
        super().__init__()
        self.model = model
        self.scale = scale
        """Cosine similarity × scale = logit (20, as MultipleNegativesRankingLoss)."""

    def forward(
        self, sentence_features: list[dict[str, torch.Tensor]], labels: torch.Tensor
    ) -> torch.Tensor:
        anchors, positives = (
            self.model(features)["sentence_embedding"] for features in sentence_features
        )
        similarity = torch.nn.functional.normalize(anchors, dim=-1) @ (
            torch.nn.functional.normalize(positives, dim=-1).T
        )
        logits = self.scale * similarity - labels.to(similarity.dtype)[None, :]
        targets = torch.arange(len(logits), device=logits.device)
        return torch.nn.functional.cross_entropy(logits, targets)

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "correction": "log q"}


def set_dropout(model: torch.nn.Module, probability: float | None) -> int:
    """Set every dropout layer of `model` to `probability` (None: leave them); the count set.

    BERT-style encoders read their attention dropout from the same layers, so this covers the
    attention weights as well as the hidden states."""
    if probability is None:
        return 0
    layers = [module for module in model.modules() if isinstance(module, torch.nn.Dropout)]
    for layer in layers:
        layer.p = probability
    return len(layers)


def mixed_precision(device: str, requested: str = "auto") -> dict[str, bool]:
    """The trainer's flags for `finetune.precision`: bf16 where `pick_precision` finds it (CUDA
    cards with bf16, CPUs with AVX512-BF16 or AMX), fp16 on other CUDA cards under `auto`, full
    precision otherwise (and always on MPS)."""
    if device == "mps" or requested == "float32":
        return {"bf16": False, "fp16": False}
    bf16 = pick_precision(requested, device) == "bfloat16"
    return {"bf16": bf16, "fp16": device == "cuda" and not bf16}


# --------------------------------------------------------------------------------------------
# The evaluator: validation ranking quality of a sample of users
# --------------------------------------------------------------------------------------------
# `BaseEvaluator` is sentence-transformers 6's name for `SentenceEvaluator` (a deprecated alias).
class RecommendationEvaluator(BaseEvaluator):
    """Validation NDCG@10 and HR@10 of "user history text · item text" on a seeded user sample.

    Scores are dot products of L2-normalised embeddings (cosine), ranked by the evaluation
    protocol (`pipeline.evaluation.protocol.evaluate_model`) exactly as `evaluate` ranks them.
    """

    def __init__(
        self,
        processed: Processed,
        text_cfg: TextConfig,
        n_users: int,
        seed: int,
        tie_seed: int = 0,
        n_items: int | None = None,
        precision: str = "float32",
    ) -> None:
        super().__init__()
        self.precision = precision
        self.primary_metric = f"ndcg@{CUTOFF}"
        self.greater_is_better = True
        self.matrices = SplitMatrices.from_processed(processed)
        self.tie_seed = tie_seed
        n_all_users = processed.users.height

        histories = user_texts(
            processed.train, processed.items, n_all_users, text_cfg.history_items
        )
        has_history = np.array([bool(text) for text in histories])
        has_relevant = np.diff(self.matrices.validation.indptr) > 0
        candidates = np.flatnonzero(has_history & has_relevant)
        if candidates.size == 0:
            raise RecliError(
                "no user has both training history and a warm validation event: the in-training "
                "validation metric needs some (check preprocess.split)"
            )
        chosen = np.random.default_rng(seed).choice(
            candidates, size=min(n_users, candidates.size), replace=False
        )
        self.users = np.sort(chosen).astype(np.int64)
        self.user_texts = [histories[user] for user in self.users]
        self.items = self._item_pool(n_items, seed)
        """Items the metric encodes and ranks (sorted): every item, or on a catalogue of more than
        `n_items` the sampled users' validation items plus a seeded draw of other warm items."""
        texts = processed.items.sort("item_idx")["text"].to_list()
        self.item_texts = [texts[item] for item in self.items]
        self.seconds = 0.0
        """Wall time spent evaluating, so training speed can be reported without it."""

    def _item_pool(self, n_items: int | None, seed: int) -> np.ndarray:
        if n_items is None or self.matrices.n_items <= n_items:
            return np.arange(self.matrices.n_items)  # cold ones are masked by the protocol
        warm = np.flatnonzero(self.matrices.candidates("validation"))
        wanted = np.unique(self.matrices.validation[self.users].indices)
        others = np.setdiff1d(warm, wanted)
        extra = max(n_items - wanted.size, 0)
        drawn = np.random.default_rng(seed).choice(others, size=extra, replace=False)
        return np.union1d(wanted, drawn).astype(np.int64)

    def rank(self, model: SentenceTransformer) -> EvaluationResult:
        """Top-10 lists and per-user metrics of `model` for the sampled users."""
        user_vectors = encode(model, self.user_texts, ENCODE_BATCH_SIZE, precision=self.precision)
        item_vectors = encode(model, self.item_texts, ENCODE_BATCH_SIZE, precision=self.precision)
        row_of_user = np.full(self.matrices.train.shape[0], -1, dtype=np.int64)
        row_of_user[self.users] = np.arange(self.users.size)
        n_all_items = self.matrices.n_items

        def scorer(users: np.ndarray) -> np.ndarray:
            scores = np.full((users.size, n_all_items), -np.inf, dtype=np.float32)
            scores[:, self.items] = user_vectors[row_of_user[users]] @ item_vectors.T
            return scores

        return evaluate_model(
            scorer, self.matrices, "validation", [CUTOFF], CUTOFF, self.tie_seed, users=self.users
        )

    def __call__(
        self,
        model: SentenceTransformer,
        output_path: str | None = None,
        epoch: float = -1,
        steps: int = -1,
    ) -> dict[str, float]:
        started = time.perf_counter()
        summary = self.rank(model).summary()
        self.seconds += time.perf_counter() - started
        return {name: summary[name] for name in METRIC_NAMES}


# --------------------------------------------------------------------------------------------
# Curves for the plots
# --------------------------------------------------------------------------------------------
class CurveRecorder(TrainerCallback):
    """Keeps (step, training loss) and (step, validation NDCG@10, HR@10) as the trainer logs."""

    def __init__(self) -> None:
        self.loss: list[dict[str, float]] = []
        self.validation: list[dict[str, float]] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self.loss.append({"step": state.global_step, "loss": float(logs["loss"])})

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any
    ) -> None:
        # The trainer prefixes evaluator metrics with "eval_".
        scores = {name: (metrics or {}).get(f"eval_{name}") for name in METRIC_NAMES}
        if all(value is not None for value in scores.values()):
            self.record_validation(state.global_step, scores)

    def record_validation(self, step: int, scores: dict[str, float]) -> None:
        self.validation.append(
            {"step": step, **{name: float(scores[name]) for name in METRIC_NAMES}}
        )


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FinetuneResult:
    """What a fine-tuning run measured; the model itself is saved under `model_dir`."""

    model_dir: Path
    device: str
    training_pairs: int
    eval_users: int
    steps: int
    baseline: dict[str, float]
    """Validation ndcg@10 / hr@10 of the base model (zero-shot) on the eval sample."""
    final: dict[str, float] | None
    """The same after training; None for a zero-shot run (`max_steps: 0`)."""
    train_seconds: float
    """Wall time of training, in-training evaluations excluded."""
    loss_curve: list[dict[str, float]] = field(default_factory=list)
    validation_curve: list[dict[str, float]] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        """The stage's metrics file (`metrics/finetune.json`)."""
        validation = {"baseline": self.baseline}
        if self.final is not None:
            validation["final"] = self.final
        return {
            "validation": validation,
            "eval_users": self.eval_users,
            "steps": self.steps,
            "training_pairs": self.training_pairs,
            "device": self.device,
            "train_seconds": round(self.train_seconds, 2),
            "steps_per_second": (
                round(self.steps / self.train_seconds, 3)
                if self.steps and self.train_seconds
                else None
            ),
        }


def run(
    processed: Processed,
    text_cfg: TextConfig,
    cfg: FinetuneConfig,
    output_dir: Path,
    tie_seed: int = 0,
) -> FinetuneResult:
    """Fine-tune `cfg.base_model` on the training split; save the model (under `output_dir`, in
    the folder the serving contract names) and its config. `tie_seed` is the evaluation
    protocol's seed for breaking exact score ties."""
    output_dir = Path(output_dir)
    model_dir = output_dir / contract.ENCODER_DIR.name
    device = pick_device(cfg.device)

    # 1. Model. Seeded first: dropout masks and the batch order draw from these generators.
    transformers.set_seed(cfg.seed)
    model = load_encoder(cfg.base_model, device, text_cfg.max_seq_length)
    set_dropout(model, cfg.dropout)

    # 2. Data: (history before an event, that event's item), shuffled with the seed; only the
    # pairs the step budget reaches become text, laid out in the order they are trained on.
    pairs = TrainingPairs(processed.train, processed.items, text_cfg.history_items, cfg.seed)
    if cfg.max_steps and len(pairs) < cfg.batch_size:
        raise RecliError(
            f"only {len(pairs)} training pairs, fewer than finetune.batch_size "
            f"({cfg.batch_size}): lower the batch size or use more data"
        )
    batches = no_duplicate_batches(pairs, cfg.batch_size, cfg.max_steps, cfg.seed)
    chosen = np.array([pair for batch in batches for pair in batch], dtype=np.int64)
    columns = pairs.table(chosen).to_dict(as_series=False)
    if cfg.popularity_correction:
        columns["label"] = positive_log_frequency(pairs)[chosen].tolist()
    train_dataset = datasets.Dataset.from_dict(columns)
    batch_sizes = [len(batch) for batch in batches]

    # 3. Loss: every other positive in the batch is a negative for each anchor.
    loss = (
        PopularityCorrectedRankingLoss(model)
        if cfg.popularity_correction
        else MultipleNegativesRankingLoss(model)
    )

    # 4. Evaluator, and the zero-shot baseline before any step.
    evaluator = RecommendationEvaluator(
        processed,
        text_cfg,
        cfg.eval_users,
        cfg.seed,
        tie_seed,
        n_items=cfg.eval_items,
        precision="bfloat16" if mixed_precision(device, cfg.precision)["bf16"] else "float32",
    )
    curves = CurveRecorder()
    baseline = evaluator(model)
    curves.record_validation(0, baseline)
    final: dict[str, float] | None = None
    train_seconds = 0.0

    if cfg.max_steps > 0:
        with tempfile.TemporaryDirectory(prefix="recli-finetune-") as scratch:
            # 5. Training arguments. Nothing is checkpointed: the run is minutes long and only
            # the final model is an output (DVC caches it).
            args = SentenceTransformerTrainingArguments(
                output_dir=scratch,
                max_steps=cfg.max_steps,
                per_device_train_batch_size=cfg.batch_size,
                learning_rate=cfg.learning_rate,
                # Transformers 5 takes the warmup ratio as a float `warmup_steps` in [0, 1).
                warmup_steps=cfg.warmup_ratio,
                seed=cfg.seed,
                data_seed=cfg.seed,
                batch_sampler=functools.partial(PlannedBatches, sizes=batch_sizes),
                eval_strategy="steps",
                eval_steps=cfg.eval_steps,
                logging_strategy="steps",
                logging_steps=max(1, min(cfg.eval_steps, cfg.max_steps // LOSS_POINTS)),
                logging_first_step=True,
                save_strategy="no",
                report_to="none",
                use_cpu=device == "cpu",
                dataloader_num_workers=0,
                dataloader_pin_memory=device == "cuda",
                disable_tqdm=False,
                **mixed_precision(device, cfg.precision),
            )
            # 6. Trainer.
            trainer = SentenceTransformerTrainer(
                model=model,
                args=args,
                train_dataset=train_dataset,
                loss=loss,
                evaluator=evaluator,
                callbacks=[curves],
            )
            evaluated_before = evaluator.seconds
            started = time.perf_counter()
            trainer.train()
            train_seconds = time.perf_counter() - started - (evaluator.seconds - evaluated_before)
        steps = trainer.state.global_step
        # The trainer evaluates every `eval_steps`; evaluate the final weights too unless the
        # last step already was an evaluation step.
        if curves.validation[-1]["step"] == steps:
            last = curves.validation[-1]
            final = {name: last[name] for name in METRIC_NAMES}
        else:
            final = evaluator(model)
            curves.record_validation(steps, final)
    else:
        steps = 0

    # 7. Save the model (safetensors, tokenizer included) and the effective config beside it.
    with io.atomic_directory(model_dir) as staging:
        # No model card: it embeds dates and training logs, so identical runs would give
        # different bytes (and a DVC output that never matches its cache).
        model.save(str(staging), create_model_card=False, safe_serialization=True)
    io.write_json(
        output_dir / "config.json",
        {
            "text": text_cfg.model_dump(mode="json"),
            "finetune": cfg.model_dump(mode="json"),
            "device": device,
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
            "sentence_transformers_version": sentence_transformers.__version__,
            "training_pairs": len(pairs),
            "steps": steps,
        },
    )
    return FinetuneResult(
        model_dir=model_dir,
        device=device,
        training_pairs=len(pairs),
        eval_users=int(evaluator.users.size),
        steps=steps,
        baseline=baseline,
        final=final,
        train_seconds=train_seconds,
        loss_curve=curves.loss,
        validation_curve=curves.validation,
    )


def write_metrics(result: FinetuneResult, layout: Layout) -> None:
    io.write_json(layout.metrics_file("finetune"), result.metrics())
    io.write_json(layout.plot_file("finetune_loss"), result.loss_curve)
    io.write_json(layout.plot_file("finetune_validation"), result.validation_curve)


@writes("finetune")
def main(layout: Layout) -> None:
    params = load_params(layout.params)
    processed = read_processed(layout)
    result = run(
        processed, params.text, params.finetune, layout.finetune, params.preprocess.split.seed
    )
    write_metrics(result, layout)
    baseline = result.baseline[f"ndcg@{CUTOFF}"]
    final = result.final[f"ndcg@{CUTOFF}"] if result.final else baseline
    print(
        f"finetune: {result.steps} steps on {result.training_pairs} pairs ({result.device}, "
        f"{result.train_seconds:.0f} s); validation NDCG@{CUTOFF} on {result.eval_users} users "
        f"{baseline:.4f} -> {final:.4f}"
    )


if __name__ == "__main__":
    io.run_stage(main)
