"""The whole pipeline in-process, into any folder: what notebooks and scratch projects build on.

`dvc repro` runs each stage's `main()` from the project root, reading `params.yaml` and writing
`data/` and `metrics/`. `run_all` runs the very same `main(root)`s, in `dvc.yaml` order, for
another folder after writing the given params there, so the outputs have the layout DVC gives
them (`<root>/data/...`, `<root>/metrics/...`, `pipeline.core.layout.Layout`) and every reader
(`artifacts.read_processed(Layout(root))`, `recli --artifacts`) works on them unchanged. It does
no caching and no dependency tracking: that is DVC's job.

The helpers around it build a small configuration that runs in about a minute on two CPU cores:
`sample` (a seeded slice of a source), `write_files` (a source as bring-your-own CSV files, with
the `data` params that read them back), `override` (dotted-key changes, like `dvc exp run -S`), and
`small_project`, which combines them with `SMALL_OVERRIDES`.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from pipeline.core.config import PARAMS_FILE, DataConfig, Params, parse_params
from pipeline.data.source import RawData, load_source
from recli import contract, live
from recli.errors import RecliError

STAGES = (
    "preprocess",
    "finetune",
    "embed",
    "cluster",
    "interests",
    "factorize",
    "sequence",
    "fuse",
    "index",
    "evaluate",
    "export",
)
"""Every stage, in the order of `dvc.yaml` (each one's inputs come from stages before it)."""

INPUT_DIR = Path("data/input")
"""Where `write_files` puts a source's files, relative to the project (a `preprocess` dep)."""

SMALL_USERS = 150
SMALL_ITEMS = 300
"""The small configuration's sample: the 300 most-interacted items, then 150 users who touched
them. Big enough for every stage to have something to say (clusters, activity buckets, a cold-item
slice), small enough that encoding every text takes seconds on a CPU."""

SMALL_OVERRIDES: dict[str, Any] = {
    "finetune.max_steps": 10,  # the real run takes 400; ten show the loop without the wait
    "sequence.epochs": 3,  # the real run stops on validation after tens of epochs
    "sequence.embedding_size": 16,
    "finetune.batch_size": 16,
    "finetune.eval_steps": 10,
    "finetune.eval_users": 50,
    "cluster.k": 6,  # about 25 users per cluster, as the real run has about 80
    "index.n_trees": 10,  # 300 items need far fewer trees than 1,682
}
"""Param changes (dotted keys) that make the pipeline fast on the small sample."""


def override(params: Params, changes: Mapping[str, Any]) -> Params:
    """`params` with dotted keys replaced (`{"factorize.embedding_size": 16}`), re-validated.

    The same spelling as `dvc exp run -S`; an unknown key or an invalid value raises `RecliError`
    naming the key.
    """
    raw = params.model_dump(mode="json")
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        section: Any = raw
        for part in parents:
            section = section.get(part) if isinstance(section, dict) else None
        if not isinstance(section, dict) or leaf not in section:
            raise RecliError(f"unknown params key '{dotted}': see params.yaml for the keys")
        section[leaf] = value
    return parse_params(raw)


def sample(raw: RawData, n_users: int, n_items: int | None = None, seed: int = 42) -> RawData:
    """A seeded slice of `raw`: its `n_items` most-interacted items (all when None), then
    `n_users` users drawn uniformly from those who interacted with them, with all their events
    on those items.

    Popular items first, so a small sample keeps enough events per item for every model; users
    drawn uniformly, so light and heavy users appear in their usual proportions.
    """
    if n_users < 1 or (n_items is not None and n_items < 1):
        raise ValueError(f"n_users and n_items must be positive, got {n_users} and {n_items}")
    events = raw.interactions
    if n_items is not None:
        popular = (
            events.group_by("item_id")
            .len()
            # Ties by id, so the same data gives the same items whatever the row order.
            .sort(["len", "item_id"], descending=[True, False])
            .head(n_items)["item_id"]
        )
        events = events.filter(pl.col("item_id").is_in(popular.implode()))
    users = events["user_id"].unique().sort()
    if users.len() > n_users:
        users = users.sample(n_users, seed=seed).sort()
    events = events.filter(pl.col("user_id").is_in(users.implode()))
    items = raw.items.filter(pl.col("item_id").is_in(events["item_id"].unique().implode()))
    people = raw.users
    if people is not None:
        people = people.filter(pl.col("user_id").is_in(users.implode()))
    return RawData(
        interactions=events,
        items=items,
        users=people,
        source=f"{raw.source}, sample of {users.len()} users and {items.height} items",
    )


def write_files(raw: RawData, root: Path, directory: Path = INPUT_DIR) -> DataConfig:
    """Write `raw` as bring-your-own CSV files under `root/directory`; return the `data` params
    that read them (paths relative to `root`, where the pipeline will run).

    Interactions and items always; tags only when some item has them. User demographics are not
    part of the bring-your-own format and are left out.
    """
    folder = Path(root) / directory
    folder.mkdir(parents=True, exist_ok=True)
    raw.interactions.select("user_id", "item_id", "rating", "timestamp").write_csv(
        folder / "interactions.csv"
    )
    separator = "|"
    raw.items.select(
        "item_id",
        "title",
        pl.col("genres").list.join(separator),
        "description",
    ).write_csv(folder / "items.csv")
    tags = raw.items.select("item_id", pl.col("tags").alias("tag")).explode("tag").drop_nulls()
    files: dict[str, Any] = {
        "interactions": (directory / "interactions.csv").as_posix(),
        "items": (directory / "items.csv").as_posix(),
        "columns": {
            "user": "user_id",
            "item": "item_id",
            "rating": "rating",
            "timestamp": "timestamp",
        },
        "item_columns": {
            "item": "item_id",
            "title": "title",
            "genres": "genres",
            "description": "description",
            "list_separator": separator,
        },
    }
    if tags.height:
        tags.write_csv(folder / "tags.csv")
        files["tags"] = (directory / "tags.csv").as_posix()
        files["tag_columns"] = {"item": "item_id", "tag": "tag"}
    return DataConfig.model_validate({"source": "files", "files": files})


def write_params(params: Params, root: Path) -> Path:
    """Write `params` as `root/params.yaml` (the file every stage's `main()` reads)."""
    path = Path(root) / PARAMS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
    )
    return path


def small_project(
    params: Params,
    root: Path,
    n_users: int = SMALL_USERS,
    n_items: int | None = SMALL_ITEMS,
) -> Params:
    """Set up `root` as a small project: a sample of `params`' source written as files under
    `root/data/input`, the live folder (`recli.live`), and `root/params.yaml` with
    `SMALL_OVERRIDES` applied. Returns its params.

    The source is loaded with `params.data` from the current directory (so a relative
    `data.cache_dir` is the project's own download cache); every other knob keeps its value.
    """
    raw = sample(load_source(params.data), n_users, n_items, seed=params.preprocess.split.seed)
    data = write_files(raw, root)
    live.make_folder(root / contract.DEFAULT_ARTIFACTS)  # a dependency of `preprocess`
    small = override(params, {**SMALL_OVERRIDES, "data": data.model_dump(mode="json")})
    write_params(small, root)
    return small


def run_all(
    params: Params, root: Path, stages: Sequence[str] = STAGES, quiet: bool = True
) -> dict[str, dict[str, Any]]:
    """Run `stages` (default: all, in `dvc.yaml` order) in `root` as `dvc repro` would run them.

    Writes `root/params.yaml`, then calls each stage's `main(root)`: every path a stage reads or
    writes comes from the project root it is given (`pipeline.core.layout.Layout`), and relative
    paths in `params` (input files, `data.cache_dir`) are relative to `root` too. The current
    directory is never changed. Returns, per stage, the wall time (`seconds`) and what the stage
    printed (`output`). `quiet` keeps progress bars and warnings (stderr) out of the way; they
    are dropped.
    """
    unknown = [stage for stage in stages if stage not in STAGES]
    if unknown:
        raise RecliError(f"unknown stage(s) {unknown}: use some of {list(STAGES)}")
    root = Path(root)
    write_params(params, root)
    report: dict[str, dict[str, Any]] = {}
    for stage in stages:
        module = importlib.import_module(f"pipeline.{stage}")
        printed = io.StringIO()
        errors: contextlib.AbstractContextManager[Any] = (
            contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext()
        )
        started = time.perf_counter()
        with contextlib.redirect_stdout(printed), errors:
            module.main(root)
        report[stage] = {
            "seconds": round(time.perf_counter() - started, 2),
            "output": printed.getvalue().strip(),
        }
    return report
