"""Run the whole pipeline on a MovieLens "latest" folder through the bring-your-own-files path.

The default data is MovieLens-100K, loaded by its own reader. This script checks the other road
users take: a folder with `ratings.csv`, `movies.csv` and optionally `tags.csv` (the GroupLens
"ml-latest-small" layout) is copied into a scratch project's `data/input/`, read with the
`data.source: files` settings `docs/your-own-data.md` shows, and every stage runs on it with the
committed `params.yaml` otherwise unchanged (`pipeline.workflow.run_all`, as `dvc repro` runs
them). It prints each model's test and validation NDCG@10, the served model against the best
peer with the paired per-user difference, and writes it all to `--out` (default
`metrics/byo_check.json`).

    python scripts/check_byo.py path/to/ml-latest-small
    python scripts/check_byo.py path/to/ml-latest-small --keep build --from sequence
    python scripts/check_byo.py ml-latest-small --sessions 8 --out metrics/byo_sparse_check.json
    python scripts/check_byo.py ml-latest-small --sessions 8 --text-only \
        --out metrics/byo_text_only_check.json

`--sessions N` turns the folder into sparse data before the check: each person's history, in
time order, is cut into consecutive runs of about N events, and each run becomes a user of its
own (`<userId>-<run>`). Real behaviour and real item text stay; what changes is that no user has
more than N events, so there are many users with short histories over the same catalogue, the
shape of a sparse product catalogue, where the items' text should matter most. Runs of one person
share their tastes, and a later run's training events are of the same person as an earlier run's
test event; the check says that much, not more, about sparse data.

`--text-only` leaves the genres column unread: titles and tags are then the items' only content,
as in a product catalogue without categories, and every label must come from their words (the
report lists the global groups' labels and the label measures of every grouping).

`--keep` builds the project in a folder that stays; `--from STAGE` then resumes a kept project
at that stage (the earlier stages' outputs must be there), so an interrupted check need not
fine-tune again. The timings reported are those of the stages that ran.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from check_peers import best_peer  # scripts/ is on the path when run as a script

from pipeline.core.config import load_params
from pipeline.core.layout import Layout
from pipeline.data.artifacts import read_clustering
from pipeline.workflow import INPUT_DIR, STAGES, override, run_all
from recli.metrics_source import served_in

FILES = {"interactions": "ratings.csv", "items": "movies.csv", "tags": "tags.csv"}
COLUMNS = {"user": "userId", "item": "movieId", "rating": "rating", "timestamp": "timestamp"}
"""The ratings file's columns, as `data.files.columns` names them."""


def data_params(folder: Path, text_only: bool = False) -> dict[str, Any]:
    """The `data` section that reads a MovieLens "latest" folder copied to `data/input`; with
    `text_only` the genres column is not read, so titles and tags are the items' only content."""
    files: dict[str, Any] = {
        key: (INPUT_DIR / name).as_posix()
        for key, name in FILES.items()
        if (folder / name).exists()
    }
    files.update(
        columns=COLUMNS,
        item_columns={
            "item": "movieId",
            "title": "title",
            "genres": None if text_only else "genres",
            "description": None,
            "list_separator": "|",
        },
        tag_columns={"item": "movieId", "tag": "tag"},
    )
    return {"source": "files", "files": files}


def sessionise(ratings: pl.DataFrame, events_per_user: int, seed: int = 42) -> pl.DataFrame:
    """Each user's events in time order cut into consecutive runs of about `events_per_user`
    (a history of n events makes ceil(n / events_per_user) runs of near-equal length), each run
    a user of its own named `<user>-<run>`. Equal timestamps are ordered by a seeded draw, not by
    the file's order (MovieLens files list a user's events by item id)."""
    if events_per_user < 3:
        raise ValueError(f"--sessions {events_per_user}: leave-last-out needs at least 3 events")
    user, timestamp = COLUMNS["user"], COLUMNS["timestamp"]
    draw = np.random.default_rng(seed).permutation(ratings.height)
    ordered = (
        ratings.with_columns(pl.Series("_draw", draw))
        .sort([user, timestamp, "_draw"])
        .with_columns(
            pl.int_range(pl.len()).over(user).alias("_position"),
            pl.len().over(user).alias("_events"),
        )
    )
    runs = (pl.col("_events") / events_per_user).ceil().cast(pl.Int64)
    run = (pl.col("_position") * runs / pl.col("_events")).floor().cast(pl.Int64)
    return ordered.with_columns(
        pl.concat_str([pl.col(user).cast(pl.Utf8), run.cast(pl.Utf8)], separator="-").alias(user)
    ).drop("_draw", "_position", "_events")


def check(
    folder: Path,
    keep: Path | None = None,
    first: str = STAGES[0],
    sessions: int | None = None,
    text_only: bool = False,
) -> dict[str, Any]:
    """Every stage from `first` on, on `folder`'s files (cut into sparse runs when `sessions`
    is set; without genres when `text_only`), in a scratch project (or in `keep`, where the
    stages before `first` have run); the evaluation and the labels of every grouping."""
    missing = [
        name for key, name in FILES.items() if key != "tags" and not (folder / name).exists()
    ]
    if missing:
        raise SystemExit(f"{folder} lacks {', '.join(missing)}: pass a MovieLens 'latest' folder")
    with tempfile.TemporaryDirectory(prefix="recli-byo-") as scratch:
        root = keep or Path(scratch)
        (root / INPUT_DIR).mkdir(parents=True, exist_ok=True)
        for name in FILES.values():
            if (folder / name).exists():
                shutil.copy(folder / name, root / INPUT_DIR / name)
        if sessions is not None:  # also when resuming: the input stays what was preprocessed
            target = root / INPUT_DIR / FILES["interactions"]
            # ids and ratings stay text, spelled as in the file; timestamps sort as numbers
            as_text = {COLUMNS[key]: pl.Utf8 for key in ("user", "item", "rating")}
            ratings = pl.read_csv(target, schema_overrides=as_text)
            sessionise(ratings, sessions).write_csv(target)
        params = override(load_params(), {"data": data_params(folder, text_only)})
        timings = run_all(params, root, STAGES[STAGES.index(first) :])
        evaluation = json.loads((root / "metrics/evaluation.json").read_text(encoding="utf-8"))
        preprocessing = json.loads((root / "metrics/preprocess.json").read_text(encoding="utf-8"))
        index = json.loads((root / "metrics/index.json").read_text(encoding="utf-8"))
        fusion = json.loads((root / "metrics/fuse.json").read_text(encoding="utf-8"))
        labels = label_report(root)
    test = {name: row["ndcg@10"] for name, row in evaluation["test"].items()}
    best, served = best_peer(test), served_in(evaluation)
    data = folder.name if sessions is None else f"{folder.name}, runs of {sessions} events"
    return {
        "data": f"{data}, genres dropped" if text_only else data,
        "preprocess": preprocessing,
        "test_ndcg@10": test,
        "validation_ndcg@10": {n: r["ndcg@10"] for n, r in evaluation["validation"].items()},
        "cold_items_hr@10": {n: r["hr@10"] for n, r in evaluation.get("cold_items", {}).items()},
        "served": served,
        "best_peer": best,
        "served_over_best_peer": round(test[served] / test[best], 4),
        "paired_vs_best_peer": evaluation["paired_test"][best],
        "fusion": {
            key: fusion[key]
            for key in ("text_weight", "sequence_model", "sequence_share", "linear_share")
        },
        "labels": labels,
        "ann_recall@10": index["ann_recall@10"],
        "search_k": index["search_k"],
        "seconds": {stage: row["seconds"] for stage, row in timings.items()},
    }


LABEL_KEYS = (
    "label_agreement",
    "label_agreement_random",
    "label_agreement_shuffled_interests",
    "labels_distinct_share",
    "label_terms_whole_words",
    "label_coverage",
    "labels_with_a_title",
    "labels_from_a_title",
    "labels_from_the_topic",
)


def label_report(root: Path) -> dict[str, Any]:
    """What the labels of the global groups, the topics and the users' interests are: their
    quality measures from the stages' metrics and the group labels themselves."""
    layout = Layout(root)
    clustering = read_clustering(layout)
    cluster, profiles = clustering.metrics, clustering.profiles
    interests = json.loads(layout.metrics_file("interests").read_text(encoding="utf-8"))
    report: dict[str, Any] = {
        name: {key: metrics[key] for key in LABEL_KEYS if key in metrics}
        for name, metrics in (("groups", cluster), ("interests", interests))
    }
    report["topics"] = {
        key: value for key, value in interests["topics"].items() if not isinstance(value, list)
    }
    report["group_labels"] = [profile["label"] for profile in profiles]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a MovieLens 'latest' folder (ratings.csv, ...)")
    parser.add_argument("--out", type=Path, default=Path("metrics/byo_check.json"))
    parser.add_argument("--keep", type=Path, help="build the project here instead of a scratch dir")
    parser.add_argument(
        "--from",
        dest="first",
        choices=STAGES,
        default=STAGES[0],
        help="with --keep: resume there, reusing the earlier stages' outputs",
    )
    parser.add_argument(
        "--sessions",
        type=int,
        metavar="N",
        help="sparse data: cut each history into runs of about N events, each run a user",
    )
    parser.add_argument(
        "--text-only",
        action="store_true",
        help="leave the genres out: titles and tags are the items' only content",
    )
    args = parser.parse_args()
    if args.first != STAGES[0] and args.keep is None:
        parser.error("--from needs --keep: the earlier stages' outputs live in the kept folder")
    report = check(args.folder, args.keep, args.first, args.sessions, args.text_only)
    for name, value in sorted(report["test_ndcg@10"].items(), key=lambda kv: -kv[1]):
        validation = report["validation_ndcg@10"][name]
        print(f"{name:<14} test NDCG@10 {value:.4f}  validation {validation:.4f}")
    paired = report["paired_vs_best_peer"]
    print(
        f"served / {report['best_peer']}: {report['served_over_best_peer']:.3f}; paired difference "
        f"{paired['ndcg@10_difference']:+.4f} ± {paired['standard_error']:.4f}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
