"""`Engine` on the local backend, and what the Ray backend says when Ray is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipeline.core.config import EngineConfig, parse_params
from pipeline.engine.runner import Engine
from recli.errors import RecliError


def _piece(index: int, path: Path) -> tuple[int, bool]:
    return index * index, path.is_absolute()


def test_the_local_backend_runs_the_pieces_here_in_order() -> None:
    engine = Engine(EngineConfig())
    with engine.session() as same:
        assert same is engine
        results = engine.map(_piece, [(3, Path("a")), (1, Path("b")), (2, Path("/c"))])
    assert results == [(9, False), (1, False), (4, True)]  # paths untouched here
    assert engine.workers() == 1 and not engine.is_ray


def test_the_ray_backend_without_ray_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    engine = Engine(EngineConfig(backend="ray"))
    expected = r'Ray is not installed: pip install -e "\.\[ray\]"'
    with pytest.raises(RecliError, match=expected), engine.session():
        pass


def test_engine_settings_are_checked_with_their_key() -> None:
    with pytest.raises(RecliError, match=r"engine\.backend"):
        parse_params({"engine": {"backend": "spark"}})
    with pytest.raises(RecliError, match=r"engine\.workers: .*at least 1"):
        parse_params({"engine": {"workers": 0}})
    with pytest.raises(RecliError, match=r"engine\.partitions"):
        parse_params({"engine": {"partitions": 0}})
    assert parse_params({"engine": {"workers": 3}}).engine.workers == 3
