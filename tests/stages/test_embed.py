from __future__ import annotations

from pathlib import Path

import numpy as np
from synthetic import make_raw

from pipeline import embed, preprocess
from pipeline.core.layout import Layout
from pipeline.core.sections import EmbedConfig, PreprocessConfig, TextConfig
from pipeline.data.artifacts import read_embeddings, write_embeddings
from pipeline.data.text import user_texts
from pipeline.models.encoder import encode, load_encoder


def _processed():
    return preprocess.run(make_raw(n_users=12, n_items=20, per_user=6), PreprocessConfig())


def test_embeddings_have_one_unit_row_per_user_and_item(tiny_encoder_dir: Path, tmp_path) -> None:
    processed = _processed()
    result = embed.run(
        str(tiny_encoder_dir), processed, TextConfig(max_seq_length=32), EmbedConfig()
    )
    assert result.users.shape == (processed.users.height, 32)
    assert result.items.shape == (processed.items.height, 32)
    assert result.items.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(result.items, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(result.users, axis=1), 1.0, rtol=1e-5)
    assert result.score(np.array([0, 1])).shape == (2, processed.items.height)
    write_embeddings("zero_shot", result, Layout(tmp_path))
    loaded = read_embeddings("zero_shot", Layout(tmp_path))
    np.testing.assert_array_equal(loaded.users, result.users)
    again = embed.run(
        str(tiny_encoder_dir), processed, TextConfig(max_seq_length=32), EmbedConfig()
    )
    np.testing.assert_allclose(again.users, result.users, rtol=1e-5, atol=1e-6)


def test_each_vector_is_the_encoding_of_that_users_and_items_text(tiny_encoder_dir: Path) -> None:
    processed = _processed()
    text_cfg = TextConfig(max_seq_length=32, history_items=3)
    # float32 on every machine, so the vectors compare exactly with a plain float32 encoding.
    cfg = EmbedConfig(precision="float32")
    result = embed.run(str(tiny_encoder_dir), processed, text_cfg, cfg)
    model = load_encoder(str(tiny_encoder_dir), "cpu", text_cfg.max_seq_length)
    histories = user_texts(processed.train, processed.items, processed.users.height, 3)
    for user in (0, 5, processed.users.height - 1):
        expected = encode(model, [histories[user]])[0]
        np.testing.assert_allclose(result.users[user], expected, rtol=1e-4, atol=1e-5)
    items = processed.items.sort("item_idx")
    for item in (0, 7):
        expected = encode(model, [items["text"][item]])[0]
        np.testing.assert_allclose(result.items[item], expected, rtol=1e-4, atol=1e-5)
    # Different users with different histories do not share one vector.
    assert histories[0] != histories[1]
    assert not np.allclose(result.users[0], result.users[1])


def test_histories_are_cut_to_the_fine_tuning_length_and_items_are_not(
    tiny_encoder_dir: Path,
) -> None:
    processed = _processed()
    text_cfg = TextConfig(max_seq_length=32, history_items=3)
    cfg = EmbedConfig(precision="float32")
    result = embed.run(str(tiny_encoder_dir), processed, text_cfg, cfg, history_tokens=6)
    short = load_encoder(str(tiny_encoder_dir), "cpu", 6)
    long = load_encoder(str(tiny_encoder_dir), "cpu", 32)
    histories = user_texts(processed.history_served, processed.items, processed.users.height, 3)
    assert len(short.tokenizer(histories[0])["input_ids"]) > 6  # the cut bites
    np.testing.assert_allclose(
        result.users_served[0], encode(short, [histories[0]])[0], rtol=1e-4, atol=1e-5
    )
    assert not np.allclose(result.users_served[0], encode(long, [histories[0]])[0], atol=1e-3)
    item = processed.items.sort("item_idx")["text"][0]
    np.testing.assert_allclose(result.items[0], encode(long, [item])[0], rtol=1e-4, atol=1e-5)


def test_split_vectors_are_encoded_only_for_the_evaluated_users(tiny_encoder_dir: Path) -> None:
    processed = _processed()
    text_cfg, cfg = TextConfig(max_seq_length=32), EmbedConfig()
    full = embed.run(str(tiny_encoder_dir), processed, text_cfg, cfg)
    evaluated = np.array([1, 4, 7])
    part = embed.run(str(tiny_encoder_dir), processed, text_cfg, cfg, evaluated=evaluated)
    others = np.setdiff1d(np.arange(processed.users.height), evaluated)
    for name in ("users", "users_at_test"):
        np.testing.assert_allclose(
            getattr(part, name)[evaluated], getattr(full, name)[evaluated], rtol=1e-4, atol=1e-5
        )
        assert not getattr(part, name)[others].any()
    # Items and the served users (every user) are encoded as before.
    np.testing.assert_allclose(part.items, full.items, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(part.users_served, full.users_served, rtol=1e-4, atol=1e-5)


def test_each_distinct_text_is_encoded_once_and_scattered_back() -> None:
    calls: list[list[str]] = []

    def fake_encoder(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return np.array([[len(text), text.count("a")] for text in texts], dtype=np.float32)

    texts = {"items": ["a", "bb", "a"], "users": ["bb", "", "cab"], "users_at_test": ["cab", "a"]}
    vectors = embed.encode_distinct(texts, fake_encoder)
    assert len(calls) == 1 and sorted(calls[0]) == ["", "a", "bb", "cab"]
    for name, values in texts.items():
        expected = np.array([[len(text), text.count("a")] for text in values], dtype=np.float32)
        np.testing.assert_array_equal(vectors[name], expected)
