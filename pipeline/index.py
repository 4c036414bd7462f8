"""Stage `index`: fuse text and collaborative vectors, index the items, write the serving catalogue.

Fusion: user = [a·u_text, b·u_cf], item = [a·i_text, b·i_cf], so one dot product is
a²·(text score) + b²·(collaborative score). The two scores live on different scales (cosine vs
ALS's unbounded dot), so each is first divided by its standard deviation over users × items; the
text share `w` then sets a² = w / σ_text and b² = (1 − w) / σ_cf. `w` is picked on validation.

Outputs under `data/index/`: `items.ann` (Annoy over fused item vectors), `catalogue.sqlite` (what
the CLI reads), `fused_{user,item}_vectors.npy` (for the evaluation), and `metrics/index.json`:
the chosen weight, ANN recall@10 against exact search on the same vectors, and query latency.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline import io
from pipeline.config import EvaluateConfig, IndexConfig, load_params
from pipeline.embed import Embeddings
from pipeline.evaluate import SplitMatrices, restricted
from pipeline.factorize import Factors
from pipeline.interactions import UserItemVectors
from pipeline.metrics import evaluate_scorer, top_k
from pipeline.preprocess import Processed
from recli import catalogue

ARTIFACTS_ROOT = Path("data")
OUTPUT_DIR = ARTIFACTS_ROOT / "index"
METRICS_FILE = Path("metrics/index.json")
RECALL_K = 10
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
        return np.hstack([self.text_scale * text, self.cf_scale * collaborative]).astype(np.float32)

    def fuse_all(self, text: UserItemVectors, cf: UserItemVectors) -> UserItemVectors:
        return UserItemVectors(self.fuse(text.users, cf.users), self.fuse(text.items, cf.items))


def write_fused(fused: UserItemVectors, output_dir: Path = OUTPUT_DIR) -> None:
    io.write_npy(output_dir / "fused_user_vectors.npy", fused.users)
    io.write_npy(output_dir / "fused_item_vectors.npy", fused.items)


def read_fused(input_dir: Path = OUTPUT_DIR) -> UserItemVectors:
    """The fused vectors the index was built from (what `evaluate` scores as "fused")."""
    return UserItemVectors(
        users=io.read_npy(input_dir / "fused_user_vectors.npy", "index"),
        items=io.read_npy(input_dir / "fused_item_vectors.npy", "index"),
    )


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
    evaluate_cfg: EvaluateConfig,
) -> tuple[Fusion, dict[str, float]]:
    """Pick the text weight by validation NDCG@10 (or take the fixed one); report every weight."""
    spreads = score_spreads(text, cf, cfg.seed)
    weights = cfg.weight_grid if cfg.text_weight == "auto" else [float(cfg.text_weight)]
    by_weight: dict[str, float] = {}
    best: tuple[float, float] | None = None
    for weight in weights:
        fused = make_fusion(weight, spreads).fuse_all(text, cf)
        scorer = restricted(fused.score, ~matrices.cold_items)
        result = evaluate_scorer(
            scorer, matrices.train, matrices.validation, [10], evaluate_cfg.coverage_k
        )
        ndcg = float(result.summary()["ndcg@10"])
        by_weight[str(weight)] = round(ndcg, 5)
        if best is None or ndcg > best[1]:
            best = (weight, ndcg)
    assert best is not None  # the config guarantees at least one weight
    return make_fusion(best[0], spreads), by_weight


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
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


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

    `interests` are the users' own profiles (`cluster.user_interests` rows), stored per user as
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


def main() -> None:
    from pipeline import cluster, embed, factorize, preprocess

    params = load_params()
    processed = preprocess.read()
    matrices = SplitMatrices.from_processed(processed)
    text, cf = embed.read("finetuned"), factorize.read()
    fusion, by_weight = tune_fusion(text, cf, matrices, params.index, params.evaluate)
    fused = fusion.fuse_all(text, cf)
    fused_users, fused_items = fused.users, fused.items
    write_fused(fused)

    index_path = OUTPUT_DIR / catalogue.INDEX_FILE
    build_annoy(fused_items, params.index, index_path)
    seen = [set() for _ in range(processed.users.height)]
    for user, item in processed.train.select("user_idx", "item_idx").iter_rows():
        seen[user].add(item)
    ann = measure_ann(index_path, fused_users, fused_items, seen, params.index)

    clustering = cluster.read()
    assignments = dict(clustering.assignments.select("user_idx", "cluster").iter_rows())
    profiles = clustering.profiles
    meta = {
        "schema_version": catalogue.SCHEMA_VERSION,
        "dimension": int(fused_items.shape[1]),
        "text_dimension": int(text.items.shape[1]),
        "metric": params.index.metric,
        "search_k": params.index.search_k,
        "text_weight": fusion.text_weight,
        "text_scale": fusion.text_scale,
        "cf_scale": fusion.cf_scale,
        "index_sha256": _file_digest(index_path),
        "index_bytes": index_path.stat().st_size,
        # Paths relative to the artifacts folder (`data/`), so `recli doctor` can re-hash them.
        "built_from": {
            path.relative_to(ARTIFACTS_ROOT).as_posix(): _file_digest(path)
            for path in (
                preprocess.OUTPUT_DIR / "train.parquet",
                preprocess.OUTPUT_DIR / "items.parquet",
                embed.OUTPUT_DIR / "item_embeddings.npy",
                factorize.OUTPUT_DIR / "item_factors.npy",
                cluster.OUTPUT_DIR / "assignments.parquet",
                cluster.OUTPUT_DIR / "interests.parquet",
            )
        },
        "encoder": str(embed.FINETUNED_MODEL_DIR),
    }
    write_catalogue(
        OUTPUT_DIR / catalogue.CATALOGUE_FILE,
        processed,
        fused_users,
        assignments,
        profiles,
        meta,
        clustering.interests,
    )
    io.write_json(
        METRICS_FILE,
        {
            "text_weight": fusion.text_weight,
            "validation_ndcg@10_by_text_weight": by_weight,
            **ann,
        },
    )
    print(
        f"index: text weight {fusion.text_weight}, {fused_items.shape[1]}-d, "
        f"ANN recall@{RECALL_K} {ann[f'ann_recall@{RECALL_K}']:.3f}, "
        f"{ann['ann_query_ms_median']:.3f} ms/query (exact {ann['exact_query_ms_median']:.3f} ms)"
    )


if __name__ == "__main__":
    io.run_stage(main)
