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

from pathlib import Path

from pipeline.core.config import DataConfig
from pipeline.data.files import load_files
from pipeline.data.movielens import load_movielens_100k
from pipeline.data.raw import RawData
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
