"""Bad input, interrupted runs and reproducibility, through the real entry points.

Each bad input runs a stage the way DVC does (`python -m pipeline.<stage>` in a project folder) and
checks the promise: exit code 1, one line on stderr naming the problem and the key that fixes it,
no traceback, and the outputs of the previous run byte for byte unchanged. Problems that are not
errors (missing ids, duplicates, one-event users, unknown items) are dropped and counted instead.
A writer killed mid-write must leave the previous file in place; the same params must give the
same numbers; nothing may load pickles.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml
from cli_artifacts import build_artifacts
from kill_points import kill_at_every_write_point
from kill_points import run_stage as run_killable
from synthetic import make_raw
from typer.testing import CliRunner

from pipeline import cluster, evaluate, factorize, index, preprocess
from pipeline.core import io
from pipeline.core.config import (
    ClusterConfig,
    EvaluateConfig,
    FactorizeConfig,
    FileColumns,
    FilesSource,
    IndexConfig,
    ItemColumns,
    PreprocessConfig,
    SplitConfig,
    parse_params,
)
from pipeline.core.layout import Layout
from pipeline.data.artifacts import Embeddings, write_processed
from pipeline.data.source import load_files
from pipeline.evaluation.protocol import SplitMatrices
from pipeline.models.fusion import tune_fusion
from recli.cli import app
from recli.contract import file_digest
from recli.errors import RecliError

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

# A small, clean bring-your-own dataset: 8 users × 5 events over 10 items, no ties, no problems.
HEADER = "user_id,item_id,rating,timestamp\n"
GOOD_ROWS = "".join(
    f"{user},{100 + (user + 2 * event) % 10},{(user + event) % 5 + 1},{1000 * user + event}\n"
    for user in range(1, 9)
    for event in range(5)
)
ITEMS = "item_id,title\n" + "".join(f"{100 + i},Film {i} ({1990 + i})\n" for i in range(10))
BASE_PARAMS: dict[str, Any] = {
    "data": {
        "source": "files",
        "files": {
            "interactions": "data/input/ratings.csv",
            "items": "data/input/movies.csv",
            "item_columns": {"genres": None},
        },
    },
    "preprocess": {"min_user_interactions": 3, "cold_item_fraction": 0.0},
}
# Outputs of an earlier, good run: every failing stage must leave them exactly as they were.
SENTINELS = {
    "data/processed/train.parquet": b"previous good train split",
    "data/factorize/user_factors.npy": b"previous good user factors",
    "data/cluster/assignments.parquet": b"previous good assignments",
    "metrics/preprocess.json": b'{"previous": "good run"}\n',
}


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # The project's own code, run from a scratch folder, as DVC runs it from the project root.
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def run_stage(project: Path, stage: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"pipeline.{stage}"],
        cwd=project,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """A failed stage's whole stderr: exactly one `error:` line, exit code 1, no traceback."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert "\x1b" not in line, "stderr is a pipe here: no colour codes"
    assert line.startswith("error: "), line
    return line


def write_params(project: Path, **sections: Any) -> None:
    params = json.loads(json.dumps(BASE_PARAMS))  # a deep copy
    for section, values in sections.items():
        params[section] = {**params.get(section, {}), **values}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def outputs(project: Path) -> dict[str, bytes]:
    """Every file a stage may write (all of `data/` but the inputs, and `metrics/`)."""
    return {
        path.relative_to(project).as_posix(): path.read_bytes()
        for folder in ("data", "metrics")
        for path in sorted((project / folder).rglob("*"))
        if path.is_file() and "input" not in path.relative_to(project).parts
    }


def summary(project: Path) -> dict[str, Any]:
    return json.loads((project / "metrics/preprocess.json").read_text())


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with good inputs, valid params and the outputs of an earlier run."""
    (tmp_path / "data/input").mkdir(parents=True)
    (tmp_path / "data/input/ratings.csv").write_text(HEADER + GOOD_ROWS)
    (tmp_path / "data/input/movies.csv").write_text(ITEMS)
    write_params(tmp_path)
    for relative, content in SENTINELS.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(content)
    return tmp_path


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

    monkeypatch.setattr(cluster, "_fit", no_kmeans)
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


# --------------------------------------------------------------------------------------------
# Atomic writes: a writer killed mid-write leaves the previous output intact
# --------------------------------------------------------------------------------------------
WRITER = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path

    import numpy as np

    from pipeline.core import io

    destination, ready, kind = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    # A shell may start background jobs with Ctrl-C ignored; a stage at a terminal gets it.
    signal.signal(signal.SIGINT, signal.default_int_handler)


    def stall() -> None:
        ready.touch()  # half the bytes are on disk: the test may interrupt now
        time.sleep(60)


    class SlowFrame:
        def write_parquet(self, path):
            with open(path, "wb") as handle:
                handle.write(b"PAR1" + bytes(1 << 16))
                handle.flush()
                stall()


    real_save = np.save


    def slow_save(handle, array, allow_pickle):
        real_save(handle, array[: len(array) // 2], allow_pickle=allow_pickle)
        handle.flush()
        stall()


    def main() -> None:
        if kind == "parquet":
            io.write_parquet(destination, SlowFrame())
        else:
            np.save = slow_save
            io.write_npy(destination, np.zeros((4096, 64), dtype=np.float32))


    io.run_stage(main)
    """
)


def _start_writer(tmp_path: Path, destination: Path, kind: str) -> subprocess.Popen[str]:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    ready = tmp_path / "ready"
    process = subprocess.Popen(
        [sys.executable, str(script), str(destination), str(ready), kind],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        if process.poll() is not None:
            pytest.fail(f"the writer exited early: {process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the writer never reached the middle of its write")
        time.sleep(0.02)
    return process


def _previous_output(destination: Path, kind: str) -> bytes:
    if kind == "parquet":
        io.write_parquet(destination, pl.DataFrame({"user_idx": [1, 2, 3]}))
    else:
        io.write_npy(destination, np.arange(12, dtype=np.float32).reshape(3, 4))
    return destination.read_bytes()


def _others(destination: Path) -> list[str]:
    return sorted(path.name for path in destination.parent.iterdir() if path != destination)


@pytest.mark.parametrize(("kind", "name"), [("parquet", "train.parquet"), ("npy", "items.npy")])
def test_killed_mid_write_keeps_the_previous_output(tmp_path: Path, kind: str, name: str) -> None:
    destination = tmp_path / "out" / name
    previous = _previous_output(destination, kind)
    process = _start_writer(tmp_path, destination, kind)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert destination.read_bytes() == previous
    # The half-written bytes went to a temporary file beside it, never under the final name.
    (leftover,) = _others(destination)
    assert re.fullmatch(rf"\.{re.escape(name)}\.\w+\.tmp", leftover)
    assert (destination.parent / leftover).stat().st_size > 0
    if kind == "npy":
        assert io.read_npy(destination, "x").tolist() == np.arange(12).reshape(3, 4).tolist()
    else:
        assert io.read_parquet(destination, "x")["user_idx"].to_list() == [1, 2, 3]


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_kill_mid_write_keeps_the_previous_output_and_cleans_up(
    tmp_path: Path, signal_number: int
) -> None:
    destination = tmp_path / "out" / "train.parquet"
    previous = _previous_output(destination, "parquet")
    process = _start_writer(tmp_path, destination, "parquet")
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert stderr.strip() == io.interruption_message([])
    assert "previous run's outputs are in place" in stderr
    assert destination.read_bytes() == previous
    assert _others(destination) == []


def test_atomic_path_cleans_up_after_an_error(tmp_path: Path) -> None:
    destination = tmp_path / "metrics.json"
    io.write_json(destination, {"ndcg@10": 0.1})
    previous = destination.read_bytes()
    with pytest.raises(RuntimeError), io.atomic_path(destination) as temporary:
        temporary.write_text('{"ndcg@10": 0.')
        raise RuntimeError("the stage failed halfway")
    assert destination.read_bytes() == previous
    assert _others(destination) == []
    io.write_json(destination, {"ndcg@10": 0.2})
    assert json.loads(destination.read_text()) == {"ndcg@10": 0.2}
    assert _others(destination) == []


def test_preprocess_killed_at_any_write_point_leaves_all_old_or_all_new_outputs(
    project: Path, tmp_path: Path
) -> None:
    assert run_killable(project, "preprocess") == 0  # the outputs of an earlier run
    write_params(project, preprocess={"cold_item_fraction": 0.2})  # a run that changes them all
    after = tmp_path / "after"
    shutil.copytree(project, after)
    assert run_killable(after, "preprocess") == 0
    seen = kill_at_every_write_point(project, after, "preprocess")
    # Both sides of the commit point were hit: kills before the journal keep the old set, kills
    # while the new outputs are being moved in are finished by the next reader.
    assert "old" in seen and "new" in seen, seen


# --------------------------------------------------------------------------------------------
# Reproducibility: same params, same numbers (across processes and hash seeds)
# --------------------------------------------------------------------------------------------
def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def small_pipeline(
    split_seed: int = 42, factorize_seed: int = 42, workdir: Path | None = None
) -> dict[str, Any]:
    """preprocess → factorize → cluster → index fusion → evaluate on synthetic data, JSON-ready.

    The text side is a fixed random "encoder" (vectors drawn from seed 0), so every difference
    comes from the stages' own random choices.
    """
    raw = make_raw(n_users=30, n_items=40, per_user=12)  # with timestamp ties for the split
    processed = preprocess.run(
        raw,
        PreprocessConfig(
            min_user_interactions=3, cold_item_fraction=0.1, split=SplitConfig(seed=split_seed)
        ),
    )
    matrices = SplitMatrices.from_processed(processed)
    factors = factorize.run(
        matrices.train, FactorizeConfig(embedding_size=8, epochs=5, seed=factorize_seed)
    )
    rng = np.random.default_rng(0)
    text = Embeddings(
        users=rng.normal(size=(processed.users.height, 16)).astype(np.float32),
        items=rng.normal(size=(processed.items.height, 16)).astype(np.float32),
    )
    clustering = cluster.run(text.users, text.items, processed, ClusterConfig(k=3, seed=7))
    evaluate_cfg = EvaluateConfig(ease_reg_grid=[1.0, 10.0], activity_buckets=[5, 10])
    index_cfg = IndexConfig(weight_grid=[0.0, 0.5, 1.0], n_trees=5, seed=3)
    fusion, _, by_weight = tune_fusion(text, factors, matrices, index_cfg, seed=split_seed)
    fused_items = fusion.fuse(text.items, factors.items)
    annoy_digest = None
    if workdir is not None:
        index.build_annoy(fused_items, index_cfg, workdir / "items.ann")
        annoy_digest = file_digest(workdir / "items.ann")
    scorers, tuning = evaluate.peer_scorers(matrices, evaluate_cfg, factors, seed=split_seed)
    scorers["fused"] = lambda users: fusion.fuse(text.users, factors.users)[users] @ fused_items.T
    report = evaluate.run(matrices, scorers, evaluate_cfg, seed=split_seed)
    return json.loads(
        json.dumps(
            {
                "preprocess": processed.summary,
                "test_events": _digest(processed.test.to_numpy()),
                "factors": [_digest(factors.users), _digest(factors.items)],
                "cluster": clustering.metrics,
                "assignments": clustering.assignments["cluster"].to_list(),
                "fusion": [fusion.text_weight, by_weight],
                "annoy": annoy_digest,
                "evaluation": report.metrics,
                "tuning": tuning,
            }
        )
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return small_pipeline(workdir=tmp_path_factory.mktemp("first"))


def test_same_params_same_numbers_in_process(reference: dict[str, Any], tmp_path: Path) -> None:
    assert small_pipeline(workdir=tmp_path) == reference
    assert reference["evaluation"]["test"]["als"]["users"] > 0
    assert reference["annoy"] is not None


def test_same_params_same_numbers_in_another_process(
    reference: dict[str, Any], tmp_path: Path
) -> None:
    # Another interpreter with another string-hash seed: set and dict orders may not leak out.
    code = (
        "import json, sys; from pathlib import Path; from test_robustness import small_pipeline; "
        "print(json.dumps(small_pipeline(workdir=Path(sys.argv[1]))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        env=_env(PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO)]), PYTHONHASHSEED="12345"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == reference


def test_seeds_reach_the_split_and_the_factors(reference: dict[str, Any]) -> None:
    other_split = small_pipeline(split_seed=7)
    assert other_split["test_events"] != reference["test_events"]
    assert other_split["evaluation"] != reference["evaluation"]
    other_factors = small_pipeline(factorize_seed=7)
    assert other_factors["test_events"] == reference["test_events"]
    assert other_factors["factors"] != reference["factors"]


# --------------------------------------------------------------------------------------------
# No unsafe loading anywhere in the code
# --------------------------------------------------------------------------------------------
PICKLING_MODULES = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "joblib", "shelve"}
PICKLING_ATTRIBUTES = {"read_pickle", "to_pickle"}


def unsafe_loading(tree: ast.AST) -> list[str]:
    """Every pickle import or use, `allow_pickle=True`, `trust_remote_code=True`, and every
    `torch.load` without `weights_only=True`, as `line: what`."""
    found = []
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module]
        found += [
            f"{node.lineno}: import {name}"
            for name in modules
            if name.split(".")[0] in PICKLING_MODULES
        ]
        if isinstance(node, ast.Attribute) and node.attr in PICKLING_ATTRIBUTES:
            found.append(f"{node.lineno}: .{node.attr}")
        if not isinstance(node, ast.Call):
            continue
        keywords = {
            keyword.arg: getattr(keyword.value, "value", None)
            for keyword in node.keywords
            if keyword.arg
        }
        for name in ("allow_pickle", "trust_remote_code"):
            if keywords.get(name) is True:
                found.append(f"{node.lineno}: {name}=True")
        function = ast.unparse(node.func)
        if function.endswith("torch.load") and keywords.get("weights_only") is not True:
            found.append(f"{node.lineno}: {function}() without weights_only=True")
    return found


def test_the_checker_finds_what_it_looks_for() -> None:
    code = (
        "import pickle\nfrom joblib import load\nimport numpy as np\nimport torch\n"
        "np.load('x', allow_pickle=True)\ntorch.load('m')\ntorch.load('m', weights_only=True)\n"
        "frame.to_pickle('x')\n"
    )
    assert unsafe_loading(ast.parse(code)) == [
        "1: import pickle",
        "2: import joblib",
        "5: allow_pickle=True",
        "6: torch.load() without weights_only=True",
        "8: .to_pickle",
    ]


def test_no_pickle_anywhere() -> None:
    sources = [
        path
        for folder in ("pipeline", "recli", "scripts", "tests")
        for path in sorted((REPO / folder).rglob("*.py"))
    ]
    assert len(sources) > 20
    problems = [
        f"{path.relative_to(REPO)}:{problem}"
        for path in sources
        for problem in unsafe_loading(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert problems == []
    dependencies = (REPO / "pyproject.toml").read_text()
    assert not re.search(r"\b(joblib|dill|cloudpickle)\b", dependencies)


# --------------------------------------------------------------------------------------------
# Served artifacts from another run: `recli doctor` notices
# --------------------------------------------------------------------------------------------
def _set_meta(root: Path, key: str, value: Any) -> None:
    connection = sqlite3.connect(root / "index" / "catalogue.sqlite")
    connection.execute("UPDATE meta SET value = ? WHERE key = ?", (json.dumps(value), key))
    connection.commit()
    connection.close()
    index.seal(root)  # as the index stage would have recorded it


def test_doctor_reports_an_upstream_file_changed_since_the_index(tmp_path: Path) -> None:
    root = build_artifacts(tmp_path / "artifacts")["root"]
    upstream = root / "processed" / "train.parquet"
    upstream.parent.mkdir()
    upstream.write_bytes(b"the training split the index was built from")
    _set_meta(root, "built_from", {"processed/train.parquet": file_digest(upstream)[:16]})
    runner = CliRunner()
    env = {"COLUMNS": "250", "RECLI_ARTIFACTS": None}

    fresh = runner.invoke(app, ["--artifacts", str(root), "doctor"], env=env)
    assert fresh.exit_code == 0, fresh.output
    assert "1 match the catalogue" in fresh.stdout

    upstream.write_bytes(b"a newer training split")  # preprocess re-ran, index did not
    stale = runner.invoke(app, ["--artifacts", str(root), "doctor"], env=env)
    assert stale.exit_code == 1
    assert "changed since the index was built (processed/train.parquet)" in stale.stdout
    (line,) = stale.stderr.strip().splitlines()
    assert line == "error: 1 problem(s) (upstream files): fix them as the table says"


def test_artifacts_get_ordinary_file_permissions(tmp_path: Path) -> None:
    from pipeline.core import io as artifact_io

    target = tmp_path / "out.json"
    artifact_io.write_json(target, {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
