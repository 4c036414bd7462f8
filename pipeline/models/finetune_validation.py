"""What the `finetune` stage watches while the encoder trains: validation NDCG@10 and HR@10 of
"user history text · item text" on a seeded sample of users (`RecommendationEvaluator`, run by the
trainer every `finetune.eval_steps`), and the loss and validation curves (`CurveRecorder`).

The evaluator ranks through the evaluation protocol `evaluate` reports with
(`pipeline.evaluation.protocol`: seen items masked, cold items never candidates, ties broken at
random), so the curve says whether fine-tuning helps the task we care about, not just whether the
loss goes down.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.evaluation import BaseEvaluator
from transformers import TrainerCallback

from pipeline.core.sections import TextConfig
from pipeline.data.artifacts import Processed
from pipeline.data.text import user_texts
from pipeline.evaluation.metrics import EvaluationResult
from pipeline.evaluation.protocol import SplitMatrices, evaluate_model
from pipeline.models.encoder import encode
from recli.errors import RecliError

CUTOFF = 10
"""Validation metrics are NDCG@10 and HR@10, the headline cut-off of `evaluate`."""
METRIC_NAMES = (f"ndcg@{CUTOFF}", f"hr@{CUTOFF}")
ENCODE_BATCH_SIZE = 128


# `BaseEvaluator` is sentence-transformers 6's name for `SentenceEvaluator` (a deprecated alias).
class RecommendationEvaluator(BaseEvaluator):
    """Validation NDCG@10 and HR@10 of "user history text · item text" on a seeded user sample.

    Scores are dot products of L2-normalised embeddings (cosine), ranked by the evaluation
    protocol (`pipeline.evaluation.protocol.evaluate_model`) exactly as `evaluate` ranks them.
    """

    def __init__(
        self,
        processed: Processed,
        text_cfg: TextConfig,
        n_users: int,
        seed: int,
        tie_seed: int = 0,
        n_items: int | None = None,
        precision: str = "float32",
    ) -> None:
        super().__init__()
        self.precision = precision
        self.primary_metric = f"ndcg@{CUTOFF}"
        self.greater_is_better = True
        self.matrices = SplitMatrices.from_processed(processed)
        self.tie_seed = tie_seed
        n_all_users = processed.users.height

        histories = user_texts(
            processed.train, processed.items, n_all_users, text_cfg.history_items
        )
        has_history = np.array([bool(text) for text in histories])
        has_relevant = np.diff(self.matrices.validation.indptr) > 0
        candidates = np.flatnonzero(has_history & has_relevant)
        if candidates.size == 0:
            raise RecliError(
                "no user has both training history and a warm validation event: the in-training "
                "validation metric needs some (check preprocess.split)"
            )
        chosen = np.random.default_rng(seed).choice(
            candidates, size=min(n_users, candidates.size), replace=False
        )
        self.users = np.sort(chosen).astype(np.int64)
        self.user_texts = [histories[user] for user in self.users]
        self.items = self._item_pool(n_items, seed)
        """Items the metric encodes and ranks (sorted): every item, or on a catalogue of more than
        `n_items` the sampled users' validation items plus a seeded draw of other warm items."""
        texts = processed.items.sort("item_idx")["text"].to_list()
        self.item_texts = [texts[item] for item in self.items]
        self.seconds = 0.0
        """Wall time spent evaluating, so training speed can be reported without it."""

    def _item_pool(self, n_items: int | None, seed: int) -> np.ndarray:
        if n_items is None or self.matrices.n_items <= n_items:
            return np.arange(self.matrices.n_items)  # cold ones are masked by the protocol
        warm = np.flatnonzero(self.matrices.candidates("validation"))
        wanted = np.unique(self.matrices.validation[self.users].indices)
        others = np.setdiff1d(warm, wanted)
        extra = max(n_items - wanted.size, 0)
        drawn = np.random.default_rng(seed).choice(others, size=extra, replace=False)
        return np.union1d(wanted, drawn).astype(np.int64)

    def rank(self, model: SentenceTransformer) -> EvaluationResult:
        """Top-10 lists and per-user metrics of `model` for the sampled users."""
        user_vectors = encode(model, self.user_texts, ENCODE_BATCH_SIZE, precision=self.precision)
        item_vectors = encode(model, self.item_texts, ENCODE_BATCH_SIZE, precision=self.precision)
        row_of_user = np.full(self.matrices.train.shape[0], -1, dtype=np.int64)
        row_of_user[self.users] = np.arange(self.users.size)
        n_all_items = self.matrices.n_items

        def scorer(users: np.ndarray) -> np.ndarray:
            scores = np.full((users.size, n_all_items), -np.inf, dtype=np.float32)
            scores[:, self.items] = user_vectors[row_of_user[users]] @ item_vectors.T
            return scores

        return evaluate_model(
            scorer, self.matrices, "validation", [CUTOFF], CUTOFF, self.tie_seed, users=self.users
        )

    def __call__(
        self,
        model: SentenceTransformer,
        output_path: str | None = None,
        epoch: float = -1,
        steps: int = -1,
    ) -> dict[str, float]:
        started = time.perf_counter()
        summary = self.rank(model).summary()
        self.seconds += time.perf_counter() - started
        return {name: summary[name] for name in METRIC_NAMES}


class CurveRecorder(TrainerCallback):
    """Keeps (step, training loss) and (step, validation NDCG@10, HR@10) as the trainer logs."""

    def __init__(self) -> None:
        self.loss: list[dict[str, float]] = []
        self.validation: list[dict[str, float]] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self.loss.append({"step": state.global_step, "loss": float(logs["loss"])})

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any
    ) -> None:
        # The trainer prefixes evaluator metrics with "eval_".
        scores = {name: (metrics or {}).get(f"eval_{name}") for name in METRIC_NAMES}
        if all(value is not None for value in scores.values()):
            self.record_validation(state.global_step, scores)

    def record_validation(self, step: int, scores: dict[str, float]) -> None:
        self.validation.append(
            {"step": step, **{name: float(scores[name]) for name in METRIC_NAMES}}
        )
