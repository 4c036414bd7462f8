"""Tamper suite: every served file edited, truncated, grown or replaced is refused, with its name.

What is served is what the index stage built (`recli.integrity`): `recli recommend` checks the
sizes and sampled digests of the catalogue and the Annoy index when it opens them, and `recli
doctor` re-hashes every byte. Each case here damages one file of real (tiny) artifacts the way a
person or a broken copy would, and both commands must say which file and how to fix it.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline import index
from recli import contract, integrity
from recli.cli import app

runner = CliRunner()
CATALOGUE = Path(contract.INDEX_DIR) / contract.CATALOGUE_FILE
INDEX = Path(contract.INDEX_DIR) / contract.INDEX_FILE


def _sql(statement: str, parameters: tuple = ()) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        connection = sqlite3.connect(root / CATALOGUE)
        connection.execute(statement, parameters)
        connection.commit()
        connection.close()

    return edit


def _truncate(relative: Path) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / relative
        with path.open("r+b") as handle:
            handle.truncate(path.stat().st_size // 2)

    return edit


def _grow(relative: Path) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        with (root / relative).open("ab") as handle:
            handle.write(b"\0" * 4096)

    return edit


def _random_bytes(relative: Path) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / relative
        path.write_bytes(os.urandom(path.stat().st_size))  # same size, other bytes

    return edit


def _first_byte_flipped(relative: Path) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / relative
        data = bytearray(path.read_bytes())
        data[0] ^= 0xFF
        path.write_bytes(bytes(data))

    return edit


def _deleted(relative: Path) -> Callable[[Path], None]:
    return lambda root: (root / relative).unlink()


def _empty(relative: Path) -> Callable[[Path], None]:
    return lambda root: (root / relative).write_bytes(b"")


TAMPERING: dict[str, tuple[Callable[[Path], None], Path]] = {
    "catalogue title edited": (_sql("UPDATE items SET title = 'Edited (1999)'"), CATALOGUE),
    "catalogue history rows deleted": (_sql("DELETE FROM history"), CATALOGUE),
    "catalogue user vectors edited": (_sql("UPDATE users SET vector = zeroblob(16)"), CATALOGUE),
    "catalogue meta edited": (
        _sql("UPDATE meta SET value = '0.9' WHERE key = 'text_weight'"),
        CATALOGUE,
    ),
    "catalogue truncated": (_truncate(CATALOGUE), CATALOGUE),
    "catalogue grown": (_grow(CATALOGUE), CATALOGUE),
    "catalogue replaced by random bytes": (_random_bytes(CATALOGUE), CATALOGUE),
    "catalogue emptied": (_empty(CATALOGUE), CATALOGUE),
    "index truncated": (_truncate(INDEX), INDEX),
    "index grown": (_grow(INDEX), INDEX),
    "index replaced by random bytes": (_random_bytes(INDEX), INDEX),
    "index first byte flipped": (_first_byte_flipped(INDEX), INDEX),
    "index emptied": (_empty(INDEX), INDEX),
    "index deleted": (_deleted(INDEX), INDEX),
}


def _one_line(result: object) -> str:
    lines = [line for line in result.output.strip().splitlines() if line.strip()]  # type: ignore[attr-defined]
    assert len(lines) == 1, result.output  # type: ignore[attr-defined]
    return lines[0]


@pytest.mark.parametrize("case", list(TAMPERING))
def test_recommend_refuses_a_tampered_file_and_names_it(copy: Path, facts: dict, case: str) -> None:
    tamper, damaged = TAMPERING[case]
    tamper(copy)
    result = runner.invoke(app, ["recommend", facts["user_id"], "--artifacts", str(copy)])
    assert result.exit_code == 1
    line = _one_line(result)
    assert damaged.name in line, line
    assert "dvc repro" in line, line
    assert "Traceback" not in result.output


@pytest.mark.parametrize("case", list(TAMPERING))
def test_doctor_reports_a_tampered_file(copy: Path, facts: dict, case: str) -> None:
    tamper, damaged = TAMPERING[case]
    tamper(copy)
    result = runner.invoke(app, ["doctor", "--json", "--artifacts", str(copy)])
    assert result.exit_code == 1
    problems = [c for c in json.loads(result.stdout) if c["status"] == "problem"]
    assert any(damaged.name in check["detail"] for check in problems), problems
    assert not any(c["name"] == "served history" and c["status"] == "ok" for c in problems)


def test_an_edit_between_the_samples_is_caught_by_doctor_alone(
    copy: Path, facts: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cheap check reads samples; one byte outside them is the full digest's to find.
    (Smaller samples here, so that the tiny index has bytes between them.)"""
    monkeypatch.setattr(integrity, "BLOCK", 64)
    monkeypatch.setattr(integrity, "SAMPLES", 4)
    index.seal(copy)
    path = copy / INDEX
    size = path.stat().st_size
    step = (size - integrity.BLOCK) / (integrity.SAMPLES - 1)
    offset = integrity.BLOCK + 1  # just past the first sample, well before the second
    assert offset < round(step)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    result = runner.invoke(app, ["recommend", facts["user_id"], "--artifacts", str(copy)])
    assert result.exit_code == 0  # the limit of sampling, stated in recli.integrity
    result = runner.invoke(app, ["doctor", "--json", "--artifacts", str(copy)])
    served = {c["name"]: c for c in json.loads(result.stdout)}["served files"]
    assert served["status"] == "problem" and "items.ann was modified" in served["detail"]


@pytest.mark.parametrize(
    "manifest",
    [
        "not json",
        json.dumps({"files": {"../../elsewhere": {"bytes": 1, "sha256": "a", "sampled": "b"}}}),
        json.dumps({"files": []}),
        json.dumps({}),
    ],
    ids=["not-json", "outside", "wrong-type", "empty"],
)
def test_a_damaged_or_crafted_manifest_is_refused(copy: Path, facts: dict, manifest: str) -> None:
    integrity.manifest_path(copy).write_text(manifest)
    result = runner.invoke(app, ["recommend", facts["user_id"], "--artifacts", str(copy)])
    assert result.exit_code == 1
    line = _one_line(result)
    assert "manifest.json" in line and "dvc repro -f index" in line


def test_a_missing_manifest_is_refused_with_the_fix(copy: Path, facts: dict) -> None:
    integrity.manifest_path(copy).unlink()
    result = runner.invoke(app, ["recommend", facts["user_id"], "--artifacts", str(copy)])
    assert result.exit_code == 1
    assert "manifest.json not found" in _one_line(result)


def test_a_moved_project_still_serves(facts: dict, tmp_path: Path) -> None:
    """The record holds paths relative to the artifacts folder and no times: a copy serves."""
    moved = tmp_path / "elsewhere" / "data"
    shutil.copytree(facts["root"], moved)
    os.utime(moved / CATALOGUE, (1, 1))
    result = runner.invoke(app, ["recommend", facts["user_id"], "--artifacts", str(moved)])
    assert result.exit_code == 0, result.output
    assert facts["expected_top_title"] in result.output


def test_a_rebuild_that_reseals_serves_again(copy: Path, facts: dict) -> None:
    _sql("UPDATE meta SET value = '0.9' WHERE key = 'text_weight'")(copy)
    assert runner.invoke(app, ["recommend", facts["user_id"], "--artifacts", str(copy)]).exit_code
    index.seal(copy)  # what the index stage does last
    result = runner.invoke(app, ["recommend", facts["user_id"], "--artifacts", str(copy)])
    assert result.exit_code == 0, result.output


@pytest.fixture
def with_encoder(copy: Path, tiny_encoder_dir: Path) -> Path:
    """The artifacts with an encoder in place, sealed as the index stage seals it."""
    shutil.copytree(tiny_encoder_dir, copy / contract.ENCODER_DIR)
    index.seal(copy)
    return copy


def _search(root: Path) -> object:
    return runner.invoke(app, ["search", "space opera", "--artifacts", str(root)])


def test_search_refuses_an_edited_encoder_and_names_the_file(with_encoder: Path) -> None:
    weights = with_encoder / contract.ENCODER_DIR / "model.safetensors"
    _random_bytes(weights.relative_to(with_encoder))(with_encoder)
    result = _search(with_encoder)
    assert result.exit_code == 1  # type: ignore[attr-defined]
    line = _one_line(result)
    assert "model.safetensors was modified" in line and "dvc repro -f index" in line


def test_search_refuses_a_file_added_to_the_encoder(with_encoder: Path) -> None:
    (with_encoder / contract.ENCODER_DIR / "extra.json").write_text("{}")
    assert "has no record of" in _one_line(_search(with_encoder))


def test_an_untouched_encoder_passes_the_check(with_encoder: Path) -> None:
    result = _search(with_encoder)
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert "items for" in result.output  # type: ignore[attr-defined]
