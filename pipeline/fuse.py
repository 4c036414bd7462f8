"""Stage `fuse`: the fused vectors, and every setting served with them, chosen on validation.

How the text and behaviour sides are weighted is `pipeline.models.fusion`: the text weight, which
sequence model joins ALS on the behaviour side and with what share, then reduced-rank EASE's
share, each by validation NDCG@10. The multi-interest and exploration settings served beside the
vectors are tuned the same way (`pipeline.models.retrieval`). No Annoy knob reaches this stage:
`index` builds and measures from what it wrote, so a change to `index.*` re-runs no tuning.

Outputs under `data/fuse/`: `fused_{user,item}_vectors.npy` (and the users' `_at_test` and
`_served` variants), `retrieval.json` (the fusion's weights, scales and text width, and the
multi-interest and exploration settings: what `index` serves and `evaluate` scores); and
`metrics/fuse.json`: what was chosen and the validation score of every setting tried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.core import io
from pipeline.core.config import load_params
from pipeline.core.layout import Layout, writes
from pipeline.core.sections import FuseConfig
from pipeline.data.artifacts import (
    SEQUENCE_MODELS,
    Embeddings,
    Factors,
    read_embeddings,
    read_factors,
    read_linear,
    read_processed,
    read_sequence_vectors,
    write_fused,
    write_retrieval,
)
from pipeline.data.interactions import UserItemVectors
from pipeline.evaluation.protocol import SplitMatrices
from pipeline.models.exploration import ExplorationInputs, exploration_inputs, score_scale
from pipeline.models.fusion import Fusion, tune_fusion
from pipeline.models.retrieval import tune_explore, tune_multi_interest


@dataclass(frozen=True)
class Fused:
    """What the stage chose on validation, and the vectors it fused with it."""

    fusion: Fusion
    vectors: UserItemVectors
    settings: dict[str, Any]
    """`retrieval.json`: the fusion, multi-interest and exploration settings served."""
    record: dict[str, Any]
    """`metrics/fuse.json`: the settings chosen and every setting's validation score."""


def fusion_settings(fusion: Fusion, text_dimension: int) -> dict[str, Any]:
    """The fusion as the catalogue records it: its weights, the scales of the two parts (`recli
    search` scales its query by the text one) and how wide the text part is."""
    return {
        "text_weight": fusion.text_weight,
        "sequence_model": fusion.sequence_model,
        "sequence_share": fusion.sequence_share,
        "linear_share": fusion.linear_share,
        "text_scale": fusion.text_scale,
        "cf_scale": fusion.cf_scale,
        "text_dimension": text_dimension,
    }


def run(
    text: Embeddings,
    cf: Factors,
    sequences: dict[str, UserItemVectors],
    linear: UserItemVectors | None,
    matrices: SplitMatrices,
    inputs: ExplorationInputs,
    item_space: np.ndarray,
    cfg: FuseConfig,
    seed: int,
    depth: int,
    half_life: float,
) -> Fused:
    """Fuse `text` with the behaviour side (`cf`, `sequences`, `linear`) as validation chooses,
    then tune multi-interest retrieval (its lists `depth` deep, interest coverage measured in
    `item_space`) and exploration (`inputs`) on the fused vectors. `seed` is the evaluation
    protocol's; `half_life` is recorded with the exploration settings, which serve with it."""
    fusion, behaviour, by_weight = tune_fusion(text, cf, matrices, cfg, seed, sequences, linear)
    fused = fusion.fuse_all(text, behaviour)
    scale = score_scale(fused.users, fused.items, cfg.seed, matrices.evaluated)
    multi, multi_record = tune_multi_interest(fused, inputs, matrices, cfg, item_space, depth, seed)
    explore, explore_record = tune_explore(fused, inputs, matrices, cfg, scale, seed)
    explore = {**explore, "score_scale": scale, "half_life": half_life}
    settings = {
        "fusion": fusion_settings(fusion, int(text.items.shape[1])),
        "multi_interest": multi,
        "explore": explore,
    }
    record = {
        "text_weight": fusion.text_weight,
        "sequence_model": fusion.sequence_model,
        "sequence_share": fusion.sequence_share,
        "linear_share": fusion.linear_share,
        "validation_ndcg@10_by_text_weight/sequence_model/share[/linear_share]": by_weight,
        "multi_interest": multi_record,
        "explore": explore_record,
    }
    return Fused(fusion, fused, settings, record)


def summary_line(result: Fused) -> str:
    """What the stage chose, in one line."""
    fusion, multi = result.fusion, result.settings["multi_interest"]
    explore = result.settings["explore"]
    return (
        f"fuse: text weight {fusion.text_weight}, behaviour side ALS + {fusion.sequence_model} "
        f"at share {fusion.sequence_share}, reduced-rank EASE at share {fusion.linear_share}, "
        f"{result.vectors.items.shape[1]}-d; by interest: whole-user share "
        f"{multi['whole_user_share']}, pull {multi['pull']}"
        f"{', served by default' if multi['by_default'] else ''}; explore: topic weight "
        f"{explore['topic_weight']}, similarity weight {explore['similarity_weight']}"
    )


@writes("fuse")
def main(layout: Layout) -> None:
    params = load_params(layout.params)
    seed = params.preprocess.split.seed
    processed = read_processed(layout)
    matrices = SplitMatrices.from_processed(processed, params.evaluate.max_users, seed)
    result = run(
        read_embeddings("finetuned", layout),
        read_factors(layout),
        {name: read_sequence_vectors(name, layout) for name in SEQUENCE_MODELS},
        read_linear(layout),
        matrices,
        exploration_inputs(processed, layout, params.interests.half_life),
        read_embeddings(params.interests.encoder, layout).items,
        params.fuse,
        seed,
        depth=max(params.evaluate.k),
        half_life=params.interests.half_life,
    )
    write_fused(result.vectors, layout)
    write_retrieval(result.settings, layout)
    io.write_json(layout.metrics_file("fuse"), result.record)
    print(summary_line(result))


if __name__ == "__main__":
    io.run_stage(main)
