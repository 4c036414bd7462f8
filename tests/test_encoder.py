from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline import encoder
from recli.errors import RecliError


def test_packaged_model_resolves_to_a_directory_with_weights() -> None:
    path = Path(encoder.resolve_model("packaged:all-MiniLM-L6-v2"))
    assert (path / "model.safetensors").exists() and (path / "modules.json").exists()


def test_unknown_packaged_model_and_unloadable_name_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(RecliError, match="unknown packaged model"):
        encoder.resolve_model("packaged:bert-giant")
    with pytest.raises(RecliError, match="could not load encoder"):
        encoder.load_encoder(str(tmp_path / "no-such-model-here" / "x"), device="cpu")


def test_local_path_and_hub_names_pass_through(tmp_path: Path) -> None:
    assert encoder.resolve_model(str(tmp_path)) == str(tmp_path.resolve())
    assert encoder.resolve_model("org/model") == "org/model"


def test_cpu_always_available_and_unavailable_device_is_an_error() -> None:
    import torch

    assert encoder.pick_device("cpu") == "cpu"
    assert encoder.pick_device("auto") in ("cuda", "mps", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RecliError, match="not available"):
            encoder.pick_device("cuda")


def test_encode_normalises_and_keeps_empty_texts_at_zero(tiny_encoder_dir: Path) -> None:
    model = encoder.load_encoder(str(tiny_encoder_dir), device="cpu", max_seq_length=32)
    vectors = encoder.encode(model, ["Toy Story (1995)", "", "Heat (1995). Genres: Action"], 2)
    assert vectors.dtype == np.float32 and vectors.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors[[0, 2]], axis=1), 1.0, rtol=1e-5)
    assert not vectors[1].any()
    again = encoder.encode(model, ["Toy Story (1995)"], 1)
    np.testing.assert_allclose(again[0], vectors[0], rtol=1e-5, atol=1e-6)
