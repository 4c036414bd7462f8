"""What the `index` stage writes for `recli`, besides the Annoy index: the catalogue's rows and the
manifest that seals every served file.

The catalogue's schema and writer are `recli.catalogue`'s (serving owns its format); this module
only turns the pipeline's frames and arrays into rows in its column orders. The manifest is
`recli.integrity`'s record, written last, once every served file is final.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline.core import io
from pipeline.data.artifacts import InterestSets, Processed, Topics
from recli import catalogue, contract, integrity


def served_files(artifacts: Path, written: Callable[[Path], Path] = Path) -> list[Path]:
    """Every file `recli` serves from: the catalogue, the Annoy index (and the one over the
    search space, where the index stage wrote one: `written` maps a served path to where this
    run wrote it) and the encoder `recli search` loads (where one was saved)."""
    index_dir, encoder = artifacts / contract.INDEX_DIR, artifacts / contract.ENCODER_DIR
    model = sorted(path for path in encoder.rglob("*") if path.is_file())
    search = index_dir / contract.SEARCH_INDEX_FILE
    searched = [search] if written(search).exists() else []
    return [index_dir / contract.CATALOGUE_FILE, index_dir / contract.INDEX_FILE, *searched, *model]


def seal(artifacts: Path, written: Callable[[Path], Path] = Path) -> None:
    """Write `index/manifest.json`, the record `recli` checks what it serves against
    (`recli.integrity`): last, once every served file is final. Files are named where they are
    served from and read where this run wrote them (`written`: a staged layout's `placed`)."""
    files = served_files(artifacts, written)
    manifest = integrity.record(artifacts, files, {path: written(path) for path in files})
    io.write_json(written(integrity.manifest_path(artifacts)), manifest)


def make_read_only(index_dir: Path) -> None:
    """The catalogue and the Annoy index in `index_dir`, read-only.

    `cp` over the index rewrites in place a file that a running query has mapped, which kills
    that query (SIGBUS); refused, the copy has to replace the file, as the pipeline and DVC do,
    which leaves a running query's mapping intact.
    """
    for name in (contract.CATALOGUE_FILE, contract.INDEX_FILE, contract.SEARCH_INDEX_FILE):
        if (index_dir / name).exists():
            (index_dir / name).chmod(0o444)


def served_means(table: pl.DataFrame, sets: InterestSets, items: np.ndarray) -> np.ndarray:
    """Each served interest's mean fused item vector, in the table's row order."""
    means = sets.means(items)
    order = table.with_row_index("row").sort(["user_idx", "interest"])["row"].to_numpy()
    aligned = np.empty_like(means)
    aligned[order] = means
    return aligned


def write_catalogue(
    path: Path,
    processed: Processed,
    fused_users: np.ndarray,
    assignments: dict[int, int],
    profiles: list[dict[str, Any]],
    meta: Mapping[str, Any],
    over_represented: pl.DataFrame | None = None,
    user_interests: pl.DataFrame | None = None,
    interest_vectors: tuple[np.ndarray, np.ndarray] | None = None,
    topics: Topics | None = None,
    search_basis: np.ndarray | None = None,
) -> None:
    """Everything the CLI shows, in one SQLite file, written atomically by `recli.catalogue`'s
    writer: this adapter only turns the frames and arrays into rows in its column orders.

    `fused_users` are the served user vectors and the history table holds every event of every
    user (all splits and the cold-item events): what is served knows everything the user did.
    `over_represented` are the terms each user's own history over-represents
    (`terms.over_represented_terms` rows), stored per user as JSON in rank order;
    `user_interests` the interests stage's table (one row per interest), with `interest_vectors`
    its rows' (centroids, fused means); `topics` the catalogue's topics; `search_basis` the
    basis of the index's search space where it is narrower than the fused one (fused width ×
    its width): each user's vector and each interest's mean are stored in that space too, and
    the basis by rows, for queries made at serving time. `meta` is keyed by
    `recli.catalogue.MetaKey` (the writer refuses any other key).
    """
    history = processed.history_served
    events = dict(history.group_by("user_idx").len().iter_rows())
    own: dict[int, list[dict[str, Any]]] = {}
    if over_represented is not None:
        for row in over_represented.iter_rows(named=True):
            own.setdefault(row.pop("user_idx"), []).append(row)
    centroids, means = interest_vectors or (None, None)

    def searched(vector: np.ndarray | None) -> bytes | None:
        if search_basis is None or vector is None:
            return None
        return catalogue.pack_vector(vector @ search_basis)

    with io.atomic_path(path) as temporary:
        temporary.unlink()  # sqlite creates its own file
        connection = sqlite3.connect(temporary)
        try:
            catalogue.create_schema(connection)
            catalogue.insert_meta(connection, meta)
            catalogue.insert_items(
                connection,
                (
                    (
                        row["item_idx"],
                        row["item_id"],
                        row["title"],
                        row["year"],
                        row["genres"] or [],
                        row["tags"] or [],
                        int(row["cold"]),
                        row["train_count"],
                        None if topics is None else int(topics.item_topic[row["item_idx"]]),
                    )
                    for row in processed.items.iter_rows(named=True)
                ),
            )
            if topics is not None:
                catalogue.insert_topics(
                    connection,
                    (
                        (
                            profile["topic"],
                            profile["label"],
                            profile["size"],
                            profile,
                            catalogue.pack_vector(topics.centroids[profile["topic"]]),
                        )
                        for profile in topics.profiles
                    ),
                )
            catalogue.insert_clusters(
                connection,
                (
                    (profile["cluster"], profile["label"], profile["size"], profile)
                    for profile in profiles
                ),
            )
            catalogue.insert_users(
                connection,
                (
                    (
                        row["user_idx"],
                        row["user_id"],
                        assignments.get(row["user_idx"]),
                        events.get(row["user_idx"], 0),
                        catalogue.pack_vector(fused_users[row["user_idx"]]),
                        own.get(row["user_idx"], []),
                        searched(fused_users[row["user_idx"]]),
                    )
                    for row in processed.users.iter_rows(named=True)
                ),
            )
            catalogue.insert_history(
                connection, history.select(catalogue.HISTORY_COLUMNS).iter_rows()
            )
            if user_interests is not None:
                catalogue.insert_user_interests(
                    connection,
                    (
                        (
                            row["user_idx"],
                            row["interest"],
                            row["label"],
                            row["weight"],
                            row["events"],
                            row["medoid"],
                            row["first_timestamp"],
                            row["last_timestamp"],
                            row["group"],  # the interests stage's name for the cluster
                            row["items"],
                            row["terms"],
                            None if centroids is None else catalogue.pack_vector(centroids[number]),
                            None if means is None else catalogue.pack_vector(means[number]),
                            searched(None if means is None else means[number]),
                        )
                        for number, row in enumerate(user_interests.iter_rows(named=True))
                    ),
                )
            if search_basis is not None:
                catalogue.insert_search_basis(
                    connection,
                    ((row, catalogue.pack_vector(image)) for row, image in enumerate(search_basis)),
                )
            connection.commit()
        finally:
            connection.close()
