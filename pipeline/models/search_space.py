"""The space the served index searches: the fused vectors turned onto the directions that carry
the user–item scores, cut to as few of them as the recall target allows.

A served query is a dot product between a user's fused vector and every item's; the index finds
the largest without computing them all, and its cost grows with the vectors' width. Most of a
wide fused vector's width carries little of the scores: the text part is weighted down, the
reduced-rank EASE part is wide and its share small. `score_basis` orders an orthonormal basis of
the fused space by how much of the scores each direction carries, so that the first `r` columns
`P` give r-wide vectors (`items @ P`, `users @ P`) whose dot products approach the fused ones as
r grows. P is orthonormal, so one map serves every kind of query (a user, an interest, an item
looking for similar ones, a text query) and a vector's search form is computed once.

The direction weights: a direction u carries uᵀ·Cu·u of the users' second moment and uᵀ·Cv·u of
the items'; the basis is the eigenvectors of Cu^½·Cv·Cu^½, the score matrix's second moment seen
from the users' side. It is fitted on the users it serves: on MovieLens-100K's fused vectors, 256
of 1,455 such directions keep 0.98 of their exact top 10, and 0.97 for users it was not fitted on
(the items' own principal directions keep 0.97 too).

A narrow space ranks the items nearly as the fused one does, but not exactly: near the tenth
place its order differs. So a narrow search asks for `rescore` × k candidates and the fused
vectors rank them (`recli.ann_index.rescored`). On the 1,536-d vectors of the 1M-event synthetic
catalogue, even a 512-d search's own top 10 held only 0.95 of the exact top 10, while a 64-d
search's top 30 held 0.999 of them.

`efforts` is the search effort ladder a projected index is tuned over, `RESCORE` the candidate
ladder; `Plan` is one measured way to serve, and `work` its cost in multiply-adds per query, which
chooses between the ways that reach the recall target (deterministically: measured latency is
reported, not used to choose).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLAT_TREES = 1
"""Trees of a flat index: one tree searched to every leaf is an exact search in its space."""
RESCORE = (1, 2, 3, 5, 8)
"""Candidates a narrow search asks for, per result wanted, that the fused vectors then rank."""


def second_moment(
    vectors: np.ndarray, rows: np.ndarray | None = None, block: int = 4096
) -> np.ndarray:
    """`vectors[rows]`ᵀ·`vectors[rows]` / their number, in float64, summed block by block (a
    catalogue's users never all at once in float64)."""
    rows = np.arange(len(vectors)) if rows is None else rows
    moment = np.zeros((vectors.shape[1], vectors.shape[1]))
    for start in range(0, len(rows), block):
        part = vectors[rows[start : start + block]].astype(np.float64)
        moment += part.T @ part
    return moment / max(len(rows), 1)


def score_basis(users: np.ndarray, items: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """An orthonormal basis of the fused space (columns), ordered by the share of the user–item
    scores each direction carries for the users `rows` (default all). Signs are fixed (each
    column's largest entry positive), so the same vectors give the same basis on every machine."""
    users_moment, items_moment = second_moment(users, rows), second_moment(items)
    values, vectors = np.linalg.eigh(users_moment)
    root = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    weights, basis = np.linalg.eigh(root @ items_moment @ root)
    basis = basis[:, np.argsort(-weights, kind="stable")]
    largest = np.abs(basis).argmax(axis=0)
    basis *= np.sign(basis[largest, np.arange(basis.shape[1])])
    return basis


def project(vectors: np.ndarray, basis: np.ndarray | None) -> np.ndarray:
    """`vectors` in the search space (float32): unchanged where the index searches the fused
    vectors themselves (`basis` None)."""
    if basis is None:
        return np.ascontiguousarray(vectors, dtype=np.float32)
    return np.ascontiguousarray(vectors @ basis, dtype=np.float32)


def work(dimensions: int, search_k: int, rescore: int, fused: int, k: int = 10) -> int:
    """`Plan.work` of a plan not yet measured: scoring `search_k` items `dimensions` wide, and
    where that is narrower than the `fused` width, `rescore` × `k` candidates in it."""
    return dimensions * search_k + (fused * rescore * k if dimensions < fused else 0)


def efforts(trees: int, n_items: int, minimum: int) -> list[int]:
    """Search efforts to try: a flat index is searched whole (`n_items`); a forest from Annoy's
    default (trees × `minimum`) doubling while below the whole catalogue, beyond which the flat
    index of the same width is both exact and cheaper."""
    if trees == FLAT_TREES:
        return [n_items]
    ladder, effort = [], trees * minimum
    while effort < n_items:
        ladder.append(effort)
        effort *= 2
    return ladder


@dataclass(frozen=True)
class Plan:
    """One way to serve: an index over `dimensions`-wide vectors with `trees` trees, searched with
    effort `search_k` for `rescore` × k candidates that the `fused`-wide vectors rank (none
    where the fused vectors are searched), and what it gave on the tuning users."""

    dimensions: int
    trees: int
    search_k: int
    rescore: int
    fused: int
    recall: float
    standard_error: float
    query_ms: float

    @property
    def work(self) -> int:
        """Multiply-adds per query for 10 results: the items scored at most times their width,
        and the candidates the fused vectors rank."""
        return work(self.dimensions, self.search_k, self.rescore, self.fused)

    def reaches(self, target: float) -> bool:
        """Its recall, less two standard errors, reaches `target`: a fresh sample would too."""
        return self.recall - 2 * self.standard_error >= target

    def record(self) -> dict[str, float | int]:
        """What the metrics keep of it; its query time (a timing) is kept apart."""
        return {
            "dimensions": self.dimensions,
            "trees": self.trees,
            "search_k": self.search_k,
            "rescore": self.rescore,
            "recall": round(self.recall, 5),
            "standard_error": round(self.standard_error, 5),
        }
