"""Tiny real serving artifacts (catalogue + Annoy index) whose right answers are known.

Built with the index stage's own writers (`write_catalogue`, `build_annoy`) from a real `Processed`
(the two-block synthetic data): users of block A only touched items 100–114, block B only 115–129.
Fused vectors are made by hand so that every user points along their block's axis and an item's
score grows with its position in its block, so a user's top recommendation is the highest-placed
block item they have not seen, and nothing from the other block can outrank it.

Below the builder: running the CLI on them (`invoke`, `one_error_line`) and editing a private
copy of them (`edit_catalogue`, `place_encoder`), shared by the CLI test files.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from synthetic import make_block_raw
from typer.testing import CliRunner

from pipeline import index
from pipeline.core.sections import IndexConfig, PreprocessConfig
from pipeline.data.artifacts import InterestSets, Processed, Topics
from pipeline.data.interactions import unit_rows
from pipeline.data.serving import served_means
from pipeline.interests import InterestSettings, describe
from pipeline.models import search_space
from pipeline.models.exploration import transition_counts
from pipeline.models.fusion import Fusion
from pipeline.models.terms import over_represented_terms
from pipeline.preprocess import run
from recli import catalogue, contract
from recli.cli import app

ITEMS_PER_BLOCK = 15
USERS_PER_BLOCK = 20
CF_DIMENSION = 4
TEXT_SCALE = 1.0
CF_SCALE = 1.0


def _block(item_id: str) -> int:
    return int(int(item_id) - 100 >= ITEMS_PER_BLOCK)


def _vectors(
    processed: Processed, text_dimension: int, seed: int
) -> tuple[np.ndarray, np.ndarray, dict[int, float]]:
    """(fused users, fused items, item strength): block axis 0 or 1 in both text and CF parts."""
    rng = np.random.default_rng(seed)
    items = processed.items.sort("item_idx")
    n_items = items.height
    text = 0.01 * rng.standard_normal((n_items, text_dimension))
    cf = 0.01 * rng.standard_normal((n_items, CF_DIMENSION))
    strength: dict[int, float] = {}
    for item_idx, item_id in items.select("item_idx", "item_id").iter_rows():
        block = _block(item_id)
        position = (int(item_id) - 100) % ITEMS_PER_BLOCK
        strength[item_idx] = 1.0 + 0.05 * position
        text[item_idx, block] += strength[item_idx]
        cf[item_idx, block] += strength[item_idx]
    users = processed.users.sort("user_idx")
    user_text = np.zeros((users.height, text_dimension))
    user_cf = np.zeros((users.height, CF_DIMENSION))
    for user_idx, user_id in users.select("user_idx", "user_id").iter_rows():
        block = int(int(user_id) >= USERS_PER_BLOCK)
        user_text[user_idx, block] = 1.0
        user_cf[user_idx, block] = 1.0
    fusion = Fusion(text_weight=0.5, text_scale=TEXT_SCALE, cf_scale=CF_SCALE)
    return fusion.fuse(user_text, user_cf), fusion.fuse(text, cf), strength


def _profiles(processed: Processed, top_item: dict[str, Any]) -> list[dict[str, Any]]:
    """Two hand-written profiles: cluster 0 carries every optional key, cluster 1 only the must."""
    exemplar_b = processed.items.filter(processed.items["item_id"] == "120").row(0, named=True)
    return [
        {
            "cluster": 0,
            "label": "Block A · Action",
            "size": USERS_PER_BLOCK,
            "share": 0.5,
            "top_terms": [
                {
                    "term": "Action",
                    "kind": "genre",
                    "lift": 1.5,
                    "share": 0.25,
                    "share_overall": 0.17,
                    "interactions": 40,
                },
                {"term": "tag1", "kind": "tag", "lift": 1.2, "share": 0.3},
                # Barely above everyone's share: not shown as something the group likes.
                {"term": "Comedy", "kind": "genre", "lift": 1.01, "share": 0.2},
            ],
            "exemplars": [{**top_item, "similarity": 0.9, "users": 6}],
            "top_items": [{**top_item, "lift": 2.0, "users": 6}],
        },
        {
            "cluster": 1,
            "label": "Block B",
            "size": USERS_PER_BLOCK,
            "share": 0.5,
            "top_terms": [{"term": "Drama", "lift": 1.3}],
            "exemplars": [
                {
                    "item_idx": exemplar_b["item_idx"],
                    "item_id": exemplar_b["item_id"],
                    "title": exemplar_b["title"],
                }
            ],
        },
    ]


TOPIC_LABELS = ("Block A, first half", "Block A, second half", "Block B")


def _topics(processed: Processed, fused_items: np.ndarray) -> Topics:
    """Three topics: block A's items split in two halves, and block B."""
    items = processed.items.sort("item_idx")
    topic_of = np.array(
        [
            2 if _block(item_id) else int((int(item_id) - 100) >= ITEMS_PER_BLOCK // 2)
            for item_id in items["item_id"]
        ]
    )
    centroids = unit_rows(np.stack([fused_items[topic_of == t].mean(axis=0) for t in range(3)]))
    counts, adoptions = transition_counts(processed.train, topic_of, 3)
    titles = items["title"].to_list()
    profiles = [
        {
            "topic": topic,
            "label": label,
            "label_terms": [],
            "size": int((topic_of == topic).sum()),
            "medoid": int(np.flatnonzero(topic_of == topic)[0]),
            "medoid_title": titles[int(np.flatnonzero(topic_of == topic)[0])],
            "terms": [],
        }
        for topic, label in enumerate(TOPIC_LABELS)
    ]
    return Topics(topic_of, centroids.astype(np.float32), profiles, counts, adoptions, 10.0)


SEARCH_RESCORE = 3
"""Candidates per result the narrow index asks for (where there is one)."""


def build_artifacts(
    root: Path, text_dimension: int = 32, seed: int = 0, search_dimension: int | None = None
) -> dict[str, Any]:
    """Write `root/index/{catalogue.sqlite,items.ann}`; return facts the tests can check."""
    processed = run(
        make_block_raw(USERS_PER_BLOCK, ITEMS_PER_BLOCK, seed=seed),
        PreprocessConfig(min_user_interactions=3),
    )
    fused_users, fused_items, strength = _vectors(processed, text_dimension, seed)

    user_id = "3"
    user_idx = processed.users.filter(processed.users["user_id"] == user_id)["user_idx"][0]
    # Serving knows every event of the user, held-out splits included.
    served = processed.history_served
    history = set(served.filter(served["user_idx"] == user_idx)["item_idx"])
    item_ids = dict(processed.items.select("item_idx", "item_id").iter_rows())
    block_a = [i for i, item_id in item_ids.items() if _block(item_id) == 0]
    ranked = sorted((i for i in block_a if i not in history), key=lambda i: -strength[i])
    expected = ranked[0]
    top_item = {
        "item_idx": expected,
        "item_id": item_ids[expected],
        "title": processed.items.filter(processed.items["item_idx"] == expected)["title"][0],
    }

    output = root / "index"
    output.mkdir(parents=True, exist_ok=True)
    cfg = IndexConfig(n_trees=10, seed=seed)
    index_path = output / contract.INDEX_FILE
    # Where a narrower space is searched, every user's row follows the items' (`user_rows`).
    users_after = None if search_dimension is None else fused_users
    index.build_annoy(fused_items, cfg, index_path, users=users_after)
    basis = None
    if search_dimension is not None:  # the index searches the first directions of the scores
        basis = search_space.score_basis(fused_users, fused_items)[:, :search_dimension]
        search_path = output / contract.SEARCH_INDEX_FILE
        index.build_annoy(search_space.project(fused_items, basis), cfg, search_path)
    assignments = {
        row_idx: int(int(row_id) >= USERS_PER_BLOCK)
        for row_idx, row_id in processed.users.select("user_idx", "user_id").iter_rows()
    }
    meta = {
        "schema_version": catalogue.SCHEMA_VERSION,
        "dimension": int(fused_items.shape[1]),
        "text_dimension": text_dimension,
        "metric": cfg.metric,
        "search_k": 10000,
        "text_weight": 0.5,
        "text_scale": TEXT_SCALE,
        "cf_scale": CF_SCALE,
        "index_sha256": contract.file_digest(index_path)[: contract.DIGEST_CHARS],
        "built_from": {"processed/train.parquet": "0" * 16},
        **(
            {}
            if basis is None
            else {
                "search_dimension": search_dimension,
                "search_rescore": SEARCH_RESCORE,
                "user_rows": True,
                "search_index_sha256": contract.file_digest(search_path)[: contract.DIGEST_CHARS],
            }
        ),
        "encoder": contract.ENCODER_DIR.as_posix(),
        "multi_interest": {"whole_user_share": 0.5, "pull": 0.5},
        "explore": {
            "topic_weight": 0.25,
            "similarity_weight": 5.0,
            "score_scale": 1.0,
            "half_life": 20.0,
        },
    }
    topics = _topics(processed, fused_items)
    meta["topic_transitions"] = {
        "counts": topics.counts.tolist(),
        "adoptions": topics.adoptions.tolist(),
        "smoothing": topics.smoothing,
    }
    terms = over_represented_terms(served, processed.items, keep=5)
    first_term = terms.filter(terms["user_idx"] == user_idx).row(0, named=True)
    own, centroids = describe(
        served,
        processed.items,
        fused_items,
        pl.DataFrame(
            {"user_idx": list(assignments), "cluster": list(assignments.values())},
            schema={"user_idx": pl.Int32, "cluster": pl.Int32},
        ),
        InterestSettings(),
    )
    index.write_catalogue(
        output / contract.CATALOGUE_FILE,
        processed,
        fused_users,
        assignments,
        _profiles(processed, top_item),
        meta,
        terms,
        own,
        (centroids, served_means(own, InterestSets.from_table(own, centroids), fused_items)),
        topics,
        basis,
    )
    index.seal(root)
    users_interest = own.filter(own["user_idx"] == user_idx).row(0, named=True)
    return {
        "root": root,
        "user_id": user_id,
        "cluster": 0,
        "cluster_label": "Block A · Action",
        "user_term": f"{first_term['term']} ×{first_term['lift']:.1f}",
        "interest_label": users_interest["label"],
        "interest_cluster": users_interest["group"],
        "history_item_ids": {item_ids[i] for i in history},
        "block_a_item_ids": {item_ids[i] for i in block_a},
        "block_b_item_ids": {item_id for item_id in item_ids.values() if _block(item_id)},
        "topic_labels": TOPIC_LABELS,
        "expected_top_item_id": item_ids[expected],
        "expected_top_title": top_item["title"],
        "item_id": item_ids[block_a[0]],
        "n_items": len(item_ids),
        "n_users": processed.users.height,
        "text_dimension": text_dimension,
    }


# --------------------------------------------------------------------------------------------
# Running the CLI on them, and editing a private copy
# --------------------------------------------------------------------------------------------
runner = CliRunner()
ENV = {"COLUMNS": "200", "RECLI_ARTIFACTS": None, "FORCE_COLOR": None}
"""Wide enough that rich never wraps a title across lines; no artifacts folder and no colour
from the environment."""
WIDTHS = (40, 80, 120)
"""Terminal widths a screen is checked at: narrow (stacked records), common and wide."""


def invoke(
    root: Path, *args: str, columns: int = 200, env: dict[str, str | None] | None = None
) -> Any:
    """`recli --artifacts root ARGS…` in process, `columns` wide (`env` overrides any variable)."""
    return runner.invoke(
        app,
        ["--artifacts", str(root), *args],
        env={**ENV, "COLUMNS": str(columns), **(env or {})},
    )


def one_error_line(result: Any) -> str:
    """The whole stderr of a failed command: exactly one line, starting `error:`."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def edit_catalogue(root: Path, *statements: tuple[str, tuple[Any, ...]]) -> None:
    """Run SQL `statements` (each with its parameters) on the catalogue at `root`, then record
    the edited files as what is served (the index stage's own seal)."""
    connection = sqlite3.connect(root / "index" / "catalogue.sqlite")
    with connection:
        for sql, parameters in statements:
            connection.execute(sql, parameters)
    connection.close()
    index.seal(root)


def place_encoder(root: Path, encoder: Path) -> None:
    """An encoder where the finetune stage saves one, sealed as the index stage seals it."""
    shutil.copytree(encoder, root / "finetune" / "model")
    index.seal(root)
