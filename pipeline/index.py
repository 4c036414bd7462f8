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

import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

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
    read_interests,
    read_processed,
    read_retrieval,
    read_topics,
    served_fused_users_file,
)
from pipeline.data.serving import make_read_only, seal, served_means, write_catalogue
from pipeline.evaluation.metrics import standard_error, top_k
from pipeline.models.search_space import (
    FLAT_TREES,
    RESCORE,
    Plan,
    efforts,
    project,
    score_basis,
    work,
)
from recli import catalogue, contract
from recli.ann_index import rescored, retrieve
from recli.catalogue import MetaKey

RECALL_K = 10
Seen = Sequence[set[int]] | Mapping[int, set[int]]
"""Each queried user's items, by user index: what a query leaves out."""


def build_annoy(
    items: np.ndarray,
    cfg: IndexConfig,
    path: Path,
    trees: int | None = None,
    users: np.ndarray | None = None,
) -> None:
    """Annoy over `items` (`trees` trees, default `cfg.n_trees`), saved atomically at `path`;
    `users` (read row by row: it may be a memory map), if given, follow at rows items + u."""
    from annoy import AnnoyIndex

    index = AnnoyIndex(items.shape[1], cfg.metric)
    index.set_seed(cfg.seed)
    for item, vector in enumerate(items):
        index.add_item(item, vector.tolist())
    for user, vector in enumerate(users if users is not None else (), start=len(items)):
        index.add_item(user, vector.tolist())
    # One job: Annoy's multi-threaded build is not reproducible across runs.
    index.build(cfg.n_trees if trees is None else trees, n_jobs=1)
    with io.atomic_path(path) as temporary:
        index.save(str(temporary))
    index.unload()


def exact_top(users: np.ndarray, items: np.ndarray, seen: Seen, rows: np.ndarray) -> np.ndarray:
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


@dataclass(frozen=True)
class Rescoring:
    """How a narrower search's candidates are ranked, as `recli` does it for a user: `fused` is
    the flat index over the fused item vectors followed by every user's (`build_annoy` with
    users; user u at row `n_items` + u), and each query asks for `rescore` × 10 candidates."""

    fused: Any
    n_items: int
    rescore: int


def ann_recall(
    index: Any,
    queries: np.ndarray,
    seen: Seen,
    rows: np.ndarray,
    exact: np.ndarray,
    search_k: int,
    rescoring: Rescoring | None = None,
) -> tuple[float, float, float]:
    """Recall@10 of the served query against `exact`, its standard error over the users, and
    the median query time in ms; `queries[i]` is user `rows[i]`'s vector in the index's space.

    The query is `recli recommend`'s own: `recli.ann_index.retrieve` (10 + |seen| neighbours,
    the user's history dropped) where the fused vectors are searched, else
    `recli.ann_index.rescored` with the user's row in `rescoring.fused` ranking the candidates;
    so this is the recall users get, and the time includes the ranking.
    """
    overlaps, seconds = [], []
    for user, query, truth in zip(rows.tolist(), queries.tolist(), exact, strict=True):
        started = time.perf_counter()
        if rescoring is None:
            found = retrieve(index, query, seen[user], RECALL_K, search_k)
        else:
            score = partial(rescoring.fused.get_distance, rescoring.n_items + user)
            found = rescored(index, query, seen[user], RECALL_K, search_k, rescoring.rescore, score)
        seconds.append(time.perf_counter() - started)
        overlaps.append(len({item for item, _ in found} & set(truth.tolist())) / RECALL_K)
    return float(np.mean(overlaps)), standard_error(overlaps), 1000 * float(np.median(seconds))


def low_recall_fix(cfg: IndexConfig, ladder_exhausted: bool) -> str:
    """What to change when the served recall is under the target: a fixed effort is too small;
    under `auto`, either every plan fell short (more trees or dimensions needed) or the tuning
    half cleared the target and the reporting half, by chance, did not (more users measured)."""
    if cfg.search_k != "auto":
        return "raise index.search_k or set it to auto"
    return "raise index.n_trees" if ladder_exhausted else "raise index.recall_users"


@dataclass(frozen=True)
class SearchChoice:
    """How the index serves: the plan chosen, the basis of its space (fused width × its
    dimensions; None: the fused vectors themselves), every plan measured, and whether none
    reached the target (then the most accurate serves)."""

    plan: Plan
    basis: np.ndarray | None
    tried: list[Plan]
    exhausted: bool


def widths(cfg: IndexConfig, fused: int) -> list[int]:
    """The search spaces' widths to try, narrowest first: `index.dimensions` fixed, or under
    `auto` the grid's widths below the fused one, and the fused width itself (always exact)."""
    if cfg.dimensions == "full" or (cfg.dimensions == "auto" and cfg.search_k != "auto"):
        return [fused]
    if cfg.dimensions != "auto":
        return [min(int(cfg.dimensions), fused)]
    return sorted({width for width in cfg.dimensions_grid if width < fused} | {fused})


def rescores(cfg: IndexConfig, width: int, fused: int) -> tuple[int, ...]:
    """Candidates per result to try at `width`: none beyond the results where the fused vectors
    themselves are searched, `index.rescore` where fixed, 1 under a fixed `search_k`, else the
    ladder `search_space.RESCORE`."""
    if width >= fused:
        return (1,)
    if cfg.rescore != "auto":
        return (int(cfg.rescore),)
    return (1,) if cfg.search_k != "auto" else RESCORE


def choose_search(
    items: np.ndarray,
    users: np.ndarray,
    seen: Seen,
    tuning: np.ndarray,
    cfg: IndexConfig,
    scratch: Path,
    fused_index: Any = None,
) -> SearchChoice:
    """The cheapest way to serve (`Plan.work`) whose recall on the `tuning` users reaches
    `cfg.recall_target` (less two standard errors), against exact search over the fused vectors.

    Per width, narrowest first (`widths`), the basis fitted on every user
    (`search_space.score_basis`): a flat index searched whole, asking for more candidates up
    the `rescores` ladder until the fused vectors' ranking of them (in `fused_index`, the flat
    index over items and users) reaches the target, the most this width can recall; where it
    does, a forest of `cfg.n_trees` trees on the doubling effort ladder, each effort up the
    candidate ladder, cheaper where it reaches it too. A plan costing at least the best found
    is not measured. A fixed `search_k` serves the one plan it names, in `cfg.n_trees` trees.
    """
    from annoy import AnnoyIndex

    n_items, fused = items.shape
    spaces = widths(cfg, fused)
    full_basis = score_basis(users, items) if spaces[0] < fused else None
    exact = exact_top(users, items, seen, tuning)
    tried: list[Plan] = []
    best: Plan | None = None
    fixed = cfg.search_k != "auto"

    def cheaper(width: int, effort: int, rescore: int) -> bool:
        return best is None or work(width, effort, rescore, fused) < best.work

    for width in spaces:
        basis = None if width == fused or full_basis is None else full_basis[:, :width]
        vectors, queries = project(items, basis), project(users[tuning], basis)
        candidates = rescores(cfg, width, fused)
        for trees in (cfg.n_trees,) if fixed else (FLAT_TREES, cfg.n_trees):
            ladder = [
                (effort, rescore)
                for effort in ([int(cfg.search_k)] if fixed else efforts(trees, n_items, RECALL_K))
                for rescore in candidates
                if fixed or cheaper(width, effort, rescore)
            ]
            if not ladder:
                continue
            path = scratch / f"{width}-{trees}.ann"
            build_annoy(vectors, cfg, path, trees)
            index = AnnoyIndex(width, cfg.metric)
            index.load(str(path))
            reached = False
            for effort, rescore in ladder:
                if not (fixed or cheaper(width, effort, rescore)):
                    continue
                rescoring = Rescoring(fused_index, n_items, rescore) if width < fused else None
                measured = ann_recall(index, queries, seen, tuning, exact, effort, rescoring)
                plan = Plan(width, trees, effort, rescore, fused, *measured)
                tried.append(plan)
                if plan.reaches(cfg.recall_target) or fixed:
                    best, reached = plan, True
            index.unload()
            path.unlink()
            if trees == FLAT_TREES and not reached:
                break  # the whole flat index is this width's ceiling: no forest does better
    exhausted = best is None
    if best is None:  # nothing reached the target: the most accurate, then the cheapest
        best = min(tried, key=lambda plan: (-plan.recall, plan.work))
    basis = (
        None if full_basis is None or best.dimensions == fused else full_basis[:, : best.dimensions]
    )
    return SearchChoice(best, basis, tried, exhausted)


def measured_users(users: np.ndarray, cfg: IndexConfig) -> tuple[np.ndarray, np.ndarray]:
    """The users the plan is chosen on and those the recall is reported on: a seeded sample of
    at most `cfg.recall_users` of those with a non-zero vector (a zero one cannot be queried),
    halved. `users` is read block by block (it may be a memory map of every served user)."""
    queryable = np.concatenate(
        [
            start + np.flatnonzero(np.abs(users[start : start + 65536]).sum(axis=1) > 0)
            for start in range(0, len(users), 65536)
        ]
        or [np.empty(0, dtype=np.int64)]
    )
    sample = np.random.default_rng(cfg.seed).permutation(queryable)[: cfg.recall_users]
    return (sample[::2], sample[1::2]) if len(sample) > 1 else (sample, sample)


def measure_ann(
    items: np.ndarray,
    users: np.ndarray,
    seen: Seen,
    cfg: IndexConfig,
    index_path: Path,
    search_path: Path,
) -> tuple[dict[str, Any], np.ndarray | None]:
    """Choose how to serve (`choose_search`), build it, and measure the recall and latency it
    serves; the metrics and the search space's basis (None: the fused vectors are searched).

    Users with a zero vector cannot be queried and are left out. The rest are sampled (seeded, at
    most `cfg.recall_users`) and split in two halves: the plan is chosen on the first and the
    recall reported is the second half's, so the reported number is not the one tuned. The
    search space's basis is fitted on every served user, as what is served knows every user;
    `unseen_user_recall@10` is the recall of the same plan for the second half with a basis
    fitted without them: what a user added after the build gets. Cold items are candidates, as
    when serving: new items are exactly what the text side is for.

    Written: `index_path`, Annoy over the fused vectors (the searched index where they are
    searched, else a flat one: every item's exact vector, followed by every user's, which rank
    the candidates and give the scores `recli` shows), and `search_path`, the searched index,
    where the search space is narrower.
    """
    from annoy import AnnoyIndex

    tuning, reporting = measured_users(users, cfg)
    n_items, fused = items.shape
    index_path.parent.mkdir(parents=True, exist_ok=True)
    fused_index = None
    if widths(cfg, fused)[0] < fused:
        # The file served where a narrower space is searched: users' rows rank the candidates.
        build_annoy(items, cfg, index_path, FLAT_TREES, users)
        fused_index = AnnoyIndex(fused, cfg.metric)
        fused_index.load(str(index_path))
    try:
        with tempfile.TemporaryDirectory(dir=index_path.parent) as scratch:
            choice = choose_search(items, users, seen, tuning, cfg, Path(scratch), fused_index)
            plan, basis = choice.plan, choice.basis
            rescoring = None if basis is None else Rescoring(fused_index, n_items, plan.rescore)
            exact = exact_top(users, items, seen, reporting)
            unseen = None
            if basis is not None:
                others = np.setdiff1d(np.arange(len(users)), reporting)
                blind = score_basis(users, items, others)[:, : plan.dimensions]
                path = Path(scratch) / "unseen.ann"
                build_annoy(project(items, blind), cfg, path, plan.trees)
                index = AnnoyIndex(plan.dimensions, cfg.metric)
                index.load(str(path))
                queries = project(users[reporting], blind)
                unseen = ann_recall(
                    index, queries, seen, reporting, exact, plan.search_k, rescoring
                )[0]
                index.unload()
        search_path.unlink(missing_ok=True)
        if basis is None:
            if fused_index is not None:
                fused_index.unload()
                fused_index = None
            build_annoy(items, cfg, index_path, plan.trees)  # searched itself: items only
            searched = index_path
        else:
            build_annoy(project(items, basis), cfg, search_path, plan.trees)
            searched = search_path
        index = AnnoyIndex(plan.dimensions, cfg.metric)
        index.load(str(searched))
        recall, _, ann_ms = ann_recall(
            index,
            project(users[reporting], basis),
            seen,
            reporting,
            exact,
            plan.search_k,
            rescoring,
        )
        index.unload()
    finally:
        if fused_index is not None:
            fused_index.unload()
    exact_seconds = []
    for user in reporting[:200].tolist():
        started = time.perf_counter()
        scores = items @ users[user]
        if seen[user]:
            scores[list(seen[user])] = -np.inf
        top_k(scores[None, :], RECALL_K)
        exact_seconds.append(time.perf_counter() - started)
    return {
        "search_k": int(plan.search_k),
        "recall_target": cfg.recall_target,
        "dimensions": plan.dimensions,
        "fused_dimensions": int(items.shape[1]),
        "trees": plan.trees,
        "rescore": plan.rescore,
        "user_rows": basis is not None,
        f"ann_recall@{RECALL_K}": round(recall, 5),
        f"unseen_user_recall@{RECALL_K}": None if unseen is None else round(unseen, 5),
        "tuning_plans": [tried.record() for tried in choice.tried],
        "tuning_query_ms_median": [round(tried.query_ms, 4) for tried in choice.tried],
        "search_k_ladder_exhausted": choice.exhausted,
        "ann_query_ms_median": round(ann_ms, 4),
        "exact_query_ms_median": round(1000 * float(np.median(exact_seconds)), 4),
        "users_measured": len(reporting),
    }, basis


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


def sampled_histories(processed: Processed, rows: np.ndarray) -> dict[int, set[int]]:
    """`served_histories` of the users in `rows` only: all the index stage queries for."""
    seen: dict[int, set[int]] = {int(user): set() for user in rows}
    history = processed.history_served.filter(pl.col("user_idx").is_in(list(seen)))
    for user, item in history.select("user_idx", "item_idx").iter_rows():
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


def search_meta(ann: dict[str, Any], search_file: Path) -> dict[MetaKey, Any]:
    """Where the index searches a narrower space than the fused one: its width, and the digest
    and size of the index searched there (`search_file`); nothing where the fused vectors are."""
    if ann["dimensions"] == ann["fused_dimensions"]:
        return {}
    return {
        MetaKey.USER_ROWS: ann["user_rows"],
        MetaKey.SEARCH_RESCORE: ann["rescore"],
        MetaKey.SEARCH_DIMENSION: ann["dimensions"],
        MetaKey.SEARCH_INDEX_SHA256: _file_digest(search_file),
        MetaKey.SEARCH_INDEX_BYTES: search_file.stat().st_size,
    }


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
        **search_meta(ann, index_file.with_name(contract.SEARCH_INDEX_FILE)),
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
    items: np.ndarray, users: np.ndarray, seen: Seen, cfg: IndexConfig, index_path: Path
) -> tuple[dict[str, Any], np.ndarray | None]:
    """What serves `items`, written next to `index_path` (`measure_ann`): the metrics of the way
    chosen for `cfg.recall_target`, measured for `users` (each leaving out the items in `seen`),
    and the search space's basis (None: the fused vectors themselves are searched)."""
    search_path = index_path.with_name(contract.SEARCH_INDEX_FILE)
    return measure_ann(items, users, seen, cfg, index_path, search_path)


@writes("index")
def main(layout: Layout) -> None:
    cfg = load_params(layout.params).index
    processed, settings = read_processed(layout), read_retrieval(layout)
    items = io.read_npy(layout.fuse / "fused_item_vectors.npy", "fuse")
    # Every user's served vector, read by rows: this process never holds them all.
    users = np.load(io.require(served_fused_users_file(layout), "fuse"), mmap_mode="r")
    seen = sampled_histories(processed, np.concatenate(measured_users(users, cfg)))
    index_path = layout.index / contract.INDEX_FILE  # in staging until the stage commits
    ann, basis = run(items, users, seen, cfg, index_path)
    warning = low_recall_warning(ann, cfg)
    if warning is not None:
        print(warning)
    clustering, interests = read_clustering(layout), read_interests(layout)
    topics, dimension = read_topics(layout), int(items.shape[1])
    sets = InterestSets.from_table(interests.table, interests.centroids)
    write_catalogue(
        layout.index / contract.CATALOGUE_FILE,
        processed,
        users,  # each user's vector from every event they have
        dict(clustering.assignments.select("user_idx", "cluster").iter_rows()),
        clustering.profiles,
        catalogue_meta(settings, ann, cfg, index_path, dimension, upstream_digests(layout), topics),
        clustering.over_represented,
        interests.table,
        (interests.centroids, served_means(interests.table, sets, items)),
        topics,
        basis,
    )
    seal(layout.final.artifacts, layout.placed)
    make_read_only(layout.index)
    io.write_json(layout.metrics_file("index"), {"n_trees": cfg.n_trees, **ann})
    print(
        f"index: {items.shape[0]} items, {dimension}-d searched in {ann['dimensions']}-d, "
        f"{ann['trees']} trees, "
        f"search_k {ann['search_k']}, ANN recall@{RECALL_K} {ann[f'ann_recall@{RECALL_K}']:.3f}, "
        f"{ann['ann_query_ms_median']:.3f} ms/query (exact {ann['exact_query_ms_median']:.3f} ms)"
    )


if __name__ == "__main__":
    io.run_stage(main)
