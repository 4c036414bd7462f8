"""The interests stage's per-user work, one user partition at a time (`Engine.map` runs each
function here, or as a Ray task per partition).

A user's interests, their terms and labels need only that user's events, given what is bounded
by the catalogue: the item vectors and topics, everyone's share of each term, the global
groups' centroids, and what the interests described by phrases are scored against (c-TF-IDF
totals over every such interest, `pipeline.models.phrases.PhraseTotals`). So the work runs in
three passes over the partitions: a census (per-item counts, the topics' transitions, the
linking bar's closeness per user, novel events), the grouping (each user's interests, and the
phrase totals of those no genre, tag or era describes), and the description (terms, labels,
groups, and the metrics' tallies). Each partition's interests come back as parquet pieces
beside the outputs, with their centroids in a column, which `assemble` streams into one table
in user order and the centroids' `.npy` in the same order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.data.artifacts import Topics
from pipeline.engine.partitions import read_partition
from pipeline.models.exploration import transition_counts
from pipeline.models.interest_labels import (
    Scored,
    group_counts,
    label_interests,
    phrase_totals,
)
from pipeline.models.interest_sets import InterestSettings, closest_similarities, user_interest_sets
from pipeline.models.interest_tallies import Tally
from pipeline.models.phrases import Phrases, PhraseTotals
from pipeline.models.topics import novel_events

SERVED = "user_interests"
"""The served interests' table (`user_interests.parquet`) and its pieces' name."""
GROUPED = "grouped"
"""The pieces of the served interests before they are described."""
CENTROID = "centroid"
SPARSE = "sparse"
"""Columns the pieces carry beside the table's: the interest's unit centroid, and whether its
user's history is sparse (for the sparse histories' metrics)."""


@dataclass(frozen=True)
class Census:
    """One partition's counts, summed over the partitions in the stage's process."""

    served: np.ndarray
    """int [n_items]: every event per item (everyone's term shares)."""
    trained: np.ndarray
    """int [n_items]: training events per item (the topics' sizes and medoids)."""
    transitions: np.ndarray
    adoptions: np.ndarray
    """The topics' take-ups in training (`exploration.transition_counts`)."""
    groups: pl.DataFrame
    """`cluster, item_idx, events` (`interest_labels.group_counts`)."""
    closest: np.ndarray
    """Per user with a validation event: how close it is to the closest training item."""
    novel: dict[str, dict[str, int]]


def census_partition(
    path: Path, item_vectors: np.ndarray, item_topic: np.ndarray, assignments: Path
) -> Census:
    """The counts of one partition's users (`Census`); `assignments`: the cluster stage's."""
    events = read_partition(path)
    n_items, n_topics = len(item_vectors), int(item_topic.max()) + 1
    train = events.filter(pl.col("split") == "train")
    users = events["user_idx"].unique().implode()
    clusters = pl.scan_parquet(assignments).filter(pl.col("user_idx").is_in(users)).collect()
    counts, adoptions = transition_counts(train, item_topic, n_topics)
    return Census(
        served=np.bincount(events["item_idx"].to_numpy(), minlength=n_items).astype(np.int64),
        trained=np.bincount(train["item_idx"].to_numpy(), minlength=n_items).astype(np.int64),
        transitions=counts,
        adoptions=adoptions,
        groups=group_counts(events, clusters),
        closest=closest_similarities(
            train, events.filter(pl.col("split") == "validation"), item_vectors
        ),
        novel=novel_events(events, item_topic),
    )


def add_census(parts: list[Census]) -> Census:
    """The partitions' counts summed (in partition order); closeness values concatenated."""
    novel = {
        split: {key: sum(part.novel[split][key] for part in parts) for key in ("events", "novel")}
        for split in parts[0].novel
    }
    return Census(
        served=np.sum([part.served for part in parts], axis=0),
        trained=np.sum([part.trained for part in parts], axis=0),
        transitions=sum((part.transitions for part in parts), np.zeros_like(parts[0].transitions)),
        adoptions=sum((part.adoptions for part in parts), np.zeros_like(parts[0].adoptions)),
        groups=pl.concat([part.groups for part in parts]),
        closest=np.concatenate([part.closest for part in parts]),
        novel=novel,
    )


def _with_centroids(table: pl.DataFrame, centroids: np.ndarray) -> pl.DataFrame:
    width = centroids.shape[1]
    column = pl.Series(CENTROID, centroids.astype(np.float32), dtype=pl.Array(pl.Float32, width))
    return table.with_columns(column)


def group_partition(
    path: Path,
    part: int,
    items: pl.DataFrame,
    item_vectors: np.ndarray,
    settings: InterestSettings,
    overall: pl.DataFrame,
    phrases: Phrases,
    evaluated: np.ndarray | None,
    out: Path,
) -> PhraseTotals:
    """One partition's interests: the served ones (from every event) as a piece to describe,
    the ones cut from the history each evaluated split reads (of the `evaluated` users; None:
    every user) as pieces of their outputs. Returns the phrase totals of the served interests
    no genre, tag or era describes, against everyone's term shares (`overall`)."""
    events = read_partition(path)
    table, centroids = user_interest_sets(events, item_vectors, settings)
    _with_centroids(table, centroids).write_parquet(piece_file(out, GROUPED, part))
    for split, before in (("validation", ("train",)), ("test", ("train", "validation"))):
        history = events.filter(pl.col("split").is_in(before))
        if evaluated is not None:
            history = history.filter(pl.col("user_idx").is_in(evaluated.tolist()))
        cut, cut_centroids = user_interest_sets(history, item_vectors, settings)
        piece = _with_centroids(cut, cut_centroids)
        piece.write_parquet(piece_file(out, f"{SERVED}_for_{split}", part))
    return phrase_totals(events, items, table, overall, phrases)


def describe_partition(
    path: Path,
    part: int,
    items: pl.DataFrame,
    item_vectors: np.ndarray,
    scored: Scored,
    topics: Topics,
    groups: tuple[np.ndarray, np.ndarray],
    carried: dict[int, set[str]],
    sparse_items: int,
    out: Path,
) -> tuple[Tally, Tally, int]:
    """One partition's served interests described (`interest_labels.label_interests`), as a
    piece of `user_interests`; returns the tallies of every interest, of the interests of users
    whose history is sparse (fewer than `sparse_items` distinct items), and how many such users
    there are."""
    events = read_partition(path)
    grouped = piece_file(out, GROUPED, part)
    piece = pl.read_parquet(grouped)
    table = piece.drop(CENTROID)
    centroids = np.asarray(piece[CENTROID].to_numpy(), dtype=np.float32)
    described = label_interests(
        table, centroids, events, items, item_vectors, groups, topics, scored
    )
    distinct = events.group_by("user_idx").agg(pl.col("item_idx").n_unique().alias("n"))
    sparse = distinct.filter(pl.col("n") < sparse_items)["user_idx"]
    described = described.with_columns(pl.col("user_idx").is_in(sparse.implode()).alias(SPARSE))
    _with_centroids(described, centroids).write_parquet(piece_file(out, SERVED, part))
    grouped.unlink()
    own = described.filter(pl.col(SPARSE)).drop(SPARSE)
    return Tally.of(described.drop(SPARSE), carried), Tally.of(own, carried), sparse.len()


# --------------------------------------------------------------------------------------------
# The pieces into one table and one matrix
# --------------------------------------------------------------------------------------------
def piece_file(folder: Path, name: str, part: int) -> Path:
    path = Path(folder) / f"{name}.piece-{part:05d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def assemble(folder: Path, name: str, table: Path, centroids: Path, width: int) -> Path:
    """Every piece of `name` under `folder` sorted by user (stable: a user's interests keep
    their order) and streamed into `table` (without the pieces' own columns) and `centroids`
    (float32 [rows, width], the same order). Removes the pieces; returns the sorted rows with
    every column, for the metrics' pass over them (the caller removes it)."""
    pieces = sorted(Path(folder).glob(f"{name}.piece-*.parquet"))
    ordered = Path(folder) / f"{name}.sorted.parquet"
    pl.scan_parquet(pieces).sort("user_idx", maintain_order=True).sink_parquet(ordered)
    for path in pieces:
        path.unlink()
    frame = pl.scan_parquet(ordered)
    table.parent.mkdir(parents=True, exist_ok=True)
    frame.drop(CENTROID, SPARSE, strict=False).sink_parquet(table)
    rows = frame.select(pl.len()).collect().item()
    matrix = np.lib.format.open_memmap(centroids, mode="w+", dtype=np.float32, shape=(rows, width))
    start = 0
    for batch in batches(ordered, [CENTROID]):
        values = batch[CENTROID].to_numpy().reshape(-1, width)
        matrix[start : start + len(values)] = values
        start += len(values)
    matrix.flush()
    del matrix
    return ordered


def batches(path: Path, columns: list[str], size: int = 65_536) -> Iterator[pl.DataFrame]:
    """The rows of the parquet at `path`, `columns` only, `size` at a time, in order."""
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=size, columns=columns):
        yield pl.from_arrow(batch)  # type: ignore[misc]
