"""The shape of the code: stages never import each other, no import cycles, and `dvc.yaml` tells
the truth about what each stage reads (its code's imports, its outputs' paths)."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest
import yaml

from pipeline.core.layout import STAGE_OUTPUTS
from pipeline.workflow import STAGES
from recli import contract

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "recli")


def _module_path(module: str) -> Path | None:
    """The file of a project module (`pipeline.core.io` -> pipeline/core/io.py), None for anything
    else."""
    if module.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


@cache
def direct_imports(module: str) -> frozenset[str]:
    """Project modules `module` imports anywhere in its file (function-level imports included)."""
    path = _module_path(module)
    assert path is not None, module
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pipeline.core import io` names a module; `from pipeline.core.io import x` names
            # one too.
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(name for name in names if _module_path(name) is not None)
    found.discard(module)
    # A package's __init__ is imported with any of its modules but holds nothing stages use.
    return frozenset(name for name in found if _module_path(name).name != "__init__.py")


def imported_closure(module: str) -> set[str]:
    seen: set[str] = set()
    stack = [module]
    while stack:
        for imported in direct_imports(stack.pop()):
            if imported not in seen:
                seen.add(imported)
                stack.append(imported)
    return seen


def _relative(module: str) -> str:
    path = _module_path(module)
    assert path is not None
    return path.relative_to(ROOT).as_posix()


def _all_modules() -> list[str]:
    modules = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name == "__init__.py":
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules.append(".".join(parts))
    return modules


@pytest.fixture(scope="module")
def dvc_stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def test_the_import_walk_finds_known_imports() -> None:
    # Guard against a walker that finds nothing (every test below would then pass vacuously).
    assert "pipeline.core.io" in direct_imports("pipeline.preprocess")
    assert "recli.errors" in imported_closure("pipeline.preprocess")
    assert "recli.catalogue" in direct_imports("pipeline.index")


def test_no_stage_imports_another_stage() -> None:
    stages = {f"pipeline.{stage}" for stage in STAGES}
    for module in _all_modules():
        reached = imported_closure(module) & stages - {module}
        assert not reached, f"{module} imports the stage module(s) {sorted(reached)}"


def test_no_import_cycles() -> None:
    for module in _all_modules():
        assert module not in imported_closure(module), f"{module} imports itself through others"


def test_serving_never_imports_the_pipeline() -> None:
    # Not even lazily: `recli search` runs its own encoder (`recli.query_encoder`).
    for module in _all_modules():
        if module.startswith("recli."):
            reached = {name for name in direct_imports(module) if name.startswith("pipeline.")}
            assert not reached, f"{module} imports {sorted(reached)}"


@pytest.mark.parametrize("stage", STAGES)
def test_dvc_deps_are_exactly_the_code_each_stage_imports(stage: str, dvc_stages: dict) -> None:
    module = f"pipeline.{stage}"
    expected = {_relative(name) for name in {module, *imported_closure(module)}}
    listed = {dep for dep in dvc_stages[stage]["deps"] if dep.endswith(".py")}
    missing, unused = expected - listed, listed - expected
    assert not missing, f"dvc.yaml stage {stage} imports but does not list {sorted(missing)}"
    assert not unused, f"dvc.yaml stage {stage} lists but never imports {sorted(unused)}"


@pytest.mark.parametrize("stage", STAGES)
def test_dvc_outputs_are_the_ones_the_stage_contract_names(stage: str, dvc_stages: dict) -> None:
    declared = dvc_stages[stage]
    listed = [
        next(iter(entry)) if isinstance(entry, dict) else entry
        for key in ("outs", "metrics")
        for entry in declared.get(key, [])
    ]
    assert sorted(listed) == sorted(STAGE_OUTPUTS[stage])


def test_every_stage_reads_only_what_earlier_stages_write(dvc_stages: dict) -> None:
    written: set[str] = set()
    for stage in STAGES:
        data_deps = {dep for dep in dvc_stages[stage]["deps"] if dep.startswith("data/")}
        # What users give: their files, and the events they added live (`recli.live`).
        given = {"data/input", f"data/{contract.LIVE_DIR}"}
        assert data_deps - given <= written, (stage, data_deps - written)
        written.update(STAGE_OUTPUTS[stage])
