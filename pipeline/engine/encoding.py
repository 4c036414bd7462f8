"""The embed stage on Ray: texts encoded by a pool of actors that each hold the encoder.

Ray Data streams the work: a task per user partition turns its users' events into history texts
(`partition_texts`: the training history and the one up to the test event for the evaluated
users, every event for serving), a fixed pool of `TextEncoder` actors encodes them
(`engine.workers` actors, `engine.gpus_per_worker` GPUs each), and the stage's own process
writes each encoded batch into its rows of the memory-mapped outputs as it arrives. That process
holds the item texts, one batch of vectors and the evaluated users' indices; never every user.

The vectors are the local backend's up to floating-point rounding: the same encoder encodes the
same texts, in batches made up differently (a text is padded to the longest in its batch), which
moves a vector by about 1e-6.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline.data.text import recent_texts
from pipeline.engine.partitions import read_partition
from pipeline.engine.runner import Engine, import_ray
from pipeline.models.encoder import encode, load_encoder
from recli.errors import RecliError

USER_OUTPUTS = ("users", "users_at_test", "users_served")
"""The user vectors embed writes: the training history's, the test-time one's, the served."""
HISTORIES = {
    "users": ("train",),
    "users_at_test": ("train", "validation"),
    "users_served": ("train", "validation", "test", "cold"),
}
"""The splits each user output's history reads."""


class TextEncoder:
    """A Ray Data actor: one encoder, loaded once, encoding batches of `output, row, text` rows;
    item texts are cut to `tokens["items"]` tokens, history texts to `tokens["users"]`."""

    def __init__(
        self, model: str, device: str, tokens: dict[str, int], batch_size: int, precision: str
    ) -> None:
        self.model = load_encoder(model, device)
        self.tokens, self.batch_size, self.precision = tokens, batch_size, precision

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors: np.ndarray | None = None
        for kind in ("items", "users"):
            mine = (batch["output"] == "items") == (kind == "items")
            if not mine.any():
                continue
            self.model.max_seq_length = self.tokens[kind]
            texts = [str(text) for text in batch["text"][mine]]
            encoded = encode(self.model, texts, self.batch_size, False, self.precision)
            if vectors is None:
                vectors = np.zeros((len(batch["text"]), encoded.shape[1]), dtype=np.float32)
            vectors[mine] = encoded
        return {"output": batch["output"], "row": batch["row"], "vector": vectors}


def partition_texts(
    batch: dict[str, np.ndarray],
    titles: list[str],
    history_items: int,
    evaluated: np.ndarray | None,
    outputs: tuple[str, ...],
) -> dict[str, np.ndarray]:
    """The history texts of the users of the partitions in `batch["path"]`, as `output, row,
    text` rows: every user's for the served output, only the `evaluated` users' (all when None)
    for the training and test-time ones (their other rows stay zero, as locally)."""
    frames = []
    for path in batch["path"]:
        events = read_partition(Path(str(path)))
        for output in outputs:
            history = events.filter(pl.col("split").is_in(HISTORIES[output]))
            if output != "users_served" and evaluated is not None:
                history = history.filter(pl.col("user_idx").is_in(evaluated))
            texts = recent_texts(history, titles, history_items)
            frames.append(
                texts.select(
                    pl.lit(output).alias("output"), pl.col("user_idx").alias("row"), "text"
                )
            )
    table = pl.concat(frames) if frames else pl.DataFrame(schema=["output", "row", "text"])
    return {name: table[name].to_numpy() for name in ("output", "row", "text")}


def encode_all(
    engine: Engine,
    item_texts: list[str],
    partitions: list[Path],
    arguments: dict[str, Any],
    encoder: dict[str, Any],
    destinations: dict[str, Path],
    n_users: int,
) -> np.ndarray:
    """Every item text's vector (returned, in order) and the user outputs in `destinations`
    (memory-mapped `.npy` files, n_users rows, zero where a user has no text), all encoded by
    one actor pool. `arguments`: `partition_texts`'s keyword arguments; `encoder`:
    `TextEncoder`'s."""
    ray = import_ray()
    batch_size = encoder["batch_size"]
    items = ray.data.from_items(
        [{"output": "items", "row": row, "text": text} for row, text in enumerate(item_texts)]
    )
    users = ray.data.from_items(
        [{"path": str(path.absolute())} for path in partitions]
    ).map_batches(
        partition_texts,
        batch_size=1,
        fn_kwargs={**arguments, "outputs": tuple(destinations)},
        # Reading a partition and joining titles is light next to encoding: the tasks reserve
        # no CPU, so a pool holding every CPU cannot starve the tasks that feed it.
        num_cpus=0,
    )
    encoded = items.union(users).map_batches(
        TextEncoder,
        fn_constructor_kwargs=encoder,
        batch_size=batch_size,
        concurrency=engine.workers(),
        num_gpus=engine.cfg.gpus_per_worker,
        num_cpus=1,
    )
    vectors: np.ndarray | None = None
    targets: dict[str, np.ndarray] = {}
    for batch in encoded.iter_batches(batch_size=batch_size, batch_format="numpy"):
        if vectors is None:  # the first batch tells the width
            width = batch["vector"].shape[1]
            vectors = np.zeros((len(item_texts), width), dtype=np.float32)
            for path in destinations.values():
                path.parent.mkdir(parents=True, exist_ok=True)
            targets = {
                name: np.lib.format.open_memmap(
                    path, mode="w+", dtype=np.float32, shape=(n_users, width)
                )
                for name, path in destinations.items()
            }
        for name, target in {"items": vectors, **targets}.items():
            mine = batch["output"] == name
            target[batch["row"][mine]] = batch["vector"][mine]
    if vectors is None:
        raise RecliError("embed: there are no item texts to encode: run `dvc repro preprocess`")
    for target in targets.values():
        target.flush()
    return vectors
