"""Stage `sequence`: order-aware user models, trained on the training split, stopped on validation.

Leave-last-out asks for the *next* item, and the models that read order win there. Two causal
transformers over each user's item sequence (`pipeline.models.sasrec`) are trained with the same
settings (`params.yaml: sequence`):

- `sasrec`, the peer: SASRec with free item-id embeddings, as the field runs it;
- `text`, recli's own, in the UniSRec line: the same network whose item vectors add the items'
  fine-tuned text vectors, through a mixture of parametric whitening experts
  (`pipeline.models.sasrec.TextAdaptor`), to the id embeddings, so an item the model never saw
  in training (cold) is still placed by what it is, and a rarely seen one borrows from similar
  texts.

Each is stopped early on validation NDCG@10 through the evaluation protocol. A user's vector is
the state at their last event; an item's vector is what the network reads for that item; a score
is their dot product, so either model can join the fused vectors of the one index. User states
are computed from the training history, for the test split from the training + validation
history, and for serving from every event of the user (nothing refit).

Outputs under `data/sequence/`: `{sasrec,text}_{user,item}_vectors.npy`,
`{sasrec,text}_user_vectors_{at_test,served}.npy`, `config.json`; `metrics/sequence.json`
(epochs, best validation NDCG@10, time) and the plot data `metrics/plots/sequence_validation.json`.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

import numpy as np

from pipeline.core import io
from pipeline.core.config import load_params
from pipeline.core.layout import Layout, writes
from pipeline.core.parallel import in_processes, usable_cores
from pipeline.core.sections import SequenceConfig
from pipeline.data.artifacts import (
    Processed,
    read_embeddings,
    read_processed,
    write_sequence_model,
    write_sequence_vectors,
)
from pipeline.data.interactions import UserItemVectors
from pipeline.engine.runner import Engine
from pipeline.engine.training import train, weights_digest
from pipeline.evaluation.protocol import SplitMatrices, evaluate_model, only_users
from pipeline.models.encoder import pick_device
from pipeline.models.sasrec import MODELS, settings
from pipeline.models.sasrec_training import append_histories, fit, histories


def worker_count(cfg: SequenceConfig, n_models: int) -> int:
    """How many models train at once (`sequence.workers`); never more than there are models."""
    if cfg.workers != "auto":
        return max(1, min(cfg.workers, n_models))
    if pick_device(cfg.device) != "cpu":
        return 1
    return max(1, min(n_models, usable_cores()))


def fit_model(
    processed: Processed,
    item_text_vectors: np.ndarray,
    cfg: SequenceConfig,
    flags: dict[str, bool],
    seed: int,
    max_users: int | None,
    threads: int | None = None,
    with_vectors: bool = True,
) -> tuple[UserItemVectors | None, dict[str, Any], dict[str, np.ndarray] | None]:
    """Fit one variant (`flags`: `use_ids`, `use_text`); its vectors, with the test-time and
    served users (None without `with_vectors`: a data-parallel worker other than the first),
    what training measured, and the trained weights (`FittedSequence.weights`, None with the
    vectors), from which serving derives a new history's state. `threads` caps torch's CPU
    threads (a worker's share of the cores); None leaves torch's default."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    started = time.perf_counter()
    matrices = SplitMatrices.from_processed(processed, max_users, seed)
    n_users, n_items = processed.users.height, processed.items.height
    train = histories(processed.train, n_users)

    def validate(vectors: UserItemVectors) -> float:
        result = evaluate_model(vectors.score, matrices, "validation", [10], 10, seed)
        return float(result.summary()["ndcg@10"])

    # Only the evaluated users' split states are ever read (all users unless there are more
    # than `max_users`): the others' histories are left empty, which gives them zero states.
    empty = np.zeros(0, dtype=np.int64)
    evaluated = only_users(train, matrices.evaluated, empty)
    fitted = fit(
        train,
        n_items,
        settings(cfg, **flags),
        text_vectors=item_text_vectors if flags["use_text"] else None,
        cold_items=matrices.cold_items,
        validate=validate,
        validation_histories=evaluated,
    )
    vectors, weights = None, None
    if with_vectors:
        weights = fitted.weights()
        trained = fitted.vectors(evaluated)
        at_test = append_histories(train, histories(processed.validation, n_users))
        vectors = UserItemVectors(
            users=trained.users,
            items=trained.items,
            users_at_test=fitted.user_states(only_users(at_test, matrices.evaluated, empty)),
            users_served=fitted.user_states(histories(processed.history_served, n_users)),
        )
    report = {
        "best_epoch": fitted.best_epoch,
        "epochs": len(fitted.log),
        "steps": fitted.steps,
        "negatives": fitted.negatives,
        "validation_ndcg@10": None
        if fitted.best_score is None
        else round(float(fitted.best_score), 5),
        "seconds": round(time.perf_counter() - started, 1),
        "curve": [
            {"epoch": entry["epoch"], "validation": entry["validation"], "loss": entry["loss"]}
            for entry in fitted.log
        ],
    }
    if fitted.shard:  # a data-parallel worker: what it trained on, and what it holds
        report["shard"] = fitted.shard
        report["weights_sha256"] = weights_digest(fitted.model)
    return vectors, report, weights


def run(
    processed: Processed,
    item_text_vectors: np.ndarray,
    cfg: SequenceConfig,
    seed: int = 0,
    models: dict[str, dict[str, bool]] = MODELS,
    max_users: int | None = None,
) -> tuple[dict[str, UserItemVectors], dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """Fit every model in `models`; return its vectors (with test-time users), what training
    measured and its trained weights. `seed` is the evaluation protocol's tie-break seed (and
    draws the validation users when there are more than `max_users`). With more than one worker
    (`sequence.workers`) the models train in parallel processes, each on its share of the
    cores; the results are the same whichever finishes first."""
    workers = worker_count(cfg, len(models))
    arguments = [
        (processed, item_text_vectors, cfg, flags, seed, max_users) for flags in models.values()
    ]
    if workers > 1:  # each worker on its share of the cores
        arguments = [(*args, max(1, usable_cores() // workers)) for args in arguments]
    fitted = in_processes(fit_model, arguments, workers)
    vectors = {name: each[0] for name, each in zip(models, fitted, strict=True)}
    report = {name: each[1] for name, each in zip(models, fitted, strict=True)}
    weights = {name: each[2] for name, each in zip(models, fitted, strict=True)}
    return vectors, report, weights


def validation_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Plot rows of the validation curves: one per epoch any model was scored at, one column per
    model (None where that model was not scored)."""
    epochs = sorted({point["epoch"] for entry in report.values() for point in entry["curve"]})
    curves = {
        name: {point["epoch"]: point["validation"] for point in entry["curve"]}
        for name, entry in report.items()
    }
    return [
        {"epoch": epoch, **{name: curve.get(epoch) for name, curve in curves.items()}}
        for epoch in epochs
    ]


def train_worker(config: dict[str, Any]) -> None:
    """One worker of the data-parallel training of one model on Ray (`pipeline.engine.training`):
    `fit_model` on this worker's share of every batch; the first worker writes the vectors and
    the report, every worker its shard and the digest of its weights."""
    import ray
    import torch

    layout: Layout = config["layout"]
    name, rank = config["model"], torch.distributed.get_rank()
    params = load_params(layout.params)
    vectors, report, weights = fit_model(
        read_processed(layout),
        read_embeddings(params.sequence.text_encoder, layout).items,
        params.sequence,
        MODELS[name],
        params.preprocess.split.seed,
        params.evaluate.max_users,
        with_vectors=rank == 0,
    )
    worker = {
        "rank": rank,
        "node": ray.get_runtime_context().get_node_id(),
        "batches": report.pop("shard", []),
        "weights_sha256": report.pop("weights_sha256", None),
    }
    io.write_json(layout.sequence / WORKERS_DIR / f"{name}-rank-{rank}.json", worker)
    if vectors is not None and weights is not None:
        write_sequence_vectors(name, vectors, layout)
        write_sequence_model(name, weights, layout)
        io.write_json(layout.sequence / WORKERS_DIR / f"{name}.json", report)


WORKERS_DIR = "workers"
"""Where the workers of a data-parallel run report (folded into `workers.json`)."""


def run_on_ray(engine: Engine, layout: Layout) -> dict[str, Any]:
    """Every model trained data-parallel on Ray, one after the other; writes the vectors and
    `workers.json` (per model, what each worker trained on and holds); returns the report."""
    folder = layout.sequence / WORKERS_DIR
    report: dict[str, Any] = {}
    workers: dict[str, list[dict[str, Any]]] = {}
    for name in MODELS:
        config = {"layout": layout.absolute(), "model": name}
        count = train(engine, train_worker, config, layout.sequence / ".ray_train")
        report[name] = io.read_json(folder / f"{name}.json", "sequence")
        workers[name] = [
            io.read_json(folder / f"{name}-rank-{rank}.json", "sequence") for rank in range(count)
        ]
    shutil.rmtree(folder)
    io.write_json(layout.sequence / "workers.json", workers)
    return report


@writes("sequence")
def main(layout: Layout) -> None:
    params = load_params(layout.params)
    engine = Engine(params.engine)
    where = ""
    if engine.is_ray:
        with engine.session():
            report = run_on_ray(engine, layout)
            where = f" ({engine.workers()} workers on Ray)"
    else:
        processed = read_processed(layout)
        text = read_embeddings(params.sequence.text_encoder, layout)
        vectors, report, weights = run(
            processed,
            text.items,
            params.sequence,
            params.preprocess.split.seed,
            max_users=params.evaluate.max_users,
        )
        for name, model_vectors in vectors.items():
            write_sequence_vectors(name, model_vectors, layout)
            write_sequence_model(name, weights[name], layout)
    io.write_json(layout.sequence / "config.json", params.sequence.model_dump(mode="json"))
    io.write_json(
        layout.metrics_file("sequence"),
        {name: {k: v for k, v in entry.items() if k != "curve"} for name, entry in report.items()},
    )
    io.write_json(layout.plot_file("sequence_validation"), validation_rows(report))
    for name, entry in report.items():
        print(
            f"sequence: {name}: {entry['epochs']} epochs (best {entry['best_epoch']}), "
            f"validation NDCG@10 {entry['validation_ndcg@10']}, {entry['seconds']:.0f} s{where}"
        )


if __name__ == "__main__":
    io.run_stage(main)
