"""`recli doctor`'s checks, called as a library: each damage shows up as the check that names it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_artifacts import CF_DIMENSION

from pipeline import index
from pipeline.core.sections import IndexConfig
from recli import catalogue, contract, serve
from recli import doctor as doctor_module
from recli.doctor import doctor
from recli.errors import RecliError
from recli.results import Check

ALL_CHECKS = [
    "artifacts folder",
    "catalogue",
    "catalogue meta",
    "served files",
    "index",
    "index sha256",
    "upstream files",
    "live updates",
    "test query",
    "served history",
    "staging",
    "encoder",
]


def _set_meta(root: Path, key: str, value: Any) -> None:
    connection = sqlite3.connect(root / contract.INDEX_DIR / contract.CATALOGUE_FILE)
    connection.execute("UPDATE meta SET value = ? WHERE key = ?", (json.dumps(value), key))
    connection.commit()
    connection.close()
    if (root / contract.INDEX_DIR / contract.INDEX_FILE).exists():
        index.seal(root)  # a build that recorded this, not an edit: the record matches


def _delete_meta(root: Path, key: str) -> None:
    connection = sqlite3.connect(root / contract.INDEX_DIR / contract.CATALOGUE_FILE)
    connection.execute("DELETE FROM meta WHERE key = ?", (key,))
    connection.commit()
    connection.close()
    index.seal(root)


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def test_fresh_artifacts_pass_every_check(facts: dict[str, Any]) -> None:
    checks = doctor(facts["root"])
    assert [check.name for check in checks] == ALL_CHECKS
    by_name = _by_name(checks)
    assert {check.status for check in checks} <= {"ok", "warning", "skipped"}
    assert by_name["catalogue"].detail == (
        f"schema {catalogue.SCHEMA_VERSION}, {facts['n_users']} users, {facts['n_items']} items, "
        "2 clusters"
    )
    dimension = facts["text_dimension"] + CF_DIMENSION
    assert by_name["index"].detail == f"{facts['n_items']} items, {dimension}-d"
    assert by_name["index sha256"].status == "ok"
    assert by_name["live updates"].detail == "no event added since the build"
    assert by_name["test query"].detail.startswith("recommend 0: 10 items in ")
    # The fixture records an upstream file it does not ship, and has no encoder.
    assert by_name["upstream files"].status == "skipped"
    assert by_name["encoder"].status == "warning"
    assert "only `recli search` needs it" in by_name["encoder"].detail


def test_missing_artifacts_folder_is_the_only_check(tmp_path: Path) -> None:
    (check,) = doctor(tmp_path / "nowhere")
    assert check == Check(
        "artifacts folder", "problem", f"{tmp_path / 'nowhere'} not found: run `dvc repro`"
    )


def test_index_from_another_run_is_caught_by_doctor(copy: Path, facts: dict[str, Any]) -> None:
    # Same item count and dimension, different vectors: only the hash can tell.
    with serve.Served(copy) as served:
        vectors = [served.index.get_item_vector(i) for i in range(served.n_items)]
    index_path = copy / contract.INDEX_DIR / contract.INDEX_FILE
    index.build_annoy(np.array(vectors)[::-1], IndexConfig(n_trees=3), index_path)
    checks = _by_name(doctor(copy))
    assert checks["served files"].status == "problem"
    assert "items.ann was modified" in checks["served files"].detail
    assert checks["index sha256"].status == "problem"
    assert "dvc repro -f index" in checks["index sha256"].detail
    assert "test query" not in checks  # no query once something is wrong
    with serve.Served(copy) as served, pytest.raises(RecliError, match=r"items\.ann"):
        served.recommend(facts["user_id"])  # and the cheap check refuses to serve it


def test_doctor_reports_schema_and_missing_index(copy: Path) -> None:
    (copy / contract.INDEX_DIR / contract.INDEX_FILE).unlink()
    checks = _by_name(doctor(copy))
    assert checks["index"].status == "problem"
    assert checks["index sha256"] == Check("index sha256", "skipped", "no index file")
    _set_meta(copy, "schema_version", 99)
    checks = _by_name(doctor(copy))
    assert checks["catalogue"].status == "problem"
    assert "schema version 99" in checks["catalogue"].detail
    assert "index" not in checks  # nothing to check the index against


def test_missing_meta_keys_are_named(copy: Path) -> None:
    _delete_meta(copy, "text_scale")
    _delete_meta(copy, "index_sha256")
    checks = _by_name(doctor(copy))
    assert checks["catalogue meta"] == Check(
        "catalogue meta", "problem", "missing text_scale, index_sha256: run `dvc repro -f index`"
    )
    assert checks["index sha256"] == Check(
        "index sha256", "warning", "the catalogue records no index_sha256"
    )


def test_upstream_files_present_and_absent(copy: Path) -> None:
    upstream = copy / contract.PROCESSED_DIR / "train.parquet"
    upstream.parent.mkdir()
    upstream.write_bytes(b"the training split the index was built from")
    recorded = contract.file_digest(upstream)[: contract.DIGEST_CHARS]
    _set_meta(copy, "built_from", {"processed/train.parquet": recorded, "embed/x.npy": "ab"})
    assert _by_name(doctor(copy))["upstream files"] == Check(
        "upstream files", "ok", "1 match the catalogue (1 not present)"
    )
    upstream.write_bytes(b"a newer training split")
    check = _by_name(doctor(copy))["upstream files"]
    assert check.status == "problem"
    assert "changed since the index was built (processed/train.parquet)" in check.detail


def test_encoder_present(copy: Path) -> None:
    encoder = copy / contract.ENCODER_DIR
    encoder.mkdir(parents=True)  # the doctor checks it is there; `recli search` loads it
    assert _by_name(doctor(copy))["encoder"] == Check("encoder", "ok", str(encoder))


def test_the_history_check_catches_recommendations_of_items_the_user_has(
    facts: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    check = _by_name(doctor(facts["root"]))["served history"]
    assert check.status == "ok" and f"of {facts['n_users']} users" in check.detail
    # A serving fault: `recommend` forgets what the users did, so their own block items (which
    # score highest for them) come back.
    monkeypatch.setattr(serve.Served, "history_indices", lambda self, user_idx: [])
    check = _by_name(doctor(facts["root"]))["served history"]
    assert check.status == "problem" and "already have" in check.detail


def test_a_killed_stage_s_staging_folder_is_a_warning(copy: Path) -> None:
    (copy / ".staging" / "embed" / "new").mkdir(parents=True)
    check = _by_name(doctor(copy))["staging"]
    assert check.status == "warning" and "embed" in check.detail


@pytest.mark.parametrize("named", ["../outside.bin", "ABSOLUTE", "processed/../../outside.bin"])
def test_upstream_paths_outside_the_artifacts_are_never_read(
    copy: Path, named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = copy.parent / "outside.bin"
    outside.write_bytes(b"someone else's file")
    named = str(outside) if named == "ABSOLUTE" else named
    _set_meta(copy, "built_from", {named: "0" * 16})
    opened: list[Path] = []
    real_digest = doctor_module.file_digest

    def spy(path: Path) -> str:
        opened.append(Path(path).resolve())
        return real_digest(path)

    monkeypatch.setattr(doctor_module, "file_digest", spy)
    check = _by_name(doctor(copy))["upstream files"]
    assert check.status == "problem" and "outside the artifacts folder" in check.detail
    assert outside.resolve() not in opened


def test_a_crafted_journal_is_a_problem_not_the_previous_run(copy: Path) -> None:
    folder = copy / ".staging" / "index"
    (folder / "new").mkdir(parents=True)
    (folder / "journal.json").write_text(json.dumps({"outputs": {"0-index": "../../elsewhere"}}))
    checks = _by_name(doctor(copy))
    assert checks["catalogue"].status == "problem"
    assert checks["staging"].status == "problem"
    assert "outside the artifacts and metrics folders" in checks["staging"].detail
    assert "previous run" not in checks["staging"].detail
