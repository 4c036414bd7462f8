"""Benchmark SASRec (`pipeline.models.sasrec`) on MovieLens-100K under the evaluation protocol.

The bar: validation NDCG@10 of at least 0.108, within 10% of RecBole 1.2.1's SASRec on the same
split with no cold holdout (2 layers, 64-d, 2 heads, CE over all items, last 50 items, dropout
0.2: validation NDCG@10 0.120; test 0.108 reading the validation event, 0.093 from training
history only). Every number here comes from `pipeline.evaluation.protocol.evaluate_model`: full
ranking, training items masked on validation, training and validation items masked on test.

Two splits of the same data: `reference` (`preprocess.cold_item_fraction=0`, the protocol the
RecBole numbers were measured under) and `default` (params.yaml: 5% of items held out as cold,
never in training). Each model is trained on the training split with early stopping on validation
NDCG@10, and the test split is ranked twice: from the training history alone, and from train +
validation history (the validation event is then known, and the protocol masks it).

Usage, from the repository root (MovieLens-100K is read from `data.cache_dir`, no network):

    python benchmarks/sequence.py                     # both splits, ids only (~4 min a model)
    python benchmarks/sequence.py --text              # also ids + fine-tuned text vectors
    python benchmarks/sequence.py --protocols reference --seeds 42 43 44
    python benchmarks/sequence.py --learning-rate 2e-3 --dropout 0.3   # a validation trial

`--text` reads the fine-tuned item vectors `dvc repro` writes (`data/embed/item_embeddings.npy`)
and is skipped with a message when they are absent. Those vectors come from the encoder fine-tuned
on the default split's training events, which all precede both splits' validation events.

It prints a table and writes `--out` (metrics/bench_sequence.json): every number, the settings,
epochs run, the per-epoch log, wall time and training steps per second. Trials are appended to
the file's `tried` list (settings and validation NDCG@10 on the reference split), so a tuning
history survives re-runs; `--fresh` starts it over. `--resume` reuses the runs the file already
holds with the same settings and seed (training is deterministic), so a stopped benchmark goes on
where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from pipeline.core import io
from pipeline.core.config import Params, load_params
from pipeline.core.layout import Layout
from pipeline.data.artifacts import Processed, item_embeddings_file
from pipeline.data.interactions import UserItemVectors
from pipeline.data.source import RawData, load_source
from pipeline.evaluation.metrics import EvaluationResult
from pipeline.evaluation.protocol import Split, SplitMatrices, evaluate_model
from pipeline.models import sasrec_training as sequence
from pipeline.models.sasrec import SequenceSettings
from pipeline.preprocess import run as preprocess
from pipeline.workflow import override

ROOT = Path(__file__).resolve().parents[1]

PROTOCOLS: dict[str, dict[str, Any]] = {
    "reference": {"preprocess.cold_item_fraction": 0},
    "default": {},
}
"""Param changes per split: `reference` is RecBole's protocol, `default` is params.yaml."""
BAR = 0.108
REFERENCE = {
    "source": "RecBole 1.2.1 SASRec, same split, cold_item_fraction=0, full ranking",
    "validation_ndcg@10": 0.120,
    "test_ndcg@10_train_validation_history": 0.108,
    "test_ndcg@10_train_history": 0.093,
}
KS = (10,)
EVAL_SEED = 0
"""Seed of the protocol's random tie-break (only ties are affected)."""


def prepare(params: Params, raw: RawData, changes: dict[str, Any]) -> dict[str, Any]:
    """The split under `changes`, its matrices and the per-user histories."""
    processed = preprocess(raw, override(params, changes).preprocess)
    matrices = SplitMatrices.from_processed(processed)
    n_users, n_items = processed.users.height, processed.items.height
    train = sequence.histories(processed.train, n_users)
    validation = sequence.histories(processed.validation, n_users)
    _check_order(processed, train, validation)
    return {
        "matrices": matrices,
        "n_items": n_items,
        "train": train,
        "train_validation": sequence.append_histories(train, validation),
        "summary": {
            "users": n_users,
            "items": n_items,
            "cold_items": int(matrices.cold_items.sum()),
            "train_events": processed.train.height,
        },
    }


def _check_order(
    processed: Processed, train: list[np.ndarray], validation: list[np.ndarray]
) -> None:
    """Fail loudly unless every user has training events and one validation event no earlier
    than all of them: the sequences must be in the order the split was decided in."""
    last_train = processed.train.group_by("user_idx").agg(
        pl.col("timestamp").max().alias("last_train")
    )
    joined = processed.validation.join(last_train, on="user_idx")
    if (joined["timestamp"] < joined["last_train"]).any():
        raise SystemExit("a validation event precedes a training event: histories out of order")
    if any(len(v) != 1 for v in validation) or any(len(t) == 0 for t in train):
        raise SystemExit("expected one validation event and some training events per user")


def evaluate(vectors: UserItemVectors, matrices: SplitMatrices, split: Split) -> EvaluationResult:
    return evaluate_model(vectors.score, matrices, split, KS, 10, EVAL_SEED)


def metrics(result: EvaluationResult) -> dict[str, float]:
    summary = result.summary()
    return {
        **{f"{name}@{k}": summary[f"{name}@{k}"] for k in KS for name in ("ndcg", "hr")},
        "users": summary["users"],
    }


def run_model(
    data: dict[str, Any], settings: SequenceSettings, text: np.ndarray | None
) -> dict[str, Any]:
    """Fit one model with early stopping on validation NDCG@10 and evaluate it every way."""
    matrices = data["matrices"]

    def validate(vectors: UserItemVectors) -> float:
        return evaluate(vectors, matrices, "validation").summary()["ndcg@10"]

    started = time.perf_counter()
    fitted = sequence.fit(
        data["train"],
        data["n_items"],
        settings,
        text_vectors=text,
        cold_items=matrices.cold_items,
        validate=validate,
    )
    wall = time.perf_counter() - started
    from_train = fitted.vectors(data["train"])
    from_both = fitted.vectors(data["train_validation"])
    out: dict[str, Any] = {
        "validation": metrics(evaluate(from_train, matrices, "validation")),
        "test_train_history": metrics(evaluate(from_train, matrices, "test")),
        "test_train_validation_history": metrics(evaluate(from_both, matrices, "test")),
    }
    if matrices.cold_items.any():
        # Cold items ranked among themselves: ids alone tie them all (random), text can tell.
        out["cold_train_history"] = metrics(evaluate(from_train, matrices, "cold"))
    train_seconds = sum(float(entry["seconds"]) for entry in fitted.log)
    steps = sum(int(entry["steps"]) for entry in fitted.log)
    out.update(
        {
            "epochs_run": len(fitted.log),
            "best_epoch": fitted.best_epoch,
            "best_validation_ndcg@10_during_training": fitted.best_score,
            "wall_seconds": wall,
            "train_seconds": train_seconds,
            "validation_seconds": sum(float(e["validation_seconds"]) for e in fitted.log),
            "steps": steps,
            "steps_per_second": steps / train_seconds,
            "seconds_per_epoch": train_seconds / len(fitted.log),
            "log": [
                {"epoch": e["epoch"], "loss": e["loss"], "validation_ndcg@10": e["validation"]}
                for e in fitted.log
            ],
        }
    )
    return out


def load_text(layout: Layout, n_items: int) -> np.ndarray | None:
    path = item_embeddings_file(layout)
    if not path.exists():
        print(f"--text: {path} not found (run `dvc repro embed`); text variant skipped")
        return None
    vectors = io.read_npy(path, "embed")
    if vectors.shape[0] != n_items:
        print(f"--text: {path} has {vectors.shape[0]} items, the split {n_items}; skipped")
        return None
    return vectors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "metrics" / "bench_sequence.json")
    parser.add_argument("--protocols", nargs="+", choices=list(PROTOCOLS), default=list(PROTOCOLS))
    parser.add_argument("--text", action="store_true", help="also ids + fine-tuned text vectors")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42])
    defaults = SequenceSettings()
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--dropout", type=float, default=defaults.dropout)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--patience", type=int, default=defaults.patience)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared two-core machine a second thread made each "
        "step about four times slower)",
    )
    parser.add_argument("--fresh", action="store_true", help="forget earlier trials in --out")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="reuse the runs --out already holds with the same settings and seed",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    base = dataclasses.replace(
        defaults,
        learning_rate=args.learning_rate,
        dropout=args.dropout,
        epochs=args.epochs,
        patience=args.patience,
        batch_size=args.batch_size,
        weight_decay=args.weight_decay,
    )
    tried: list[dict[str, Any]] = []
    previous: dict[str, Any] = {}
    if args.out.exists() and not args.fresh:
        previous = json.loads(args.out.read_text(encoding="utf-8"))
        tried = previous.get("tried", [])

    started = time.perf_counter()
    # Every split is built before the first model: the runs take a while, and params.yaml or the
    # embeddings may change under a long benchmark.
    params = load_params(ROOT / "params.yaml")
    raw = load_source(params.data, ROOT)
    prepared = {protocol: prepare(params, raw, PROTOCOLS[protocol]) for protocol in args.protocols}
    texts = {
        protocol: load_text(Layout(ROOT), data["n_items"]) if args.text else None
        for protocol, data in prepared.items()
    }
    report: dict[str, Any] = {
        "complete": False,
        "bar_validation_ndcg@10": BAR,
        "reference": REFERENCE,
        "settings": dataclasses.asdict(base),
        "seeds": args.seeds,
        "threads": args.threads,
        "machine": {"python": platform.python_version(), "torch": torch.__version__},
        "protocols": {},
        "tried": tried,
    }
    for protocol, data in prepared.items():
        section: dict[str, Any] = {"params": PROTOCOLS[protocol], "split": data["summary"]}
        report["protocols"][protocol] = section
        variants: dict[str, tuple[SequenceSettings, np.ndarray | None]] = {"sasrec": (base, None)}
        if texts[protocol] is not None:
            variants["sasrec_text"] = (dataclasses.replace(base, use_text=True), texts[protocol])
        for variant, (settings, text) in variants.items():
            runs: dict[str, dict[str, Any]] = {}
            section[variant] = {"runs": runs}
            for seed in args.seeds:
                print(f"{protocol} / {variant} / seed {seed}: fitting ...", flush=True)
                seeded = dataclasses.replace(settings, seed=seed)
                earlier = _earlier_run(previous, protocol, variant, seed) if args.resume else None
                if earlier is not None and earlier.get("settings") == dataclasses.asdict(seeded):
                    # Same settings and seed give the same weights: the run is not repeated.
                    runs[str(seed)] = earlier
                    print("  (reused from --out)")
                    continue
                runs[str(seed)] = {"settings": dataclasses.asdict(seeded)}
                runs[str(seed)].update(run_model(data, seeded, text))
                _print_run(protocol, variant, seed, runs[str(seed)])
                section[variant]["mean"] = _mean(runs)
                if protocol == "reference":
                    tried.append(
                        {
                            "variant": variant,
                            "settings": dataclasses.asdict(seeded),
                            "validation_ndcg@10": runs[str(seed)]["validation"]["ndcg@10"],
                            "best_epoch": runs[str(seed)]["best_epoch"],
                        }
                    )
                # Written after every model, so a stopped benchmark keeps what it measured.
                report["wall_seconds"] = time.perf_counter() - started
                io.write_json(args.out, report)
    report["complete"] = True
    report["wall_seconds"] = time.perf_counter() - started
    io.write_json(args.out, report)
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


def _earlier_run(
    previous: dict[str, Any], protocol: str, variant: str, seed: int
) -> dict[str, Any] | None:
    runs = previous.get("protocols", {}).get(protocol, {}).get(variant, {}).get("runs", {})
    return runs.get(str(seed))


def _mean(runs: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Means over seeds of the headline numbers."""
    keys = [
        (part, metric)
        for part in (
            "validation",
            "test_train_history",
            "test_train_validation_history",
            "cold_train_history",
        )
        for metric in ("ndcg@10", "hr@10")
        if part in next(iter(runs.values()))
    ]
    out = {
        f"{part}/{metric}": float(np.mean([run[part][metric] for run in runs.values()]))
        for part, metric in keys
    }
    out["wall_seconds"] = float(np.mean([run["wall_seconds"] for run in runs.values()]))
    return out


def _print_run(protocol: str, variant: str, seed: int, run: dict[str, Any]) -> None:
    def pair(part: str) -> str:
        return f"{run[part]['ndcg@10']:.4f} / {run[part]['hr@10']:.4f}"

    verdict = "meets" if run["validation"]["ndcg@10"] >= BAR else "MISSES"
    print(
        f"  {protocol} / {variant} / seed {seed}: {run['epochs_run']} epochs (best "
        f"{run['best_epoch']}), {run['wall_seconds']:.0f} s, "
        f"{run['steps_per_second']:.2f} steps/s\n"
        f"    NDCG@10 / HR@10  validation {pair('validation')} ({verdict} the {BAR} bar)\n"
        f"    test, train history {pair('test_train_history')}; "
        f"train+validation history {pair('test_train_validation_history')}"
        + (f"\n    cold items {pair('cold_train_history')}" if "cold_train_history" in run else ""),
        flush=True,
    )


if __name__ == "__main__":
    main()
