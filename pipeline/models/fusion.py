"""Fusion of the text and behaviour sides into one vector per user and item.

user = [a·u_text, b·u_cf], item = [a·i_text, b·i_cf] (the layout `recli.contract` fixes), so one
dot product is a²·(text score) + b²·(collaborative score). The two scores live on different
scales (cosine vs ALS's unbounded dot), so each is first divided by its standard deviation over
users × items; the text share `w` then sets a² = w / σ_text and b² = (1 − w) / σ_cf.

The collaborative side may itself be two models read from behaviour, ALS and a sequence model:
`behaviour(cf, sequence, s)` is [√((1 − s)/σ_als)·als | √(s/σ_seq)·sequence], whose dot product
is (1 − s)·ALS/σ_als + s·sequence/σ_seq, so the served score stays one dot product and
`--explain` still splits it into text and behaviour. `w` and `s` are picked together on
validation through the evaluation protocol. Then EASE in reduced rank (`pipeline.models.linear`) can
join the behaviour side the same way, [√((1 − l)/σ_b)·behaviour | √(l/σ_ease)·ease], its share
`l` picked on validation together with `w` again (the sequence model and `s` stay).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pipeline.core.sections import FuseConfig
from pipeline.data.artifacts import Embeddings, Factors
from pipeline.data.interactions import UserItemVectors, rowwise
from pipeline.evaluation.metrics import Scorer
from pipeline.evaluation.protocol import (
    SplitMatrices,
    select_on_validation,
    spread_sample,
    user_sample,
)
from recli import contract
from recli.errors import RecliError

TUNING_USERS = 5000
"""Validation users every serving-side tuning loop (fusion weights here, the multi-interest and
exploration settings in `pipeline.models.retrieval`) ranks at most: a seeded sample of the
evaluated users. Each grid point is a full ranking, so the grids cost users × items × settings;
5,000 users put a validation NDCG@10 within about ±0.005 (one standard error), far finer than the
grid steps."""


def tuning_view(matrices: SplitMatrices, seed: int) -> SplitMatrices:
    """`matrices` whose evaluations rank at most `TUNING_USERS` of the evaluated users (the
    same seeded sample every time); unchanged when there are no more than that."""
    pool = matrices.evaluated
    size = matrices.train.shape[0] if pool is None else pool.size
    drawn = user_sample(size, TUNING_USERS, seed)
    if drawn is None:
        return matrices
    return replace(matrices, evaluated=drawn if pool is None else pool[drawn])


Recipe = tuple[tuple[str, tuple[float, ...]], ...]
"""How the behaviour side is made from its models' vectors: for each model in column order, its
name (`ALS`, a sequence model's name as `sequence/<name>`, `LINEAR`) and the scales applied to
its vectors one after the other (each rounded to float32, as `mixture` does)."""
ALS, LINEAR = "als", "linear"
ALS_ALONE: Recipe = ((ALS, ()),)


def sequence_source(name: str) -> str:
    """A sequence model's name in a `Recipe`."""
    return f"sequence/{name}"


@dataclass(frozen=True)
class Fusion:
    text_weight: float
    """Share of the (scale-normalised) score from the text side."""
    text_scale: float
    """a: multiplies the text vectors."""
    cf_scale: float
    """b: multiplies the collaborative vectors."""
    sequence_share: float = 0.0
    """Share of the behaviour side that comes from the sequence model (0: ALS alone)."""
    sequence_model: str | None = None
    """Which sequence model the behaviour side holds (None: ALS alone)."""
    linear_share: float = 0.0
    """Share of the behaviour side that comes from reduced-rank EASE (0: none)."""
    behaviour: Recipe = ALS_ALONE
    """How the behaviour side is made from the models' vectors (`behaviour_rows`)."""

    def fuse(self, text: np.ndarray, collaborative: np.ndarray) -> np.ndarray:
        """Rows laid out as the serving contract says: `[text part | collaborative part]`."""
        text_dimension = text.shape[1]
        fused = np.empty((len(text), text_dimension + collaborative.shape[1]), dtype=np.float32)
        fused[:, contract.text_slice(text_dimension)] = self.text_scale * text
        fused[:, contract.collaborative_slice(text_dimension)] = self.cf_scale * collaborative
        return fused

    def fuse_all(self, text: UserItemVectors, cf: UserItemVectors) -> UserItemVectors:
        """Both sides fused, with test-time and served users wherever either side derived some."""
        return _joined(self.fuse, text, cf)

    def fuse_rows(self, text: np.ndarray, models: Mapping[str, np.ndarray]) -> np.ndarray:
        """Some users' fused rows from their rows of the text side and of each model the
        behaviour side is made of (`models`, by `Recipe` name): the rows `fuse_all` gives them."""
        return self.fuse(text, behaviour_rows(self.behaviour, models))

    def validation_scorer(self, text: UserItemVectors, cf: UserItemVectors) -> Scorer:
        """`fuse_all(text, cf).score` that fuses only the users it is asked to score: the same
        vectors and products, without fusing every user's three histories per tuned setting."""
        items = self.fuse(text.items, cf.items)

        def score(users: np.ndarray) -> np.ndarray:
            return self.fuse(text.users[users], cf.users[users]) @ items.T

        return score


def _joined(join, left: UserItemVectors, right: UserItemVectors) -> UserItemVectors:
    """`join` of two sides' users and items, and of their test-time users where either side
    derived them (the other falls back to its training users). Served users only where both
    sides have them: no fallback there, so a fusion with a side that has none (fine to evaluate)
    cannot be served (`served_users` says so)."""
    at_test = left.users_at_test is not None or right.users_at_test is not None
    served = left.users_served is not None and right.users_served is not None
    return UserItemVectors(
        users=rowwise(join, left.users, right.users),
        items=join(left.items, right.items),
        users_at_test=rowwise(join, left.test_users, right.test_users) if at_test else None,
        users_served=rowwise(join, left.served_users, right.served_users) if served else None,
    )


def _spread(vectors: UserItemVectors, users: np.ndarray) -> float:
    # A degenerate side (all-zero vectors) must not divide by zero.
    return max(float(np.std(vectors.score(users))), 1e-12)


def _times(scale: float, array: np.ndarray) -> np.ndarray:
    return (scale * array).astype(np.float32)


def _scaled(vectors: UserItemVectors, scale: float) -> UserItemVectors:
    def times(array: np.ndarray | None) -> np.ndarray | None:
        return None if array is None else rowwise(functools.partial(_times, scale), array)

    return UserItemVectors(
        users=times(vectors.users),
        items=times(vectors.items),
        users_at_test=times(vectors.users_at_test),
        users_served=times(vectors.users_served),
    )


def mixture(
    parts: Sequence[tuple[UserItemVectors, float]], seed: int, pool: np.ndarray | None = None
) -> UserItemVectors:
    """Models read from behaviour as one side: each model's vectors side by side, scaled by
    √(share/σ), so the side's score is the sum of share × score/σ over the models (σ: the
    standard deviation of a model's scores over a seeded sample of users × all items)."""
    return _mixed([(vectors, (), share) for vectors, share in parts], seed, pool)[0]


def _mixed(
    parts: Sequence[tuple[UserItemVectors, Recipe, float]], seed: int, pool: np.ndarray | None
) -> tuple[UserItemVectors, Recipe]:
    """`mixture` of `(vectors, their recipe, share)` parts, and the mixture's recipe."""
    users = spread_sample(len(parts[0][0].users), seed, pool)
    scales = [float(np.sqrt(share / _spread(vectors, users))) for vectors, _, share in parts]
    scaled = [_scaled(vectors, scale) for (vectors, _, _), scale in zip(parts, scales, strict=True)]
    side = functools.reduce(lambda left, right: _joined(_side_by_side, left, right), scaled)
    recipe = tuple(
        (source, (*chain, scale))
        for (_, made, _), scale in zip(parts, scales, strict=True)
        for source, chain in made
    )
    return side, recipe


def behaviour_rows(recipe: Recipe, models: Mapping[str, np.ndarray]) -> np.ndarray:
    """Some users' rows of the behaviour side `recipe` makes, from their rows of each model
    (`models`, by name): the same operations, row by row, as the side's making."""
    parts = []
    for source, scales in recipe:
        part = models[source]
        for scale in scales:
            part = _times(scale, part)
        parts.append(part)
    return functools.reduce(_side_by_side, parts)


def _side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return np.hstack([left, right])


def behaviour(
    cf: Factors,
    sequence: UserItemVectors,
    share: float,
    seed: int,
    pool: np.ndarray | None = None,
) -> UserItemVectors:
    """ALS and a sequence model as one side: [√((1 − share)/σ_als)·als | √(share/σ_seq)·seq]."""
    return mixture([(cf, 1.0 - share), (sequence, share)], seed, pool)


def make_fusion(text_weight: float, spreads: tuple[float, float]) -> Fusion:
    text_spread, cf_spread = spreads
    return Fusion(
        text_weight=text_weight,
        text_scale=float(np.sqrt(text_weight / text_spread)),
        cf_scale=float(np.sqrt((1.0 - text_weight) / cf_spread)),
    )


def tune_fusion(
    text: Embeddings,
    cf: Factors,
    matrices: SplitMatrices,
    cfg: FuseConfig,
    seed: int = 0,
    sequences: dict[str, UserItemVectors] | None = None,
    linear: UserItemVectors | None = None,
) -> tuple[Fusion, UserItemVectors, dict[str, float]]:
    """Pick the text weight (and, given `sequences`, which sequence model joins ALS on the
    behaviour side and with what share) by validation NDCG@10 through the evaluation protocol,
    or take the fixed ones; then, given `linear`, its share of the behaviour side together with
    the text weight again. Returns the fusion (with the recipe of its behaviour side, so that any
    user's rows can be fused from their rows alone: `Fusion.fuse_rows`), that side, and
    every setting's validation score (keyed `text_weight`, `text_weight/model/share` or, for the
    second pass, `text_weight/model/share/linear_share`)."""
    weights = cfg.weight_grid if cfg.text_weight == "auto" else [float(cfg.text_weight)]
    sides: dict[tuple[str | None, float], tuple[Factors, Recipe]] = {(None, 0.0): (cf, ALS_ALONE)}
    for name, sequence in (sequences or {}).items():
        for share in cfg.sequence_share_grid:
            if share > 0:  # share 0 is ALS alone, whichever sequence model
                parts = [
                    (cf, ALS_ALONE, 1.0 - share),
                    (sequence, _alone(sequence_source(name)), share),
                ]
                sides[(name, share)] = _mixed(parts, cfg.seed, matrices.evaluated)
    # The text side is the same for every candidate: its spread is measured once.
    users = spread_sample(len(text.users), cfg.seed, matrices.evaluated)
    text_spread = _spread(text, users)
    view = tuning_view(matrices, seed)

    def pick(candidate_sides: dict[Any, tuple[Factors, Recipe]]) -> tuple[tuple, dict]:
        spreads = {key: _spread(side, users) for key, (side, _) in candidate_sides.items()}
        candidates = (
            (
                (weight, *key),
                make_fusion(weight, (text_spread, spreads[key])).validation_scorer(text, side),
            )
            for key, (side, _) in candidate_sides.items()
            for weight in weights
        )
        return select_on_validation(candidates, view, seed)

    (weight, name, share), by_setting = pick(sides)
    table = {
        (str(w) if not sequences else f"{w}/{n or 'als'}/{s}"): round(v, 5)
        for (w, n, s), v in by_setting.items()
    }
    (side, recipe), linear_share = sides[(name, share)], 0.0
    if linear is not None:
        mixed = {
            (name, share, part): (
                (side, recipe)
                if part == 0
                else _mixed(
                    [(side, recipe, 1.0 - part), (linear, _alone(LINEAR), part)],
                    cfg.seed,
                    matrices.evaluated,
                )
            )
            for part in cfg.linear_share_grid
        }
        (weight, _, _, linear_share), by_part = pick(mixed)
        side, recipe = mixed[(name, share, linear_share)]
        table.update(
            {f"{w}/{n or 'als'}/{s}/{p}": round(v, 5) for (w, n, s, p), v in by_part.items()}
        )
    scaled = make_fusion(weight, (text_spread, _spread(side, users)))
    chosen = Fusion(
        scaled.text_weight, scaled.text_scale, scaled.cf_scale, share, name, linear_share, recipe
    )
    return chosen, side, table


def _alone(source: str) -> Recipe:
    """The recipe of one model's vectors (`source`, its `Recipe` name) as they are."""
    return ((source, ()),)


def fusion_from_settings(settings: dict[str, Any]) -> Fusion:
    """The fusion `pipeline.fuse.fusion_settings` recorded (`retrieval.json`'s `fusion`)."""
    if "behaviour" not in settings:
        raise RecliError(
            "data/fuse/retrieval.json records no behaviour recipe (written by an older recli): "
            "run `dvc repro fuse`"
        )
    return Fusion(
        text_weight=settings["text_weight"],
        text_scale=settings["text_scale"],
        cf_scale=settings["cf_scale"],
        sequence_share=settings["sequence_share"],
        sequence_model=settings["sequence_model"],
        linear_share=settings["linear_share"],
        behaviour=tuple((source, tuple(scales)) for source, scales in settings["behaviour"]),
    )
