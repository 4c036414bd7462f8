"""The settings served beside the fused vectors, chosen on validation like the fusion itself.

- `tune_multi_interest`: the whole-user share and the pull of `recli recommend --by-interest`
  (`pipeline.models.exploration.ExplorationInputs.multi_interest`), chosen for the interests its
  lists cover within a tolerance of the single vector's accuracy, and whether `recli recommend`
  serves those lists by default: when they are more accurate than the single vector on
  validation too, their coverage costs nothing.
- `tune_explore`: the similarity and topic weights of `recli explore`, chosen on the validation
  events whose item's topic was new to the user.

Both judge every setting at `TUNING_K` through the evaluation protocol, on at most
`pipeline.models.fusion.TUNING_USERS` users. Each returns what is served and the record of every
setting tried (the `fuse` stage's metrics).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from pipeline.core.sections import FuseConfig
from pipeline.data.interactions import UserItemVectors
from pipeline.evaluation.beyond_accuracy import finite_mean, interest_coverage
from pipeline.evaluation.protocol import SplitMatrices, evaluate_model, select_on_validation
from pipeline.models.exploration import (
    ExplorationInputs,
    explore_scorer,
    novel_topic_ranks,
    topic_rank_summary,
)
from pipeline.models.fusion import tuning_view

TUNING_K = 10
"""The cut-off every setting is judged at (NDCG@10, interest coverage@10)."""


def evaluated_rows(events: sp.csr_matrix, evaluated: np.ndarray | None) -> sp.csr_matrix:
    """`events` of the evaluated users only (every user's when `evaluated` is None)."""
    if evaluated is None:
        return events
    kept = np.zeros(events.shape[0], dtype=events.dtype)
    kept[evaluated] = 1
    rows = (sp.diags(kept) @ events).tocsr()
    rows.eliminate_zeros()
    return rows


def tune_multi_interest(
    fused: UserItemVectors,
    inputs: ExplorationInputs,
    matrices: SplitMatrices,
    cfg: FuseConfig,
    item_space: np.ndarray,
    depth: int,
    seed: int,
) -> tuple[dict[str, float], dict[str, Any]]:
    """The whole-user share and pull served by `recli recommend --by-interest`: on validation,
    the setting whose lists touch most of the users' interests among those within
    `cfg.interest_tolerance` of the single vector's NDCG@10 (the most accurate if none is);
    `by_default` when that setting's NDCG@10 is above the single vector's, so that `recli
    recommend` serves the lists without being asked (and the evaluation scores them as served)."""
    users = tuning_view(matrices, seed).evaluated  # at most TUNING_USERS
    single = evaluate_model(
        fused.score, matrices, "validation", [TUNING_K], TUNING_K, seed, users=users
    )
    floor = (1.0 - cfg.interest_tolerance) * single.summary()["ndcg@10"]
    table: dict[str, dict[str, float | None]] = {}
    for share in cfg.interest_share_grid:
        for pull in cfg.interest_pull_grid:
            scorer = inputs.multi_interest(
                "validation",
                fused.users,
                fused.items,
                matrices.train,
                matrices.candidates("validation"),
                share,
                pull,
                depth,
            )
            result = evaluate_model(
                scorer, matrices, "validation", [TUNING_K], TUNING_K, seed, users=users
            )
            coverage = interest_coverage(
                result.users,
                result.recommended[:, :TUNING_K],
                inputs.sets["validation"],
                item_space,
            )
            table[f"{share}/{pull}"] = {
                "ndcg@10": round(result.summary()["ndcg@10"], 5),
                "interest_coverage@10": finite_mean(coverage),
            }
    eligible = [key for key, row in table.items() if row["ndcg@10"] >= floor]
    chosen = (
        max(
            eligible,
            key=lambda key: (table[key]["interest_coverage@10"] or 0.0, table[key]["ndcg@10"]),
        )
        if eligible
        else max(table, key=lambda key: table[key]["ndcg@10"])
    )
    share, pull = (float(part) for part in chosen.split("/"))
    single_ndcg = round(single.summary()["ndcg@10"], 5)
    by_default = table[chosen]["ndcg@10"] > single_ndcg
    record = {
        "whole_user_share": share,
        "pull": pull,
        "by_default": by_default,
        "single_vector_validation_ndcg@10": single_ndcg,
        "validation_by_share/pull": table,
    }
    return {"whole_user_share": share, "pull": pull, "by_default": by_default}, record


def tune_explore(
    fused: UserItemVectors,
    inputs: ExplorationInputs,
    matrices: SplitMatrices,
    cfg: FuseConfig,
    scale: float,
    seed: int,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Exploration's weights, on the novel validation events: the similarity weight by how
    high the topics ranking puts each event's topic (MRR), then the topic weight by the
    protocol's NDCG@10 of the explore lists. Both are measured on the evaluated users' events
    only (`matrices.evaluated`), as every other tuned setting is."""
    novel, _ = inputs.novel(evaluated_rows(matrices.validation, matrices.evaluated), "validation")
    if novel.nnz == 0:
        chosen = {"topic_weight": cfg.explore_topic_weight_grid[0], "similarity_weight": 0.0}
        return chosen, {"skipped": "no validation event lies in a topic new to its user"}
    by_similarity = {
        weight: topic_rank_summary(*novel_topic_ranks(inputs, "validation", novel, weight))
        for weight in cfg.explore_similarity_grid
    }
    similarity_weight = max(by_similarity, key=lambda weight: by_similarity[weight]["mrr"])
    scores = inputs.topic_scores("validation", similarity_weight)
    topic_weight, by_topic_weight = select_on_validation(
        (
            (
                weight,
                explore_scorer(fused.users, fused.items, inputs.item_topic, scores, scale, weight),
            )
            for weight in cfg.explore_topic_weight_grid
        ),
        tuning_view(matrices, seed),
        seed,
        relevant=novel,
    )
    record = {
        "topic_weight": topic_weight,
        "similarity_weight": similarity_weight,
        "novel_validation_events": int(novel.nnz),
        "novel_validation_topic_mrr_by_similarity_weight": {
            str(weight): summary["mrr"] for weight, summary in by_similarity.items()
        },
        "novel_validation_ndcg@10_by_topic_weight": {
            str(weight): round(value, 5) for weight, value in by_topic_weight.items()
        },
    }
    return {"topic_weight": topic_weight, "similarity_weight": similarity_weight}, record
