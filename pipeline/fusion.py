"""Fusion of the text and collaborative sides into one vector per user and item.

user = [a·u_text, b·u_cf], item = [a·i_text, b·i_cf] (the layout `recli.contract` fixes), so one
dot product is a²·(text score) + b²·(collaborative score). The two scores live on different
scales (cosine vs ALS's unbounded dot), so each is first divided by its standard deviation over
users × items; the text share `w` then sets a² = w / σ_text and b² = (1 − w) / σ_cf. `w` is
picked on validation through the evaluation protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.artifacts import Embeddings, Factors
from pipeline.config import IndexConfig
from pipeline.interactions import UserItemVectors
from pipeline.protocol import SplitMatrices, select_on_validation
from recli import contract

# Users sampled to estimate score scales: plenty for a standard deviation, cheap on any catalogue.
SCALE_SAMPLE_USERS = 500


@dataclass(frozen=True)
class Fusion:
    text_weight: float
    text_scale: float
    """a: multiplies the text vectors."""
    cf_scale: float
    """b: multiplies the collaborative vectors."""

    def fuse(self, text: np.ndarray, collaborative: np.ndarray) -> np.ndarray:
        """Rows laid out as the serving contract says: `[text part | collaborative part]`."""
        text_dimension = text.shape[1]
        fused = np.empty((len(text), text_dimension + collaborative.shape[1]), dtype=np.float32)
        fused[:, contract.text_slice(text_dimension)] = self.text_scale * text
        fused[:, contract.collaborative_slice(text_dimension)] = self.cf_scale * collaborative
        return fused

    def fuse_all(self, text: UserItemVectors, cf: UserItemVectors) -> UserItemVectors:
        return UserItemVectors(self.fuse(text.users, cf.users), self.fuse(text.items, cf.items))


def score_spreads(text: Embeddings, cf: Factors, seed: int) -> tuple[float, float]:
    """Standard deviation of text and collaborative scores over a sample of users × all items."""
    rng = np.random.default_rng(seed)
    users = rng.choice(
        len(text.users), size=min(SCALE_SAMPLE_USERS, len(text.users)), replace=False
    )
    text_spread = float(np.std(text.score(users)))
    cf_spread = float(np.std(cf.score(users)))
    # A degenerate side (all-zero vectors) must not divide by zero.
    return max(text_spread, 1e-12), max(cf_spread, 1e-12)


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
    cfg: IndexConfig,
    seed: int = 0,
) -> tuple[Fusion, dict[str, float]]:
    """Pick the text weight by validation NDCG@10 through the evaluation protocol (or take the
    fixed one); report every weight tried."""
    spreads = score_spreads(text, cf, cfg.seed)
    weights = cfg.weight_grid if cfg.text_weight == "auto" else [float(cfg.text_weight)]
    candidates = (
        (weight, make_fusion(weight, spreads).fuse_all(text, cf).score) for weight in weights
    )
    best, by_weight = select_on_validation(candidates, matrices, seed)
    return make_fusion(best, spreads), {str(w): round(v, 5) for w, v in by_weight.items()}
