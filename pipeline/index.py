"""Stage `index`: fuse text and collaborative vectors, index the items, write the serving catalogue.

How the two sides are fused and weighted is `pipeline.fusion`; this stage packages the result for
serving.

Outputs under `data/index/`: `items.ann` (Annoy over fused item vectors), `catalogue.sqlite` (what
the CLI reads), `fused_{user,item}_vectors.npy` (for the evaluation), and `metrics/index.json`:
the chosen weight, ANN recall@10 against exact search on the same vectors, and query latency.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline import io
from pipeline.artifacts import (
    SEQUENCE_MODELS,
    Layout,
    Processed,
    clustering_files,
    item_embeddings_file,
    item_factors_file,
    read_clustering,
    read_embeddings,
    read_factors,
    read_processed,
    read_sequence_vectors,
    write_fused,
)
from pipeline.config import IndexConfig, load_params
from pipeline.fusion import tune_fusion
from pipeline.metrics import top_k
from pipeline.protocol import SplitMatrices
from recli import catalogue, contract

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


def measure_ann(
    index_path: Path,
    users: np.ndarray,
    items: np.ndarray,
    seen: list[set[int]],
    cfg: IndexConfig,
) -> dict[str, float]:
    """Recall@10 of the served query (ANN, then drop seen items) against exact search, and latency.

    The served query asks Annoy for 10 + |seen| neighbours and drops the user's history, exactly
    as `recli recommend` does, so this is the recall users get. Cold items are candidates when
    serving: new items are exactly what the text side is for.
    """
    from annoy import AnnoyIndex

    index = AnnoyIndex(items.shape[1], cfg.metric)
    index.load(str(index_path))
    overlaps, ann_seconds, exact_seconds = [], [], []
    for user, vector in enumerate(users):
        if not vector.any():
            continue
        exclude = seen[user]
        query = vector.tolist()
        started = time.perf_counter()
        neighbours = index.get_nns_by_vector(query, RECALL_K + len(exclude), search_k=cfg.search_k)
        approximate = [i for i in neighbours if i not in exclude][:RECALL_K]
        ann_seconds.append(time.perf_counter() - started)

        started = time.perf_counter()
        scores = items @ vector
        if exclude:
            scores[list(exclude)] = -np.inf
        exact = top_k(scores[None, :], RECALL_K)[0]
        exact_seconds.append(time.perf_counter() - started)
        overlaps.append(len(set(approximate) & set(exact.tolist())) / RECALL_K)
    index.unload()
    return {
        f"ann_recall@{RECALL_K}": round(float(np.mean(overlaps)), 5),
        "ann_query_ms_median": round(1000 * float(np.median(ann_seconds)), 4),
        "exact_query_ms_median": round(1000 * float(np.median(exact_seconds)), 4),
        "users_measured": len(overlaps),
    }


def _file_digest(path: Path) -> str:
    return contract.file_digest(path)[: contract.DIGEST_CHARS]


def write_catalogue(
    path: Path,
    processed: Processed,
    fused_users: np.ndarray,
    assignments: dict[int, int],
    profiles: list[dict[str, Any]],
    meta: dict[str, Any],
    interests: pl.DataFrame | None = None,
) -> None:
    """Everything the CLI shows, in one SQLite file, written atomically.

    `interests` are the users' own profiles (`profiles.user_interests` rows), stored per user as
    JSON in rank order.
    """
    own: dict[int, list[dict[str, Any]]] = {}
    if interests is not None:
        for row in interests.iter_rows(named=True):
            own.setdefault(row.pop("user_idx"), []).append(row)
    with io.atomic_path(path) as temporary:
        temporary.unlink()  # sqlite creates its own file
        connection = sqlite3.connect(temporary)
        try:
            connection.executescript(catalogue.SCHEMA)
            connection.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [(key, json.dumps(value)) for key, value in meta.items()],
            )
            connection.executemany(
                "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        row["item_idx"],
                        row["item_id"],
                        row["title"],
                        row["year"],
                        json.dumps(row["genres"] or []),
                        json.dumps(row["tags"] or []),
                        int(row["cold"]),
                        row["train_count"],
                    )
                    for row in processed.items.iter_rows(named=True)
                ],
            )
            connection.executemany(
                "INSERT INTO clusters VALUES (?, ?, ?, ?)",
                [
                    (profile["cluster"], profile["label"], profile["size"], json.dumps(profile))
                    for profile in profiles
                ],
            )
            connection.executemany(
                "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        row["user_idx"],
                        row["user_id"],
                        assignments.get(row["user_idx"]),
                        row["train_count"],
                        catalogue.pack_vector(fused_users[row["user_idx"]]),
                        json.dumps(own.get(row["user_idx"], [])),
                    )
                    for row in processed.users.iter_rows(named=True)
                ],
            )
            connection.executemany(
                "INSERT INTO history VALUES (?, ?, ?, ?)",
                processed.train.select("user_idx", "item_idx", "timestamp", "rating").iter_rows(),
            )
            connection.commit()
        finally:
            connection.close()


def main(root: Path = Path(".")) -> None:
    layout = Layout(root)
    params = load_params(layout.params)
    processed = read_processed(layout)
    matrices = SplitMatrices.from_processed(processed)
    text, cf = read_embeddings("finetuned", layout), read_factors(layout)
    sequences = {name: read_sequence_vectors(name, layout) for name in SEQUENCE_MODELS}
    fusion, behaviour, by_weight = tune_fusion(
        text, cf, matrices, params.index, params.preprocess.split.seed, sequences
    )
    fused = fusion.fuse_all(text, behaviour)
    fused_users, fused_items = fused.users, fused.items
    write_fused(fused, layout)

    index_path = layout.index / contract.INDEX_FILE
    build_annoy(fused_items, params.index, index_path)
    seen = [set() for _ in range(processed.users.height)]
    for user, item in processed.train.select("user_idx", "item_idx").iter_rows():
        seen[user].add(item)
    ann = measure_ann(index_path, fused_users, fused_items, seen, params.index)

    clustering = read_clustering(layout)
    assignments = dict(clustering.assignments.select("user_idx", "cluster").iter_rows())
    profiles = clustering.profiles
    meta = {
        "schema_version": catalogue.SCHEMA_VERSION,
        "dimension": int(fused_items.shape[1]),
        "text_dimension": int(text.items.shape[1]),
        "metric": params.index.metric,
        "search_k": params.index.search_k,
        "text_weight": fusion.text_weight,
        "sequence_share": fusion.sequence_share,
        "sequence_model": fusion.sequence_model,
        "text_scale": fusion.text_scale,
        "cf_scale": fusion.cf_scale,
        "index_sha256": _file_digest(index_path),
        "index_bytes": index_path.stat().st_size,
        # Paths relative to the artifacts folder (`data/`), so `recli doctor` can re-hash them.
        "built_from": {
            path.relative_to(layout.artifacts).as_posix(): _file_digest(path)
            for path in (
                layout.processed / "train.parquet",
                layout.processed / "items.parquet",
                item_embeddings_file(layout),
                item_factors_file(layout),
                *clustering_files(layout),
            )
        },
        "encoder": (contract.DEFAULT_ARTIFACTS / contract.ENCODER_DIR).as_posix(),
    }
    write_catalogue(
        layout.index / contract.CATALOGUE_FILE,
        processed,
        fused_users,
        assignments,
        profiles,
        meta,
        clustering.interests,
    )
    io.write_json(
        layout.metrics_file("index"),
        {
            "text_weight": fusion.text_weight,
            "sequence_model": fusion.sequence_model,
            "sequence_share": fusion.sequence_share,
            "validation_ndcg@10_by_text_weight/sequence_model/share": by_weight,
            **ann,
        },
    )
    print(
        f"index: text weight {fusion.text_weight}, behaviour side ALS + "
        f"{fusion.sequence_model} at share {fusion.sequence_share}, "
        f"{fused_items.shape[1]}-d, "
        f"ANN recall@{RECALL_K} {ann[f'ann_recall@{RECALL_K}']:.3f}, "
        f"{ann['ann_query_ms_median']:.3f} ms/query (exact {ann['exact_query_ms_median']:.3f} ms)"
    )


if __name__ == "__main__":
    io.run_stage(main)
