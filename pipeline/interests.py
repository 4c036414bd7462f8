"""Per-user interests: each user's own history, grouped in the item text space.

One vector per user averages a person who watches both children's animation and film noir into
neither. Here each user's items are grouped by Ward linkage on their unit text vectors and the
tree is cut at a distance (`InterestSettings.distance_threshold`), so a user has as many interests
as their history shows, at most `max_interests`; groups of fewer than `min_items` items join the
nearest larger one. A sparse history (fewer than `sparse_items` items) is grouped by links
instead, at a cosine bar read off the training and validation events (`linking_bar`), so an item
far from all the others is an interest of its own. Each interest has:

- its items (newest first) and the user's events on them;
- a weight: its share of the user's events, each event counted `0.5 ** (age / half_life)` with
  age its position from the user's latest event, so what the user does now counts most;
- a medoid: the member closest on average to the others, the item that stands for it;
- the terms its items over-represent against everyone's events (lift, as the cluster profiles
  rank them: `pipeline.models.terms`), and, on data without genres, tags or years, phrases of
  the items' titles and descriptions (`pipeline.models.phrases`);
- a short label from those terms, where a release era leads only when no genre or tag is
  over-represented (era terms otherwise group users by *when* they watched);
- the global interest group nearest to it: the cluster whose members' events, averaged in the
  same item space, point closest to the interest's centroid.

Outputs under `data/interests/`: `user_interests.parquet` (one row per interest), `centroids.npy`
(the interests' unit centroids, same order), `config.json`; `metrics/interests.json`: how many
interests users have, and how well the labels describe their items (`label_agreement`: the mean
share of an interest's items that carry one of its label terms, next to the same share after
shuffling each user's items across their interests, the floor), and the same for the users with
sparse histories (`sparse_histories`).

The grouping lives in `pipeline.models.interest_sets`, the terms, labels and groups in
`pipeline.models.interest_labels`, the topics in `pipeline.models.topics`, the metrics' counts in
`pipeline.models.interest_tallies`; this stage runs them. On the engine (`run_partitions`, what
`main` runs) the users are cut, described and counted partition by partition
(`pipeline.models.user_interests`), locally or as Ray tasks; `run` does the same for every user
at once, in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline.core import io
from pipeline.core.config import load_params
from pipeline.core.layout import Layout, writes
from pipeline.core.sections import InterestsConfig
from pipeline.data.artifacts import (
    Processed,
    Topics,
    UserInterests,
    read_embeddings,
    read_items,
    user_count,
    write_interests,
    write_topics,
)
from pipeline.engine.partitions import by_user_folder, partition_files
from pipeline.engine.runner import Engine
from pipeline.evaluation.protocol import user_sample
from pipeline.models.interest_labels import Scored, describe, group_centroids
from pipeline.models.interest_sets import (
    InterestSettings,
    calibrate_linked_similarity,
    linking_quantile,
    user_interest_sets,
)
from pipeline.models.interest_tallies import (
    Tally,
    interest_metrics,
    metrics_of,
    shuffled_agreement,
)
from pipeline.models.phrases import carried_with_phrases, item_phrases
from pipeline.models.terms import overall_shares, served_counts
from pipeline.models.topics import fit_topics, profiles_of, topic_metrics, topics_for
from pipeline.models.user_interests import (
    SERVED,
    SPARSE,
    add_census,
    assemble,
    batches,
    census_partition,
    describe_partition,
    group_partition,
)


def settings_for(cfg: InterestsConfig, linked_similarity: float | None = None) -> InterestSettings:
    """The `interests` section with the sparse histories' linking bar (`linked_similarity`,
    `calibrate_linked_similarity`)."""
    return InterestSettings(**cfg.model_dump(), linked_similarity=linked_similarity)


def linking_bar(
    processed: Processed, item_vectors: np.ndarray, cfg: InterestsConfig
) -> float | None:
    """The sparse histories' linking bar, from the training split and the validation events
    only (`interests.sparse_link_quantile`; None when it is off)."""
    if cfg.sparse_link_quantile is None:
        return None
    return calibrate_linked_similarity(
        processed.train, processed.validation, item_vectors, cfg.sparse_link_quantile
    )


def run(
    processed: Processed,
    item_vectors: np.ndarray,
    assignments: pl.DataFrame,
    cfg: InterestsConfig,
    evaluated: np.ndarray | None = None,
    workers: int = 1,
) -> tuple[UserInterests, dict[str, tuple[pl.DataFrame, np.ndarray]], Topics]:
    """Every user's described interests (with the stage's metrics), each evaluated split's
    interests (`validation`, `test`: table and centroids), and the catalogue's topics.

    `assignments` are the global groups (`cluster`) each interest is matched to; `evaluated`
    limits the split interests to those users (None: every user); `workers` is the number of
    processes the histories are grouped in.
    """
    bar = linking_bar(processed, item_vectors, cfg)
    settings = settings_for(cfg, bar)
    # What is served knows every event: the served interests come from the whole history.
    topics = topics_for(processed, item_vectors, cfg)
    table, centroids = describe(
        processed.history_served,
        processed.items,
        item_vectors,
        assignments,
        settings,
        workers,
        topics,
    )
    # Every term and phrase each item carries, found once: both agreements read it.
    carried = carried_with_phrases(processed.items)
    metrics = interest_metrics(table, carried, processed.users.height, cfg.seed)
    metrics["sparse_histories"] = sparse_metrics(
        table, processed.history_served, carried, settings, cfg.seed
    )
    # What is evaluated reads only the history before the held-out event, and only the users
    # the evaluation ranks are ever scored.
    splits: dict[str, tuple[pl.DataFrame, np.ndarray]] = {}
    for split, before in (("validation", processed.train), ("test", processed.history_at_test)):
        if evaluated is not None:
            before = before.filter(pl.col("user_idx").is_in(evaluated.tolist()))
        splits[split] = user_interest_sets(before, item_vectors, settings, workers)
    metrics["topics"] = topic_metrics(topics, processed, carried)
    return UserInterests(table=table, centroids=centroids, metrics=metrics), splits, topics


def sparse_metrics(
    table: pl.DataFrame,
    history: pl.DataFrame,
    carried: dict[int, set[str]],
    settings: InterestSettings,
    seed: int,
) -> dict[str, Any]:
    """The users whose served history is sparse (fewer than `sparse_items` distinct items):
    how many, how many interests they get with the linking bar, and their label agreement
    against its shuffled floor (which a user with one interest cannot beat)."""
    distinct = history.group_by("user_idx").agg(pl.col("item_idx").n_unique().alias("n"))
    sparse = distinct.filter(pl.col("n") < settings.sparse_items)["user_idx"]
    own = table.filter(pl.col("user_idx").is_in(sparse.implode()))
    described = interest_metrics(own, carried, sparse.len(), seed) if own.height else {}
    return sparse_summary(described, sparse.len(), settings)


def sparse_summary(
    described: dict[str, Any], users: int, settings: InterestSettings
) -> dict[str, Any]:
    """`sparse_metrics` from the sparse users' `interest_metrics` (empty: they have none)."""
    by_count = described.get("users_by_interest_count", {})
    return {
        "users": users,
        "linked_similarity": settings.linked_similarity,
        "users_with_several_interests": sum(n for count, n in by_count.items() if int(count) > 1),
        "interests_per_user_mean": described.get("interests_per_user_mean"),
        "label_agreement": described.get("label_agreement"),
        "label_agreement_shuffled_interests": described.get("label_agreement_shuffled_interests"),
    }


def summary(metrics: dict[str, Any]) -> str:
    """The line the stage prints: interests per user, label agreement, topics, novel events."""
    novel = metrics["topics"]["novel_events"]["test"]
    return (
        f"interests: {metrics['interests']} over {metrics['users']} users "
        f"(median {metrics['interests_per_user_median']:g}), label agreement "
        f"{metrics['label_agreement']} (shuffled {metrics['label_agreement_shuffled_interests']}); "
        f"{metrics['topics']['topics']} topics, {novel['novel']} of {novel['events']} test "
        "events in a topic new to their user"
    )


# --------------------------------------------------------------------------------------------
# The stage on the engine: the users partition by partition
# --------------------------------------------------------------------------------------------
def run_partitions(
    engine: Engine,
    layout: Layout,
    item_vectors: np.ndarray,
    cfg: InterestsConfig,
    evaluated: np.ndarray | None,
    out: Path,
) -> tuple[dict[str, Any], Topics]:
    """`run`, with every user's interests cut, described and counted partition by partition on
    `engine` (`pipeline.models.user_interests`), in three passes: a census, the grouping, the
    description. The tables and centroids of the served interests and of each evaluated
    split's are written to `out` from the partitions' pieces; returns the stage's metrics and
    the topics. This process holds what is bounded by the catalogue (item vectors, topics,
    per-item counts, the global groups' centroids), the linking bar's closeness and the top
    interest's weight for each user (their quantiles need the values), and deals the
    agreement's floor in one pass over the interests in user order
    (`interest_tallies.shuffled_agreement`)."""
    item_vectors = np.asarray(item_vectors)
    items = read_items(layout)
    n_users = user_count(layout)
    files = partition_files(by_user_folder(layout))
    assignments = io.require(layout.cluster / "assignments.parquet", "cluster").absolute()
    item_topic, topic_centroids = fit_topics(item_vectors, cfg.topics, cfg.seed)
    census = add_census(
        engine.map(census_partition, [(p, item_vectors, item_topic, assignments) for p in files])
    )
    topics = Topics(
        item_topic=item_topic,
        centroids=topic_centroids,
        profiles=profiles_of(census.trained, items, item_topic, item_vectors),
        counts=census.transitions,
        adoptions=census.adoptions,
        smoothing=cfg.transition_smoothing,
    )
    bar = None
    if cfg.sparse_link_quantile is not None:
        bar = linking_quantile(census.closest, cfg.sparse_link_quantile)
    settings = settings_for(cfg, bar)
    phrases = item_phrases(items)
    overall = overall_shares(served_counts(census.served), items)
    grouping = [
        (path, part, items, item_vectors, settings, overall, phrases, evaluated, out)
        for part, path in enumerate(files)
    ]
    totals = engine.map(group_partition, grouping)
    scored = Scored(overall, phrases, sum(totals[1:], totals[0]))
    groups = group_centroids(census.groups, item_vectors)
    carried = carried_with_phrases(items)
    describing = [
        (path, part, items, item_vectors, scored, topics, groups, carried, cfg.sparse_items, out)
        for part, path in enumerate(files)
    ]
    tallies = engine.map(describe_partition, describing)
    width = item_vectors.shape[1]
    for split in ("validation", "test"):
        name = f"{SERVED}_for_{split}"
        ordered = assemble(
            out, name, out / f"{name}.parquet", out / f"centroids_for_{split}.npy", width
        )
        ordered.unlink()
    ordered = assemble(out, SERVED, out / f"{SERVED}.parquet", out / "centroids.npy", width)
    columns = ["user_idx", "items", "label_terms", SPARSE]
    floor = shuffled_agreement(batches(ordered, columns), carried, cfg.seed)
    sparse_batches = (batch.filter(pl.col(SPARSE)) for batch in batches(ordered, columns))
    sparse_floor = shuffled_agreement(sparse_batches, carried, cfg.seed)
    ordered.unlink()
    whole = sum((tally for tally, _, _ in tallies), Tally())
    sparse = sum((tally for _, tally, _ in tallies), Tally())
    metrics = metrics_of(whole, floor, n_users)
    n_sparse = sum(count for _, _, count in tallies)
    metrics["sparse_histories"] = sparse_summary(
        metrics_of(sparse, sparse_floor, n_sparse) if sparse.interests else {}, n_sparse, settings
    )
    metrics["topics"] = topic_metrics(topics, census.novel, carried)
    return metrics, topics


@writes("interests")
def main(layout: Layout) -> None:
    params = load_params(layout.params)
    cfg = params.interests
    # The users the evaluation ranks: a seeded sample above `evaluate.max_users`.
    evaluated = user_sample(
        user_count(layout), params.evaluate.max_users, params.preprocess.split.seed
    )
    items = read_embeddings(cfg.encoder, layout).items
    engine = Engine(params.engine)
    with engine.session():
        metrics, topics = run_partitions(engine, layout, items, cfg, evaluated, layout.interests)
    write_topics(topics, layout)
    interests = UserInterests(table=pl.DataFrame(), centroids=np.zeros(0), metrics=metrics)
    write_interests(interests, cfg.model_dump(mode="json"), layout, per_user=False)
    print(summary(metrics))


if __name__ == "__main__":
    io.run_stage(main)
