"""The light query encoder against sentence-transformers, on the tiny random encoder."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from recli.errors import RecliError
from recli.query_encoder import QueryEncoder, _erf

MAX_SEQ_LENGTH = 64  # what tests/tiny_encoder.py saves
LONG = " ".join(["a long, winding description of a film"] * 40)
TEXTS = [
    "Toy Story (1995)",
    "",
    "space opera, funny",
    LONG,
    " ",
    "Amélie — café 東京 naïve",
    "Heat (1995). Genres: Action|Crime|Thriller",
]


def reference(directory: Path, texts: list[str]) -> np.ndarray:
    """What the pipeline computes: sentence-transformers through pipeline.models.encoder."""
    from pipeline.models.encoder import encode, load_encoder

    return encode(load_encoder(str(directory), device="cpu"), texts)


def variant(tiny: Path, target: Path) -> Path:
    """A private copy of the tiny encoder, to edit."""
    return Path(shutil.copytree(tiny, target / "encoder"))


def edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_vectors_match_sentence_transformers(tiny_encoder_dir: Path) -> None:
    encoder = QueryEncoder.load(tiny_encoder_dir)
    assert encoder.max_seq_length == MAX_SEQ_LENGTH and encoder.dimension == 32
    assert len(LONG.split()) > 2 * MAX_SEQ_LENGTH  # so truncation is exercised
    assert len(encoder.tokenizer.encode(LONG).ids) == MAX_SEQ_LENGTH
    vectors = encoder.encode(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(vectors, reference(tiny_encoder_dir, TEXTS), rtol=0, atol=1e-5)
    assert not vectors[1].any()
    present = [i for i, text in enumerate(TEXTS) if text]
    np.testing.assert_allclose(np.linalg.norm(vectors[present], axis=1), 1.0, rtol=1e-5)


def test_a_vector_does_not_depend_on_its_batch(tiny_encoder_dir: Path) -> None:
    encoder = QueryEncoder.load(tiny_encoder_dir)
    together = encoder.encode(TEXTS, batch_size=3)
    alone = np.concatenate([encoder.encode([text]) for text in TEXTS])
    np.testing.assert_allclose(alone, together, rtol=0, atol=1e-6)
    assert encoder.encode([]).shape == (0, 32)


@pytest.mark.parametrize(
    "pooling",
    [
        {"embedding_dimension": 32, "pooling_mode": "cls"},
        {"embedding_dimension": 32, "pooling_mode": "max"},
        {"embedding_dimension": 32, "pooling_mode": ["mean", "max"]},
        # the legacy flag format (older saves, e.g. the packaged all-MiniLM-L6-v2)
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": True},
    ],
)
def test_pooling_modes_match(tiny_encoder_dir: Path, tmp_path: Path, pooling: dict) -> None:
    folder = variant(tiny_encoder_dir, tmp_path)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    vectors = QueryEncoder.load(folder).encode(TEXTS)
    np.testing.assert_allclose(vectors, reference(folder, TEXTS), rtol=0, atol=1e-5)


@pytest.mark.parametrize("activation", ["gelu_new", "gelu_pytorch_tanh"])
def test_tanh_gelu_matches(tiny_encoder_dir: Path, tmp_path: Path, activation: str) -> None:
    folder = variant(tiny_encoder_dir, tmp_path)
    edit_json(folder / "config.json", hidden_act=activation)
    vectors = QueryEncoder.load(folder).encode(TEXTS)
    np.testing.assert_allclose(vectors, reference(folder, TEXTS), rtol=0, atol=1e-5)


def test_transformer_in_a_subfolder_with_normalize(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    folder = variant(tiny_encoder_dir, tmp_path)
    sub = folder / "0_Transformer"
    sub.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).rename(sub / name)
    (folder / "sentence_bert_config.json").rename(sub / "sentence_bert_config.json")
    (folder / "2_Normalize").mkdir()
    modules = json.loads((folder / "modules.json").read_text())
    modules[0]["path"] = "0_Transformer"
    normalize = "sentence_transformers.models.Normalize"
    modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": normalize})
    (folder / "modules.json").write_text(json.dumps(modules))
    vectors = QueryEncoder.load(folder).encode(TEXTS)
    np.testing.assert_array_equal(vectors, QueryEncoder.load(tiny_encoder_dir).encode(TEXTS))
    np.testing.assert_allclose(vectors, reference(folder, TEXTS), rtol=0, atol=1e-5)


def test_prefixed_weight_names_are_read(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    folder = variant(tiny_encoder_dir, tmp_path)
    weights = load_file(folder / "model.safetensors")
    save_file(
        {f"bert.{key}": value for key, value in weights.items()}, folder / "model.safetensors"
    )
    expected = QueryEncoder.load(tiny_encoder_dir).encode(TEXTS)
    np.testing.assert_array_equal(QueryEncoder.load(folder).encode(TEXTS), expected)


@pytest.mark.parametrize(
    "missing",
    ["modules.json", "config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json"],
)
def test_a_missing_file_names_the_folder(tiny_encoder_dir: Path, tmp_path: Path, missing: str):
    folder = variant(tiny_encoder_dir, tmp_path)
    (folder / missing).unlink()
    with pytest.raises(RecliError, match=f"missing {missing}") as caught:
        QueryEncoder.load(folder)
    assert str(folder) in str(caught.value) and "--encoder" in str(caught.value)
    with pytest.raises(RecliError, match="does not exist"):
        QueryEncoder.load(tmp_path / "nowhere")


def test_what_cannot_be_read_exactly_is_refused(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    folder = variant(tiny_encoder_dir, tmp_path)
    config = folder / "config.json"
    edit_json(config, model_type="roberta")
    with pytest.raises(RecliError, match="not 'bert'"):
        QueryEncoder.load(folder)
    edit_json(config, model_type="bert", hidden_act="relu")
    with pytest.raises(ValueError, match="hidden_act 'relu'"):
        QueryEncoder.load(folder)
    edit_json(config, hidden_act="gelu")
    pooling = folder / "1_Pooling" / "config.json"
    edit_json(pooling, pooling_mode="weightedmean")
    with pytest.raises(ValueError, match="pooling mode 'weightedmean'"):
        QueryEncoder.load(folder)
    edit_json(pooling, pooling_mode="mean")
    modules = json.loads((folder / "modules.json").read_text())
    dense = {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    (folder / "modules.json").write_text(json.dumps([*modules, dense]))
    with pytest.raises(RecliError, match="Dense"):
        QueryEncoder.load(folder)
    (folder / "modules.json").write_text(json.dumps(modules))
    edit_json(
        folder / "config_sentence_transformers.json",
        default_prompt_name="query",
        prompts={"query": "query: "},
    )
    with pytest.raises(RecliError, match="default prompt"):
        QueryEncoder.load(folder)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("robots", 1),
        ("space opera, funny", 3),  # the comma is not a word
        ("1984", 1),
        ("東京", 2),  # one wordpiece per CJK character
        ("sci-fi!!!", 2),
        ("[CLS] [SEP] robots", 1),  # typed special tokens are not words
        ("", 0),
        ("!!! ???", 0),
        ("…", 0),
        ("🤖🚀", 0),  # the unknown token
        ("☃ ☃", 0),
        ("\u200b", 0),  # dropped by the tokenizer
        ("[MASK]", 0),
    ],
)
def test_known_words_counts_the_wordpieces_that_carry_meaning(
    tiny_encoder_dir: Path, text: str, words: int
) -> None:
    assert QueryEncoder.load(tiny_encoder_dir).known_words(text) == words


def test_a_word_truncated_away_is_not_known(tiny_encoder_dir: Path) -> None:
    encoder = QueryEncoder.load(tiny_encoder_dir)
    room = MAX_SEQ_LENGTH - 2  # [CLS] and [SEP] take two of the positions
    assert encoder.known_words("!" * (room - 1) + " robots") == 1
    # Each "!" is a token: `robots` is cut off, so the vector holds punctuation alone.
    assert encoder.known_words("!" * room + " robots") == 0


def test_erf_is_exact_to_float64() -> None:
    grid = np.linspace(-8.0, 8.0, 20001)
    expected = np.array([math.erf(value) for value in grid])
    assert np.abs(_erf(grid) - expected).max() < 1e-14


def test_no_training_stack_is_imported(tiny_encoder_dir: Path) -> None:
    script = (
        "import sys\n"
        "from recli.query_encoder import QueryEncoder\n"
        "from pathlib import Path\n"
        "QueryEncoder.load(Path(sys.argv[1])).encode(['space opera, funny'])\n"
        "heavy = {'torch', 'transformers', 'sentence_transformers'}\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tiny_encoder_dir)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.stdout.strip() == "[]"
