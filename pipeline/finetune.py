"""Stage `finetune`: contrastive fine-tuning of the sentence encoder on "after these, this" pairs.

Each training pair is (a user's recent history as text, the text of the item they picked next);
`MultipleNegativesRankingLoss` pulls each history towards its own next item and away from every
other positive in the batch. The script reads as the usual sentence-transformers recipe:

1. model, 2. data, 3. loss, 4. evaluator (run once before training as the zero-shot baseline),
5. training arguments, 6. trainer, 7. save.

The batches, the loss and the training switches are `pipeline.models.contrastive`'s; the
evaluator and the curves `pipeline.models.finetune_validation`'s; this module puts them together.

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
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import sentence_transformers
import torch
import transformers
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from pipeline.core import io
from pipeline.core.config import load_params
from pipeline.core.layout import Layout, writes
from pipeline.core.sections import FinetuneConfig, TextConfig
from pipeline.data.artifacts import Processed, read_processed
from pipeline.data.text import TrainingPairs
from pipeline.engine.runner import Engine
from pipeline.engine.training import train, weights_digest
from pipeline.models.contrastive import (
    PlannedBatches,
    PopularityCorrectedRankingLoss,
    freeze_lower,
    mixed_precision,
    no_duplicate_batches,
    positive_log_frequency,
    set_dropout,
    worker_chunks,
)
from pipeline.models.encoder import load_encoder, pick_device
from pipeline.models.finetune_validation import (
    CUTOFF,
    METRIC_NAMES,
    CurveRecorder,
    RecommendationEvaluator,
)
from recli import contract
from recli.errors import RecliError

LOSS_POINTS = 40
"""Aim for about this many points on the loss curve, whatever `max_steps` is."""


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
    frozen_parameters: int = 0
    """Weights not trained (`finetune.frozen_layers`)."""
    shard: list[str] = field(default_factory=list)
    """In a distributed run: the digest of every batch of anchors this worker trained on."""
    weights_sha256: str | None = None
    """In a distributed run: a digest of this worker's weights after training."""

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
            "frozen_parameters": self.frozen_parameters,
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
    workers: int = 1,
) -> FinetuneResult:
    """Fine-tune `cfg.base_model` on the training split; save the model (under `output_dir`, in
    the folder the serving contract names) and its config. `tie_seed` is the evaluation
    protocol's seed for breaking exact score ties.

    `workers` > 1: this is one worker of a data-parallel run (`train_worker`): each step's batch
    is `workers` × `finetune.batch_size` pairs, this worker's share of it is its own, the loss
    gathers every worker's positives as negatives, and only the first worker saves."""
    output_dir = Path(output_dir)
    rank = torch.distributed.get_rank() if workers > 1 else 0
    model_dir = output_dir / contract.ENCODER_DIR.name
    device = pick_device(cfg.device)

    # 1. Model. Seeded first: dropout masks and the batch order draw from these generators.
    transformers.set_seed(cfg.seed)
    model = load_encoder(cfg.base_model, device, cfg.max_seq_length)
    set_dropout(model, cfg.dropout)
    frozen = freeze_lower(model, cfg.frozen_layers)

    # 2. Data: (history before an event, that event's item), shuffled with the seed; only the
    # pairs the step budget reaches become text, laid out in the order they are trained on.
    pairs = TrainingPairs(processed.train, processed.items, text_cfg.history_items, cfg.seed)
    if cfg.max_steps and len(pairs) < cfg.batch_size:
        raise RecliError(
            f"only {len(pairs)} training pairs, fewer than finetune.batch_size "
            f"({cfg.batch_size}): lower the batch size or use more data"
        )
    plan = no_duplicate_batches(pairs, cfg.batch_size * workers, cfg.max_steps, cfg.seed)
    batches = worker_chunks(plan, workers)
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
        else MultipleNegativesRankingLoss(model, gather_across_devices=workers > 1)
    )
    shard: list[str] = []
    if workers > 1 and isinstance(loss, PopularityCorrectedRankingLoss):
        loss.seen = shard

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

    # 7. Save the model (safetensors, tokenizer included) and the effective config beside it;
    # it embeds and serves at the text length, not the (shorter) training one.
    model.max_seq_length = text_cfg.max_seq_length
    weights = weights_digest(model) if workers > 1 else None
    if rank != 0:  # every worker holds the same weights: the first one saves them
        return FinetuneResult(
            model_dir,
            device,
            len(pairs),
            int(evaluator.users.size),
            steps,
            baseline,
            final,
            train_seconds,
            shard=shard,
            weights_sha256=weights,
        )
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
            "workers": workers,
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
        frozen_parameters=frozen,
        shard=shard,
        weights_sha256=weights,
    )


def write_metrics(result: FinetuneResult, layout: Layout) -> None:
    io.write_json(layout.metrics_file("finetune"), result.metrics())
    io.write_json(layout.plot_file("finetune_loss"), result.loss_curve)
    io.write_json(layout.plot_file("finetune_validation"), result.validation_curve)


WORKERS_DIR = "workers"
"""Where each worker of a distributed run writes what it trained on (folded into workers.json)."""


def train_worker(config: dict[str, Any]) -> None:
    """One worker of a data-parallel run on Ray (`pipeline.engine.training`): `run` on this
    worker's share; the first worker writes the metrics; every worker writes its shard and the
    digest of its weights."""
    layout: Layout = config["layout"]
    workers = torch.distributed.get_world_size()
    rank = torch.distributed.get_rank()
    params = load_params(layout.params)
    result = run(
        read_processed(layout),
        params.text,
        params.finetune,
        layout.finetune,
        params.preprocess.split.seed,
        workers=workers,
    )
    if rank == 0:
        write_metrics(result, layout)
    import ray

    io.write_json(
        layout.finetune / WORKERS_DIR / f"rank-{rank}.json",
        {
            "rank": rank,
            "node": ray.get_runtime_context().get_node_id(),
            "batches": result.shard,
            "weights_sha256": result.weights_sha256,
        },
    )


def run_on_ray(engine: Engine, layout: Layout) -> int:
    """The data-parallel run; `workers.json` gathers what every worker trained on. Returns
    how many workers."""
    workers = train(
        engine, train_worker, {"layout": layout.absolute()}, layout.finetune / ".ray_train"
    )
    folder = layout.finetune / WORKERS_DIR
    ranks = [io.read_json(folder / f"rank-{rank}.json", "finetune") for rank in range(workers)]
    shutil.rmtree(folder)
    io.write_json(layout.finetune / "workers.json", ranks)
    return workers


@writes("finetune")
def main(layout: Layout) -> None:
    params = load_params(layout.params)
    engine = Engine(params.engine)
    workers = 1
    if engine.is_ray and params.finetune.max_steps > 0:
        with engine.session():
            workers = run_on_ray(engine, layout)
        record = io.read_json(layout.metrics_file("finetune"), "finetune")
    else:
        processed = read_processed(layout)
        result = run(
            processed, params.text, params.finetune, layout.finetune, params.preprocess.split.seed
        )
        write_metrics(result, layout)
        record = result.metrics()
    validation = record["validation"]
    baseline = validation["baseline"][f"ndcg@{CUTOFF}"]
    final = validation.get("final", validation["baseline"])[f"ndcg@{CUTOFF}"]
    where = f"{workers} workers on Ray, " if workers > 1 else ""
    print(
        f"finetune: {record['steps']} steps on {record['training_pairs']} pairs ({where}"
        f"{record['device']}, {record['train_seconds']:.0f} s); validation NDCG@{CUTOFF} on "
        f"{record['eval_users']} users {baseline:.4f} -> {final:.4f}"
    )


if __name__ == "__main__":
    io.run_stage(main)
