"""The serving contract: the facts the pipeline (which writes) and the CLI (which reads) share.

Standard library only, so importing it costs nothing on the `recli recommend` path. The pipeline
imports this module; nothing here imports the pipeline.

- Where things live: the artifacts folder (`data/` by default) holds one folder per stage; the
  CLI reads `index/` (the SQLite catalogue and the Annoy index) and, for `recli search` only,
  the fine-tuned encoder under `finetune/model`; `recli metrics` reads `metrics/evaluation.json`.
- How a file is fingerprinted: the first `DIGEST_CHARS` hex characters of its sha256, so that
  `recli doctor` can tell an index or an upstream file from another run.
- How a term is spelled: tags read `#dark comedy`, genres and eras read as they are, so a tag is
  never mistaken for a genre of the same name.
- How a fused vector is laid out: `[text part | collaborative part]`, the first `text_dimension`
  entries are the (scaled) text vector. `--explain` and `recli search` depend on that split.
- How two vectors are compared: `dot`, the index's metric, the one place recli writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

DEFAULT_ARTIFACTS = Path("data")
"""The pipeline's output folder, relative to the project root."""

# One folder per stage under the artifacts folder (DVC `outs`).
PROCESSED_DIR = "processed"
FINETUNE_DIR = "finetune"
EMBED_DIR = "embed"
CLUSTER_DIR = "cluster"
FACTORIZE_DIR = "factorize"
SEQUENCE_DIR = "sequence"
INDEX_DIR = "index"

ENCODER_DIR = Path(FINETUNE_DIR) / "model"
"""The fine-tuned sentence encoder (safetensors + tokenizer), relative to the artifacts folder."""
CATALOGUE_FILE = "catalogue.sqlite"
"""Inside `INDEX_DIR`: everything the CLI shows."""
INDEX_FILE = "items.ann"
"""Inside `INDEX_DIR`: Annoy over the fused item vectors."""
SEARCH_INDEX_FILE = "search.ann"
"""Inside `INDEX_DIR`, where the index searches a narrower space than the fused one: Annoy over
the item vectors in that space (`MetaKey.SEARCH_DIMENSION`)."""
LIVE_DIR = "live"
"""Under the artifacts folder, outside every stage's outputs: what `recli add` and `recli ingest`
keep (`recli.live`), which the pipeline reads and never rewrites."""
LIVE_FILE = "events.sqlite"
"""Inside `LIVE_DIR`: the live store (the event log and the users it changed)."""
METRICS_FILE = Path("metrics") / "evaluation.json"
"""The evaluate stage's table (every model, each split), relative to the project root: what
`recli metrics` shows, from the working tree or a git revision."""

DIGEST_CHARS = 16
"""How many leading hex characters of a file's sha256 the index stage records (`index_sha256`,
`built_from`): enough to tell two runs apart, short enough to read."""


def file_digest(path: Path) -> str:
    """The file's full sha256 in hex, read in 1 MiB blocks (an index can be large).

    The index stage records `file_digest(path)[:DIGEST_CHARS]`; `recli doctor` re-hashes and
    compares prefixes, so a catalogue that recorded a longer digest still checks.
    """
    import hashlib  # only `recli doctor` hashes: keep its import (OpenSSL) off the query path

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


TAG_PREFIX = "#"
"""Tags read `#dark comedy`; genres read `Drama`."""


def term_text(term: dict[str, Any]) -> str:
    """How a profile term (`{"kind": "genre" | "tag" | "era" | ..., "term": ...}`) is shown."""
    text = str(term["term"])
    return f"{TAG_PREFIX}{text}" if term.get("kind") == "tag" else text


Vector = TypeVar("Vector", bound=Sequence[float])


def text_slice(text_dimension: int) -> slice:
    """Where the text part sits in a fused vector: its first `text_dimension` entries."""
    return slice(0, text_dimension)


def collaborative_slice(text_dimension: int) -> slice:
    """Where the collaborative part sits in a fused vector: everything after the text part."""
    return slice(text_dimension, None)


def text_part(vector: Vector, text_dimension: int) -> Vector:
    """The text share of a fused vector."""
    return vector[text_slice(text_dimension)]  # type: ignore[return-value]


def collaborative_part(vector: Vector, text_dimension: int) -> Vector:
    """The collaborative share of a fused vector."""
    return vector[collaborative_slice(text_dimension)]  # type: ignore[return-value]


def dot(left: Sequence[float], right: Sequence[float]) -> float:
    """The dot product of two vectors of one space (a `ValueError` if their lengths differ), the
    products added by `sum` in order: recli writes it here only, so every score agrees."""
    return sum(a * b for a, b in zip(left, right, strict=True))


def fuse_parts(text: Sequence[float], collaborative: Sequence[float]) -> list[float]:
    """A fused vector from its two parts, the inverse of `text_part` and `collaborative_part`."""
    return [*text, *collaborative]
