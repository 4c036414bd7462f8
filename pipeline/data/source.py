"""Raw data sources, read and normalised to one schema (`RawData`); no cleaning happens here.

This module is the front: `load_source` reads the source `data.source` names, for a project
rooted at any folder. The sources themselves live in their own modules:

- `pipeline.data.movielens`: MovieLens-100K, fetched once into `data.cache_dir` and verified;
- `pipeline.data.files`: bring-your-own CSV/TSV/parquet files (`data.files`);
- `pipeline.data.raw`: the `RawData` shape both produce (re-exported here, where callers import it).

Duplicates and rows with missing ids are kept on purpose: `preprocess` drops and counts them.
Structural problems (missing file or column, non-numeric ratings, bad encoding) raise
`RecliError` naming the params key that fixes them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pipeline.core.config import DataConfig
from pipeline.data.files import load_files
from pipeline.data.movielens import load_movielens_100k
from pipeline.data.raw import RawData
from recli import live
from recli.errors import RecliError

__all__ = ["RawData", "load_files", "load_movielens_100k", "load_source"]


def load_source(cfg: DataConfig, root: Path = Path(".")) -> RawData:
    """Load the source that `data.source` names, for the project rooted at `root`.

    Relative paths in `cfg` (`data.cache_dir`, `data.files.*`) are read under `root`, so a stage
    can run for any project folder without changing directory; absolute paths stay as they are.
    """
    if cfg.source == "movielens-100k":
        return load_movielens_100k(cfg.cache_dir, root)
    if cfg.source == "files":
        return load_files(cfg.files, root)
    raise RecliError(f"data.source '{cfg.source}' is unknown: use 'movielens-100k' or 'files'")


def with_live_events(raw: RawData, artifacts: Path) -> tuple[RawData, int]:
    """`raw` with the events `recli add` and `recli ingest` logged under `artifacts`
    (`recli.live`) appended after the source's, and how many there were. They are the user's data
    as much as the source's: the same drops and counts apply, and the split sees them in time."""
    import polars as pl

    from pipeline.data.raw import INTERACTIONS_SCHEMA

    logged = live.events_for_pipeline(live.live_path(artifacts))
    if not logged:
        return raw, 0
    added = pl.DataFrame(logged, schema=list(live.LOG_COLUMNS), orient="row")
    added = added.select(pl.col(name).cast(kind) for name, kind in INTERACTIONS_SCHEMA.items())
    interactions = pl.concat([raw.interactions.select(INTERACTIONS_SCHEMA.names()), added])
    return replace(raw, interactions=interactions), len(logged)
