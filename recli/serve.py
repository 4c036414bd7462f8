"""Open the served artifacts, the SQLite catalogue and the Annoy index, and check them cheaply.

`Served` is what a caller holds: it finishes a stage's interrupted swap of its outputs, opens the
catalogue and the index (the index on first use), and checks both cheaply (present, the schema
this recli reads, the sizes and sampled digests of the files, the index's size, dimension and item
count agree with the catalogue). What it answers comes from the classes it is built on: the
lookups by dataset id (`recli.lookups`) and the queries `recommend`, `explore`, `similar`,
`search` and `user_profile` (`recli.queries`). The full-file hashes are `recli doctor`'s
(`recli.doctor`); what a query returns is in `recli.results`.

Split that way so this module holds only what is about the files on disk (where they are, whether
they can be trusted, when they are closed), and a query can be read without the checks around it.

`recli recommend` must start fast, so this module imports only the standard library, `annoy` and
the recli modules that do the same: no numpy. Vectors come out of the catalogue as plain lists
and Annoy takes and returns lists.

Everything a user can get wrong (an unknown id, a bad `-k`, missing, stale or corrupted
artifacts) raises `RecliError` with one line naming the problem and the fix.
"""

from __future__ import annotations

from pathlib import Path

from annoy import AnnoyIndex

from recli import catalogue, integrity, transaction
from recli.ann_index import REBUILD, load_index
from recli.catalogue import MetaKey
from recli.contract import (
    CATALOGUE_FILE,
    DEFAULT_ARTIFACTS,
    ENCODER_DIR,
    INDEX_DIR,
    INDEX_FILE,
    SEARCH_INDEX_FILE,
)
from recli.errors import RecliError
from recli.live import LiveStore
from recli.queries import Queries


def _finish_interrupted_swaps(artifacts: Path) -> None:
    """Put in place the outputs a stage committed but was killed before moving (all of them)."""
    pending = transaction.committed(artifacts)
    if not pending:
        return
    try:
        transaction.roll_forward(artifacts)
    except OSError as error:
        raise RecliError(
            f"stage {pending[0]} was interrupted while putting its new outputs in place and they "
            f"cannot be moved now ({error.strerror}): run `dvc repro {pending[0]}`"
        ) from None


class Served(Queries):
    """An open catalogue plus its Annoy index (loaded on first use, with cheap integrity checks),
    answering the lookups of `recli.lookups.Lookups` and the queries of `recli.queries.Queries`.

    Usage: `with Served(Path("data")) as served: served.recommend("1", k=10)`.
    """

    def __init__(self, artifacts: Path = DEFAULT_ARTIFACTS) -> None:
        self.artifacts = Path(artifacts)
        if not self.artifacts.is_dir():
            raise RecliError(
                f"artifacts folder {self.artifacts} not found: run `dvc repro` to build it, "
                "or pass --artifacts PATH"
            )
        _finish_interrupted_swaps(self.artifacts)
        catalogue_path = self.artifacts / INDEX_DIR / CATALOGUE_FILE
        self.index_path = self.artifacts / INDEX_DIR / INDEX_FILE
        self.search_index_path = self.artifacts / INDEX_DIR / SEARCH_INDEX_FILE
        connection = catalogue.connect(catalogue_path)
        try:
            # What is served is what the index stage built: size and sampled digest (cheap).
            integrity.check_sampled(self.artifacts, [catalogue_path])
        except RecliError:
            connection.close()
            raise
        super().__init__(connection, catalogue_path)  # reads the meta (closes a corrupted one)
        built_for = self.meta.get(MetaKey.INDEX_SHA256)  # absent: `recli doctor` names it
        if built_for is not None:
            try:
                self.live = LiveStore.open(self.artifacts, str(built_for))
            except RecliError:
                connection.close()
                raise
        self._index: AnnoyIndex | None = None
        self._search_index: AnnoyIndex | None = None

    def close(self) -> None:
        """Unmap the indexes and close the catalogue (a `with` block does this)."""
        for index in (self._index, self._search_index):
            if index is not None:
                index.unload()
        self._index = self._search_index = None
        super().close()

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def index(self) -> AnnoyIndex:
        """The Annoy index, checked cheaply: it loads, and has the catalogue's dimension and items.

        The full sha256 check reads the whole file, so it lives in `recli doctor` instead.
        """
        if self._index is None:
            self._index = self._load_index()
        return self._index

    @property
    def search_index(self) -> AnnoyIndex:
        """The index over the search space where the catalogue records one (checked as `index`
        is), else `index`."""
        if not self.narrower_search:
            return self.index
        if self._search_index is None:
            self._search_index = self._load_index(
                self.search_index_path, MetaKey.SEARCH_DIMENSION, MetaKey.SEARCH_INDEX_BYTES
            )
        return self._search_index

    def _load_index(
        self,
        path: Path | None = None,
        dimension_key: MetaKey = MetaKey.DIMENSION,
        bytes_key: MetaKey = MetaKey.INDEX_BYTES,
    ) -> AnnoyIndex:
        path = self.index_path if path is None else path
        if path.exists():
            integrity.check_sampled(self.artifacts, [path])
        index = load_index(path, self.meta, self.catalogue_path, dimension_key, bytes_key)
        n_indexed = index.get_n_items()
        expected, rows = self.n_items, f"{self.n_items} items"
        if dimension_key == MetaKey.DIMENSION and self.user_rows:
            expected += self.n_users
            rows += f" and {self.n_users} users"
        if n_indexed != expected:
            index.unload()
            raise RecliError(
                f"{path} holds {n_indexed} rows but the catalogue has {rows}: "
                f"the index is truncated or stale, {REBUILD}"
            )
        return index

    def encoder_path(self, override: Path | None = None) -> Path:
        """The encoder `recli search` loads: `--encoder`, else `<artifacts>/ENCODER_DIR`, whose
        files are checked (sizes and sampled digests) against the index stage's record as the
        catalogue and the index are; an encoder passed with `--encoder` is the user's own."""
        path = Path(override) if override is not None else self.artifacts / ENCODER_DIR
        if not path.exists():
            raise RecliError(
                f"no encoder at {path}: run `dvc repro finetune` (or pass --encoder PATH)"
            )
        if override is None:
            files = sorted(file for file in path.rglob("*") if file.is_file())
            integrity.check_sampled(self.artifacts, files)
        return path
