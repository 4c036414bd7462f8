from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

# Nothing in the tests may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny random sentence encoder, built once per test session."""
    from tiny_encoder import build_tiny_encoder

    return build_tiny_encoder(tmp_path_factory.mktemp("tiny_encoder"))


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Tiny real serving artifacts (catalogue + Annoy index) and the facts they were built from."""
    from cli_artifacts import build_artifacts

    return build_artifacts(tmp_path_factory.mktemp("artifacts"))


@pytest.fixture
def copy(facts: dict[str, Any], tmp_path: Path) -> Path:
    """A private copy of the artifacts, for tests that damage them."""
    target = tmp_path / "artifacts"
    shutil.copytree(facts["root"], target)
    return target
