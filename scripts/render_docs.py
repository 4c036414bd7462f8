"""Render the documentation's results tables from `metrics/*.json`.

Every number table in `docs/` sits between two markers,

    <!-- table: evaluation-test -->
    ...generated Markdown...
    <!-- /table -->

and the name after `table:` says which function of `TABLES` writes it. Tables typed by hand
drift from the metrics as soon as the pipeline runs again; generated ones cannot.

Usage, from the repository root:

    python scripts/render_docs.py            # rewrite every block in docs/*.md and the READMEs
    python scripts/render_docs.py --check    # exit 1 naming each block that is out of date

A metrics file or key that is absent is not an error: the block then renders what is present, or
one line saying what is missing, so the docs build on a checkout where a benchmark was never run.
A block name no function renders is an error (exit 2): it is a typo in a page.

The standard library only, plus the CLI's own model names (`recli.metrics_view.MODEL_NAMES`),
so a model reads the same in the docs as in `recli metrics`. That import brings in `rich`, one
of recli's own dependencies, and nothing of the training stack.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from recli.metrics_view import MODEL_NAMES

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
README = REPO / "README.md"
BENCHMARKS_README = REPO / "benchmarks" / "README.md"
METRICS = REPO / "metrics"

BLOCK = re.compile(
    r"<!-- table: (?P<name>[a-z0-9-]+) -->\n(?P<body>.*?)<!-- /table -->",
    re.DOTALL,
)
"""One generated block. The body is everything between the two markers."""

EXTRA_NAMES = {
    "random": "random order (floor)",
    "text": "recli sequence model",  # how the index stage's grid keys name it
}
"""Keys that are not evaluation models but appear where models do."""

SERVED = "fused"
"""The served model's key in `metrics/evaluation.json`: its row is set in bold."""


WRITTEN_BY = {
    "bench_recommend.json": "python benchmarks/recommend.py",
    "bench_scale.json": "python benchmarks/scale.py",
    "bench_sequence.json": "python benchmarks/sequence.py",
    "byo_check.json": "python scripts/check_byo.py path/to/ml-latest-small",
    "byo_sparse_check.json": "python scripts/check_byo.py path/to/ml-latest-small --sessions 8 "
    "--out metrics/byo_sparse_check.json",
    "peer_check.json": "python scripts/check_peers.py",
}
"""The scripts that write the metrics files `dvc repro` does not: a missing table names its
command, so a reader knows what to run."""


class MissingMetricsError(Exception):
    """A metrics file, or a section a table needs, is not there."""


# --------------------------------------------------------------------------------------------
# Reading metrics
# --------------------------------------------------------------------------------------------
class Metrics:
    """The metrics folder, each file read once. `get` raises `MissingMetricsError` for an absent
    file or key, which the block renderer turns into one line instead of a traceback."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._cache: dict[str, Any] = {}

    def file(self, name: str) -> Any:
        if name not in self._cache:
            path = self.folder / name
            try:
                self._cache[name] = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise MissingMetricsError(f"`metrics/{name}` is not there") from None
            except json.JSONDecodeError as error:
                raise MissingMetricsError(f"`metrics/{name}` is not valid JSON ({error})") from None
        return self._cache[name]

    def get(self, name: str, *keys: str, expect: type = dict) -> Any:
        """`metrics/<name>` → keys…, which must be an `expect` (a JSON object unless said
        otherwise); `MissingMetricsError` names the first key not found or the wrong shape."""
        value = self.file(name)
        for depth, key in enumerate(keys):
            if not isinstance(value, dict) or key not in value:
                where = " → ".join(f"`{k}`" for k in keys[: depth + 1])
                raise MissingMetricsError(f"`metrics/{name}` has no {where}")
            value = value[key]
        if not isinstance(value, expect):
            where = "".join(f" → `{k}`" for k in keys)
            shape = {dict: "a JSON object", list: "a JSON list"}.get(expect, expect.__name__)
            raise MissingMetricsError(f"`metrics/{name}`{where} is not {shape}")
        return value

    def optional(self, name: str, *keys: str) -> Any:
        """Like `get`, but any shape, and None where the file or a key is absent."""
        try:
            return self.get(name, *keys, expect=object)
        except MissingMetricsError:
            return None


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------
def model_name(key: str) -> str:
    """The name the CLI shows for a model key, else a few extra keys' names, else the key."""
    return MODEL_NAMES.get(key, EXTRA_NAMES.get(key, key))


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def num(value: Any, places: int = 4) -> str:
    """A metric to `places` decimals; integers as integers with thousands separators; absent
    values as a dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{places}f}"
    return str(value)


def secs(value: Any) -> str:
    """Seconds: whole seconds, a tenth below ten (a stage of 0.4 s is not 0)."""
    if not is_number(value):
        return "—"
    return f"{value:.1f}" if value < 10 else f"{value:,.0f}"


def signed(value: Any, places: int = 4) -> str:
    """A difference, with its sign always shown."""
    return f"{value:+.{places}f}" if is_number(value) else "—"


def share(value: Any, places: int = 1) -> str:
    """A fraction in [0, 1] as a percentage."""
    return f"{100 * value:.{places}f}%" if is_number(value) else "—"


def paired(entry: Mapping[str, Any] | None, places: int = 4) -> str:
    """A paired difference `{ndcg@10_difference, standard_error, z}` as `+d ± se (z 2.1)`."""
    if not isinstance(entry, Mapping) or not is_number(entry.get("ndcg@10_difference")):
        return "—"
    text = signed(entry["ndcg@10_difference"], places)
    if is_number(entry.get("standard_error")):
        text += f" ± {entry['standard_error']:.{places}f}"
    if is_number(entry.get("z")):
        text += f" (z {entry['z']:.2f})"
    return text


def metric_header(key: str) -> str:
    """`ndcg@10` → `NDCG@10`: the metric names a reader knows."""
    name, _, cut = key.partition("@")
    readable = {
        "hr": "HR",
        "ndcg": "NDCG",
        "mrr": "MRR",
        "recall": "Recall",
        "coverage": "coverage",
        "ild": "intra-list diversity",
        "novelty": "novelty",
        "interest_coverage": "interest coverage",
    }.get(name, name)
    return f"{readable}@{cut}" if cut else readable


def cell(text: Any) -> str:
    """A table cell: a `|` inside the text would end the cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], left: int = 1) -> str:
    """A Markdown table; the first `left` columns are text (left-aligned), the rest numbers."""
    rows = [list(row) for row in rows]
    lines = [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "|" + "|".join(":---" if i < left else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


PAIR_HEADER = ("measure", "value")
"""The header of the two-column tables that list one run's numbers."""


def source(*parts: str) -> str:
    """The line under a table that says where its numbers come from."""
    return "<small>From " + "; ".join(parts) + ".</small>"


def bold_if(text: str, condition: bool) -> str:
    return f"**{text}**" if condition else text


def events_label(n_events: Any) -> str:
    """100000 → `0.1M`, 10000000 → `10M`: the sizes the scale benchmark is read by."""
    if not is_number(n_events):
        return str(n_events)
    millions = n_events / 1_000_000
    return f"{millions:g}M" if millions >= 0.1 else f"{n_events / 1000:g}k"


def folded_columns(
    rows: Mapping[str, Mapping[str, Any]], columns: Sequence[str]
) -> list[list[str]]:
    """Group columns equal in every row: with one held-out item per user, recall@k is hr@k,
    and one column headed `HR@10 = Recall@10` says so instead of repeating it."""
    groups: list[list[str]] = []
    for column in columns:
        values = [row.get(column) for row in rows.values()]
        for group in groups:
            if None not in values and [row.get(group[0]) for row in rows.values()] == values:
                group.append(column)
                break
        else:
            groups.append([column])
    return groups


# --------------------------------------------------------------------------------------------
# evaluation.json
# --------------------------------------------------------------------------------------------
METRIC_ORDER = ("hr", "recall", "ndcg", "mrr", "coverage")


def _evaluation_split(metrics: Metrics, split: str, cut: int) -> str:
    rows: dict[str, dict[str, Any]] = metrics.get("evaluation.json", split)
    suffix = f"@{cut}"
    present = {key for row in rows.values() for key in row if key.endswith(suffix)}
    columns = [f"{name}{suffix}" for name in METRIC_ORDER if f"{name}{suffix}" in present]
    columns += sorted(present - set(columns))
    groups = folded_columns(rows, columns)
    header = ["model", *(" = ".join(metric_header(c) for c in group) for group in groups)]
    header.append("users")
    body = [
        [
            bold_if(model_name(model), model == SERVED),
            *(num(row.get(group[0])) for group in groups),
            num(row.get("users")),
        ]
        for model, row in rows.items()
    ]
    return table(header, body) + "\n\n" + source(f"`metrics/evaluation.json` → `{split}`")


def evaluation_test(metrics: Metrics) -> str:
    """Every model on the test split, the metrics at 10."""
    return _evaluation_split(metrics, "test", 10)


def evaluation_validation(metrics: Metrics) -> str:
    """Every model on the validation split, the metrics at 10."""
    return _evaluation_split(metrics, "validation", 10)


def evaluation_test_at_20(metrics: Metrics) -> str:
    """Every model on the test split, the metrics at 20."""
    return _evaluation_split(metrics, "test", 20)


def paired_test(metrics: Metrics) -> str:
    """The served model minus each other model, user by user, on test NDCG@10."""
    rows: dict[str, Any] = metrics.get("evaluation.json", "paired_test")
    body = [
        [model_name(model), paired(entry), num(entry.get("users"))]
        for model, entry in rows.items()
        if isinstance(entry, Mapping)
    ]
    header = ["served model minus", "NDCG@10 difference ± s.e. (z)", "users"]
    return table(header, body) + "\n\n" + source("`metrics/evaluation.json` → `paired_test`")


def _buckets(rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
    seen: list[str] = []
    for by_bucket in rows.values():
        for bucket in by_bucket:
            if bucket not in seen:
                seen.append(bucket)
    return seen


def _bucket_users(rows: Mapping[str, Mapping[str, Any]], bucket: str) -> Any:
    for by_bucket in rows.values():
        entry = by_bucket.get(bucket)
        if isinstance(entry, Mapping) and "users" in entry:
            return entry["users"]
    return None


def _bucket_header(bucket: str, users: Any) -> str:
    # "<=20" reads as "≤20 events"; the number of users in it follows.
    shown = bucket.replace("<=", "≤").replace(">=", "≥")
    return f"{shown} ({num(users)} users)" if users is not None else shown


def evaluation_by_activity(metrics: Metrics) -> str:
    """Test NDCG@10 of every model per activity bucket (training events per user)."""
    rows: dict[str, dict[str, Any]] = metrics.get("evaluation.json", "test_by_activity")
    buckets = _buckets(rows)
    header = ["model", *(_bucket_header(b, _bucket_users(rows, b)) for b in buckets)]
    body = [
        [
            bold_if(model_name(model), model == SERVED),
            *(num((by_bucket.get(b) or {}).get("ndcg@10")) for b in buckets),
        ]
        for model, by_bucket in rows.items()
    ]
    return (
        table(header, body)
        + "\n\n"
        + source("`metrics/evaluation.json` → `test_by_activity` (NDCG@10)")
    )


def _paired_by_activity(metrics: Metrics, key: str) -> str:
    by_bucket: dict[str, dict[str, Any]] = metrics.get("evaluation.json", key)
    buckets = list(by_bucket)
    models: list[str] = []
    for entries in by_bucket.values():
        models += [m for m in entries if m not in models]
    users = {
        bucket: next((e.get("users") for e in entries.values() if isinstance(e, Mapping)), None)
        for bucket, entries in by_bucket.items()
    }
    header = ["served model minus", *(_bucket_header(b, users[b]) for b in buckets)]
    body = [
        [model_name(model), *(paired(by_bucket[b].get(model)) for b in buckets)] for model in models
    ]
    return table(header, body) + "\n\n" + source(f"`metrics/evaluation.json` → `{key}`")


def paired_test_by_activity(metrics: Metrics) -> str:
    """Paired test NDCG@10 differences (served minus each model) per activity bucket."""
    return _paired_by_activity(metrics, "paired_test_by_activity")


def paired_validation_by_activity(metrics: Metrics) -> str:
    """The same on the validation events of the same users."""
    return _paired_by_activity(metrics, "paired_validation_by_activity")


def cold_items(metrics: Metrics) -> str:
    """The cold-item slice: items never in training, ranked among themselves."""
    rows: dict[str, dict[str, Any]] = metrics.get("evaluation.json", "cold_items")
    columns = ["hr@10", "ndcg@10", "mrr@10"]
    header = ["model", *(metric_header(c) for c in columns), "users"]
    body = [
        [
            bold_if(model_name(model), model == SERVED),
            *(num(row.get(c)) for c in columns),
            num(row.get("users")),
        ]
        for model, row in rows.items()
    ]
    note = ""
    items = metrics.optional("preprocess.json", "cold_items")
    if items is not None:
        note = f" and `metrics/preprocess.json` → `cold_items` ({num(items)} items)"
    return table(header, body) + "\n\n" + source(f"`metrics/evaluation.json` → `cold_items`{note}")


def _mean_se(entry: Any, places: int = 3) -> str:
    if not isinstance(entry, Mapping) or not is_number(entry.get("mean")):
        return "—"
    text = f"{entry['mean']:.{places}f}"
    if is_number(entry.get("standard_error")):
        text += f" ± {entry['standard_error']:.{places}f}"
    return text


def beyond_accuracy(metrics: Metrics) -> str:
    """Test NDCG@10 beside diversity, novelty, interest coverage and HR@10 split into events in
    a topic new to the user (novel) and the rest (familiar)."""
    rows: dict[str, dict[str, Any]] = metrics.get("evaluation.json", "beyond_accuracy", "test")
    test = metrics.optional("evaluation.json", "test") or {}

    def users(kind: str) -> Any:
        for row in rows.values():
            entry = (row.get(kind) or {}).get("hr@10")
            if isinstance(entry, Mapping) and "users" in entry:
                return entry["users"]
        return None

    novel, familiar = users("novel_events"), users("familiar_events")
    header = [
        "model",
        "NDCG@10",
        "intra-list diversity@10",
        "novelty@10",
        "interest coverage@10",
        f"HR@10, novel events ({num(novel)})" if novel is not None else "HR@10, novel events",
        f"HR@10, familiar events ({num(familiar)})"
        if familiar is not None
        else "HR@10, familiar events",
    ]
    body = [
        [
            bold_if(model_name(model), model == SERVED),
            num((test.get(model) or {}).get("ndcg@10")),
            num(row.get("ild@10"), 3),
            num(row.get("novelty@10"), 2),
            num(row.get("interest_coverage@10"), 3),
            _mean_se((row.get("novel_events") or {}).get("hr@10")),
            _mean_se((row.get("familiar_events") or {}).get("hr@10")),
        ]
        for model, row in rows.items()
    ]
    return (
        table(header, body)
        + "\n\n"
        + source(
            "`metrics/evaluation.json` → `beyond_accuracy` → `test` "
            "(HR@10 as mean ± standard error over the events)",
            "NDCG@10 from `test`",
        )
    )


NEXT_TOPIC_NAMES = {
    "timeline_and_similarity": "timelines and language-model similarity (as tuned)",
    "timeline_only": "timelines only",
    "take_up_rate_only": "how often anyone takes the topic up",
}


def next_new_topic(metrics: Metrics) -> str:
    """How well the topic ranking predicts the topic of each novel test event."""
    rows: dict[str, dict[str, Any]] = metrics.get("evaluation.json", "next_new_topic")
    header = ["topics ranked by", "events", "hit@3 ± s.e.", "mean rank", "MRR"]
    body = []
    for variant, row in rows.items():
        hit = share(row.get("hit@3"))
        if is_number(row.get("hit@3_standard_error")):
            hit += f" ± {share(row['hit@3_standard_error'])}"
        body.append(
            [
                NEXT_TOPIC_NAMES.get(variant, variant),
                num(row.get("events")),
                hit,
                num(row.get("mean_rank"), 1),
                num(row.get("mrr"), 3),
            ]
        )
    randoms = [row for row in rows.values() if "random_hit@3" in row]
    if randoms:
        row = randoms[0]
        body.append(
            [
                "a random order",
                num(row.get("events")),
                share(row.get("random_hit@3")),
                num(row.get("random_mean_rank"), 1),
                "—",
            ]
        )
    return table(header, body) + "\n\n" + source("`metrics/evaluation.json` → `next_new_topic`")


def evaluation_tuning(metrics: Metrics) -> str:
    """The peers' settings chosen on validation: EASE's λ and ItemKNN's neighbourhood size."""
    tuning: dict[str, Any] = metrics.get("evaluation.json", "tuning")
    parts = []
    grids = (
        ("ease_reg", "ease_validation_ndcg@10", "EASE λ"),
        ("itemknn_neighbors", "itemknn_validation_ndcg@10", "ItemKNN neighbours"),
    )
    for chosen_key, grid_key, label in grids:
        grid = tuning.get(grid_key)
        if not isinstance(grid, Mapping):
            continue
        chosen = tuning.get(chosen_key)
        body = [
            [
                bold_if(f"{float(value):g}", is_number(chosen) and float(value) == chosen),
                bold_if(num(score), is_number(chosen) and float(value) == chosen),
            ]
            for value, score in grid.items()
        ]
        parts.append(table([label, "validation NDCG@10"], body, left=0))
    skipped = tuning.get("skipped")
    if skipped:
        parts.append(f"Skipped: {cell(json.dumps(skipped))}")
    if not parts:
        raise MissingMetricsError("`metrics/evaluation.json` → `tuning` has no grids")
    return (
        "\n\n".join(parts)
        + "\n\n"
        + source("`metrics/evaluation.json` → `tuning` (the chosen setting in bold)")
    )


BY_CLUSTER_MODELS = (
    "popularity",
    "ease",
    "als",
    "sasrec",
    "finetuned",
    "text_sequence",
    "fused",
    "multi_interest",
)
"""The models shown per interest group: every model would make a table too wide to read;
`metrics/evaluation_by_cluster.json` holds them all."""


def evaluation_by_cluster(metrics: Metrics) -> str:
    """Test NDCG@10 per interest group for the main models."""
    data: dict[str, dict[str, Any]] = metrics.get("evaluation_by_cluster.json")
    models = [m for m in BY_CLUSTER_MODELS if m in data] or list(data)[:8]
    groups: list[str] = []
    for model in models:
        groups += [g for g in data[model] if g not in groups]
    header = ["interest group", "users", *(model_name(m) for m in models)]
    body = []
    for group in groups:
        users = next(
            (data[m][group].get("users") for m in models if group in data[m]),
            None,
        )
        body.append(
            [
                group,
                num(users),
                *(num((data[m].get(group) or {}).get("ndcg@10")) for m in models),
            ]
        )
    return (
        table(header, body)
        + "\n\n"
        + source("`metrics/evaluation_by_cluster.json` (test NDCG@10; every model is in the file)")
    )


# --------------------------------------------------------------------------------------------
# preprocess.json, finetune.json, sequence.json
# --------------------------------------------------------------------------------------------
def summary(
    data: Mapping[str, Any],
    labels: Sequence[tuple[str, str, Callable[[Any], str]]],
    rest: bool = True,
) -> list[list[str]]:
    """(what, value) rows for the keys in `labels` that are present, in that order, then (when
    `rest`) any other scalar keys under their own names: a key added later still shows."""
    rows = [[label, fmt(data[key])] for key, label, fmt in labels if key in data]
    if rest:
        known = {key for key, _, _ in labels}
        rows += [
            [f"`{key}`", num(value)]
            for key, value in data.items()
            if key not in known and (is_number(value) or isinstance(value, str | bool))
        ]
    return rows


def preprocess_summary(metrics: Metrics) -> str:
    """What preprocess read, dropped and kept, and the split sizes."""
    data: dict[str, Any] = metrics.get("preprocess.json")
    labels: list[tuple[str, str, Callable[[Any], str]]] = [
        ("source", "source", str),
        ("strategy", "split", lambda v: f"`{v}`"),
        ("raw_interactions", "events read", num),
        ("users", "users kept", num),
        ("items", "items kept", num),
        ("train_interactions", "training events", num),
        ("validation_interactions", "validation events", num),
        ("test_interactions", "test events", num),
        ("cold_items", "cold items (never in training)", num),
        ("cold_interactions", "events on cold items", num),
    ]
    dropped = [key for key in data if key.startswith("dropped_")]
    rows = summary(data, labels, rest=False)
    rows += [
        [f"dropped: {key.removeprefix('dropped_').replace('_', ' ')}", num(data[key])]
        for key in dropped
    ]
    return table(PAIR_HEADER, rows) + "\n\n" + source("`metrics/preprocess.json`")


def finetune_summary(metrics: Metrics) -> str:
    """The fine-tuning run: pairs, steps, speed and the in-training validation metric."""
    data: dict[str, Any] = metrics.get("finetune.json")
    rows = summary(
        data,
        [
            ("training_pairs", "training pairs (history → next item)", num),
            ("steps", "steps", num),
            ("device", "device", str),
            ("train_seconds", "training time", lambda v: f"{v:.0f} s"),
            ("steps_per_second", "steps per second", lambda v: f"{v:.2f}"),
            ("eval_users", "users in the in-training validation metric", num),
        ],
        rest=False,
    )
    validation = data.get("validation")
    if isinstance(validation, Mapping):
        before, after = validation.get("baseline") or {}, validation.get("final") or {}
        for metric in ("ndcg@10", "hr@10"):
            if metric in before or metric in after:
                rows.append(
                    [
                        f"validation {metric_header(metric)}, before → after",
                        f"{num(before.get(metric), 3)} → {num(after.get(metric), 3)}",
                    ]
                )
    return table(PAIR_HEADER, rows) + "\n\n" + source("`metrics/finetune.json`")


def sequence_training(metrics: Metrics) -> str:
    """How the two sequence models trained: epochs, early stopping, steps, time."""
    data: dict[str, dict[str, Any]] = metrics.get("sequence.json")
    names = {"sasrec": "SASRec", "text": "recli sequence model"}
    header = [
        "model",
        "epochs run",
        "best epoch",
        "steps",
        "sampled negatives",
        "validation NDCG@10",
        "seconds",
    ]
    body = [
        [
            names.get(model, model_name(model)),
            num(row.get("epochs")),
            num(row.get("best_epoch")),
            num(row.get("steps")),
            "none (full softmax)" if row.get("negatives") == 0 else num(row.get("negatives")),
            num(row.get("validation_ndcg@10")),
            secs(row.get("seconds")),
        ]
        for model, row in data.items()
        if isinstance(row, Mapping)
    ]
    return table(header, body) + "\n\n" + source("`metrics/sequence.json`")


# --------------------------------------------------------------------------------------------
# cluster.json, interests.json
# --------------------------------------------------------------------------------------------
def cluster_summary(metrics: Metrics) -> str:
    """The interest groups: how many, how tight, how well their labels fit their members."""
    data: dict[str, Any] = metrics.get("cluster.json")
    rows = summary(
        data,
        [
            ("k", "interest groups (k)", num),
            ("users", "users", num),
            ("users_without_history", "users without training history", num),
            ("silhouette", "cosine silhouette", lambda v: num(v, 3)),
            ("size_min", "smallest group (users)", num),
            ("size_median", "median group (users)", lambda v: f"{v:g}"),
            ("size_max", "largest group (users)", num),
            ("largest_share", "largest group's share of users", share),
            ("label_agreement", "label agreement", lambda v: num(v, 3)),
            (
                "label_agreement_random",
                "label agreement with members shuffled among the groups (floor)",
                lambda v: num(v, 3),
            ),
            ("labels_distinct", "distinct labels", num),
            ("labels_with_an_era", "labels with a release era", num),
            ("labels_with_a_title", "labels told apart by a title", num),
        ],
    )
    return table(PAIR_HEADER, rows) + "\n\n" + source("`metrics/cluster.json`")


def interests_summary(metrics: Metrics) -> str:
    """Each user's own interests: how many, how heavy, how well their labels fit."""
    data: dict[str, Any] = metrics.get("interests.json")
    rows = summary(
        data,
        [
            ("users", "users", num),
            ("users_without_events", "users without events", num),
            ("interests", "interests in all", num),
            ("interests_per_user_median", "interests per user, median", lambda v: f"{v:g}"),
            ("interests_per_user_mean", "interests per user, mean", lambda v: num(v, 2)),
            (
                "top_interest_weight_median",
                "weight of a user's heaviest interest, median",
                lambda v: num(v, 2),
            ),
            (
                "label_agreement",
                "label agreement: share of an interest's items carrying one of its label terms",
                lambda v: num(v, 3),
            ),
            (
                "label_agreement_shuffled_interests",
                "the same with each user's items dealt at random across their interests (floor)",
                lambda v: num(v, 3),
            ),
            ("labels_led_by_an_era", "labels led by a release era", share),
            ("labels_from_a_title", "labels told apart by a title", share),
        ],
    )
    counts = data.get("users_by_interest_count")
    if isinstance(counts, Mapping) and counts:
        rows.insert(
            min(5, len(rows)),
            [
                "users with " + " / ".join(str(n) for n in counts) + " interests",
                " / ".join(num(v) for v in counts.values()),
            ],
        )
    return table(PAIR_HEADER, rows) + "\n\n" + source("`metrics/interests.json`")


def topics_summary(metrics: Metrics) -> str:
    """The topics exploration suggests, and how many held-out events are in a new topic."""
    data: dict[str, Any] = metrics.get("interests.json", "topics")
    rows = summary(
        data,
        [
            ("topics", "topics", num),
            ("distinct_labels", "distinct labels", num),
            ("label_agreement", "label agreement", lambda v: num(v, 3)),
            (
                "label_agreement_shuffled_items",
                "label agreement with items shuffled among the topics (floor)",
                lambda v: num(v, 3),
            ),
        ],
    )
    sizes = data.get("items_per_topic")
    if isinstance(sizes, Mapping):
        rows.insert(
            1,
            [
                "items per topic, min / median / max",
                " / ".join(f"{sizes[k]:g}" for k in ("min", "median", "max") if k in sizes),
            ],
        )
    novel = data.get("novel_events")
    if isinstance(novel, Mapping):
        for split, entry in novel.items():
            if isinstance(entry, Mapping):
                rows.append(
                    [
                        f"{split} events in a topic new to the user (novel)",
                        f"{num(entry.get('novel'))} of {num(entry.get('events'))}",
                    ]
                )
    return table(PAIR_HEADER, rows) + "\n\n" + source("`metrics/interests.json` → `topics`")


# --------------------------------------------------------------------------------------------
# index.json
# --------------------------------------------------------------------------------------------
def index_summary(metrics: Metrics) -> str:
    """What the index stage chose on validation and how the served search performs."""
    data: dict[str, Any] = metrics.get("index.json")
    rows = summary(
        data,
        [
            ("text_weight", "text weight (share of the fused vector)", lambda v: f"{v:g}"),
            ("sequence_model", "sequence model on the behaviour side", model_name),
            (
                "sequence_share",
                "its share of the behaviour side (the rest: ALS)",
                lambda v: f"{v:g}",
            ),
            (
                "linear_share",
                "reduced-rank EASE's share of the behaviour side",
                lambda v: f"{v:g}",
            ),
            ("search_k", "Annoy search effort (`search_k`)", num),
            ("recall_target", "recall@10 target", lambda v: f"{v:g}"),
            (
                "ann_recall@10",
                "recall@10 served, against exact search (reporting half)",
                lambda v: num(v, 3),
            ),
            ("search_k_ladder_exhausted", "every effort tried fell short", num),
            ("users_measured", "users measured", num),
            ("ann_query_ms_median", "Annoy query, median", lambda v: f"{v:.2f} ms"),
            ("exact_query_ms_median", "exact search (numpy), median", lambda v: f"{v:.2f} ms"),
        ],
        rest=False,
    )
    return table(PAIR_HEADER, rows) + "\n\n" + source("`metrics/index.json`")


def index_recall_ladder(metrics: Metrics) -> str:
    """Recall@10 of each search effort tried on the tuning half of the users."""
    ladder: dict[str, Any] = metrics.get("index.json", "tuning_recall@10_by_search_k")
    errors = metrics.optional("index.json", "tuning_recall@10_standard_error_by_search_k") or {}
    chosen = metrics.optional("index.json", "search_k")
    body = []
    for effort, recall in ladder.items():
        served = is_number(chosen) and str(chosen) == str(effort)
        text = num(recall, 3)
        if is_number(errors.get(effort)):
            text += f" ± {errors[effort]:.3f}"
        body.append([bold_if(num(int(effort)), served), bold_if(text, served)])
    return (
        table(["search_k", "recall@10 (tuning half)"], body, left=0)
        + "\n\n"
        + source(
            "`metrics/index.json` → `tuning_recall@10_by_search_k` and its standard errors "
            "(the served effort in bold)"
        )
    )


def _fusion_grid(data: Mapping[str, Any]) -> tuple[str, dict[str, float]]:
    for key, value in data.items():
        if key.startswith("validation_ndcg@10_by_text_weight") and isinstance(value, Mapping):
            return key, value
    raise MissingMetricsError(
        "`metrics/index.json` has no `validation_ndcg@10_by_text_weight…` grid"
    )


def fusion_grid(metrics: Metrics) -> str:
    """For each behaviour side tried, the text weight validation liked best and its score."""
    data: dict[str, Any] = metrics.get("index.json")
    key, grid = _fusion_grid(data)
    best: dict[tuple[str, ...], tuple[float, float]] = {}
    for setting, score in grid.items():
        weight, *side = setting.split("/")
        side_key = tuple(side)
        if side_key not in best or score > best[side_key][1]:
            best[side_key] = (float(weight), score)

    def number(text: str) -> float | None:
        try:
            return float(text)
        except ValueError:
            return None

    served = (
        data.get("text_weight"),
        data.get("sequence_model"),
        data.get("sequence_share"),
        data.get("linear_share"),
    )
    body = []
    for side, (weight, score) in best.items():
        model = side[0] if side else ""
        share_value = number(side[1]) if len(side) > 1 else None
        linear_value = number(side[2]) if len(side) > 2 else None
        is_served = (weight, model, share_value, linear_value) == served
        sequence = "— (ALS alone)" if not share_value else model_name(model)
        body.append(
            [
                bold_if(sequence, is_served),
                bold_if(f"{share_value:g}" if share_value is not None else "—", is_served),
                bold_if(f"{linear_value:g}" if linear_value is not None else "—", is_served),
                bold_if(f"{weight:g}", is_served),
                bold_if(num(score), is_served),
            ]
        )
    header = [
        "sequence model",
        "its share of the behaviour side",
        "reduced-rank EASE's share",
        "best text weight",
        "validation NDCG@10",
    ]
    return (
        table(header, body)
        + "\n\n"
        + source(
            f"`metrics/index.json` → `{key}`, best text weight per behaviour side "
            "(the served setting in bold; a dash: not part of that search)"
        )
    )


def multi_interest_tuning(metrics: Metrics) -> str:
    """The multi-interest model's settings tried on validation."""
    data: dict[str, Any] = metrics.get("index.json", "multi_interest")
    grid = next(
        (v for k, v in data.items() if k.startswith("validation_by") and isinstance(v, Mapping)),
        None,
    )
    if grid is None:
        raise MissingMetricsError("`metrics/index.json` → `multi_interest` has no validation grid")
    served = (data.get("whole_user_share"), data.get("pull"))
    body = []
    for setting, row in grid.items():
        share_text, _, pull_text = setting.partition("/")
        is_served = (float(share_text), float(pull_text or "nan")) == served
        body.append(
            [
                bold_if(f"{float(share_text):g}", is_served),
                bold_if(f"{float(pull_text):g}" if pull_text else "—", is_served),
                bold_if(num(row.get("ndcg@10")), is_served),
                bold_if(num(row.get("interest_coverage@10"), 3), is_served),
            ]
        )
    single = data.get("single_vector_validation_ndcg@10")
    if is_number(single):
        body.append(["single vector (fused)", "—", num(single), "—"])
    header = ["whole-user share", "pull", "validation NDCG@10", "interest coverage@10"]
    return (
        table(header, body, left=0)
        + "\n\n"
        + source("`metrics/index.json` → `multi_interest` (the served setting in bold)")
    )


def explore_tuning(metrics: Metrics) -> str:
    """Exploration's two weights, tuned on the novel validation events."""
    data: dict[str, Any] = metrics.get("index.json", "explore")
    parts = []
    grids = (
        (
            "novel_validation_topic_mrr_by_similarity_weight",
            "similarity_weight",
            "similarity weight",
            "topic MRR",
        ),
        (
            "novel_validation_ndcg@10_by_topic_weight",
            "topic_weight",
            "topic weight",
            "NDCG@10",
        ),
    )
    for grid_key, chosen_key, label, metric in grids:
        grid = data.get(grid_key)
        if not isinstance(grid, Mapping):
            continue
        chosen = data.get(chosen_key)
        body = []
        for value, score in grid.items():
            is_chosen = is_number(chosen) and float(value) == chosen
            body.append([bold_if(f"{float(value):g}", is_chosen), bold_if(num(score), is_chosen)])
        parts.append(table([label, f"{metric}, novel validation events"], body, left=0))
    if not parts:
        raise MissingMetricsError("`metrics/index.json` → `explore` has no grids")
    events = data.get("novel_validation_events")
    counted = f", over {num(events)} novel validation events" if events is not None else ""
    return (
        "\n\n".join(parts)
        + "\n\n"
        + source(f"`metrics/index.json` → `explore` (the chosen weight in bold{counted})")
    )


# --------------------------------------------------------------------------------------------
# peer_check.json
# --------------------------------------------------------------------------------------------
PROTOCOL_NAMES = {
    "leave_last_out": "leave-last-out",
    "random_holdout": "random holdout 70/10/20",
    "leave_last_out_full": "leave-last-out, every stage",
}


def _mean_sd(entry: Any, places: int = 3) -> str:
    if not isinstance(entry, Mapping) or not is_number(entry.get("mean")):
        return "—"
    text = f"{entry['mean']:.{places}f}"
    return text + (f" ± {entry['sd']:.{places}f}" if is_number(entry.get("sd")) else "")


def peer_check_summary(metrics: Metrics) -> str:
    """The peers under the reference protocols over several split seeds: mean ± sd."""
    data: dict[str, Any] = metrics.get("peer_check.json")
    protocols = [
        p
        for p, v in data.items()
        if isinstance(v, Mapping)
        and isinstance(v.get("summary"), Mapping)
        and p != "leave_last_out_full"
    ]
    if not protocols:
        raise MissingMetricsError("`metrics/peer_check.json` has no protocol summaries")
    models: list[str] = []
    for p in protocols:
        models += [m for m in data[p]["summary"] if m not in models]
    header = ["protocol", "seeds", *(model_name(m) for m in models)]
    body = [
        [
            PROTOCOL_NAMES.get(p, p),
            ", ".join(str(r.get("seed")) for r in data[p].get("runs", [])) or "—",
            *(_mean_sd(data[p]["summary"].get(m)) for m in models),
        ]
        for p in protocols
    ]
    fraction = data.get("cold_item_fraction")
    note = f", cold-item fraction {fraction:g}" if is_number(fraction) else ""
    metric = data.get("metric", "test NDCG@10")
    return (
        table(header, body, left=2)
        + "\n\n"
        + source(f"`metrics/peer_check.json` ({metric}, mean ± sd over the seeds{note})")
    )


FULL_CHECK_MODELS = (
    "popularity",
    "itemknn",
    "ease",
    "als",
    "sasrec",
    "finetuned",
    "text_sequence",
    "fused",
)


def peer_check_full(metrics: Metrics) -> str:
    """Every stage per split seed: each model's test NDCG@10 and the served model against the
    best peer."""
    data: dict[str, Any] = metrics.get("peer_check.json", "leave_last_out_full")
    runs = data.get("runs") or []
    if not runs:
        raise MissingMetricsError("`metrics/peer_check.json` → `leave_last_out_full` has no runs")
    present = {m for run in runs for m in run.get("test", {})}
    models = [m for m in FULL_CHECK_MODELS if m in present]
    header = [
        "seed",
        *(model_name(m) for m in models),
        "served ÷ best peer",
        "paired served − best peer",
    ]
    body = []
    for run in runs:
        test = run.get("test", {})
        ratio = run.get("served_over_best_peer")
        body.append(
            [
                str(run.get("seed")),
                *(bold_if(num(test.get(m)), m == SERVED) for m in models),
                f"×{ratio:.3f}" if is_number(ratio) else "—",
                paired(run.get("paired_vs_best_peer")),
            ]
        )
    overall = data.get("summary")
    if isinstance(overall, Mapping):
        means = overall.get("models") or {}
        ratio = overall.get("served_over_best_peer")
        difference = overall.get("mean_difference")
        spread = overall.get("difference_sd_across_seeds")
        body.append(
            [
                "mean",
                *(bold_if(num((means.get(m) or {}).get("mean")), m == SERVED) for m in models),
                f"×{ratio:.3f}" if is_number(ratio) else "—",
                signed(difference)
                + (f" (sd {spread:.4f} across seeds)" if is_number(spread) else ""),
            ]
        )
    return (
        table(header, body)
        + "\n\n"
        + source("`metrics/peer_check.json` → `leave_last_out_full` (test NDCG@10)")
    )


def peer_check_full_summary(metrics: Metrics) -> str:
    """The across-seed verdicts: best peer, seeds ahead, the lightest users."""
    overall: dict[str, Any] = metrics.get("peer_check.json", "leave_last_out_full", "summary")
    runs = metrics.optional("peer_check.json", "leave_last_out_full", "runs") or []
    rows = []
    if "best_peer" in overall:
        rows.append(["best peer", model_name(overall["best_peer"])])
    if "seeds_served_ahead" in overall:
        rows.append(
            [
                "seeds where the served model is ahead",
                f"{overall['seeds_served_ahead']} of {len(runs)}",
            ]
        )
    if is_number(overall.get("served_over_best_peer")):
        rows.append(["served ÷ best peer, on the mean", f"×{overall['served_over_best_peer']:.3f}"])
    light = overall.get("lightest_users")
    if isinstance(light, Mapping):
        bucket = str(light.get("bucket", "")).replace("<=", "≤")
        rows.append(
            [
                f"lightest users ({bucket} training events): served − that bucket's best peer, "
                "mean over seeds",
                signed(light.get("mean_difference_vs_bucket_best_peer"))
                + (
                    f" (sd {light['difference_sd_across_seeds']:.4f})"
                    if is_number(light.get("difference_sd_across_seeds"))
                    else ""
                ),
            ]
        )
        if "seeds_served_ahead_or_level" in light:
            rows.append(
                [
                    "lightest users: seeds where the served model is ahead",
                    f"{light['seeds_served_ahead_or_level']} of {num(light.get('seeds'))}",
                ]
            )
    return (
        table(PAIR_HEADER, rows)
        + "\n\n"
        + source("`metrics/peer_check.json` → `leave_last_out_full` → `summary`")
    )


def peer_check_lightest(metrics: Metrics) -> str:
    """The lightest users per split seed: the served model against that bucket's best peer."""
    runs = metrics.get("peer_check.json", "leave_last_out_full", "runs", expect=list)
    body = []
    for run in runs:
        light = run.get("lightest_users")
        if not isinstance(light, Mapping):
            continue
        body.append(
            [
                str(run.get("seed")),
                str(light.get("bucket", "")).replace("<=", "≤"),
                num(light.get("users")),
                num(light.get("served")),
                model_name(str(light.get("best_peer"))),
                num(light.get("best_peer_score")),
                paired(light.get("paired_vs_best_peer")),
            ]
        )
    if not body:
        raise MissingMetricsError("`metrics/peer_check.json` runs have no `lightest_users`")
    header = [
        "seed",
        "training events",
        "users",
        "served",
        "best peer there",
        "its NDCG@10",
        "paired served − best peer",
    ]
    return (
        table(header, body, left=2)
        + "\n\n"
        + source("`metrics/peer_check.json` → `leave_last_out_full` → `runs` → `lightest_users`")
    )


# --------------------------------------------------------------------------------------------
# byo_check.json, byo_sparse_check.json
# --------------------------------------------------------------------------------------------
def _byo_models(metrics: Metrics, name: str) -> str:
    data: dict[str, Any] = metrics.get(name)
    test = data.get("test_ndcg@10") or {}
    validation = data.get("validation_ndcg@10") or {}
    cold = data.get("cold_items_hr@10") or {}
    if not test and not validation:
        raise MissingMetricsError(f"`metrics/{name}` has no `test_ndcg@10`")
    models = list(test) + [m for m in validation if m not in test]
    body = [
        [
            bold_if(model_name(m), m == SERVED),
            bold_if(num(test.get(m)), m == SERVED),
            num(validation.get(m)),
            num(cold.get(m), 3) if m in cold else "—",
        ]
        for m in models
    ]
    if "random" in cold:
        body.append([model_name("random"), "—", "—", num(cold["random"], 3)])
    header = ["model", "test NDCG@10", "validation NDCG@10", "cold-item HR@10"]
    return (
        table(header, body)
        + "\n\n"
        + source(f"`metrics/{name}` → `test_ndcg@10`, `validation_ndcg@10`, `cold_items_hr@10`")
    )


def _byo_summary(metrics: Metrics, name: str) -> str:
    data: dict[str, Any] = metrics.get(name)
    rows: list[list[str]] = []
    if "data" in data:
        rows.append(["data", str(data["data"])])
    pre = data.get("preprocess")
    if isinstance(pre, Mapping):
        for key, label in (
            ("users", "users"),
            ("items", "items"),
            ("train_interactions", "training events"),
            ("cold_items", "cold items"),
        ):
            if key in pre:
                rows.append([label, num(pre[key])])
        dropped = {k: v for k, v in pre.items() if k.startswith("dropped_") and v}
        for key, value in dropped.items():
            rows.append([f"dropped: {key.removeprefix('dropped_').replace('_', ' ')}", num(value)])
    if "best_peer" in data:
        rows.append(["best peer", model_name(data["best_peer"])])
    if is_number(data.get("served_over_best_peer")):
        rows.append(["served ÷ best peer", f"×{data['served_over_best_peer']:.3f}"])
    if isinstance(data.get("paired_vs_best_peer"), Mapping):
        entry = data["paired_vs_best_peer"]
        rows.append(
            [
                f"paired served − best peer ({num(entry.get('users'))} users)",
                paired(entry),
            ]
        )
    fusion = data.get("fusion")
    if isinstance(fusion, Mapping):
        rows += summary(
            fusion,
            [
                ("text_weight", "text weight chosen", lambda v: f"{v:g}"),
                ("sequence_model", "sequence model chosen", model_name),
                ("sequence_share", "its share of the behaviour side", lambda v: f"{v:g}"),
                ("linear_share", "reduced-rank EASE's share", lambda v: f"{v:g}"),
            ],
            rest=False,
        )
    if is_number(data.get("ann_recall@10")):
        rows.append(["ANN recall@10", num(data["ann_recall@10"], 3)])
    if "search_k" in data:
        rows.append(["search_k", num(data["search_k"])])
    return table(PAIR_HEADER, rows) + "\n\n" + source(f"`metrics/{name}`")


def byo_check(metrics: Metrics) -> str:
    """Every model on ml-latest-small read through the bring-your-own path."""
    return _byo_models(metrics, "byo_check.json")


def byo_check_summary(metrics: Metrics) -> str:
    """What the ml-latest-small check read, chose and found."""
    return _byo_summary(metrics, "byo_check.json")


def byo_sparse_check(metrics: Metrics) -> str:
    """Every model on the sparse data made from ml-latest-small."""
    return _byo_models(metrics, "byo_sparse_check.json")


def byo_sparse_check_summary(metrics: Metrics) -> str:
    """What the sparse check read, chose and found."""
    return _byo_summary(metrics, "byo_sparse_check.json")


def byo_seconds(metrics: Metrics) -> str:
    """Seconds per stage of both bring-your-own checks (only the stages each run timed)."""
    columns = []
    for name in ("byo_check.json", "byo_sparse_check.json"):
        seconds = metrics.optional(name, "seconds")
        if isinstance(seconds, Mapping):
            label = metrics.optional(name, "data") or name
            columns.append((str(label), seconds))
    if not columns:
        raise MissingMetricsError(
            "neither `metrics/byo_check.json` nor `metrics/byo_sparse_check.json` is there"
        )
    stages: list[str] = []
    for _, seconds in columns:
        stages += [s for s in seconds if s not in stages]
    body = [
        [f"`{stage}`", *(secs(seconds.get(stage)) for _, seconds in columns)] for stage in stages
    ]
    body.append(
        [
            "all stages timed",
            *(secs(sum(v for v in seconds.values() if is_number(v))) for _, seconds in columns),
        ]
    )
    return (
        table(["stage", *(f"{label} (s)" for label, _ in columns)], body)
        + "\n\n"
        + source(
            "`metrics/byo_check.json` and `metrics/byo_sparse_check.json` → `seconds` "
            "(a dash: not run)"
        )
    )


# --------------------------------------------------------------------------------------------
# bench_scale.json
# --------------------------------------------------------------------------------------------
def bench_scale_stages(metrics: Metrics) -> str:
    """Seconds and peak memory per stage at each size, and the log-log slope against events."""
    data: dict[str, Any] = metrics.get("bench_scale.json")
    sizes = data.get("sizes") or []
    if not sizes:
        raise MissingMetricsError("`metrics/bench_scale.json` has no `sizes`")
    stages = list(data.get("stages") or [])
    for size in sizes:
        stages += [s for s in size.get("stages", {}) if s not in stages]
    slopes = data.get("slopes") or {}
    header = ["stage"]
    for size in sizes:
        label = events_label(size.get("n_events"))
        header += [f"{label} s", f"{label} MiB"]
    header += ["slope s", "slope MiB"]

    def run_cells(entry: Any) -> list[str]:
        if not isinstance(entry, Mapping):
            return ["—", "—"]
        if entry.get("status", "ok") != "ok":
            return [str(entry.get("status")), "—"]
        return [secs(entry.get("seconds")), num(entry.get("peak_rss_mib"), 0)]

    body = []
    for stage in stages:
        row = [f"`{stage}`"]
        for size in sizes:
            row += run_cells(size.get("stages", {}).get(stage))
        slope = slopes.get(stage) or {}
        row += [num(slope.get("seconds"), 2), num(slope.get("peak_rss_mib"), 2)]
        body.append(row)
    total = ["total"]
    for size in sizes:
        totals = size.get("totals") or {}
        total += [secs(totals.get("seconds")), num(totals.get("peak_rss_mib"), 0)]
    slope = slopes.get("total") or {}
    total += [num(slope.get("seconds"), 2), num(slope.get("peak_rss_mib"), 2)]
    body.append(total)
    return (
        table(header, body)
        + "\n\n"
        + source(
            "`metrics/bench_scale.json` → `sizes` → `stages` and `slopes` "
            "(wall seconds, peak resident MiB; total memory is the largest stage's peak)"
        )
    )


def bench_scale_runs(metrics: Metrics) -> str:
    """The synthetic data at each size and the code it ran."""
    sizes = metrics.get("bench_scale.json", "sizes", expect=list)
    header = ["events", "users", "items", "input MiB", "code", "every stage", "minutes", "peak MiB"]
    body = []
    for size in sizes:
        totals = size.get("totals") or {}
        body.append(
            [
                num(size.get("n_events")),
                num(size.get("n_users")),
                num(size.get("n_items")),
                num(size.get("input_mib"), 1),
                f"`{size['code']}`" if "code" in size else "—",
                num(size.get("all_stages")),
                num(totals.get("minutes"), 1),
                num(totals.get("peak_rss_mib"), 0),
            ]
        )
    return table(header, body, left=0) + "\n\n" + source("`metrics/bench_scale.json` → `sizes`")


TARGET_NAMES = {
    "max_total_minutes_at_10M": ("every stage at 10M events", "minutes"),
    "max_peak_gib": ("peak memory of any stage", "GiB"),
    "max_slope": ("steepest log-log slope against events", ""),
}


def bench_scale_targets(metrics: Metrics) -> str:
    """The benchmark's targets against what it measured."""
    data: dict[str, Any] = metrics.get("bench_scale.json")
    targets = data.get("targets") or {}
    measured = data.get("measured") or {}
    meets = data.get("meets") or {}
    if not targets:
        raise MissingMetricsError("`metrics/bench_scale.json` has no `targets`")
    body = []
    for key, target in targets.items():
        label, unit = TARGET_NAMES.get(key, (key, ""))
        value = measured.get(key)
        shown = num(value, 2)
        if key == "max_slope" and measured.get("max_slope_of"):
            shown += f" ({measured['max_slope_of']})"
        met = meets.get(key)
        body.append(
            [
                label,
                f"≤ {target:g} {unit}".rstrip(),
                f"{shown} {unit}".rstrip() if value is not None else "—",
                "met" if met is True else "missed" if met is False else "—",
            ]
        )
    return (
        table(["target", "limit", "measured", ""], body)
        + "\n\n"
        + source("`metrics/bench_scale.json` → `targets`, `measured`, `meets`")
    )


def bench_scale_machine(metrics: Metrics) -> str:
    """The machine the scale benchmark ran on."""
    machine: dict[str, Any] = metrics.get("bench_scale.json", "machine")
    rows = summary(
        machine,
        [
            ("cpu_model", "CPU", str),
            ("cpu_count", "cores", num),
            ("cpus_usable", "cores usable", num),
            ("memory_total_gib", "memory", lambda v: f"{v:.1f} GiB"),
            ("accelerator", "accelerator", str),
            ("python", "Python", str),
            ("torch", "torch", str),
            ("numpy", "numpy", str),
            ("polars", "polars", str),
            ("platform", "platform", str),
        ],
        rest=False,
    )
    return table(PAIR_HEADER, rows) + "\n\n" + source("`metrics/bench_scale.json` → `machine`")


# --------------------------------------------------------------------------------------------
# bench_recommend.json
# --------------------------------------------------------------------------------------------
def _ms(value: Any, places: int = 1) -> str:
    return f"{value:.{places}f} ms" if is_number(value) else "—"


def bench_recommend(metrics: Metrics) -> str:
    """`recli recommend`'s start-up against the bare imports it cannot avoid, and a query."""
    data: dict[str, Any] = metrics.get("bench_recommend.json")
    rows = []
    if "baseline_ms_median" in data:
        rows.append(
            [f"`{data.get('baseline_command', 'the baseline')}`", _ms(data["baseline_ms_median"])]
        )
    if "recommend_ms_median" in data:
        text = _ms(data["recommend_ms_median"])
        if is_number(data.get("ratio")):
            text += f" (×{data['ratio']:.2f} the baseline"
            if is_number(data.get("target_ratio")):
                text += f"; target ≤ ×{data['target_ratio']:g}"
            text += ")"
        command = data.get("recommend_command", "recli recommend")
        rows.append([f"`{command}` (whole process)", text])
    if "typer_table_floor_ms_median" in data:
        rows.append(
            [
                "a bare Typer command printing a 10-row rich table, for reference",
                _ms(data["typer_table_floor_ms_median"]),
            ]
        )
    queries = data.get("in_process")
    if isinstance(queries, Mapping):
        if "open_and_query_ms_median" in queries:
            rows.append(
                [
                    "in process: open the catalogue, map the index, query",
                    _ms(queries["open_and_query_ms_median"], 2),
                ]
            )
        if "query_ms_median" in queries:
            text = _ms(queries["query_ms_median"], 2)
            if is_number(queries.get("query_ms_max")):
                text += f" (max {queries['query_ms_max']:.2f})"
            rows.append(["in process: the query alone (Annoy, history filter, reasons)", text])
    integrity = data.get("integrity")
    if isinstance(integrity, Mapping) and "sampled_check_ms_median" in integrity:
        rows.append(
            [
                "tamper check on opening (sizes and sampled digests)",
                _ms(integrity["sampled_check_ms_median"], 3),
            ]
        )
    if "search_ms_median" in data:
        text = _ms(data["search_ms_median"])
        if is_number(data.get("search_target_ms")):
            text += f" (target ≤ {data['search_target_ms']:.0f} ms)"
        command = data.get("search_command", "recli search")
        rows.append([f"`{command}` (whole process, cold)", text])
    if not rows:
        raise MissingMetricsError("`metrics/bench_recommend.json` has no timings")
    runs = data.get("runs")
    users = (queries or {}).get("users") if isinstance(queries, Mapping) else None
    detail = []
    if runs is not None:
        detail.append(f"medians of {num(runs)} runs per command")
    if users is not None:
        detail.append(f"in-process timings over {num(users)} users")
    return (
        table(["what", "median"], rows)
        + "\n\n"
        + source("`metrics/bench_recommend.json`" + (f" ({'; '.join(detail)})" if detail else ""))
    )


def _mib(value: Any) -> str:
    return f"{value / 2**20:.2f} MiB" if is_number(value) else "—"


def bench_recommend_integrity(metrics: Metrics) -> str:
    """What checking the served files costs: every command, and `recli doctor`."""
    data: dict[str, Any] = metrics.get("bench_recommend.json", "integrity")
    rows = summary(
        data,
        [
            (
                "sampled_check_ms_median",
                "every command: sizes and sampled digests, median",
                lambda v: _ms(v, 3),
            ),
            (
                "sampled_check_share_of_recommend",
                "its share of `recli recommend`",
                lambda v: share(v, 2),
            ),
            ("sampled_check_bytes_read", "bytes it reads", lambda v: f"{num(v)} ({_mib(v)})"),
            (
                "served_bytes",
                "bytes served (catalogue and index)",
                lambda v: f"{num(v)} ({_mib(v)})",
            ),
            (
                "full_check_ms_every_served_file",
                "`recli doctor`: sha256 of every served file",
                lambda v: _ms(v, 1),
            ),
        ],
    )
    return (
        table(PAIR_HEADER, rows) + "\n\n" + source("`metrics/bench_recommend.json` → `integrity`")
    )


def bench_recommend_environment(metrics: Metrics) -> str:
    """Where the start-up benchmark ran: timings mean little without it."""
    data: dict[str, Any] = metrics.get("bench_recommend.json")
    environment = data.get("environment")
    if not isinstance(environment, Mapping):
        raise MissingMetricsError("`metrics/bench_recommend.json` has no `environment`")
    rows = summary(
        environment,
        [
            ("cpu", "CPU", str),
            ("cpus", "cores", num),
            ("python", "Python", str),
            ("bytecode_precompiled", "recli's bytecode compiled first", num),
            ("typer", "typer", str),
            ("rich", "rich", str),
            ("annoy", "annoy", str),
            ("platform", "platform", str),
        ],
    )
    catalogue = data.get("catalogue")
    if isinstance(catalogue, Mapping):
        rows.append(
            [
                "catalogue",
                f"{num(catalogue.get('users'))} users, {num(catalogue.get('items'))} items",
            ]
        )
    return (
        table(PAIR_HEADER, rows)
        + "\n\n"
        + source("`metrics/bench_recommend.json` → `environment`, `catalogue`")
    )


# --------------------------------------------------------------------------------------------
# bench_sequence.json
# --------------------------------------------------------------------------------------------
SEQUENCE_VARIANTS = {"sasrec": "SASRec", "sasrec_text": "recli sequence model"}
SEQUENCE_PROTOCOLS = {
    "reference": "reference (no cold items)",
    "default": "the pipeline's split",
}


def bench_sequence(metrics: Metrics) -> str:
    """SASRec and recli's sequence model per model seed, against RecBole's published SASRec."""
    data: dict[str, Any] = metrics.get("bench_sequence.json")
    protocols = data.get("protocols")
    if not isinstance(protocols, Mapping):
        raise MissingMetricsError("`metrics/bench_sequence.json` has no `protocols`")
    header = [
        "split",
        "model",
        "seed",
        "validation NDCG@10",
        "test NDCG@10, history up to the test event",
        "test NDCG@10, training history only",
        "best epoch / epochs run",
    ]
    body = []
    reference = data.get("reference")
    if isinstance(reference, Mapping):
        body.append(
            [
                SEQUENCE_PROTOCOLS["reference"],
                "RecBole 1.2.1 SASRec (published)",
                "—",
                num(reference.get("validation_ndcg@10"), 3),
                num(reference.get("test_ndcg@10_train_validation_history"), 3),
                num(reference.get("test_ndcg@10_train_history"), 3),
                "—",
            ]
        )
    for protocol, entry in protocols.items():
        for variant, label in SEQUENCE_VARIANTS.items():
            runs = (entry.get(variant) or {}).get("runs") or {}
            for seed, run in runs.items():
                body.append(
                    [
                        SEQUENCE_PROTOCOLS.get(protocol, protocol),
                        label,
                        str(seed),
                        num((run.get("validation") or {}).get("ndcg@10"), 3),
                        num((run.get("test_train_validation_history") or {}).get("ndcg@10"), 3),
                        num((run.get("test_train_history") or {}).get("ndcg@10"), 3),
                        f"{num(run.get('best_epoch'))} / {num(run.get('epochs_run'))}",
                    ]
                )
    if not body:
        raise MissingMetricsError("`metrics/bench_sequence.json` has no runs")
    return (
        table(header, body, left=3)
        + "\n\n"
        + source("`metrics/bench_sequence.json` → `reference` and `protocols` → … → `runs`")
    )


# --------------------------------------------------------------------------------------------
# The registry and the block rewriting
# --------------------------------------------------------------------------------------------
TABLES: dict[str, Callable[[Metrics], str]] = {
    "evaluation-test": evaluation_test,
    "evaluation-validation": evaluation_validation,
    "evaluation-test-at-20": evaluation_test_at_20,
    "paired-test": paired_test,
    "evaluation-by-activity": evaluation_by_activity,
    "paired-test-by-activity": paired_test_by_activity,
    "paired-validation-by-activity": paired_validation_by_activity,
    "cold-items": cold_items,
    "beyond-accuracy": beyond_accuracy,
    "next-new-topic": next_new_topic,
    "evaluation-tuning": evaluation_tuning,
    "evaluation-by-cluster": evaluation_by_cluster,
    "preprocess-summary": preprocess_summary,
    "finetune-summary": finetune_summary,
    "sequence-training": sequence_training,
    "cluster-summary": cluster_summary,
    "interests-summary": interests_summary,
    "topics-summary": topics_summary,
    "index-summary": index_summary,
    "index-recall-ladder": index_recall_ladder,
    "fusion-grid": fusion_grid,
    "multi-interest-tuning": multi_interest_tuning,
    "explore-tuning": explore_tuning,
    "peer-check-summary": peer_check_summary,
    "peer-check-full": peer_check_full,
    "peer-check-full-summary": peer_check_full_summary,
    "peer-check-lightest": peer_check_lightest,
    "byo-check": byo_check,
    "byo-check-summary": byo_check_summary,
    "byo-sparse-check": byo_sparse_check,
    "byo-sparse-check-summary": byo_sparse_check_summary,
    "byo-seconds": byo_seconds,
    "bench-scale-stages": bench_scale_stages,
    "bench-scale-runs": bench_scale_runs,
    "bench-scale-targets": bench_scale_targets,
    "bench-scale-machine": bench_scale_machine,
    "bench-recommend": bench_recommend,
    "bench-recommend-integrity": bench_recommend_integrity,
    "bench-recommend-environment": bench_recommend_environment,
    "bench-sequence": bench_sequence,
}
"""Block name → the function that writes its table."""


class UnknownTableError(ValueError):
    """A page names a block no function renders."""


def render_table(name: str, metrics: Metrics | Path = METRICS) -> str:
    """The Markdown of one block's body. A missing file or section gives one line saying so
    (the page still builds); an unknown name raises `UnknownTableError`."""
    if name not in TABLES:
        raise UnknownTableError(name)
    source_metrics = metrics if isinstance(metrics, Metrics) else Metrics(metrics)
    try:
        return TABLES[name](source_metrics)
    except MissingMetricsError as missing:
        files = re.findall(r"`metrics/([^`]+)`", str(missing))
        command = WRITTEN_BY.get(files[0], "dvc repro") if files else "dvc repro"
        return f"*Not rendered: {missing}; `{command}` writes it.*"
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as error:
        # A metrics file of another shape than this renderer knows (a value of another type):
        # the page still builds, and the note says which table to look at.
        return f"*Not rendered: the metrics for '{name}' have an unexpected shape ({error!r}).*"


def block(name: str, body: str) -> str:
    """A whole block, markers included. The blank lines keep the table a Markdown table and
    not part of the HTML comment before it."""
    return f"<!-- table: {name} -->\n\n{body.strip()}\n\n<!-- /table -->"


def block_names(text: str) -> list[str]:
    """The names of the blocks in a page, in order."""
    return [match["name"] for match in BLOCK.finditer(text)]


def render_text(text: str, metrics: Metrics | Path = METRICS) -> tuple[str, list[str]]:
    """The page with every block re-rendered, and the names of the blocks that changed."""
    source_metrics = metrics if isinstance(metrics, Metrics) else Metrics(metrics)
    stale: list[str] = []

    def replace(match: re.Match[str]) -> str:
        fresh = block(match["name"], render_table(match["name"], source_metrics))
        if fresh != match.group(0):
            stale.append(match["name"])
        return fresh

    return BLOCK.sub(replace, text), stale


def pages(docs: Path = DOCS) -> list[Path]:
    """Every Markdown page under `docs`, in a stable order, and with the site's own docs the
    README and the benchmarks' README (their tables come from the same metrics)."""
    if docs.resolve() != DOCS.resolve():
        return sorted(docs.rglob("*.md"))
    readmes = [path for path in (README, BENCHMARKS_README) if path.exists()]
    return sorted(docs.rglob("*.md")) + readmes


def render_docs(
    docs: Path = DOCS, metrics: Path = METRICS, check: bool = False
) -> list[tuple[Path, str]]:
    """Re-render every block of every page; write the pages unless `check`. Returns the
    (page, block name) of each block that was out of date."""
    source_metrics = Metrics(metrics)
    stale: list[tuple[Path, str]] = []
    for page in pages(docs):
        text = page.read_text(encoding="utf-8")
        updated, names = render_text(text, source_metrics)
        stale += [(page, name) for name in names]
        if names and not check:
            page.write_text(updated, encoding="utf-8")
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    parser.add_argument("--docs", type=Path, default=DOCS, help="the Markdown pages' folder")
    parser.add_argument("--metrics", type=Path, default=METRICS, help="the metrics folder")
    args = parser.parse_args(argv)
    try:
        stale = render_docs(args.docs, args.metrics, check=args.check)
    except UnknownTableError as unknown:
        known = ", ".join(sorted(TABLES))
        print(f"error: no table is called '{unknown}' (known: {known})", file=sys.stderr)
        return 2

    def shown(page: Path) -> str:
        try:
            return str(page.relative_to(Path.cwd()))
        except ValueError:
            return str(page)

    if args.check:
        for page, name in stale:
            print(f"{shown(page)}: table '{name}' differs from what the metrics render")
        if stale:
            print("run: python scripts/render_docs.py", file=sys.stderr)
            return 1
        print("every docs table matches the metrics")
        return 0
    for page, name in stale:
        print(f"rewrote {shown(page)}: {name}")
    if not stale:
        print("every docs table was already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
