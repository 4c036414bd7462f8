"""Stage `index`: fuse text and collaborative vectors, index the items, write the serving catalogue.

How the two sides are fused and weighted is `pipeline.models.fusion`; this stage packages the result
for serving.

Outputs under `data/index/`: `items.ann` (Annoy over fused item vectors), `catalogue.sqlite` (what
the CLI reads), `fused_{user,item}_vectors.npy` (for the evaluation), and `metrics/index.json`:
the chosen weight, ANN recall@10 against exact search on the same vectors, and query latency.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline.core import io
from pipeline.core.config import IndexConfig, load_params
from pipeline.core.layout import Layout, writes
from pipeline.data.artifacts import (
    SEQUENCE_MODELS,
    InterestSets,
    Processed,
    Topics,
    clustering_files,
    item_embeddings_file,
    item_factors_file,
    linear_files,
    read_clustering,
    read_embeddings,
    read_factors,
    read_interests,
    read_linear,
    read_processed,
    read_sequence_vectors,
    read_topics,
    write_fused,
    write_retrieval,
)
from pipeline.data.interactions import UserItemVectors
from pipeline.evaluation.beyond_accuracy import finite_mean, interest_coverage
from pipeline.evaluation.metrics import standard_error, top_k
from pipeline.evaluation.protocol import SplitMatrices, evaluate_model, select_on_validation
from pipeline.models.exploration import (
    ExplorationInputs,
    exploration_inputs,
    explore_scorer,
    novel_topic_ranks,
    score_scale,
    topic_rank_summary,
)
from pipeline.models.fusion import tune_fusion, tuning_view
from recli import catalogue, contract, integrity
from recli.catalogue import MetaKey

RECALL_K = 10


def tune_multi_interest(
    fused: UserItemVectors,
    inputs: ExplorationInputs,
    matrices: SplitMatrices,
    cfg: IndexConfig,
    item_space: np.ndarray,
    depth: int,
    seed: int,
) -> tuple[dict[str, float], dict[str, Any]]:
    """The whole-user share and pull served by `recli recommend --by-interest`: on validation,
    the setting whose lists touch most of the users' interests among those within
    `cfg.interest_tolerance` of the single vector's NDCG@10 (the most accurate if none is)."""
    users = tuning_view(matrices, seed).evaluated  # at most TUNING_USERS
    single = evaluate_model(
        fused.score, matrices, "validation", [RECALL_K], RECALL_K, seed, users=users
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
                scorer, matrices, "validation", [RECALL_K], RECALL_K, seed, users=users
            )
            coverage = interest_coverage(
                result.users,
                result.recommended[:, :RECALL_K],
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
    record = {
        "whole_user_share": share,
        "pull": pull,
        "single_vector_validation_ndcg@10": round(single.summary()["ndcg@10"], 5),
        "validation_by_share/pull": table,
    }
    return {"whole_user_share": share, "pull": pull}, record


def tune_explore(
    fused: UserItemVectors,
    inputs: ExplorationInputs,
    matrices: SplitMatrices,
    cfg: IndexConfig,
    scale: float,
    seed: int,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Exploration's weights, on the novel validation events: the similarity weight by how
    high the topics ranking puts each event's topic (MRR), then the topic weight by the
    protocol's NDCG@10 of the explore lists."""
    novel, _ = inputs.novel(matrices.validation, "validation")
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


def build_annoy(items: np.ndarray, cfg: IndexConfig, path: Path) -> None:
    from annoy import AnnoyIndex

    index = AnnoyIndex(items.shape[1], cfg.metric)
    index.set_seed(cfg.seed)
    for item, vector in enumerate(items):
        index.add_item(item, vector.tolist())
    # One job: Annoy's multi-threaded build is not reproducible across runs.
    index.build(cfg.n_trees, n_jobs=1)
    with io.atomic_path(path) as temporary:
        index.save(str(temporary))
    index.unload()


def exact_top(
    users: np.ndarray, items: np.ndarray, seen: list[set[int]], rows: np.ndarray
) -> np.ndarray:
    """Exact top `RECALL_K` unseen items of each user in `rows`, scored in batches."""
    tops = []
    for start in range(0, len(rows), 1024):
        batch = rows[start : start + 1024]
        scores = users[batch] @ items.T
        for position, user in enumerate(batch):
            if seen[user]:
                scores[position, list(seen[user])] = -np.inf
        tops.append(top_k(scores, RECALL_K))
    return np.concatenate(tops) if tops else np.empty((0, RECALL_K), dtype=np.int64)


def ann_recall(
    index: Any,
    users: np.ndarray,
    seen: list[set[int]],
    rows: np.ndarray,
    exact: np.ndarray,
    search_k: int,
) -> tuple[float, float, float]:
    """Recall@10 of the served query against `exact`, its standard error over the users, and
    the median query time in ms.

    The served query asks Annoy for 10 + |seen| neighbours and drops the user's history, exactly
    as `recli recommend` does, so this is the recall users get.
    """
    overlaps, seconds = [], []
    for user, truth in zip(rows.tolist(), exact, strict=True):
        exclude = seen[user]
        query = users[user].tolist()
        started = time.perf_counter()
        neighbours = index.get_nns_by_vector(query, RECALL_K + len(exclude), search_k=search_k)
        approximate = [i for i in neighbours if i not in exclude][:RECALL_K]
        seconds.append(time.perf_counter() - started)
        overlaps.append(len(set(approximate) & set(truth.tolist())) / RECALL_K)
    return float(np.mean(overlaps)), standard_error(overlaps), 1000 * float(np.median(seconds))


def search_ladder(n_trees: int, n_items: int) -> list[int]:
    """Search efforts tried by `search_k: auto`: Annoy's default (n_trees × 10), doubled until
    every leaf of every tree can be visited (n_trees × items), where Annoy is exact."""
    ceiling = n_trees * max(n_items, RECALL_K)
    ladder = [n_trees * RECALL_K]
    while ladder[-1] < ceiling:
        ladder.append(min(2 * ladder[-1], ceiling))
    return ladder


def low_recall_fix(cfg: IndexConfig, ladder_exhausted: bool) -> str:
    """What to change when the served recall is under the target: a fixed effort is too small;
    under `auto`, either every effort fell short (more trees needed) or the tuning half cleared
    the target and the reporting half, by chance, did not (more users measured)."""
    if cfg.search_k != "auto":
        return "raise index.search_k or set it to auto"
    return "raise index.n_trees" if ladder_exhausted else "raise index.recall_users"


def measure_ann(
    index_path: Path,
    users: np.ndarray,
    items: np.ndarray,
    seen: list[set[int]],
    cfg: IndexConfig,
) -> dict[str, Any]:
    """Choose the search effort (`search_k: auto`) and measure the recall and latency it serves.

    Users with a zero vector cannot be queried and are left out. The rest are sampled (seeded, at
    most `cfg.recall_users`) and split in two halves: the effort is chosen on the first (the
    smallest on `search_ladder` whose recall, less two standard errors, reaches
    `cfg.recall_target`, so that a fresh sample of users clears the target too; the largest if
    none does, recorded as `search_k_ladder_exhausted`) and the recall reported is the second
    half's, so the reported number is not the one tuned. Cold items are candidates, as when
    serving: new items are exactly what the text side is for.
    """
    from annoy import AnnoyIndex

    queryable = np.flatnonzero(np.abs(users).sum(axis=1) > 0)
    rng = np.random.default_rng(cfg.seed)
    sample = rng.permutation(queryable)[: cfg.recall_users]
    tuning, reporting = (sample[::2], sample[1::2]) if len(sample) > 1 else (sample, sample)

    index = AnnoyIndex(items.shape[1], cfg.metric)
    index.load(str(index_path))
    by_search_k: dict[str, float] = {}
    errors: dict[str, float] = {}
    if cfg.search_k == "auto":
        exact = exact_top(users, items, seen, tuning)
        search_k, exhausted = None, False
        for effort in search_ladder(cfg.n_trees, items.shape[0]):
            recall, error, _ = ann_recall(index, users, seen, tuning, exact, effort)
            by_search_k[str(effort)], errors[str(effort)] = round(recall, 5), round(error, 5)
            if recall - 2 * error >= cfg.recall_target:
                search_k = effort
                break
        if search_k is None:
            search_k, exhausted = effort, True
    else:
        search_k, exhausted = cfg.search_k, False

    exact = exact_top(users, items, seen, reporting)
    recall, _, ann_ms = ann_recall(index, users, seen, reporting, exact, search_k)
    index.unload()
    exact_seconds = []
    for user in reporting[:200].tolist():
        started = time.perf_counter()
        scores = items @ users[user]
        if seen[user]:
            scores[list(seen[user])] = -np.inf
        top_k(scores[None, :], RECALL_K)
        exact_seconds.append(time.perf_counter() - started)
    return {
        "search_k": int(search_k),
        "recall_target": cfg.recall_target,
        f"ann_recall@{RECALL_K}": round(recall, 5),
        f"tuning_recall@{RECALL_K}_by_search_k": by_search_k,
        f"tuning_recall@{RECALL_K}_standard_error_by_search_k": errors,
        "search_k_ladder_exhausted": exhausted,
        "ann_query_ms_median": round(ann_ms, 4),
        "exact_query_ms_median": round(1000 * float(np.median(exact_seconds)), 4),
        "users_measured": len(reporting),
    }


def _file_digest(path: Path) -> str:
    return contract.file_digest(path)[: contract.DIGEST_CHARS]


def served_files(artifacts: Path) -> list[Path]:
    """Every file `recli` serves from: the catalogue, the Annoy index and the encoder
    `recli search` loads (where one was saved)."""
    index_dir, encoder = artifacts / contract.INDEX_DIR, artifacts / contract.ENCODER_DIR
    model = sorted(path for path in encoder.rglob("*") if path.is_file())
    return [index_dir / contract.CATALOGUE_FILE, index_dir / contract.INDEX_FILE, *model]


def seal(artifacts: Path, written: Callable[[Path], Path] = Path) -> None:
    """Write `index/manifest.json`, the record `recli` checks what it serves against
    (`recli.integrity`): last, once every served file is final. Files are named where they are
    served from and read where this run wrote them (`written`: a staged layout's `placed`)."""
    files = served_files(artifacts)
    manifest = integrity.record(artifacts, files, {path: written(path) for path in files})
    io.write_json(written(integrity.manifest_path(artifacts)), manifest)


def write_catalogue(
    path: Path,
    processed: Processed,
    fused_users: np.ndarray,
    assignments: dict[int, int],
    profiles: list[dict[str, Any]],
    meta: Mapping[str, Any],
    interests: pl.DataFrame | None = None,
    user_interests: pl.DataFrame | None = None,
    interest_vectors: tuple[np.ndarray, np.ndarray] | None = None,
    topics: Topics | None = None,
) -> None:
    """Everything the CLI shows, in one SQLite file, written atomically by `recli.catalogue`'s
    writer: this adapter only turns the frames and arrays into rows in its column orders.

    `fused_users` are the served user vectors and the history table holds every event of every
    user (all splits and the cold-item events): what is served knows everything the user did.
    `interests` are the users' own profiles (`profiles.user_interests` rows), stored per user as
    JSON in rank order; `user_interests` the interests stage's table (one row per interest),
    with `interest_vectors` its rows' (centroids, fused means); `topics` the catalogue's topics.
    `meta` is keyed by `recli.catalogue.MetaKey` (the writer refuses any other key).
    """
    history = processed.history_served
    events = dict(history.group_by("user_idx").len().iter_rows())
    own: dict[int, list[dict[str, Any]]] = {}
    if interests is not None:
        for row in interests.iter_rows(named=True):
            own.setdefault(row.pop("user_idx"), []).append(row)
    centroids, means = interest_vectors or (None, None)
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
                        )
                        for number, row in enumerate(user_interests.iter_rows(named=True))
                    ),
                )
            connection.commit()
        finally:
            connection.close()


def _served_means(table: pl.DataFrame, sets: InterestSets, items: np.ndarray) -> np.ndarray:
    """Each served interest's mean fused item vector, in the table's row order."""
    means = sets.means(items)
    order = table.with_row_index("row").sort(["user_idx", "interest"])["row"].to_numpy()
    aligned = np.empty_like(means)
    aligned[order] = means
    return aligned


@writes("index")
def main(layout: Layout) -> None:
    params = load_params(layout.params)
    processed = read_processed(layout)
    matrices = SplitMatrices.from_processed(
        processed, params.evaluate.max_users, params.preprocess.split.seed
    )
    text, cf = read_embeddings("finetuned", layout), read_factors(layout)
    sequences = {name: read_sequence_vectors(name, layout) for name in SEQUENCE_MODELS}
    linear = read_linear(layout)
    fusion, behaviour, by_weight = tune_fusion(
        text, cf, matrices, params.index, params.preprocess.split.seed, sequences, linear
    )
    fused = fusion.fuse_all(text, behaviour)
    # Served: each user's vector from every event they have; evaluation reads the split ones.
    fused_users, fused_items = fused.served_users, fused.items
    write_fused(fused, layout)

    index_path = layout.index / contract.INDEX_FILE
    build_annoy(fused_items, params.index, index_path)
    seen = [set() for _ in range(processed.users.height)]
    for user, item in processed.history_served.select("user_idx", "item_idx").iter_rows():
        seen[user].add(item)
    ann = measure_ann(index_path, fused_users, fused_items, seen, params.index)
    if ann[f"ann_recall@{RECALL_K}"] < params.index.recall_target:
        print(
            f"index: warning: recall@{RECALL_K} {ann[f'ann_recall@{RECALL_K}']:.3f} is below "
            f"index.recall_target {params.index.recall_target} at search_k {ann['search_k']}: "
            + low_recall_fix(params.index, ann["search_k_ladder_exhausted"])
        )

    # Multi-interest retrieval and exploration, tuned on validation like the fusion.
    depth = max(params.evaluate.k)
    inputs = exploration_inputs(processed, layout, params.interests.half_life)
    item_space = read_embeddings(params.interests.encoder, layout).items
    scale = score_scale(fused.users, fused.items, params.index.seed, matrices.evaluated)
    multi, multi_record = tune_multi_interest(
        fused, inputs, matrices, params.index, item_space, depth, params.preprocess.split.seed
    )
    explore, explore_record = tune_explore(
        fused, inputs, matrices, params.index, scale, params.preprocess.split.seed
    )
    explore = {**explore, "score_scale": scale, "half_life": params.interests.half_life}
    write_retrieval({"multi_interest": multi, "explore": explore}, layout)
    served_interests = read_interests(layout)
    served_sets = InterestSets.from_table(served_interests.table, served_interests.centroids)
    topics = read_topics(layout)

    written_index = index_path  # in staging until the stage commits
    clustering = read_clustering(layout)
    assignments = dict(clustering.assignments.select("user_idx", "cluster").iter_rows())
    profiles = clustering.profiles
    meta: dict[MetaKey, Any] = {
        MetaKey.SCHEMA_VERSION: catalogue.SCHEMA_VERSION,
        MetaKey.DIMENSION: int(fused_items.shape[1]),
        MetaKey.TEXT_DIMENSION: int(text.items.shape[1]),
        MetaKey.METRIC: params.index.metric,
        MetaKey.SEARCH_K: ann["search_k"],
        MetaKey.TEXT_WEIGHT: fusion.text_weight,
        MetaKey.SEQUENCE_SHARE: fusion.sequence_share,
        MetaKey.SEQUENCE_MODEL: fusion.sequence_model,
        MetaKey.LINEAR_SHARE: fusion.linear_share,
        MetaKey.TEXT_SCALE: fusion.text_scale,
        MetaKey.CF_SCALE: fusion.cf_scale,
        MetaKey.INDEX_SHA256: _file_digest(written_index),
        MetaKey.INDEX_BYTES: written_index.stat().st_size,
        # Paths relative to the artifacts folder (`data/`), so `recli doctor` can re-hash them.
        MetaKey.BUILT_FROM: {
            path.relative_to(layout.artifacts).as_posix(): _file_digest(path)
            for path in (
                layout.processed / "train.parquet",
                layout.processed / "items.parquet",
                item_embeddings_file(layout),
                item_factors_file(layout),
                *([linear_files(layout)[1]] if linear is not None else []),
                *clustering_files(layout),
                layout.interests / "user_interests.parquet",
            )
        },
        MetaKey.ENCODER: (contract.DEFAULT_ARTIFACTS / contract.ENCODER_DIR).as_posix(),
        MetaKey.MULTI_INTEREST: multi,
        MetaKey.EXPLORE: explore,
        MetaKey.TOPIC_TRANSITIONS: {
            "counts": topics.counts.tolist(),
            "adoptions": topics.adoptions.tolist(),
            "smoothing": topics.smoothing,
        },
    }
    write_catalogue(
        layout.index / contract.CATALOGUE_FILE,
        processed,
        fused_users,
        assignments,
        profiles,
        meta,
        clustering.interests,
        served_interests.table,
        (
            served_interests.centroids,
            _served_means(served_interests.table, served_sets, fused_items),
        ),
        topics,
    )
    seal(layout.final.artifacts, layout.placed)
    for served in (layout.index / contract.CATALOGUE_FILE, layout.index / contract.INDEX_FILE):
        # Read-only: `cp` over the index rewrites in place a file that a running query has
        # mapped, which kills that query (SIGBUS); refused, the copy has to replace the file,
        # as the pipeline and DVC do, which leaves a running query's mapping intact.
        served.chmod(0o444)
    io.write_json(
        layout.metrics_file("index"),
        {
            "text_weight": fusion.text_weight,
            "sequence_model": fusion.sequence_model,
            "sequence_share": fusion.sequence_share,
            "linear_share": fusion.linear_share,
            "validation_ndcg@10_by_text_weight/sequence_model/share[/linear_share]": by_weight,
            **ann,
            "multi_interest": multi_record,
            "explore": explore_record,
        },
    )
    print(
        f"index: text weight {fusion.text_weight}, behaviour side ALS + "
        f"{fusion.sequence_model} at share {fusion.sequence_share}, reduced-rank EASE at "
        f"share {fusion.linear_share}, "
        f"{fused_items.shape[1]}-d, search_k {ann['search_k']}, "
        f"ANN recall@{RECALL_K} {ann[f'ann_recall@{RECALL_K}']:.3f}, "
        f"{ann['ann_query_ms_median']:.3f} ms/query (exact {ann['exact_query_ms_median']:.3f} ms)"
    )


if __name__ == "__main__":
    io.run_stage(main)
