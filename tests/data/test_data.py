"""The front of the raw-data sources: `load_source` picks the source `data.source` names and reads
it for the project rooted where it is told, whatever the current directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core.config import DataConfig, FilesSource
from pipeline.data import files, movielens, raw
from pipeline.data import source as data
from recli.errors import RecliError

EVENTS = "user_id,item_id,rating,timestamp\na,1,4,10\nb,1,5,11\nb,2,3,12\n"
ITEMS = "item_id,title,genres\n1,Heat (1995),Crime\n2,Up,\n"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with its input files under `input/`, while the current directory is another
    folder that holds different files under the same names."""
    root = tmp_path / "project"
    elsewhere = tmp_path / "elsewhere"
    for folder, events in ((root, EVENTS), (elsewhere, EVENTS.splitlines()[0] + "\nz,9,1,1\n")):
        (folder / "input").mkdir(parents=True)
        (folder / "input" / "events.csv").write_text(events)
        (folder / "input" / "items.csv").write_text(ITEMS)
    monkeypatch.chdir(elsewhere)
    return root


def files_config(interactions: Path) -> DataConfig:
    return DataConfig(
        source="files", files=FilesSource(interactions=interactions, items=Path("input/items.csv"))
    )


def test_relative_files_are_read_relative_to_the_root(project: Path) -> None:
    loaded = data.load_source(files_config(Path("input/events.csv")), project)
    assert loaded.interactions["user_id"].to_list() == ["a", "b", "b"]
    assert loaded.items["title"].to_list() == ["Heat (1995)", "Up"]
    assert loaded.source == "files: events.csv, items.csv"


def test_without_a_root_relative_files_are_read_from_the_current_directory(project: Path) -> None:
    loaded = data.load_source(files_config(Path("input/events.csv")))
    assert loaded.interactions["user_id"].to_list() == ["z"]


def test_a_missing_file_is_named_as_params_yaml_spells_it(project: Path) -> None:
    with pytest.raises(RecliError) as caught:
        data.load_source(files_config(Path("input/missing.csv")), project)
    message = str(caught.value)
    assert message.startswith(f"{Path('input/missing.csv')} not found")
    assert "data.files.interactions" in message
    assert str(project) not in message


def test_movielens_is_fetched_into_the_cache_under_the_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[tuple[Path, Path]] = []

    def fetch(cache_dir: Path, root: Path) -> str:
        calls.append((cache_dir, root))
        return "MovieLens-100K"

    monkeypatch.setattr(data, "load_movielens_100k", fetch)
    cfg = DataConfig(source="movielens-100k", cache_dir=Path("cache"))
    assert data.load_source(cfg, tmp_path) == "MovieLens-100K"
    assert calls == [(Path("cache"), tmp_path)]


def test_the_front_offers_what_the_pipeline_imports_from_it() -> None:
    # preprocess, workflow and the tests import these from `pipeline.data.source`, wherever they
    # live.
    assert data.RawData is raw.RawData
    assert data.load_files is files.load_files
    assert data.load_movielens_100k is movielens.load_movielens_100k
