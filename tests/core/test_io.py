"""Atomic artifact writes and typed reads (`pipeline.core.io`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.core import io
from recli import transaction
from recli.errors import RecliError


def test_atomic_directory_replaces_only_a_complete_directory(tmp_path: Path) -> None:
    destination = tmp_path / "model"
    with io.atomic_directory(destination) as staging:
        (staging / "weights").write_text("old")
    with pytest.raises(RuntimeError), io.atomic_directory(destination) as staging:
        (staging / "weights").write_text("half")
        raise RuntimeError("killed midway")
    assert (destination / "weights").read_text() == "old"
    with io.atomic_directory(destination) as staging:
        (staging / "weights").write_text("new")
    assert (destination / "weights").read_text() == "new"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]


def test_round_trips_keep_values_and_types(tmp_path: Path) -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    io.write_npy(tmp_path / "a.npy", array)
    loaded = io.read_npy(tmp_path / "a.npy", "embed")
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, array)

    frame = pl.DataFrame({"user_idx": [0, 1], "title": ["Amélie (2001)", "Ran (1985)"]})
    io.write_parquet(tmp_path / "f.parquet", frame)
    assert io.read_parquet(tmp_path / "f.parquet", "preprocess").equals(frame)

    io.write_json(tmp_path / "m.json", {"ndcg@10": 0.1, "label": "Comédie"})
    assert io.read_json(tmp_path / "m.json", "evaluate") == {"ndcg@10": 0.1, "label": "Comédie"}
    assert "Comédie" in (tmp_path / "m.json").read_text(encoding="utf-8")  # not \\u-escaped
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("reader", "name"),
    [(io.read_npy, "x.npy"), (io.read_parquet, "x.parquet"), (io.read_json, "x.json")],
)
def test_a_missing_artifact_names_the_stage_to_run(tmp_path: Path, reader, name: str) -> None:
    with pytest.raises(RecliError, match=r"is missing: run `dvc repro cluster`"):
        reader(tmp_path / name, "cluster")


# ------------------------------------------------------------------------------------------
# A signal during a stage's commit waits for it, and what is printed afterwards is true
# ------------------------------------------------------------------------------------------
COMMITTING_STAGE = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path

    from pipeline.core import io
    from recli import transaction

    artifacts, when, signum = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    outputs = [artifacts / "index", artifacts.parent / "metrics" / "index.json"]
    real_replace, real_journal = os.replace, transaction.write_journal
    renames = []


    def replace(source, destination):
        # `when == "rename"`: the signal reaches the process between the commit's renames.
        renames.append(destination)
        if when == "rename" and len(renames) == 3:
            os.kill(os.getpid(), signum)
        real_replace(source, destination)


    def write_journal(folder, journal):
        # `when == "journal"`: the signal comes as the journal is published.
        if when == "journal":
            os.kill(os.getpid(), signum)
        real_journal(folder, journal)


    def main() -> None:
        with io.stage_outputs(artifacts, "index", outputs) as running:
            index, metrics = (staged for _, staged in running.staging)
            io.write_json(index / "catalogue.json", {"run": "new"})
            io.write_json(metrics, {"run": "new"})
            if when == "before":
                os.kill(os.getpid(), signum)
                signal.sigtimedwait([], 0.1)  # let the handler run, as it would mid-stage
            os.replace, transaction.write_journal = replace, write_journal


    io.run_stage(main)
    """
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("when", ["journal", "rename", "before"])
def test_a_signal_during_the_commit_is_held_and_the_message_is_true(
    tmp_path: Path, when: str, signum: int
) -> None:
    artifacts = tmp_path / "data"
    io.write_json(artifacts / "index" / "catalogue.json", {"run": "old"})
    io.write_json(tmp_path / "metrics" / "index.json", {"run": "old"})
    script = tmp_path / "stage.py"
    script.write_text(COMMITTING_STAGE)
    result = subprocess.run(
        [sys.executable, str(script), str(artifacts), when, str(signum)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        timeout=60,
    )
    assert result.returncode == 130, result.stderr
    runs = {
        json.loads((artifacts / "index" / "catalogue.json").read_text())["run"],
        json.loads((tmp_path / "metrics" / "index.json").read_text())["run"],
    }
    lines = result.stderr.strip().splitlines()
    if when == "before":
        assert runs == {"old"}
        assert lines == [io.interruption_message([])]
    else:
        assert runs == {"new"}  # the whole new set, never a mix
        assert lines[0].startswith(f"{signal.Signals(signum).name} received: waiting for index")
        assert lines[1] == io.interruption_message(["index"])
        assert "index put its new outputs in place" in lines[1]
    assert transaction.committed(artifacts) == []
