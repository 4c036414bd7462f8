from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
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


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """One real Ray cluster for the whole session, on this machine: a head node and one worker
    node with one CPU each (two CPUs in all, fixed, as Ray's testing advice has it for small CI
    machines: start it once, share it), so training really runs on two nodes. A stage run in
    this process finds Ray connected and uses it rather than starting its own."""
    import ray
    from ray.cluster_utils import Cluster

    # Ray warns when the token authentication it now enables by default is left on locally.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    store = 256 * 1024 * 1024
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": store, "include_dashboard": False},
    )
    cluster.add_node(num_cpus=1, object_store_memory=store)
    ray.init(address=cluster.address, log_to_driver=False)
    yield ray
    ray.shutdown()
    cluster.shutdown()
