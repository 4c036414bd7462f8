"""Stage `index`: the Annoy index over the fused item vectors, its recall, the serving catalogue.

Everything served is chosen on validation by `fuse` (the fusion's weights, the multi-interest and
exploration settings); this stage builds what serves it and tunes nothing: Annoy over the fused
item vectors, the search effort that reaches a recall target against exact search (`search_k:
auto`), the catalogue (`pipeline.data.serving`) and the manifest that seals what is served. A
change to an `index.*` knob re-runs this stage alone.

Outputs under `data/index/`: `items.ann` (Annoy over the fused item vectors), `catalogue.sqlite`
(what the CLI reads), `manifest.json`; and `metrics/index.json`: the trees, the search effort, ANN
recall@10 against exact search on the same vectors, and query latency.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core import io
from pipeline.core.config import load_params
from pipeline.core.layout import Layout, writes
from pipeline.core.sections import IndexConfig
from pipeline.data.artifacts import (
    InterestSets,
    Processed,
    Topics,
    clustering_files,
    fused_files,
    item_embeddings_file,
    item_factors_file,
    linear_files,
    read_clustering,
    read_fused,
    read_interests,
    read_processed,
    read_retrieval,
    read_topics,
)
from pipeline.data.serving import make_read_only, seal, served_means, write_catalogue
from pipeline.evaluation.metrics import standard_error, top_k
from recli import catalogue, contract
from recli.ann_index import retrieve
from recli.catalogue import MetaKey

RECALL_K = 10


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

    The query is `recli recommend`'s own (`recli.ann_index.retrieve`: 10 + |seen| neighbours,
    the user's history dropped), so this is the recall users get.
    """
    overlaps, seconds = [], []
    for user, truth in zip(rows.tolist(), exact, strict=True):
        query = users[user].tolist()
        started = time.perf_counter()
        approximate = [item for item, _ in retrieve(index, query, seen[user], RECALL_K, search_k)]
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


def low_recall_warning(ann: dict[str, Any], cfg: IndexConfig) -> str | None:
    """The line to print when the recall served is under `cfg.recall_target`, else None."""
    recall = ann[f"ann_recall@{RECALL_K}"]
    if recall >= cfg.recall_target:
        return None
    return (
        f"index: warning: recall@{RECALL_K} {recall:.3f} is below index.recall_target "
        f"{cfg.recall_target} at search_k {ann['search_k']}: "
        + low_recall_fix(cfg, ann["search_k_ladder_exhausted"])
    )


def served_histories(processed: Processed) -> list[set[int]]:
    """Every item each user has, all splits and the cold-item events: what a query leaves out."""
    seen: list[set[int]] = [set() for _ in range(processed.users.height)]
    for user, item in processed.history_served.select("user_idx", "item_idx").iter_rows():
        seen[user].add(item)
    return seen


def _file_digest(path: Path) -> str:
    return contract.file_digest(path)[: contract.DIGEST_CHARS]


def upstream_digests(layout: Layout) -> dict[str, str]:
    """The catalogue's `built_from`: digests of the files it was built from, so that `recli
    doctor` notices a stage that re-ran after `index` did not (the split and items, the text and
    behaviour vectors, the users' clusters and interests, the fused vectors and their settings),
    by path relative to the artifacts folder (`data/`), where `recli doctor` re-hashes them."""
    linear = linear_files(layout)[1]
    files = [
        layout.processed / "train.parquet",
        layout.processed / "items.parquet",
        item_embeddings_file(layout),
        item_factors_file(layout),
        *([linear] if linear.exists() else []),
        *clustering_files(layout),
        layout.interests / "user_interests.parquet",
        *fused_files(layout),
    ]
    return {path.relative_to(layout.artifacts).as_posix(): _file_digest(path) for path in files}


def catalogue_meta(
    settings: dict[str, Any],
    ann: dict[str, Any],
    cfg: IndexConfig,
    index_file: Path,
    dimension: int,
    built_from: dict[str, str],
    topics: Topics,
) -> dict[MetaKey, Any]:
    """The catalogue's meta: the fused vectors' layout (`dimension` wide), weights and retrieval
    settings as `fuse` chose them (`settings`, its `retrieval.json`), the index as built here
    (`ann`, the file's digest and size), the upstream digests and the topic transitions."""
    fusion = settings["fusion"]
    return {
        MetaKey.SCHEMA_VERSION: catalogue.SCHEMA_VERSION,
        MetaKey.DIMENSION: dimension,
        MetaKey.TEXT_DIMENSION: fusion["text_dimension"],
        MetaKey.METRIC: cfg.metric,
        MetaKey.SEARCH_K: ann["search_k"],
        MetaKey.TEXT_WEIGHT: fusion["text_weight"],
        MetaKey.SEQUENCE_SHARE: fusion["sequence_share"],
        MetaKey.SEQUENCE_MODEL: fusion["sequence_model"],
        MetaKey.LINEAR_SHARE: fusion["linear_share"],
        MetaKey.TEXT_SCALE: fusion["text_scale"],
        MetaKey.CF_SCALE: fusion["cf_scale"],
        MetaKey.INDEX_SHA256: _file_digest(index_file),
        MetaKey.INDEX_BYTES: index_file.stat().st_size,
        MetaKey.BUILT_FROM: built_from,
        MetaKey.ENCODER: (contract.DEFAULT_ARTIFACTS / contract.ENCODER_DIR).as_posix(),
        MetaKey.MULTI_INTEREST: settings["multi_interest"],
        MetaKey.EXPLORE: settings["explore"],
        MetaKey.TOPIC_TRANSITIONS: {
            "counts": topics.counts.tolist(),
            "adoptions": topics.adoptions.tolist(),
            "smoothing": topics.smoothing,
        },
    }


def run(
    items: np.ndarray, users: np.ndarray, seen: list[set[int]], cfg: IndexConfig, index_path: Path
) -> dict[str, Any]:
    """Annoy over `items` written to `index_path`, and what it serves: the search effort chosen
    for `cfg.recall_target` and the recall and latency measured for `users` (each leaving out
    the items in `seen`), as `measure_ann` records them."""
    build_annoy(items, cfg, index_path)
    return measure_ann(index_path, users, items, seen, cfg)


@writes("index")
def main(layout: Layout) -> None:
    cfg = load_params(layout.params).index
    processed, fused, settings = read_processed(layout), read_fused(layout), read_retrieval(layout)
    index_path = layout.index / contract.INDEX_FILE  # in staging until the stage commits
    ann = run(fused.items, fused.served_users, served_histories(processed), cfg, index_path)
    warning = low_recall_warning(ann, cfg)
    if warning is not None:
        print(warning)
    clustering, interests = read_clustering(layout), read_interests(layout)
    topics, dimension = read_topics(layout), int(fused.items.shape[1])
    sets = InterestSets.from_table(interests.table, interests.centroids)
    write_catalogue(
        layout.index / contract.CATALOGUE_FILE,
        processed,
        fused.served_users,  # each user's vector from every event they have
        dict(clustering.assignments.select("user_idx", "cluster").iter_rows()),
        clustering.profiles,
        catalogue_meta(settings, ann, cfg, index_path, dimension, upstream_digests(layout), topics),
        clustering.over_represented,
        interests.table,
        (interests.centroids, served_means(interests.table, sets, fused.items)),
        topics,
    )
    seal(layout.final.artifacts, layout.placed)
    make_read_only(layout.index)
    io.write_json(layout.metrics_file("index"), {"n_trees": cfg.n_trees, **ann})
    print(
        f"index: {fused.items.shape[0]} items, {dimension}-d, {cfg.n_trees} trees, "
        f"search_k {ann['search_k']}, ANN recall@{RECALL_K} {ann[f'ann_recall@{RECALL_K}']:.3f}, "
        f"{ann['ann_query_ms_median']:.3f} ms/query (exact {ann['exact_query_ms_median']:.3f} ms)"
    )


if __name__ == "__main__":
    io.run_stage(main)
