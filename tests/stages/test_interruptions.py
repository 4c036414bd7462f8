"""Interrupted runs: a writer killed mid-write leaves the previous file in place, and a stage
killed at any write point leaves all of its old outputs or all of its new ones.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from kill_points import kill_at_every_write_point
from kill_points import run_stage as run_killable
from stage_runs import code_env, make_project, write_params

from pipeline.core import io


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with good inputs, valid params and the outputs of an earlier run."""
    return make_project(tmp_path)


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
        env=code_env(),
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


def test_artifacts_get_ordinary_file_permissions(tmp_path: Path) -> None:
    from pipeline.core import io as artifact_io

    target = tmp_path / "out.json"
    artifact_io.write_json(target, {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
