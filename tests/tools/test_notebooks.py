"""The teaching notebooks: no logic of their own, outputs made by the committed code, no paths of
the machine that ran them, and (slow) each one runs top to bottom in small mode.

When a staleness test fails, re-run the notebooks: `python scripts/run_notebooks.py` (after
`dvc repro`, a few minutes).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "run_notebooks", REPO / "scripts" / "run_notebooks.py"
)
assert _spec is not None and _spec.loader is not None
run_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_notebooks)

NOTEBOOKS = run_notebooks.notebook_paths()
CASE_STUDIES = {
    "01-quickstart",
    "02-interest-clusters",
    "03-sparsity-and-cold-start",
    "04-experiments",
    "05-interest-exploration",
}
RERUN = "re-run it: python scripts/run_notebooks.py"
by_notebook = pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _trees(path: Path) -> list[ast.Module]:
    return [ast.parse(cell.source, filename=path.name) for cell in _code_cells(_read(path))]


def test_every_case_study_is_a_notebook() -> None:
    assert {path.stem for path in NOTEBOOKS} == CASE_STUDIES


# --------------------------------------------------------------------------------------------
# Lint: notebooks call the library, they do not re-implement it
# --------------------------------------------------------------------------------------------
@by_notebook
def test_defines_no_functions_or_classes(path: Path) -> None:
    defined = [
        f"{type(node).__name__} {node.name} (line {node.lineno} of a cell)"
        for tree in _trees(path)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    ]
    assert not defined, (
        f"{path.name} defines {defined}: logic belongs in pipeline/ or recli/, "
        "where it is tested; the notebook should call it"
    )


@by_notebook
def test_imports_the_library_and_only_its_public_names(path: Path) -> None:
    trees = _trees(path)
    imported = {
        node.module.split(".")[0]
        for tree in trees
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert {"pipeline", "recli"} & imported, f"{path.name} imports neither pipeline nor recli"
    private = [
        name.name
        for tree in trees
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for name in node.names
        if name.name.startswith("_")
    ] + [
        node.attr
        for tree in trees
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    ]
    assert not private, f"{path.name} uses private names {private}: use the public API"


@by_notebook
def test_first_code_cell_is_the_parameters_cell(path: Path) -> None:
    first = _code_cells(_read(path))[0]
    assert "parameters" in first.metadata.get("tags", [])
    assert run_notebooks.MODE_ENV in first.source
    assert "params.yaml" in first.source


# --------------------------------------------------------------------------------------------
# Committed outputs: from a real run of the committed code, readable anywhere
# --------------------------------------------------------------------------------------------
@by_notebook
def test_outputs_come_from_the_committed_code(path: Path) -> None:
    notebook = _read(path)
    stamp = notebook.metadata.get(run_notebooks.STAMP_KEY)
    assert stamp, f"{path.name} has no outputs stamp: {RERUN}"
    assert stamp["mode"] == "real", f"{path.name} outputs come from a {stamp['mode']} run: {RERUN}"
    assert stamp["cells_digest"] == run_notebooks.cells_digest(notebook), (
        f"{path.name}: code cells changed since its outputs were produced: {RERUN}"
    )
    assert stamp["source_digest"] == run_notebooks.source_digest(), (
        f"{path.name}: pipeline/, recli/, params.yaml or dvc.yaml changed since its outputs "
        f"were produced: {RERUN}"
    )


@by_notebook
def test_committed_outputs_are_complete(path: Path) -> None:
    cells = _code_cells(_read(path))
    assert all(cell.execution_count is not None for cell in cells), f"{path.name}: {RERUN}"
    errors = [
        output.get("ename")
        for cell in cells
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert not errors, f"{path.name} has error outputs {errors}"


@by_notebook
def test_outputs_hold_no_machine_paths(path: Path) -> None:
    assert not run_notebooks.machine_paths(_read(path))


def test_readme_links_every_notebook() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    missing = [path.name for path in NOTEBOOKS if f"notebooks/{path.name}" not in readme]
    assert not missing, f"README.md does not link {missing}"


def test_digest_covers_code_and_params() -> None:
    covered = {path.relative_to(REPO).as_posix() for path in run_notebooks.source_files()}
    assert {"params.yaml", "dvc.yaml", "pipeline/evaluate.py", "recli/serve.py"} <= covered


# --------------------------------------------------------------------------------------------
# Execution: every notebook, top to bottom, on the small configuration (what CI can afford)
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
@by_notebook
def test_runs_top_to_bottom_in_small_mode(path: Path) -> None:
    notebook = _read(path)
    run_notebooks.execute(notebook, "small")  # raises CellExecutionError on any failing cell
    assert not run_notebooks.machine_paths(notebook)
