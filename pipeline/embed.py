"""Stage `embed`: L2-normalised vectors for every item and user, zero-shot and fine-tuned.

An item's vector encodes its text (title, year, genres, tags). A user's vector encodes their
history text, the titles of their most recent training items (`pipeline.data.text`): the very input
the fine-tuned encoder was trained to place next to the item a user picks next. The same text is
also encoded from the history up to the test event (training + validation items): what the model
reads when the test event is predicted (`user_embeddings_at_test.npy`; the encoder is the same),
and from every event of the user (`user_embeddings_served.npy`): what serving uses.
Averaging the user's item vectors would instead describe everything they ever watched, equally
weighted, which the encoder never learnt to use. Users without training events get a zero vector.

Both the base encoder (`finetune.base_model`, "zero-shot") and the fine-tuned one are run, so the
evaluation can show what fine-tuning adds. Items are encoded at `text.max_seq_length` tokens,
histories at the length the encoder was fine-tuned on (`finetune.max_seq_length`), and each
distinct text once. Outputs under `data/embed/`: `{item,user}_embeddings.npy`
and `user_embeddings_{at_test,served}.npy` (fine-tuned), `zero_shot_{item,user}_embeddings.npy`
and `zero_shot_user_embeddings_at_test.npy` (the base encoder, evaluated but never served), and
`config.json`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core import io
from pipeline.core.config import Params, load_params
from pipeline.core.layout import Layout, writes
from pipeline.core.sections import EmbedConfig, TextConfig
from pipeline.data.artifacts import (
    Embeddings,
    Processed,
    embedding_paths,
    read_items,
    read_processed,
    user_count,
    write_embeddings,
)
from pipeline.data.text import user_texts
from pipeline.engine.encoding import USER_OUTPUTS, encode_all
from pipeline.engine.partitions import by_user_folder, partition_files
from pipeline.engine.runner import Engine
from pipeline.evaluation.protocol import only_users, user_sample
from pipeline.models.encoder import encode, load_encoder, pick_device, pick_precision


def run(
    model_name: str,
    processed: Processed,
    text_cfg: TextConfig,
    cfg: EmbedConfig,
    served: bool = True,
    evaluated: np.ndarray | None = None,
    history_tokens: int | None = None,
) -> Embeddings:
    """Encode every item's text and every user's history text (training history, the history up
    to the test event, and, with `served`, every event for serving) with one encoder.

    `evaluated`: the only users whose training-history and test-time vectors are read (the
    evaluation's seeded sample); the others' rows are zero, which saves most of the stage on
    data with many users. None: every user's. `history_tokens`: the tokens a history text is
    cut to (the length the encoder was fine-tuned on, `finetune.max_seq_length`; a history is
    most recent first, so a cut drops its oldest titles); None: `text.max_seq_length`, as items.
    """
    model = load_encoder(model_name, cfg.device, text_cfg.max_seq_length)
    precision = pick_precision(cfg.precision, pick_device(cfg.device))

    def vectors(texts: dict[str, list[str]], tokens: int) -> dict[str, np.ndarray]:
        model.max_seq_length = tokens
        return encode_distinct(
            texts, lambda distinct: encode(model, distinct, cfg.batch_size, True, precision)
        )

    n_users, recent = processed.users.height, text_cfg.history_items
    items = vectors(
        {"items": processed.items.sort("item_idx")["text"].to_list()}, text_cfg.max_seq_length
    )
    # An empty text encodes to a zero row.
    texts = {
        "users": only_users(
            user_texts(processed.train, processed.items, n_users, recent), evaluated, ""
        ),
        "users_at_test": only_users(
            user_texts(processed.history_at_test, processed.items, n_users, recent), evaluated, ""
        ),
    }
    if served:
        served_histories = user_texts(processed.history_served, processed.items, n_users, recent)
        texts["users_served"] = served_histories
    users = vectors(texts, history_tokens or text_cfg.max_seq_length)
    return Embeddings(
        users=users["users"],
        items=items["items"],
        users_at_test=users["users_at_test"],
        users_served=users.get("users_served"),
    )


def encode_distinct(
    texts: dict[str, list[str]], encoder: Callable[[list[str]], np.ndarray]
) -> dict[str, np.ndarray]:
    """Vectors for every list in `texts`, encoding each distinct text once: a user whose history
    did not change between splits and two users with the same recent titles cost one encoding,
    not several."""
    distinct = sorted({text for values in texts.values() for text in values})
    position = {text: index for index, text in enumerate(distinct)}
    encoded = encoder(distinct)
    return {
        name: encoded[np.fromiter((position[text] for text in values), np.int64, len(values))]
        for name, values in texts.items()
    }


def encoders(params: Params, encoder_dir: Path) -> dict[str, str]:
    """The encoders run, by variant: the fine-tuned one (`encoder_dir`, the one served) and the
    base one (`finetune.base_model`, "zero-shot": a row of the evaluation)."""
    return {"finetuned": str(encoder_dir), "zero_shot": params.finetune.base_model}


def evaluated_users(params: Params, n_users: int) -> np.ndarray | None:
    """The users whose split vectors are read: the evaluation's seeded sample, or every user
    (None) where clustering users by their recent titles reads every training-history vector."""
    if params.cluster.representation == "recent":
        return None
    return user_sample(n_users, params.evaluate.max_users, params.preprocess.split.seed)


def config_record(
    params: Params, sources: dict[str, str], evaluated: np.ndarray | None, n_users: int
) -> dict[str, Any]:
    """`data/embed/config.json`: the settings, the encoders, where and how they ran."""
    device = pick_device(params.embed.device)
    return {
        "text": params.text.model_dump(mode="json"),
        "embed": params.embed.model_dump(mode="json"),
        "models": sources,
        "device": device,
        "precision": pick_precision(params.embed.precision, device),
        "users_with_split_vectors": n_users if evaluated is None else int(evaluated.size),
    }


def run_on_ray(
    engine: Engine,
    layout: Layout,
    params: Params,
    model_name: str,
    served: bool,
    evaluated: np.ndarray | None,
    n_users: int,
) -> tuple[int, int]:
    """One encoder's vectors by the actor pool (`pipeline.engine.encoding`), written where
    `write_embeddings` puts them; returns the items and the width."""
    variant_paths = embedding_paths(layout, "finetuned" if served else "zero_shot")
    items_table = read_items(layout).sort("item_idx")
    precision = pick_precision(params.embed.precision, pick_device(params.embed.device))
    encoder = {
        "model": model_name,
        "device": params.embed.device,
        "tokens": {"items": params.text.max_seq_length, "users": params.finetune.max_seq_length},
        "batch_size": params.embed.batch_size,
        "precision": precision,
    }
    outputs = [name for name in USER_OUTPUTS if served or name != "users_served"]
    arguments = {
        "titles": items_table["title"].to_list(),
        "history_items": params.text.history_items,
        "evaluated": evaluated,
    }
    items = encode_all(
        engine,
        items_table["text"].to_list(),
        partition_files(by_user_folder(layout)),
        arguments,
        encoder,
        {name: variant_paths[name] for name in outputs},
        n_users,
    )
    io.write_npy(variant_paths["items"], items)
    return items.shape[0], items.shape[1]


@writes("embed")
def main(layout: Layout) -> None:
    params = load_params(layout.params)
    io.require(layout.encoder, "finetune")
    sources = encoders(params, layout.encoder)
    engine = Engine(params.engine)
    if engine.is_ray:
        n_users = user_count(layout)
    else:
        processed = read_processed(layout)
        n_users = processed.users.height
    evaluated = evaluated_users(params, n_users)
    for variant, model_name in sources.items():
        started = time.perf_counter()
        served = variant == "finetuned"
        if engine.is_ray:
            with engine.session():
                n_items, width = run_on_ray(
                    engine, layout, params, model_name, served, evaluated, n_users
                )
        else:
            embeddings = run(
                model_name,
                processed,
                params.text,
                params.embed,
                served=served,
                evaluated=evaluated,
                history_tokens=params.finetune.max_seq_length,
            )
            write_embeddings(variant, embeddings, layout)
            n_items, width = embeddings.items.shape
        print(
            f"embed: {variant}: {n_users} users and {n_items} items, {width}-d, "
            f"{time.perf_counter() - started:.1f} s on the {engine.name} backend"
        )
    record = config_record(params, sources, evaluated, n_users)
    io.write_json(layout.embed / "config.json", {**record, "backend": engine.name})


if __name__ == "__main__":
    io.run_stage(main)
