"""Stage outputs replaced as a set: the journal, rolling forward, and the stage-side redirect."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.core import io
from pipeline.core.layout import Layout
from recli import transaction
from recli.cli import app
from recli.errors import RecliError


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and transaction.STAGING_DIR not in path.relative_to(folder).parts
    }


def _committed_swap(root: Path) -> tuple[Path, dict[str, bytes]]:
    """An artifacts folder with old outputs and a committed, not yet applied, new set."""
    artifacts = root / "data"
    (artifacts / "index").mkdir(parents=True)
    (artifacts / "index" / "a.txt").write_text("old a")
    (artifacts / "index" / "stale.txt").write_text("only in the old set")
    (root / "metrics").mkdir()
    (root / "metrics" / "index.json").write_text("old metrics")
    stage = transaction.staging_root(artifacts) / "index"
    (stage / "new" / "0-index").mkdir(parents=True)
    (stage / "new" / "0-index" / "a.txt").write_text("new a")
    (stage / "new" / "1-index.json").write_text("new metrics")
    transaction.write_journal(stage, {"0-index": "index", "1-index.json": "../metrics/index.json"})
    return artifacts, {"data/index/a.txt": b"new a", "metrics/index.json": b"new metrics"}


def test_roll_forward_puts_the_whole_new_set_in_place(tmp_path: Path) -> None:
    artifacts, expected = _committed_swap(tmp_path)
    assert transaction.committed(artifacts) == ["index"]
    assert transaction.roll_forward(artifacts) == ["index"]
    assert _tree(tmp_path) == expected  # the stale file went with the old set
    assert transaction.committed(artifacts) == []
    assert sorted(p.name for p in transaction.staging_root(artifacts).iterdir()) == [".lock"]
    assert transaction.roll_forward(artifacts) == []


@pytest.mark.parametrize("fail_at", [1, 2, 3, 4])
def test_roll_forward_interrupted_at_any_rename_is_finished_by_the_next(
    tmp_path: Path, fail_at: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifacts, expected = _committed_swap(tmp_path)
    real_replace, calls = os.replace, []

    def replace(source: object, destination: object) -> None:
        calls.append(source)
        if len(calls) == fail_at:
            raise KeyboardInterrupt  # stands for the process dying here
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        transaction.roll_forward(artifacts)
    monkeypatch.setattr(os, "replace", real_replace)
    assert transaction.committed(artifacts) == ["index"]
    transaction.roll_forward(artifacts)
    assert _tree(tmp_path) == expected


def test_discard_removes_only_an_uncommitted_staging_folder(tmp_path: Path) -> None:
    artifacts, _ = _committed_swap(tmp_path)
    abandoned = transaction.staging_root(artifacts) / "embed" / "new"
    abandoned.mkdir(parents=True)
    (abandoned / "0-embed").write_text("half written")
    assert transaction.discard(artifacts, "embed") is True
    assert not abandoned.parent.exists()
    assert transaction.discard(artifacts, "index") is False  # committed: it is rolled forward
    assert transaction.committed(artifacts) == ["index"]


def test_a_recli_command_finishes_a_committed_swap_first(copy: Path, facts: dict) -> None:
    # The index stage was killed after its commit, before its outputs were moved in.
    staged = transaction.staging_root(copy) / "index"
    (staged / "new").mkdir(parents=True)
    shutil.move(copy / "index", staged / "new" / "0-index")
    transaction.write_journal(staged, {"0-index": "index"})
    result = CliRunner().invoke(app, ["recommend", facts["user_id"], "--artifacts", str(copy)])
    assert result.exit_code == 0, result.output
    assert facts["expected_top_title"] in result.output
    assert (copy / "index" / "catalogue.sqlite").exists()
    assert transaction.committed(copy) == []


def _outputs(root: Path) -> tuple[Path, list[Path]]:
    return root / "data", [root / "data" / "embed", root / "metrics" / "embed.json"]


def test_a_stage_reads_what_it_wrote_and_commits_the_set_at_the_end(tmp_path: Path) -> None:
    artifacts, outputs = _outputs(tmp_path)
    io.write_npy(outputs[0] / "stale.npy", np.zeros(2))
    io.write_json(outputs[1], {"old": True})
    layout = Layout(tmp_path)
    with io.stage_outputs(artifacts, "embed", outputs) as running:
        staged = layout.staged(running.staging)
        # The stage's own outputs point into staging; everything else stays where it is.
        assert staged.embed != layout.embed and staged.processed == layout.processed
        io.write_npy(staged.embed / "items.npy", np.arange(3.0))
        # Not in place yet, but the stage itself reads its new output.
        assert not (outputs[0] / "items.npy").exists()
        assert io.read_npy(staged.embed / "items.npy", "embed").tolist() == [0.0, 1.0, 2.0]
        assert io.read_json(outputs[1], "embed") == {"old": True}  # not rewritten yet
        io.write_json(staged.metrics_file("embed"), {"old": False})
        assert io.read_json(staged.metrics_file("embed"), "embed") == {"old": False}
    assert sorted(path.name for path in outputs[0].iterdir()) == ["items.npy"]
    assert json.loads(outputs[1].read_text()) == {"old": False}
    assert staged.final == layout
    assert transaction.committed(artifacts) == []


def test_an_output_the_stage_did_not_write_keeps_its_old_contents(tmp_path: Path) -> None:
    artifacts, outputs = _outputs(tmp_path)
    io.write_json(outputs[1], {"old": True})
    with io.stage_outputs(artifacts, "embed", outputs) as running:
        io.write_npy(Layout(tmp_path).staged(running.staging).embed / "items.npy", np.ones(2))
    assert (outputs[0] / "items.npy").exists()
    assert json.loads(outputs[1].read_text()) == {"old": True}


def test_a_failed_stage_leaves_every_old_output_and_no_staging(tmp_path: Path) -> None:
    artifacts, outputs = _outputs(tmp_path)
    io.write_npy(outputs[0] / "items.npy", np.zeros(2))
    io.write_json(outputs[1], {"old": True})
    (tmp_path / "metrics" / ".embed.json.x1y2.tmp").write_text("left by a killed writer")
    before = _tree(tmp_path)
    with pytest.raises(RuntimeError), io.stage_outputs(artifacts, "embed", outputs) as running:
        staged = Layout(tmp_path).staged(running.staging)
        io.write_npy(staged.embed / "items.npy", np.ones(2))
        io.write_json(staged.metrics_file("embed"), {"old": False})
        raise RuntimeError("the stage failed after writing everything")
    assert _tree(tmp_path) == {k: v for k, v in before.items() if not k.endswith(".tmp")}
    assert [
        p.name for p in transaction.staging_root(artifacts).iterdir() if p.name != ".lock"
    ] == []


def test_paths_outside_the_declared_outputs_are_not_staged(tmp_path: Path) -> None:
    artifacts, outputs = _outputs(tmp_path)
    cache = tmp_path / "data" / "external" / "cache.json"
    with io.stage_outputs(artifacts, "embed", outputs) as running:
        staged = Layout(tmp_path).staged(running.staging)
        assert staged.placed(cache) == cache
        io.write_json(staged.placed(cache), {"download": 1})
        assert cache.exists()


# ------------------------------------------------------------------------------------------
# A journal is read from disk: paths in it are confined, and a crafted one moves nothing.
# ------------------------------------------------------------------------------------------
def _outside(root: Path) -> tuple[Path, dict[str, bytes]]:
    """A folder beside the project that recli must never touch, and its contents."""
    outside = root / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "precious.txt").write_text("mine")
    (outside / "victim.txt").write_text("also mine")
    return outside, _tree(outside)


def _crafted(artifacts: Path, outputs: dict[str, str], stage: str = "evil") -> Path:
    folder = transaction.staging_root(artifacts) / stage
    (folder / "new").mkdir(parents=True)
    for slot in outputs:
        if "/" not in slot and slot not in (".", ".."):
            (folder / "new" / slot).write_text("planted")
    (folder / "journal.json").write_text(json.dumps({"outputs": outputs}))
    return folder


@pytest.mark.parametrize(
    "outputs",
    [
        {"0-x": "../outside/victim.txt"},  # up and out of the artifacts folder
        {"0-x": "../outside/keep"},  # a whole folder, which would be rmtree'd as "old"
        {"0-x": "index/../../outside/victim.txt"},  # out through a folder that exists
        {"0-x": "ABSOLUTE"},  # replaced by the outside file's absolute path
        {"../../../../outside/keep": "index/x"},  # the slot itself climbs out of staging
        {"0-x": "../metrics/../outside/victim.txt"},
        {"0-x": 5},
        [],
    ],
    ids=["file", "folder", "dotdot", "absolute", "slot", "metrics-dotdot", "number", "list"],
)
def test_a_crafted_journal_stops_a_read_only_command_and_touches_nothing(
    copy: Path, facts: dict, outputs: object
) -> None:
    outside, before = _outside(copy.parent)
    if isinstance(outputs, dict) and outputs.get("0-x") == "ABSOLUTE":
        outputs = {"0-x": str(outside / "victim.txt")}
    folder = transaction.staging_root(copy) / "evil"
    (folder / "new").mkdir(parents=True)
    (folder / "new" / "0-x").write_text("planted")
    (folder / "journal.json").write_text(json.dumps({"outputs": outputs}))
    served_before = _tree(copy)
    result = CliRunner().invoke(app, ["recommend", facts["user_id"], "--artifacts", str(copy)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "journal.json" in lines[0] and "delete" in lines[0], lines
    assert _tree(outside) == before
    assert _tree(copy) == served_before
    assert (folder / "journal.json").exists()  # evidence left for the user to look at


def test_a_link_planted_in_staging_is_refused_before_anything_moves(
    copy: Path, facts: dict
) -> None:
    outside, before = _outside(copy.parent)
    folder = _crafted(copy, {"0-index": "index"})
    # `old/` as a link: rolling forward would move the old index *into* the outside folder,
    # and the clean-up would then delete it there.
    (folder / "old").symlink_to(outside / "keep")
    result = CliRunner().invoke(app, ["recommend", facts["user_id"], "--artifacts", str(copy)])
    assert result.exit_code == 1 and "link" in result.output
    assert _tree(outside) == before
    assert (copy / "index" / "catalogue.sqlite").exists()


def test_a_staging_folder_that_is_a_link_is_refused(copy: Path, facts: dict) -> None:
    outside, before = _outside(copy.parent)
    (outside / "evil" / "new").mkdir(parents=True)
    (outside / "evil" / "journal.json").write_text(json.dumps({"outputs": {"a": "index"}}))
    before = _tree(outside)
    (copy / transaction.STAGING_DIR).symlink_to(outside, target_is_directory=True)
    result = CliRunner().invoke(app, ["recommend", facts["user_id"], "--artifacts", str(copy)])
    assert result.exit_code == 1 and "link" in result.output
    assert _tree(outside) == before


def test_a_lock_file_planted_as_a_link_creates_nothing_elsewhere(tmp_path: Path) -> None:
    artifacts, _ = _committed_swap(tmp_path)
    target = tmp_path / "outside-lock"
    (transaction.staging_root(artifacts) / ".lock").symlink_to(target)
    with pytest.raises(RecliError, match="lock"):
        transaction.roll_forward(artifacts)
    assert not target.exists()


def test_a_journal_that_is_not_json_is_one_line_not_a_traceback(copy: Path, facts: dict) -> None:
    folder = transaction.staging_root(copy) / "index"
    folder.mkdir(parents=True)
    (folder / "journal.json").write_bytes(b"\xff{not json")
    result = CliRunner().invoke(app, ["recommend", facts["user_id"], "--artifacts", str(copy)])
    assert result.exit_code == 1
    assert "not a journal recli can read" in result.output and "Traceback" not in result.output
