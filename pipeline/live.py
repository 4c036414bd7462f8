"""A user's served vector from any history, with nothing refit: what live updates recompute.

Serving holds one fused vector per user, made by the pipeline from every event the user had when
it ran. `ServedUserModel` makes the same vector for any history, from the same artifacts and by
the same functions the stages call, so a user who has just added an event, or a user the pipeline
never saw, is served exactly as a re-run would serve them:

- the text side: the history text of the most recent items (`pipeline.data.text.user_texts`)
  through the fine-tuned encoder (`pipeline.models.encoder.encode`), as `embed` does;
- ALS: the exact least-squares fold-in with the item factors fixed
  (`pipeline.models.collaborative.fold_in`), as `factorize` does for served users;
- a sequence model: its state after the history (`FittedSequence.user_states`), from the weights
  `sequence` saved;
- reduced-rank EASE: the binary history times B·Q (`pipeline.models.linear.history_vectors`);
- the fused vector: `Fusion.fuse_rows` with the recipe `fuse` chose (`retrieval.json`).

Only the parts the served fusion uses are loaded. Not a stage: it reads a built project and
writes nothing (`recli add` and `recli ingest` store what it returns).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline.core import io
from pipeline.core.config import load_params
from pipeline.core.layout import Layout
from pipeline.core.sections import FactorizeConfig, SequenceConfig
from pipeline.data.artifacts import (
    item_factors_file,
    linear_projection_file,
    read_items,
    read_retrieval,
    read_sequence_model,
)
from pipeline.data.interactions import latest_per_item
from pipeline.data.raw import INTERACTIONS_SCHEMA, missing_ids, stripped_ids
from pipeline.data.text import user_texts
from pipeline.engine.partitions import local_matrix
from pipeline.models.collaborative import fold_in
from pipeline.models.fusion import ALS, LINEAR, Fusion, fusion_from_settings, sequence_source
from pipeline.models.linear import history_vectors
from recli.errors import RecliError

TEXT = "text"
"""The text side's name among a history's parts (the others are the fusion's `Recipe` names)."""
EVENT_COLUMNS = ("user_idx", "item_idx", "timestamp")
"""What a history frame holds: events in each user's time order (equal timestamps keep the
frame's order, as the pipeline's do)."""


@dataclass
class ServedUserModel:
    """Everything the served fusion makes a user's vector from, loaded from a built project."""

    fusion: Fusion
    items: pl.DataFrame
    """The item table (`item_idx`, `title`, ...), in item order."""
    history_items: int
    """How many recent titles a history text holds (`text.history_items`)."""
    history_tokens: int
    """The tokens a history text is cut to (`finetune.max_seq_length`)."""
    encoder: Any
    """The fine-tuned sentence encoder `embed` ran."""
    precision: str
    batch_size: int
    factorize: FactorizeConfig
    item_factors: np.ndarray | None
    trained_user_factors: np.ndarray | None
    """ALS's training user factors (BPR keeps them: `fold_in`)."""
    sequences: dict[str, Any]
    """The fused sequence models (`FittedSequence`), by `Recipe` name."""
    projection: np.ndarray | None
    """Reduced-rank EASE's B·Q, where the fusion holds it."""

    @classmethod
    def load(cls, layout: Layout, fusion: Fusion | None = None) -> ServedUserModel:
        """The model of the project `layout` names, as its last `dvc repro` built it; `fusion`:
        another fusion of the same parts than the one `fuse` chose."""
        from pipeline.models.encoder import load_encoder, pick_device, pick_precision
        from pipeline.models.sasrec import MODELS, settings
        from pipeline.models.sasrec_training import FittedSequence

        params = load_params(layout.params)
        if fusion is None:
            fusion = fusion_from_settings(read_retrieval(layout)["fusion"])
        used = {source for source, _ in fusion.behaviour}
        recorded = layout.factorize / "config.json"
        factorize = FactorizeConfig(**io.read_json(recorded, "factorize"))
        item_factors = trained = None
        if ALS in used:
            item_factors = io.read_npy(item_factors_file(layout), "factorize")
            trained = np.load(
                io.require(layout.factorize / "user_factors.npy", "factorize"), mmap_mode="r"
            )
        sequences: dict[str, Any] = {}
        sequence_config = None
        for name in MODELS:
            if sequence_source(name) not in used:
                continue
            if sequence_config is None:
                sequence_config = SequenceConfig(
                    **io.read_json(layout.sequence / "config.json", "sequence")
                )
            chosen = settings(sequence_config, **MODELS[name]).model_copy(update={"device": "cpu"})
            sequences[sequence_source(name)] = FittedSequence.restore(
                read_sequence_model(name, layout), chosen
            )
        projection = None
        if LINEAR in used:
            projection = io.read_npy(linear_projection_file(layout), "factorize")
        encoder = load_encoder(
            str(io.require(layout.encoder, "finetune")), "cpu", params.finetune.max_seq_length
        )
        return cls(
            fusion=fusion,
            items=read_items(layout).sort("item_idx"),
            history_items=params.text.history_items,
            history_tokens=params.finetune.max_seq_length,
            encoder=encoder,
            precision=pick_precision(params.embed.precision, pick_device("cpu")),
            batch_size=params.embed.batch_size,
            factorize=factorize,
            item_factors=item_factors,
            trained_user_factors=trained,
            sequences=sequences,
            projection=projection,
        )

    @property
    def n_items(self) -> int:
        return self.items.height

    def parts(self, events: pl.DataFrame) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The users of `events` (`EVENT_COLUMNS`; in the order of their first event) and, by
        part (`TEXT` and each `Recipe` name the fusion uses), their rows: one per user, from all
        of that user's events in `events` and nothing else."""
        from pipeline.models.encoder import encode
        from pipeline.models.sasrec_training import histories

        missing = [column for column in EVENT_COLUMNS if column not in events.columns]
        if missing:
            raise ValueError(f"a history frame needs the columns {EVENT_COLUMNS}: {missing}")
        items = events["item_idx"]
        if items.len() and (items.min() < 0 or items.max() >= self.n_items):
            raise ValueError(f"item_idx must be in 0..{self.n_items - 1}")
        users, matrix = local_matrix(events, self.n_items)
        rows = pl.DataFrame({"user_idx": users, "row": np.arange(users.size, dtype=np.int64)})
        local = events.join(rows, on="user_idx", maintain_order="left").select(
            pl.col("row").alias("user_idx"), "item_idx", "timestamp"
        )
        parts: dict[str, np.ndarray] = {}
        self.encoder.max_seq_length = self.history_tokens
        texts = user_texts(local, self.items, users.size, self.history_items)
        parts[TEXT] = encode(self.encoder, texts, self.batch_size, False, self.precision)
        if self.item_factors is not None and self.trained_user_factors is not None:
            trained = np.zeros((users.size, self.item_factors.shape[1]), dtype=np.float32)
            known = users < self.trained_user_factors.shape[0]
            trained[known] = self.trained_user_factors[users[known]]
            parts[ALS] = fold_in(self.item_factors, trained, matrix, self.factorize)
        for name, model in self.sequences.items():
            parts[name] = model.user_states(histories(local, users.size))
        if self.projection is not None:
            parts[LINEAR] = history_vectors(matrix, self.projection)
        return users, parts

    def fused(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        """The fused rows of users whose parts are `parts` (`ServedUserModel.parts`)."""
        models = {name: rows for name, rows in parts.items() if name != TEXT}
        return self.fusion.fuse_rows(parts[TEXT], models)


@dataclass(frozen=True)
class Added:
    """What one batch of events did to the live store."""

    events: int
    """Events appended to the log."""
    users: list[str]
    """The users whose served vectors were recomputed, in the order first seen."""
    new_users: list[str]
    """Those the catalogue did not know."""
    dropped: dict[str, int]
    """Rows not added, by reason: `missing_ids`, `unknown_items`, `below_min_rating`."""
    below_minimum: list[str]
    """Users served now whom the next pipeline run drops: fewer events than
    `preprocess.min_user_interactions`."""
    seconds: float

    def summary(self) -> str:
        """What happened, in one line."""
        dropped = ", ".join(
            f"{count} {reason.replace('_', ' ')}" for reason, count in self.dropped.items() if count
        )
        new = f" ({len(self.new_users)} new)" if self.new_users else ""
        return (
            f"added {self.events} event{'s' * (self.events != 1)} for {len(self.users)} "
            f"user{'s' * (len(self.users) != 1)}{new}, their recommendations recomputed in "
            f"{self.seconds * 1000:.0f} ms" + (f"; not added: {dropped}" if dropped else "")
        )


class LiveUpdater:
    """Adds events to a built project's live store (`recli.live`) and recomputes the served
    vector of every user they touch, from all of that user's events, by `ServedUserModel`.

    Rows follow the bring-your-own rules: a row without a user or item id, or naming an item the
    catalogue lacks, is dropped and counted, and when more than
    `preprocess.max_unknown_item_share` of a batch names unknown items the batch is refused
    whole; rows under `preprocess.min_rating` are dropped and counted; a re-added item moves to
    its new time (one event per user and item, the most recent, as `preprocess` keeps).
    """

    def __init__(self, root: Path, model: ServedUserModel | None = None) -> None:
        from recli.catalogue import MetaKey
        from recli.serve import Served

        self.layout = Layout(root)
        self.params = load_params(self.layout.params)
        self.served = Served(self.layout.artifacts)
        self.built_for = str(self.served.meta_value(MetaKey.INDEX_SHA256))
        connection = self.served.connection
        self.item_index: dict[str, int] = dict(
            connection.execute("SELECT item_id, item_idx FROM items").fetchall()
        )
        self.user_index: dict[str, int] = dict(
            connection.execute("SELECT user_id, user_idx FROM users").fetchall()
        )
        basis = self.served.search_basis() if self.served.narrower_search else []
        self.basis = np.asarray(basis, dtype=np.float32) if basis else None
        self._model = model

    @property
    def model(self) -> ServedUserModel:
        """The served model, loaded on first use (a batch refused whole never loads it)."""
        if self._model is None:
            self._model = ServedUserModel.load(self.layout)
        return self._model

    def close(self) -> None:
        self.served.close()

    def __enter__(self) -> LiveUpdater:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _accepted(self, rows: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
        """`rows` (`INTERACTIONS_SCHEMA`) that can be added, with their indices, and the counts
        of those that cannot; refuses the batch when too many name unknown items."""
        cfg = self.params.preprocess
        rows = stripped_ids(rows)
        missing = missing_ids()
        dropped = {"missing_ids": int(rows.select(missing.sum()).item())}
        rows = rows.filter(~missing)
        known = rows["item_id"].is_in(list(self.item_index))
        unknown = rows.filter(~known)["item_id"]
        dropped["unknown_items"] = unknown.len()
        total = rows.height
        if unknown.len() and unknown.len() > cfg.max_unknown_item_share * total:
            shown = ", ".join(f"'{item}'" for item in unknown.unique(maintain_order=True).head(3))
            raise RecliError(
                f"{unknown.len()} of {total} events name items the catalogue lacks, e.g. "
                f"{shown}: nothing was added; use the catalogue's item ids (`recli similar` "
                f"lists some), or raise preprocess.max_unknown_item_share "
                f"({cfg.max_unknown_item_share:g}) to drop those events"
            )
        rows = rows.filter(known)
        if cfg.min_rating is not None:
            low = pl.col("rating").is_null() | (pl.col("rating") < cfg.min_rating)
            dropped["below_min_rating"] = int(rows.select(low.sum()).item())
            rows = rows.filter(~low)
        return rows, dropped

    def add(self, rows: pl.DataFrame, source: str) -> Added:
        """Add `rows` (`user_id, item_id, rating, timestamp`; a null timestamp is now) as one
        batch from `source`; returns what it did. Nothing is added when it raises."""
        from recli import catalogue
        from recli.live import LiveEvent, LiveStore, LiveUser

        now = int(time.time())
        rows = rows.with_columns(pl.col("timestamp").fill_null(now))
        rows, dropped = self._accepted(rows)
        if rows.is_empty():
            return Added(0, [], [], dropped, [], 0.0)
        model = self.model  # loaded once per process, outside the timing
        started = time.perf_counter()
        store = LiveStore.create(self.layout.artifacts, self.built_for)
        with store, store.batch(source) as batch:
            users = rows["user_id"].unique(maintain_order=True).to_list()
            indices, new_users = {}, []
            next_index = store.next_user_idx(len(self.user_index))
            for user_id in users:
                if user_id in self.user_index:
                    indices[user_id] = self.user_index[user_id]
                    continue
                given = store.index_of(user_id)
                if given is None:
                    indices[user_id] = next_index
                    next_index += 1
                    new_users.append(user_id)
                else:
                    indices[user_id] = given
            events = [
                LiveEvent(
                    row["user_id"],
                    row["item_id"],
                    int(row["timestamp"]),
                    row["rating"],
                    indices[row["user_id"]],
                    self.item_index[row["item_id"]],
                )
                for row in rows.iter_rows(named=True)
            ]
            batch.add_events(events)
            history = self._histories(store, [indices[user] for user in users])
            order, parts = model.parts(history)
            fused = model.fused(parts)
            counts = dict(history.group_by("user_idx").len().iter_rows())
            by_index = {int(user_idx): row for row, user_idx in enumerate(order)}
            for user_id in users:
                row = by_index[indices[user_id]]
                vector = fused[row]
                searched = None if self.basis is None else vector @ self.basis
                batch.set_user(
                    user_id,
                    LiveUser(
                        indices[user_id],
                        int(counts[indices[user_id]]),
                        catalogue.pack_vector(vector),
                        None if searched is None else catalogue.pack_vector(searched),
                    ),
                )
        minimum = self.params.preprocess.min_user_interactions
        below = [user for user in users if counts[indices[user]] < minimum]
        return Added(len(events), users, new_users, dropped, below, time.perf_counter() - started)

    def _histories(self, store: Any, user_indices: list[int]) -> pl.DataFrame:
        """Every event of each user (`EVENT_COLUMNS`): the catalogue's, then those added to
        this build (the one just logged included), one per item, the most recent."""
        frames = []
        for user_idx in user_indices:
            built = self.served.connection.execute(
                "SELECT item_idx, timestamp FROM history WHERE user_idx = ? ORDER BY rowid",
                (user_idx,),
            ).fetchall()
            added = [(item, timestamp) for item, timestamp, _ in store.history(user_idx)]
            pairs = built + added
            frames.append(
                pl.DataFrame(
                    {
                        "user_idx": [user_idx] * len(pairs),
                        "item_idx": [item for item, _ in pairs],
                        "timestamp": [timestamp for _, timestamp in pairs],
                    },
                    schema={"user_idx": pl.Int64, "item_idx": pl.Int64, "timestamp": pl.Int64},
                )
            )
        return one_per_item(pl.concat(frames))


def one_per_item(events: pl.DataFrame) -> pl.DataFrame:
    """`events` (`EVENT_COLUMNS`) with one event per user and item, the most recent (the rule
    `preprocess` keeps: `latest_per_item`), the others in the order given, ties included."""
    ranked = events.with_row_index("_order")
    latest = latest_per_item(
        ranked.sort("timestamp", "_order", nulls_last=False, maintain_order=True),
        "user_idx",
        "item_idx",
    )
    return ranked.filter(pl.col("_order").is_in(latest["_order"].implode())).drop("_order")


def event_time(text: str | None) -> int | None:
    """`--at` as seconds since 1970: a number of seconds, or an ISO date or date and time (UTC
    unless it says otherwise); None (now) when not given."""
    if text is None:
        return None
    if text.strip().lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise RecliError(
            f"--at '{text}' is not a time: pass seconds since 1970 or an ISO date such as "
            "2026-12-08 or 2026-12-08T14:30"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def one_event(user_id: str, item_id: str, at: int | None, rating: float | None) -> pl.DataFrame:
    """One event as the rows `LiveUpdater.add` takes."""
    return pl.DataFrame(
        {"user_id": [user_id], "item_id": [item_id], "rating": [rating], "timestamp": [at]},
        schema=dict(INTERACTIONS_SCHEMA),
    )


def report_lines(added: Added, minimum: int) -> list[str]:
    """What `recli add` and `recli ingest` print."""
    lines = [added.summary()]
    if added.below_minimum:
        shown = ", ".join(added.below_minimum[:5])
        more = f" and {len(added.below_minimum) - 5} more" if len(added.below_minimum) > 5 else ""
        lines.append(
            f"served now, but the next `dvc repro` drops users with fewer than {minimum} events "
            f"(preprocess.min_user_interactions): {shown}{more}"
        )
    return lines


def _command_line(arguments: list[str]) -> None:
    """`python -m pipeline.live add --user ID --item ID` / `ingest FILE`: what `recli add` and
    `recli ingest` run, in the project folder."""
    import argparse
    import os
    import warnings

    from pipeline.data.files import read_interactions

    # What is printed is the answer: no progress bars from loading the models, and no advice on
    # BLAS threads (the fold-in limits them itself, as `factorize` does).
    warnings.filterwarnings("ignore", message="OpenBLAS is configured", category=RuntimeWarning)
    for name, value in (
        ("TQDM_DISABLE", "1"),
        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
        ("TRANSFORMERS_VERBOSITY", "error"),
    ):
        os.environ.setdefault(name, value)

    parser = argparse.ArgumentParser(prog="python -m pipeline.live")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add")
    add.add_argument("--user", required=True)
    add.add_argument("--item", required=True)
    add.add_argument("--at")
    add.add_argument("--rating", type=float)
    ingest = commands.add_parser("ingest")
    ingest.add_argument("file", type=Path)
    parsed = parser.parse_args(arguments)
    root = Path(".")
    if parsed.command == "add":
        rows = one_event(parsed.user, parsed.item, event_time(parsed.at), parsed.rating)
        source = "recli add"
    else:
        params = load_params(Layout(root).params)
        path = parsed.file.resolve()
        rows = read_interactions(path, params.data.files, Path("/"), "the file given to ingest")
        source = f"recli ingest {parsed.file.name}"
    with LiveUpdater(root) as updater:
        started = time.perf_counter()
        added = updater.add(rows, source)
        loading = time.perf_counter() - started - added.seconds
        minimum = updater.params.preprocess.min_user_interactions
    lines = report_lines(added, minimum)
    if added.events:
        lines[0] += f" (the models took {loading:.1f} s to load, once per process)"
    for line in lines:
        print(line)


if __name__ == "__main__":
    io.run_stage(lambda: _command_line(sys.argv[1:]))
