from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.models import encoder
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


def test_bfloat16_encoding_stays_within_cosine_tolerance_of_float32(
    tiny_encoder_dir: Path,
) -> None:
    model = encoder.load_encoder(str(tiny_encoder_dir), device="cpu", max_seq_length=32)
    texts = ["Toy Story (1995)", "", "Heat (1995). Genres: Action", "Recently liked: Heat (1995)"]
    full = encoder.encode(model, texts, 2)
    half = encoder.encode(model, texts, 2, precision="bfloat16")
    assert half.dtype == np.float32 and not half[1].any()
    present = [0, 2, 3]
    np.testing.assert_allclose(np.linalg.norm(half[present], axis=1), 1.0, rtol=1e-5)
    cosines = (full[present] * half[present]).sum(axis=1)
    assert cosines.min() > 0.999
    with pytest.raises(RecliError, match="precision"):
        encoder.encode(model, texts, 2, precision="float16")


def test_precision_auto_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    assert encoder.pick_precision("float32", "cpu") == "float32"
    assert encoder.pick_precision("bfloat16", "cpu") == "bfloat16"
    assert encoder.pick_precision("auto", "mps") == "float32"
    monkeypatch.setattr(encoder, "_cpu_has_native_bf16", lambda: True)
    assert encoder.pick_precision("auto", "cpu") == "bfloat16"
    monkeypatch.setattr(encoder, "_cpu_has_native_bf16", lambda: False)
    assert encoder.pick_precision("auto", "cpu") == "float32"
    with pytest.raises(RecliError, match="unknown precision"):
        encoder.pick_precision("int8", "cpu")


def test_torch_held_to_avx2_kernels_means_float32_even_on_a_bf16_cpu() -> None:
    # ATEN_CPU_CAPABILITY is read when torch loads, so the check runs in a fresh interpreter.
    probe = (
        "from pipeline.models.encoder import pick_precision; print(pick_precision('auto', 'cpu'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env={**os.environ, "ATEN_CPU_CAPABILITY": "avx2"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "float32"
