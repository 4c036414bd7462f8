"""Stage `fuse`: the fused vectors, and every setting served with them, chosen on validation.

How the text and behaviour sides are weighted is `pipeline.models.fusion`: the text weight, which
sequence model joins ALS on the behaviour side and with what share, then reduced-rank EASE's
share, each by validation NDCG@10. The multi-interest and exploration settings served beside the
vectors are tuned the same way (`pipeline.models.retrieval`). No Annoy knob reaches this stage:
`index` builds and measures from what it wrote, so a change to `index.*` re-runs no tuning.

Every setting is tuned on the evaluation protocol's users (a seeded sample of at most
`evaluate.max_users`), and only their rows of each input's user vectors are read. The chosen
fusion then fuses every user's vectors partition by partition on the configured engine
(`fuse_partition`): each piece reads its users' rows of the inputs through memory maps and writes
their fused rows, which are assembled into the outputs, so this process never holds every
user's vectors, only the sample's and the items'.

Outputs under `data/fuse/`: `fused_{user,item}_vectors.npy` (and the users' `_at_test` and
`_served` variants), `retrieval.json` (the fusion's weights, scales and text width, and the
multi-interest and exploration settings: what `index` serves and `evaluate` scores); and
`metrics/fuse.json`: what was chosen and the validation score of every setting tried.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
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
    embedding_paths,
    factor_paths,
    fused_paths,
    linear_paths,
    read_processed,
    sequence_paths,
    write_retrieval,
)
from pipeline.data.interactions import SampledRows, UserItemVectors
from pipeline.engine.partitions import by_user_folder, partition_files, users_of_partition
from pipeline.engine.rows import assemble, write_piece
from pipeline.engine.runner import Engine
from pipeline.evaluation.protocol import SplitMatrices
from pipeline.models.exploration import ExplorationInputs, exploration_inputs, score_scale
from pipeline.models.fusion import ALS, LINEAR, Fusion, sequence_source, tune_fusion
from pipeline.models.retrieval import tune_explore, tune_multi_interest

TEXT = "text side"
"""The text vectors' name among a fusion's inputs (the others are `Recipe` names)."""
USER_FIELDS = ("users", "users_at_test", "users_served")
"""The fused user outputs, by `UserItemVectors` field."""


@dataclass(frozen=True)
class Fused:
    """What the stage chose on validation, and the vectors it fused with it."""

    fusion: Fusion
    vectors: UserItemVectors
    """The fused item vectors and the tuned users' fused vectors (those the fusion was given)."""
    settings: dict[str, Any]
    """`retrieval.json`: the fusion, multi-interest and exploration settings served."""
    record: dict[str, Any]
    """`metrics/fuse.json`: the settings chosen and every setting's validation score."""


def fusion_settings(fusion: Fusion, text_dimension: int) -> dict[str, Any]:
    """The fusion as the catalogue records it: its weights, the scales of the two parts (`recli
    search` scales its query by the text one), how wide the text part is, and the recipe of the
    behaviour side (any history's fused vector can be made later: `fusion_from_settings`)."""
    return {
        "text_weight": fusion.text_weight,
        "sequence_model": fusion.sequence_model,
        "sequence_share": fusion.sequence_share,
        "linear_share": fusion.linear_share,
        "text_scale": fusion.text_scale,
        "cf_scale": fusion.cf_scale,
        "text_dimension": text_dimension,
        "behaviour": [[source, list(scales)] for source, scales in fusion.behaviour],
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


def input_paths(layout: Layout) -> dict[str, tuple[dict[str, Path], str]]:
    """Every input's files (by `UserItemVectors` field) and the stage that writes them, by name:
    `TEXT`, then the behaviour side's models by `Recipe` name."""
    inputs = {
        TEXT: (embedding_paths(layout, "finetuned"), "embed"),
        ALS: (factor_paths(layout), "factorize"),
    }
    for name in SEQUENCE_MODELS:
        inputs[sequence_source(name)] = (sequence_paths(name, layout), "sequence")
    linear = linear_paths(layout)
    if linear is not None:
        inputs[LINEAR] = (linear, "factorize")
    return inputs


def read_rows(paths: dict[str, Path], stage: str, users: np.ndarray | None) -> UserItemVectors:
    """The item vectors and the rows of `users` (None: every user) of the training-history user
    vectors, read through a memory map: all that tuning on validation reads."""
    return UserItemVectors(
        users=SampledRows.read(io.require(paths["users"], stage), users),
        items=io.read_npy(paths["items"], stage),
    )


def output_plan(
    fusion: Fusion, inputs: dict[str, tuple[dict[str, Path], str]]
) -> dict[str, dict[str, Path]]:
    """For each fused user output the fusion makes (by `UserItemVectors` field), the file each of
    its inputs is read from (absolute, for workers): test-time users where any input derived
    some (the others' training users stand in), served users only where every input has them."""
    used = [TEXT, *(source for source, _ in fusion.behaviour)]
    files = {name: inputs[name][0] for name in used}
    at_test = {
        name: paths["users_at_test"] if paths["users_at_test"].exists() else paths["users"]
        for name, paths in files.items()
    }
    plan = {"users": {name: paths["users"] for name, paths in files.items()}}
    if any(paths["users_at_test"].exists() for paths in files.values()):
        plan["users_at_test"] = at_test
    if all(paths["users_served"].exists() for paths in files.values()):
        plan["users_served"] = {name: paths["users_served"] for name, paths in files.items()}
    return {
        field: {name: Path(path).absolute() for name, path in chosen.items()}
        for field, chosen in plan.items()
    }


def fuse_partition(
    fusion: Fusion,
    plan: dict[str, dict[str, Path]],
    n_users: int,
    part: int,
    partitions: int,
    out: Path,
) -> int:
    """The fused rows of partition `part`'s users (of `n_users`, `partitions` in all), for each
    output of `plan` (by name: the files `output_plan` reads it from), written as pieces under
    `out`; returns how many users."""
    users = users_of_partition(n_users, part, partitions)
    for output, files in plan.items():
        rows = {
            name: np.asarray(np.load(path, mmap_mode="r", allow_pickle=False)[users])
            for name, path in files.items()
        }
        fused = fusion.fuse_rows(rows.pop(TEXT), rows)
        write_piece(out, output, part, users, fused)
    return int(users.size)


def write_fused_users(
    engine: Engine,
    layout: Layout,
    fusion: Fusion,
    inputs: dict[str, tuple[dict[str, Path], str]],
    n_users: int,
    width: int,
) -> None:
    """Every user's fused vectors (`width` wide), partition by partition on `engine`, into the
    stage's user outputs."""
    destinations = fused_paths(layout)
    plan = {destinations[field]: files for field, files in output_plan(fusion, inputs).items()}
    named = {path.stem: files for path, files in plan.items()}
    out = destinations["users"].parent.absolute()
    partitions = len(partition_files(by_user_folder(layout)))
    pieces = [(fusion, named, n_users, part, partitions, out) for part in range(partitions)]
    engine.map(fuse_partition, pieces)
    for path in plan:
        assemble(out, path.stem, path, (n_users, width))


@writes("fuse")
def main(layout: Layout) -> None:
    params = load_params(layout.params)
    seed = params.preprocess.split.seed
    processed = read_processed(layout)
    matrices = SplitMatrices.from_processed(processed, params.evaluate.max_users, seed)
    inputs = input_paths(layout)
    rows = {
        name: read_rows(paths, stage, matrices.evaluated) for name, (paths, stage) in inputs.items()
    }
    result = run(
        rows[TEXT],
        rows[ALS],
        {name: rows[sequence_source(name)] for name in SEQUENCE_MODELS},
        rows.get(LINEAR),
        matrices,
        exploration_inputs(processed, layout, params.interests.half_life, splits=("validation",)),
        io.read_npy(embedding_paths(layout, params.interests.encoder)["items"], "embed"),
        params.fuse,
        seed,
        depth=max(params.evaluate.k),
        half_life=params.interests.half_life,
    )
    engine = Engine(params.engine)
    with engine.session():
        width = result.vectors.items.shape[1]
        write_fused_users(engine, layout, result.fusion, inputs, processed.users.height, width)
    io.write_npy(fused_paths(layout)["items"], result.vectors.items)
    write_retrieval(result.settings, layout)
    io.write_json(layout.metrics_file("fuse"), result.record)
    print(summary_line(result))


if __name__ == "__main__":
    io.run_stage(main)
