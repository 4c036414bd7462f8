"""Kill a stage at every write point and check that its outputs are all old or all new.

A write point is a rename (`os.replace`): every artifact, the commit journal and each step of
putting the new outputs in place is one. The stage runs as DVC runs it (`python -m
pipeline.<stage>` in the project folder) with `os.replace` wrapped so that the process sends
itself SIGKILL just before the n-th rename, for n = 1, 2, ... until a run gets through. After each
kill, the next thing that opens the artifacts (another stage, any `recli` command) first finishes
a committed swap (`transaction.roll_forward`); the test does that, then compares the stage's
outputs byte for byte with the previous run's and with a clean run's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from pipeline.core.layout import Layout, stage_outputs
from recli import transaction

REPO = Path(__file__).resolve().parents[1]

KILLER = textwrap.dedent(
    """
    import os, runpy, signal, sys

    limit, stage = int(sys.argv[1]), sys.argv[2]
    calls = 0
    real_replace = os.replace


    def replace(*args, **kwargs):
        global calls
        calls += 1
        if calls == limit:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(*args, **kwargs)


    os.replace = replace
    sys.argv = [f"pipeline.{stage}"]
    runpy.run_module(f"pipeline.{stage}", run_name="__main__", alter_sys=True)
    """
)


def _env(code: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(code), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_stage(project: Path, stage: str, code: Path = REPO, limit: int = 0) -> int:
    """Run `stage` in `project`, killed before its `limit`-th rename (0: never); its exit code."""
    script = project.parent / f"kill_{stage}.py"
    script.write_text(KILLER)
    result = subprocess.run(
        [sys.executable, str(script), str(limit), stage],
        cwd=project,
        env=_env(code),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"{stage} failed:\n{result.stdout}\n{result.stderr}")
    return result.returncode


TIMINGS = ("_ms_median", "seconds")
"""Metrics keys that measure time: they differ between any two runs, so they are left out."""


def _content(path: Path) -> bytes:
    if path.suffix != ".json":
        return path.read_bytes()
    payload = json.loads(path.read_bytes())
    if isinstance(payload, dict):
        payload = {key: value for key, value in payload.items() if not key.endswith(TIMINGS)}
    return json.dumps(payload, sort_keys=True).encode()


def outputs(project: Path, stage: str) -> dict[str, bytes]:
    """Every file of `stage`'s declared outputs (timings aside), by path relative to the project."""
    found: dict[str, bytes] = {}
    for output in stage_outputs(Layout(project))[stage]:
        files = sorted(output.rglob("*")) if output.is_dir() else [output]
        for path in files:
            if path.is_file():
                found[path.relative_to(project).as_posix()] = _content(path)
    return found


def strays(project: Path) -> list[str]:
    """Temporaries and staging left anywhere in the project's artifacts and metrics."""
    layout = Layout(project)
    left = [
        path.relative_to(project).as_posix()
        for folder in (layout.artifacts, layout.metrics)
        for path in folder.rglob("*")
        if path.name.endswith((".tmp", ".old"))
    ]
    staging = transaction.staging_root(layout.artifacts)
    if staging.exists():
        left += [
            path.relative_to(project).as_posix()
            for path in staging.iterdir()
            if path.name != ".lock"
        ]
    return left


def kill_at_every_write_point(
    before: Path, after: Path, stage: str, code: Path = REPO, scratch: Path | None = None
) -> list[str]:
    """`before`: a project holding the old outputs and the params of the new run; `after`: the
    same project once `stage` ran cleanly. Returns what each kill left: "old" or "new"."""
    old, new = outputs(before, stage), outputs(after, stage)
    assert old != new, "the new run must change the outputs, or the test proves nothing"
    scratch = scratch or before.parent / f"{stage}_killed"
    seen: list[str] = []
    for limit in range(1, 200):
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(before, scratch, symlinks=True)
        if run_stage(scratch, stage, code, limit) == 0:
            break
        transaction.roll_forward(Layout(scratch).artifacts)  # what the next reader does first
        left = outputs(scratch, stage)
        assert left in (old, new), (
            f"killed before rename {limit}: a mix of old and new outputs "
            f"({sorted(path for path in set(old) | set(new) if left.get(path) != new.get(path))}"
            " differ from the new run)"
        )
        seen.append("old" if left == old else "new")
        # The next run of the stage cleans what the killed one left and gives the clean result.
        assert run_stage(scratch, stage, code) == 0
        assert outputs(scratch, stage) == new, f"re-run after a kill before rename {limit}"
        assert strays(scratch) == [], f"re-run after a kill before rename {limit}"
    else:
        raise AssertionError(f"{stage} never finished")
    assert outputs(scratch, stage) == new and strays(scratch) == []
    shutil.rmtree(scratch, ignore_errors=True)
    return seen
