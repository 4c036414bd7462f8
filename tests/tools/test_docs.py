"""The documentation site: its results tables are what the metrics render, and its nav is whole.

The tables in `docs/` are generated from `metrics/*.json` by `scripts/render_docs.py`. These tests
check that the committed pages hold exactly what the committed metrics render (so a number typed
or edited by hand fails), that the check can fail (a changed metric changes its table), that a
missing file or key renders a note instead of crashing, and that every page in `mkdocs.yml`'s nav
exists. No network, no build: `mkdocs build --strict` runs in CI.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
METRICS = REPO / "metrics"
_spec = importlib.util.spec_from_file_location("render_docs", REPO / "scripts" / "render_docs.py")
assert _spec is not None and _spec.loader is not None
render_docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render_docs)

RERUN = "run: python scripts/render_docs.py"


@pytest.fixture
def metrics_copy(tmp_path: Path) -> Path:
    """A private copy of the metrics files, for tests that change a value."""
    target = tmp_path / "metrics"
    target.mkdir()
    for path in METRICS.glob("*.json"):
        shutil.copy(path, target / path.name)
    return target


@pytest.fixture
def docs_copy(tmp_path: Path) -> Path:
    """A private copy of the pages, rendered from the committed metrics first, so the tests that
    edit it fail only for their own edit (staleness is the first test's business)."""
    target = tmp_path / "docs"
    shutil.copytree(DOCS, target)
    render_docs.render_docs(target, METRICS)
    return target


def _edit(path: Path, change: Any) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def _nav_pages(nav: Any) -> list[str]:
    """Every page a MkDocs nav names, however deeply nested."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for entry in nav for page in _nav_pages(entry)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    return []


def _mkdocs_config() -> dict[str, Any]:
    return yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------
# (a) the committed tables are what the committed metrics render
# --------------------------------------------------------------------------------------------
def test_every_docs_table_matches_the_committed_metrics() -> None:
    stale = render_docs.render_docs(DOCS, METRICS, check=True)
    shown = [f"{page.relative_to(REPO)}: {name}" for page, name in stale]
    assert shown == [], f"docs tables differ from metrics/*.json: {shown}; {RERUN}"


def test_a_number_edited_by_hand_is_caught(docs_copy: Path) -> None:
    page = docs_copy / "results.md"
    text = page.read_text(encoding="utf-8")
    match = next(m for m in render_docs.BLOCK.finditer(text) if m["name"] == "evaluation-test")
    body = match["body"]
    digit = re.search(r"0\.\d{4}", body)
    assert digit is not None
    edited_value = f"{float(digit.group(0)) + 0.0001:.4f}"
    edited = body[: digit.start()] + edited_value + body[digit.end() :]
    page.write_text(text.replace(body, edited, 1), encoding="utf-8")

    stale = render_docs.render_docs(docs_copy, METRICS, check=True)
    assert (page, "evaluation-test") in stale
    assert page.read_text(encoding="utf-8") != text  # --check wrote nothing back
    render_docs.render_docs(docs_copy, METRICS)
    assert page.read_text(encoding="utf-8") == text  # and a run puts the rendered table back


def test_check_exits_1_naming_the_stale_block(
    docs_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ["--check", "--docs", str(docs_copy), "--metrics", str(METRICS)]
    assert render_docs.main(arguments) == 0
    page = docs_copy / "interests.md"
    text = page.read_text(encoding="utf-8")
    page.write_text(text.replace("| interests in all |", "| interests |", 1), encoding="utf-8")
    capsys.readouterr()
    assert render_docs.main(arguments) == 1
    assert "interests-summary" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# (b) a changed metric changes its table
# --------------------------------------------------------------------------------------------
def test_a_changed_metric_changes_the_evaluation_table(metrics_copy: Path) -> None:
    before = render_docs.render_table("evaluation-test", metrics_copy)

    def change(data: dict[str, Any]) -> None:
        data["test"]["fused"]["ndcg@10"] = 0.98765

    _edit(metrics_copy / "evaluation.json", change)
    after = render_docs.render_table("evaluation-test", metrics_copy)
    assert after != before
    assert "0.9877" in after and "0.9877" not in before

    stale = {name for _, name in render_docs.render_docs(DOCS, metrics_copy, check=True)}
    assert "evaluation-test" in stale
    assert "evaluation-validation" not in stale  # only the tables that read the value


@pytest.mark.parametrize(
    ("name", "file", "path", "value", "shown"),
    [
        ("cluster-summary", "cluster.json", ["silhouette"], 0.4321, "0.432"),
        ("index-summary", "index.json", ["search_k"], 123456, "123,456"),
        ("index-summary", "fuse.json", ["text_weight"], 0.4321, "0.4321"),
        ("peer-check-summary", "peer_check.json", ["leave_last_out", "summary", "ease"], None, ""),
        ("byo-check", "byo_check.json", ["test_ndcg@10", "fused"], 0.4321, "0.4321"),
        ("bench-scale-targets", "bench_scale.json", ["measured", "max_peak_gib"], 11.5, "11.50"),
        ("bench-recommend", "bench_recommend.json", ["recommend_ms_median"], 999.9, "999.9 ms"),
        # An hour at 1M on 2 workers, split over the workers: 100× the events on 4× the workers.
        (
            "bench-scale-model",
            "bench_scale.json",
            ["ray", "sizes", 0, "stages", "embed", "seconds"],
            3600.0,
            "| `embed` | workers | texts grow with users and items; encoded by the actor pool | "
            "3,600 s | 25.0 h |",
        ),
    ],
)
def test_a_changed_value_changes_each_kind_of_table(
    metrics_copy: Path, name: str, file: str, path: list[str], value: Any, shown: str
) -> None:
    if not (metrics_copy / file).exists():
        pytest.skip(f"metrics/{file} is not there")
    before = render_docs.render_table(name, metrics_copy)

    def change(data: dict[str, Any]) -> None:
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        if value is None:
            del parent[path[-1]]  # a section removed: the table renders without it
        else:
            parent[path[-1]] = value

    _edit(metrics_copy / file, change)
    after = render_docs.render_table(name, metrics_copy)
    assert after != before
    assert shown in after


def test_the_committed_metrics_have_the_shapes_the_renderer_knows() -> None:
    """The renderer turns a value of an unexpected type into a note so the site still builds;
    on the committed metrics that would be a renderer bug, not a missing measurement."""
    odd = {
        name: text
        for name in render_docs.TABLES
        if "unexpected shape" in (text := render_docs.render_table(name, METRICS))
    }
    assert odd == {}


# --------------------------------------------------------------------------------------------
# Absent files and keys render a note, never a traceback
# --------------------------------------------------------------------------------------------
def test_every_table_renders_a_note_when_its_metrics_are_missing(tmp_path: Path) -> None:
    for name in render_docs.TABLES:
        text = render_docs.render_table(name, tmp_path)
        assert text.startswith("*Not rendered:"), (name, text)


@pytest.mark.parametrize("empty", [{}, [], {"test": {}, "sizes": [], "runs": []}])
def test_every_table_survives_files_without_the_keys_it_reads(
    metrics_copy: Path, empty: Any
) -> None:
    for path in metrics_copy.glob("*.json"):
        path.write_text(json.dumps(empty), encoding="utf-8")
    for name in render_docs.TABLES:
        render_docs.render_table(name, metrics_copy)  # no exception is the test


def test_the_optional_integrity_and_cpu_sections_render_when_present(metrics_copy: Path) -> None:
    path = metrics_copy / "bench_recommend.json"
    if not path.exists():
        pytest.skip("metrics/bench_recommend.json is not there")

    def change(data: dict[str, Any]) -> None:
        data["integrity"] = {
            "sampled_check_ms_median": 0.0421,
            "sampled_check_bytes_read": 524288,
            "served_bytes": 12582912,
            "full_check_ms_every_served_file": 31.5,
            "sampled_check_share_of_recommend": 0.00026,
        }
        data.setdefault("environment", {})["cpu"] = "Example CPU 9000"

    _edit(path, change)
    integrity = render_docs.render_table("bench-recommend-integrity", metrics_copy)
    assert "0.042 ms" in integrity and "31.5 ms" in integrity and "0.03%" in integrity
    assert "0.042 ms" in render_docs.render_table("bench-recommend", metrics_copy)
    assert "Example CPU 9000" in render_docs.render_table(
        "bench-recommend-environment", metrics_copy
    )


def test_the_model_names_are_the_clis() -> None:
    from recli.metrics_view import MODEL_NAMES

    table = render_docs.render_table("evaluation-test", METRICS)
    if table.startswith("*Not rendered"):
        pytest.skip("metrics/evaluation.json is not there")
    evaluation = json.loads((METRICS / "evaluation.json").read_text(encoding="utf-8"))
    for model in evaluation["test"]:
        name = MODEL_NAMES.get(model, model)
        if model == evaluation.get("served", "fused"):
            assert f"| **{name} (served)** |" in table  # the served row, bold and marked
        else:
            assert f"| {name} |" in table


# --------------------------------------------------------------------------------------------
# Block names, the nav, and no results typed by hand
# --------------------------------------------------------------------------------------------
def test_every_block_names_a_table_and_every_table_is_used() -> None:
    used = {
        name
        for page in render_docs.pages(DOCS)
        for name in render_docs.block_names(page.read_text(encoding="utf-8"))
    }
    assert used - set(render_docs.TABLES) == set()
    assert set(render_docs.TABLES) - used == set()


def test_an_unknown_block_name_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "page.md").write_text(
        "# A page\n\n<!-- table: no-such-table -->\n<!-- /table -->\n", encoding="utf-8"
    )
    assert render_docs.main(["--docs", str(tmp_path), "--metrics", str(METRICS)]) == 2


def test_every_nav_page_exists_and_every_page_is_in_the_nav() -> None:
    config = _mkdocs_config()
    docs = REPO / config.get("docs_dir", "docs")
    nav = _nav_pages(config["nav"])
    assert nav, "mkdocs.yml has no nav"
    missing = [page for page in nav if not (docs / page).is_file()]
    assert missing == []
    pages = {path.relative_to(docs).as_posix() for path in docs.rglob("*.md")}
    assert pages - set(nav) == set()


def test_no_results_table_is_typed_by_hand() -> None:
    """Outside the generated blocks, no table row holds a metric-like number (0.xxx): such a
    table belongs between markers, rendered from metrics/*.json."""
    typed = []
    for page in render_docs.pages(DOCS):
        text = render_docs.BLOCK.sub("", page.read_text(encoding="utf-8"))
        typed += [
            f"{page.name}: {line}"
            for line in text.splitlines()
            if line.startswith("|") and re.search(r"\b\d\.\d{3,}\b", line)
        ]
    assert typed == []


def test_the_readme_screen_is_what_the_tool_prints() -> None:
    # It needs the built artifacts (`dvc repro`), which a fresh clone, and CI, do not have.
    if not (REPO / "data" / "index" / "catalogue.sqlite").exists():
        pytest.skip("no built artifacts here: run dvc repro")
    result = subprocess.run(
        [sys.executable, "scripts/readme_screen.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
