"""The evaluation protocol: the one way any number about ranking quality is produced.

Every tuned choice (EASE's λ, ItemKNN's neighbours, the fusion weight, the fine-tuning curve) and
every reported number goes through `evaluate_model`, so what is chosen on validation is chosen
under exactly the rules the table reports with:

- **Split.** Models are fit on the training split only. Validation ranks every item the user has
  not interacted with in training, from the training history. Test ranks every item not in
  training or validation, from the history up to the test event: the validation event is part
  of the model's input (an ALS user factor is folded in again, a text or sequence state is
  recomputed, an item-item model reads the longer row; nothing is refit), as the sequential
  literature and serving both do, and it is masked (recommending it again would be a free hit).
- **Candidates.** Full ranking, no sampled negatives. Cold items (held out of training entirely,
  `preprocess.cold_item_fraction`) are not candidates in the warm splits; the cold-item slice
  ranks only them, for the users who interacted with them.
- **Ties.** Exactly equal scores are ranked in a seeded random order that depends on the user
  only (`metrics.tie_priority`): ranking ties by item index would reward catalogue order, which
  is not neutral. A model that cannot tell items apart (ALS on items it never saw, popularity
  among items with the same count) is therefore ranked at random among them.
- **Metrics.** HR, NDCG, MRR and Recall at each K and item coverage (`pipeline.evaluation.metrics`).

`select_on_validation` is the one tuning loop: it scores each candidate setting on validation
through `evaluate_model` and keeps the best (the first of equal ones).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, TypeVar

import numpy as np
import scipy.sparse as sp

from pipeline.data.artifacts import Processed
from pipeline.data.interactions import UserItemVectors, interaction_matrix
from pipeline.evaluation.metrics import (
    METRIC_NAMES,
    EvaluationResult,
    Scorer,
    evaluate_scorer,
    tie_priority,
)

Split = Literal["validation", "test", "cold"]
TUNING_METRIC = "ndcg@10"
"""What every tuning loop maximises on validation."""


def user_sample(n_users: int, max_users: int | None, seed: int) -> np.ndarray | None:
    """Sorted indices of `max_users` users drawn with `seed`; None when all `n_users` fit."""
    if max_users is None or n_users <= max_users:
        return None
    chosen = np.random.default_rng(seed).choice(n_users, size=max_users, replace=False)
    return np.sort(chosen).astype(np.int64)


Entry = TypeVar("Entry")


def only_users(values: list[Entry], users: np.ndarray | None, empty: Entry) -> list[Entry]:
    """One entry per user with every entry not of `users` replaced by `empty` (None: all
    kept): what a stage derives only for the evaluated users, the others left empty."""
    if users is None:
        return values
    kept = np.zeros(len(values), dtype=bool)
    kept[users] = True
    return [value if keep else empty for value, keep in zip(values, kept, strict=True)]


SPREAD_SAMPLE_USERS = 500
"""Users sampled to measure a score's spread: plenty for a standard deviation, cheap on any
catalogue."""


def spread_sample(n_users: int, seed: int, pool: np.ndarray | None = None) -> np.ndarray:
    """A seeded sample of `SPREAD_SAMPLE_USERS` users to measure a score's spread on: of all
    `n_users`, or of `pool` (the evaluated users, the only ones whose split vectors every stage
    derives)."""
    rng = np.random.default_rng(seed)
    size = n_users if pool is None else pool.size
    drawn = rng.choice(size, size=min(SPREAD_SAMPLE_USERS, size), replace=False)
    return drawn if pool is None else pool[drawn]


@dataclass(frozen=True)
class SplitMatrices:
    """The binary user × item matrices every model is evaluated against."""

    train: sp.csr_matrix
    validation: sp.csr_matrix
    test: sp.csr_matrix
    cold: sp.csr_matrix
    """Every event with a cold item: the relevant set of the cold-item slice."""
    cold_items: np.ndarray = field(repr=False)
    """bool [n_items]: items held out of training entirely."""
    evaluated: np.ndarray | None = field(default=None, repr=False)
    """Sorted user indices every evaluation ranks when the data has more users than
    `max_users` (a seeded sample, the same for every model and split); None: every user."""

    @cached_property
    def train_counts(self) -> np.ndarray:
        """Training events per user (activity buckets)."""
        return np.diff(self.train.indptr)

    @cached_property
    def seen_for_test(self) -> sp.csr_matrix:
        seen = (self.train + self.validation).tocsr()
        seen.data[:] = 1.0
        return seen

    @property
    def n_items(self) -> int:
        return int(self.train.shape[1])

    @classmethod
    def from_processed(
        cls, processed: Processed, max_users: int | None = None, seed: int = 0
    ) -> SplitMatrices:
        """The split's matrices; above `max_users` users, evaluations rank a seeded sample."""
        shape = (processed.users.height, processed.items.height)
        items = processed.items.sort("item_idx")
        cold_items = (
            items["cold"].fill_null(False).to_numpy().astype(bool)
            if "cold" in items.columns
            else np.zeros(items.height, dtype=bool)
        )
        return cls(
            train=interaction_matrix(processed.train, *shape),
            validation=interaction_matrix(processed.validation, *shape),
            test=interaction_matrix(processed.test, *shape),
            cold=interaction_matrix(processed.cold, *shape),
            cold_items=cold_items,
            evaluated=user_sample(shape[0], max_users, seed),
        )

    def seen(self, split: Split) -> sp.csr_matrix:
        """What a user is known to have done before `split`'s events: the history a model reads
        to predict them, and what is masked when ranking."""
        return self.seen_for_test if split == "test" else self.train

    def relevant(self, split: Split) -> sp.csr_matrix:
        return {"validation": self.validation, "test": self.test, "cold": self.cold}[split]

    def candidates(self, split: Split) -> np.ndarray:
        """bool [n_items]: the items a model may rank for `split`."""
        return self.cold_items if split == "cold" else ~self.cold_items


@dataclass(frozen=True)
class SplitScorers:
    """A model as the protocol sees it: how it scores users from each history.

    `validation` reads the training history (it also serves the cold-item slice, whose history
    is the training split); `test` reads the training and validation history. A model whose
    scores do not depend on the user's history (popularity) passes the same scorer twice.
    """

    validation: Scorer
    test: Scorer

    @classmethod
    def from_vectors(cls, vectors: UserItemVectors) -> SplitScorers:
        return cls(validation=vectors.score, test=vectors.score_at_test)


Model = Scorer | SplitScorers
"""Anything `evaluate_model` ranks: a plain scorer (the same history for every split, e.g. in a
tuning loop on validation) or a scorer per history."""


def scorer_for(model: Model, split: Split) -> Scorer:
    """The scorer that reads the history `split` is predicted from."""
    if isinstance(model, SplitScorers):
        return model.test if split == "test" else model.validation
    return model


def restricted(scorer: Scorer, candidates: np.ndarray) -> Scorer:
    """`scorer` with every item outside the boolean `candidates` mask scored -inf."""
    if candidates.all():
        return scorer
    excluded = ~candidates

    def score(users: np.ndarray) -> np.ndarray:
        scores = np.array(scorer(users), dtype=np.float32, copy=True)
        scores[:, excluded] = -np.inf
        return scores

    return score


def random_scorer(n_items: int, seed: int) -> Scorer:
    """Seeded uniform scores, the same for a user whatever batch it comes in: the floor."""

    def score(users: np.ndarray) -> np.ndarray:
        return tie_priority(users, n_items, seed).astype(np.float32)

    return score


def evaluate_model(
    model: Model,
    matrices: SplitMatrices,
    split: Split,
    ks: Sequence[int] = (10,),
    coverage_k: int = 10,
    seed: int = 0,
    users: np.ndarray | None = None,
    relevant: sp.csr_matrix | None = None,
) -> EvaluationResult:
    """Per-user results of one model on `split`, under the protocol above.

    `model` is a `SplitScorers` (test scored from the training + validation history) or a plain
    scorer (used for every split). `users` restricts the evaluation to some users (e.g. a seeded
    sample during fine-tuning); by default every user with an event in the split is evaluated,
    or those of `matrices.evaluated` on data with more users than the evaluation's cap.
    `relevant` judges only some of the split's events (e.g. the novel ones): users without one
    are left out; history, mask and candidates stay the split's.
    """
    if users is None:
        users = matrices.evaluated
    if split not in ("validation", "test", "cold"):
        raise ValueError(f"unknown split {split!r}: use 'validation', 'test' or 'cold'")
    scorer = scorer_for(model, split)
    prepared = restricted(scorer, matrices.candidates(split))
    judged = matrices.relevant(split) if relevant is None else relevant
    return evaluate_scorer(
        prepared, matrices.seen(split), judged, ks, coverage_k, users=users, tie_seed=seed
    )


Setting = TypeVar("Setting")


def _metric_cutoff(metric: str) -> int:
    name, _, cut = metric.partition("@")
    if name not in METRIC_NAMES or not cut.isdigit() or int(cut) < 1:
        raise ValueError(
            f"metric must look like 'ndcg@10' with one of {', '.join(METRIC_NAMES)}; got {metric!r}"
        )
    return int(cut)


def select_on_validation(
    candidates: Iterable[tuple[Setting, Scorer]],
    matrices: SplitMatrices,
    seed: int = 0,
    metric: str = TUNING_METRIC,
    relevant: sp.csr_matrix | None = None,
) -> tuple[Setting, dict[Setting, float]]:
    """The setting whose scorer has the best validation `metric`, and every setting's value.

    `candidates` may be a generator, so each model is fit only when its turn comes (and can be
    dropped after). Ties go to the first setting. Test data never enters here. `relevant`
    judges only some validation events (`evaluate_model`).
    """
    k = _metric_cutoff(metric)
    results: dict[Setting, float] = {}
    for setting, scorer in candidates:
        evaluation = evaluate_model(scorer, matrices, "validation", [k], k, seed, relevant=relevant)
        results[setting] = float(evaluation.summary()[metric])
    if not results:
        raise ValueError("nothing to select from: the grid is empty")
    best = max(results, key=results.__getitem__)  # max() keeps the first of equal values
    return best, results
