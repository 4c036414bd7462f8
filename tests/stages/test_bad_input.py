"""Bad input through the real entry points: one line, exit 1, the earlier outputs untouched.

Each bad input runs a stage the way DVC does (`python -m pipeline.<stage>` in a project folder) and
checks the promise: exit code 1, one line on stderr naming the problem and the key that fixes it,
no traceback, and the outputs of the previous run byte for byte unchanged. Problems that are not
errors (missing ids, duplicates, one-event users, unknown items) are dropped and counted instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from stage_runs import (
    GOOD_ROWS,
    HEADER,
    ITEMS,
    make_project,
    one_error_line,
    outputs,
    run_stage,
    summary,
    write_params,
)
from synthetic import make_raw

from pipeline import cluster, preprocess
from pipeline.core import io
from pipeline.core.config import FileColumns, FilesSource, ItemColumns, parse_params
from pipeline.core.layout import Layout
from pipeline.core.sections import ClusterConfig, PreprocessConfig
from pipeline.data.artifacts import write_processed
from pipeline.data.source import load_files
from pipeline.models import user_clusters
from recli.errors import RecliError


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with good inputs, valid params and the outputs of an earlier run."""
    return make_project(tmp_path)


def test_good_input_runs(project: Path) -> None:
    result = run_stage(project, "preprocess")
    assert result.returncode == 0, result.stderr
    counts = summary(project)
    assert counts["users"] == 8 and counts["raw_interactions"] == 40
    assert not [key for key, value in counts.items() if key.startswith("dropped_") and value]


# --------------------------------------------------------------------------------------------
# Bad interactions files: one line, exit 1, earlier outputs untouched
# --------------------------------------------------------------------------------------------
def _without_timestamps() -> bytes:
    rows = [line.rsplit(",", 1)[0] for line in GOOD_ROWS.splitlines()]
    return ("user_id,item_id,rating\n" + "\n".join(rows) + "\n").encode()


BAD_INTERACTIONS: dict[str, tuple[bytes | None, list[str]]] = {
    "missing column": (
        _without_timestamps(),
        ["column 'timestamp' not found", "data.files.columns.timestamp"],
    ),
    "non-numeric rating": (
        (HEADER + GOOD_ROWS + "3,101,four,5\n").encode(),
        ["column 'rating'", "'four'", "line 42", "data.files.columns.rating"],
    ),
    "non-numeric timestamp": (
        (HEADER + GOOD_ROWS + "3,101,4,yesterday\n").encode(),
        [
            "column 'timestamp'",
            "'yesterday', not a number or an ISO-8601 date",
            "columns.timestamp",
        ],
    ),
    "empty file": (b"", ["is empty", "data.files.interactions"]),
    "header only": (HEADER.encode(), ["has a header but no rows", "data.files.interactions"]),
    "invalid utf-8": (
        (HEADER + GOOD_ROWS).encode() + b"caf\xe9,101,4,5\n",
        ["not valid UTF-8", "data.files.encoding: latin-1"],
    ),
    "wrong separator": (
        (HEADER + GOOD_ROWS).replace(",", ";").encode(),
        ["column 'user_id' not found", "data.files.separator"],
    ),
    "missing file": (None, ["not found", "data.files.interactions"]),
    "only one-event users": (
        (HEADER + "1,100,4,1\n2,101,4,2\n3,102,4,3\n").encode(),
        ["no interactions left", "preprocess.min_user_interactions (3) removed every user"],
    ),
    # The items file spells ids 100..109; zero-padded ids in the interactions match none.
    "ids spelled differently": (
        (HEADER + GOOD_ROWS.replace(",10", ",010")).encode(),
        ["40 of 40 events (100.0%) name items missing", "'0101' (items file has '101')"],
    ),
    "a partial items file": (
        (HEADER + GOOD_ROWS + "1,999,4,5\n").encode(),
        ["1 of 41 events (2.4%)", "'999'", "preprocess.max_unknown_item_share (0.01)"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INTERACTIONS))
def test_bad_interactions_file(project: Path, case: str) -> None:
    content, expected = BAD_INTERACTIONS[case]
    path = project / "data/input/ratings.csv"
    if content is None:
        path.unlink()
    else:
        path.write_bytes(content)
    before = outputs(project)
    line = one_error_line(run_stage(project, "preprocess"))
    for fragment in expected:
        assert fragment in line
    assert outputs(project) == before


# --------------------------------------------------------------------------------------------
# Problems that are not errors: dropped and counted in metrics/preprocess.json
# --------------------------------------------------------------------------------------------
COUNTED: dict[str, tuple[str, dict[str, int]]] = {
    # Empty, `NaN` and `nan` ids (how pandas, polars and Python write a missing number).
    "missing ids": (",101,4,5\nNaN,102,4,6\n3,nan,4,7\n", {"dropped_missing_ids": 3}),
    "duplicate rows": (GOOD_ROWS.splitlines(keepends=True)[0] * 2, {"dropped_duplicates": 2}),
    "one-event users": (
        "90,100,4,1\n91,101,4,2\n",
        {"dropped_sparse_users": 2, "dropped_sparse_user_events": 2},
    ),
}


@pytest.mark.parametrize("case", list(COUNTED))
def test_unusable_rows_are_dropped_and_counted(project: Path, case: str) -> None:
    extra, expected = COUNTED[case]
    (project / "data/input/ratings.csv").write_text(HEADER + GOOD_ROWS + extra)
    result = run_stage(project, "preprocess")
    assert result.returncode == 0, result.stderr
    counts = summary(project)
    dropped = {key: value for key, value in counts.items() if key.startswith("dropped_") and value}
    assert dropped == expected
    assert counts["users"] == 8
    assert counts["train_interactions"] + counts["validation_interactions"] + counts[
        "test_interactions"
    ] == len(GOOD_ROWS.splitlines())


def test_a_few_unknown_items_below_the_share_are_dropped_counted_and_said(project: Path) -> None:
    # Item 999 has no row in the items file: nothing to show or embed for it.
    write_params(project, preprocess={"max_unknown_item_share": 0.1})
    (project / "data/input/ratings.csv").write_text(HEADER + GOOD_ROWS + "1,999,4,5\n2,999,4,6\n")
    result = run_stage(project, "preprocess")
    assert result.returncode == 0, result.stderr
    assert summary(project)["dropped_unknown_items"] == 2
    assert "read 42 events, kept 40; dropped: 2 unknown items" in result.stdout


def test_every_run_says_what_it_read_kept_and_dropped(project: Path) -> None:
    result = run_stage(project, "preprocess")
    assert result.returncode == 0, result.stderr
    assert "preprocess: read 40 events, kept 40; dropped: none" in result.stdout


def test_min_rating_that_removes_everything_is_named(project: Path) -> None:
    write_params(project, preprocess={"min_rating": 9.0})
    line = one_error_line(run_stage(project, "preprocess"))
    assert "preprocess.min_rating (9) removed every event" in line


def test_iso_timestamps_are_read(project: Path) -> None:
    rows = GOOD_ROWS.splitlines()
    iso = [
        f"{u},{i},{r},2020-01-{int(t) // 1000:02d} 10:00:{int(t) % 1000:02d}"
        for u, i, r, t in (row.split(",") for row in rows)
    ]
    (project / "data/input/ratings.csv").write_text(HEADER + "\n".join(iso) + "\n")
    result = run_stage(project, "preprocess")
    assert result.returncode == 0, result.stderr
    train = pl.read_parquet(project / "data/processed/train.parquet")
    assert train["timestamp"].min() == 1577872800  # 2020-01-01 10:00:00 UTC


def test_nan_ids_in_a_parquet_file_are_missing_ids(tmp_path: Path) -> None:
    # polars and numpy write a missing float id as NaN, not null; it must not become user "NaN".
    events = tmp_path / "events.parquet"
    pl.DataFrame(
        {"user_id": [1.0, float("nan"), 2.0], "item_id": [7.0, 7.0, float("nan")]}
    ).write_parquet(events)
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\n7,A\n")
    raw = load_files(
        FilesSource(
            interactions=events,
            items=items,
            columns=FileColumns(rating=None, timestamp=None),
            item_columns=ItemColumns(genres=None),
        )
    )
    assert raw.interactions["user_id"].to_list() == ["1", None, "2"]
    assert raw.interactions["item_id"].to_list() == ["7", "7", None]


def test_item_without_title_gets_a_placeholder(project: Path) -> None:
    (project / "data/input/movies.csv").write_text(ITEMS.replace("100,Film 0 (1990)", "100,"))
    result = run_stage(project, "preprocess")
    assert result.returncode == 0, result.stderr
    items = pl.read_parquet(project / "data/processed/items.parquet")
    untitled = items.filter(pl.col("item_id") == "100").row(0, named=True)
    assert untitled["title"] == "Item 100"
    assert untitled["text"].startswith("Item 100")
    assert summary(project)["items"] == 10


# --------------------------------------------------------------------------------------------
# Params: validated before any work, reported by dotted key
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("stage", "sections", "key"),
    [
        ("factorize", {"factorize": {"epochs": -1}}, "factorize.epochs"),
        ("factorize", {"factorize": {"epoch": 3}}, "factorize.epoch"),  # a typo
        (
            "preprocess",
            {"preprocess": {"split": {"strategy": "by_magic"}}},
            "preprocess.split.strategy",
        ),
        (
            "preprocess",
            {"preprocess": {"min_user_interactions": 0}},
            "preprocess.min_user_interactions",
        ),
        ("cluster", {"cluster": {"k": 1}}, "cluster.k"),
        ("evaluate", {"evaluate": {"activity_buckets": [50, 20]}}, "evaluate.activity_buckets"),
    ],
    ids=["negative epochs", "typo", "unknown strategy", "zero threshold", "k 1", "buckets"],
)
def test_bad_params_stop_the_stage_before_any_work(
    project: Path, stage: str, sections: dict[str, Any], key: str
) -> None:
    write_params(project, **sections)
    before = outputs(project)
    # The upstream artifacts here are not even readable: only a params check can come first.
    line = one_error_line(run_stage(project, stage))
    assert line.startswith(f"error: params.yaml: {key}: ")
    assert outputs(project) == before


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # A union (a number or `auto`): the key without pydantic's branch name, both options.
        ({"cluster": {"k": 1}}, "cluster.k: Input should be greater than or equal to 2, or 'auto'"),
        (
            {"cluster": {"k_range": [20, 4]}},
            "cluster.k_range: must be [low, high] with low <= high",
        ),
        (
            {"evaluate": {"activity_buckets": [50, 20]}},
            "evaluate.activity_buckets: must be strictly",
        ),
    ],
)
def test_params_errors_name_the_exact_key(raw: dict[str, Any], expected: str) -> None:
    with pytest.raises(RecliError) as caught:
        parse_params(raw)
    assert str(caught.value).startswith(f"params.yaml: {expected}")


@pytest.fixture
def cluster_project(project: Path) -> tuple[Path, int]:
    """`project` with real preprocess outputs and embeddings, ready for the cluster stage."""
    processed = preprocess.run(make_raw(n_users=12, n_items=20, per_user=6), PreprocessConfig())
    write_processed(processed, Layout(project))
    rng = np.random.default_rng(0)
    for prefix in ("", "zero_shot_"):
        for name, rows in (("user", processed.users.height), ("item", processed.items.height)):
            path = project / f"data/embed/{prefix}{name}_embeddings.npy"
            io.write_npy(path, rng.normal(size=(rows, 8)))
    return project, processed.users.height


def test_cluster_k_above_the_number_of_users(cluster_project: tuple[Path, int]) -> None:
    project, n_users = cluster_project
    write_params(project, cluster={"k": n_users + 5})
    before = outputs(project)
    line = one_error_line(run_stage(project, "cluster"))
    assert f"cluster.k ({n_users + 5}) must be below the number of users ({n_users})" in line
    assert "lower cluster.k" in line
    assert outputs(project) == before


def test_cluster_k_is_checked_before_kmeans(monkeypatch: pytest.MonkeyPatch) -> None:
    processed = preprocess.run(make_raw(n_users=12, n_items=20, per_user=6), PreprocessConfig())
    vectors = np.random.default_rng(0).normal(size=(processed.users.height, 8))
    items = np.random.default_rng(1).normal(size=(processed.items.height, 8))

    def no_kmeans(*args: object) -> None:
        raise AssertionError("KMeans ran before cluster.k was checked")

    monkeypatch.setattr(user_clusters, "_fit", no_kmeans)
    with pytest.raises(RecliError, match=r"cluster\.k \(50\)"):
        cluster.run(vectors, items, processed, ClusterConfig(k=50))


def test_missing_and_corrupted_upstream_artifacts(cluster_project: tuple[Path, int]) -> None:
    project, _ = cluster_project
    # The default interest vectors are built from the zero-shot item vectors.
    write_params(project, cluster={"k": 3})
    embeddings = project / "data/embed/zero_shot_item_embeddings.npy"
    embeddings.write_bytes(embeddings.read_bytes()[:100])  # truncated
    before = outputs(project)
    line = one_error_line(run_stage(project, "cluster"))
    assert "zero_shot_item_embeddings.npy is corrupted" in line and "dvc repro -f embed" in line
    embeddings.write_bytes(b"not an array at all" * 10)
    line = one_error_line(run_stage(project, "cluster"))
    assert "not a plain .npy array" in line and "pickle" not in line
    embeddings.unlink()
    line = one_error_line(run_stage(project, "cluster"))
    assert "zero_shot_item_embeddings.npy is missing: run `dvc repro embed`" in line
    (project / "data/processed/items.parquet").write_bytes(b"PAR1 truncated")
    line = one_error_line(run_stage(project, "factorize"))
    assert "items.parquet is corrupted" in line and "dvc repro -f preprocess" in line
    del before["data/embed/zero_shot_item_embeddings.npy"], before["data/processed/items.parquet"]
    after = outputs(project)
    del after["data/processed/items.parquet"]
    assert after == before


def test_corrupted_json_artifact_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    for content in (b'{"cluster": ', b'{"label": "caf\xe9"}'):
        path.write_bytes(content)
        with pytest.raises(RecliError, match=r"profiles\.json is corrupted .*dvc repro -f cluster"):
            io.read_json(path, "cluster")
