"""Typed params: `params.yaml` as a whole (`Params`), read and validated before any work starts.

Most sections are models in `pipeline.core.sections`; `data` (where the interactions come from,
read by `pipeline.data` rather than by one stage) and `index` are defined here. Every stage reads
only its own section(s). A bad value is reported with the key's dotted name
(`preprocess.split.strategy: ...`) so the fix is obvious, and nothing runs until params are valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.core.sections import (
    ClusterConfig,
    EmbedConfig,
    EvaluateConfig,
    FactorizeConfig,
    FinetuneConfig,
    FuseConfig,
    IndexConfig,
    InterestsConfig,
    PreprocessConfig,
    Section,
    SequenceConfig,
    TextConfig,
)
from recli.errors import RecliError

PARAMS_FILE = Path("params.yaml")


# --------------------------------------------------------------------------------------------
# data: where the interactions come from
# --------------------------------------------------------------------------------------------
class FileColumns(Section):
    """Column names in a bring-your-own interactions file."""

    user: str = "user_id"
    """User id column (any type; kept as the original id)."""
    item: str = "item_id"
    """Item id column; must match the items file's item column."""
    rating: str | None = "rating"
    """Optional explicit rating; `null` when the file has none."""
    timestamp: str | None = "timestamp"
    """Optional timestamp (seconds, or any sortable number); needed by time-based splits."""


class ItemColumns(Section):
    """Column names in a bring-your-own items file."""

    item: str = "item_id"
    """Item id column."""
    title: str = "title"
    """Human-readable title, shown in the CLI and used in the item text."""
    genres: str | None = "genres"
    """Optional multi-valued genre column, split on `list_separator`."""
    description: str | None = None
    """Optional free-text description appended to the item text."""
    list_separator: str = "|"
    """Separator inside multi-valued cells such as `Action|Comedy`."""


class TagColumns(Section):
    """Column names in an optional free-text tags file (one row per user-item-tag)."""

    item: str = "item_id"
    tag: str = "tag"


class FilesSource(Section):
    """A bring-your-own-files data source (CSV, TSV or parquet)."""

    interactions: Path | None = None
    """Interactions file: one row per user-item event."""
    items: Path | None = None
    """Items file: one row per item, with a title and optional text columns."""
    tags: Path | None = None
    """Optional tags file (for example MovieLens `tags.csv`)."""
    separator: str | None = None
    """Field separator for text files; `null` infers it from the extension (`.tsv` → tab)."""
    encoding: Literal["utf-8", "latin-1", "cp1252"] = "utf-8"
    """Text encoding of CSV/TSV files (`cp1252`: Windows-1252, latin-1 with printable characters
    where latin-1 has control codes)."""
    timestamp_unit: Literal["auto", "s", "ms", "us", "ns"] = "auto"
    """Unit of numeric timestamps since 1970; `auto` tells seconds from milliseconds, micro- and
    nanoseconds by the values' size, and `s` keeps any number as it is."""
    columns: FileColumns = FileColumns()
    item_columns: ItemColumns = ItemColumns()
    tag_columns: TagColumns = TagColumns()


class DataConfig(Section):
    """Where the raw data comes from."""

    source: Literal["movielens-100k", "files"] = "movielens-100k"
    """`movielens-100k` (downloaded and checksum-verified) or `files` (see `data.files`)."""
    cache_dir: Path = Path("data/external")
    """Download cache for public datasets; safe to delete, re-fetched on demand."""
    files: FilesSource = FilesSource()

    @model_validator(mode="after")
    def _files_given(self) -> DataConfig:
        if self.source == "files" and (self.files.interactions is None or self.files.items is None):
            raise ValueError(
                "data.source is 'files' but data.files.interactions or data.files.items is not set"
            )
        return self


# --------------------------------------------------------------------------------------------
# index: Annoy over the fused item vectors, the serving catalogue
# --------------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------------
# export: every user's top-k, in batch
# --------------------------------------------------------------------------------------------
class ExportConfig(Section):
    """The `export` stage: every user's top `k` unseen items by the served fused vectors."""

    k: int = Field(default=20, ge=1, le=1000)
    """Items per user."""
    user_block: int = Field(default=1024, ge=1)
    """Users scored together (a block's scores are user_block × item_block floats)."""
    item_block: int = Field(default=65536, ge=1)
    """Items per block: each block keeps its own top k per user, then the blocks merge."""


# --------------------------------------------------------------------------------------------
# engine: where the heavy stages run
# --------------------------------------------------------------------------------------------
class EngineConfig(Section):
    """Where the per-user work of the stages runs: in this process, or on a Ray cluster."""

    backend: Literal["local", "ray"] = "local"
    """`local`: every stage in the process DVC starts. `ray`: fine-tuning and the sequence
    models data-parallel on Ray Train, and the per-user work (embedding, the ALS fold-in, the
    export) as tasks and actors on a Ray cluster; `pip install -e ".[ray]"` first."""
    address: str | None = None
    """The cluster to join (`ray://host:10001` or `host:6379`); null: `RAY_ADDRESS` when it is
    set, else a cluster on this machine started for the stage and stopped after it."""
    workers: int | Literal["auto"] = Field(default="auto")
    """Encoder actors at once, and fine-tuning workers; auto: one per CPU the cluster has, at
    most 8."""
    gpus_per_worker: float = Field(default=0.0, ge=0.0)
    """GPUs each encoder actor and training worker asks for (0: CPU only; 1: one GPU each)."""
    partitions: int = Field(default=16, ge=1, le=4096)
    """User-hash partitions of the interactions (`data/processed/by_user/`): the unit of work
    of every per-user task. More than the workers, so that a slow one does not hold up the
    rest; the local backend reads the same files."""

    @field_validator("workers")
    @classmethod
    def _positive_workers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be at least 1, or 'auto'")
        return value


class Params(Section):
    """All of `params.yaml`."""

    data: DataConfig = DataConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    text: TextConfig = TextConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    embed: EmbedConfig = EmbedConfig()
    cluster: ClusterConfig = ClusterConfig()
    interests: InterestsConfig = InterestsConfig()
    factorize: FactorizeConfig = FactorizeConfig()
    sequence: SequenceConfig = SequenceConfig()
    fuse: FuseConfig = FuseConfig()
    index: IndexConfig = IndexConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    export: ExportConfig = ExportConfig()
    engine: EngineConfig = EngineConfig()


SectionT = TypeVar("SectionT", bound=BaseModel)


def _dotted_key(error: Any, raw: Any) -> str:
    """The params key an error is about, without pydantic's names for union alternatives.

    A union field (`cluster.k`: a number or `auto`) reports `cluster.k.constrained-int`; the last
    part is no key of the file. Parts are kept while they lead somewhere in the input.
    """
    if error["type"] == "missing":
        return ".".join(str(part) for part in error["loc"])
    parts: list[str] = []
    current = raw
    for part in error["loc"]:
        in_mapping = isinstance(current, dict) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if not (in_mapping or in_list):
            break
        current = current[part]
        parts.append(str(part))
    return ".".join(parts)


def _format_validation_error(error: ValidationError, raw: Any) -> str:
    errors = error.errors()
    first = errors[0]
    dotted = _dotted_key(first, raw)
    # A union fails once per alternative: name them all (`… ≥ 2, or 'auto'`).
    messages = list(
        dict.fromkeys(
            other["msg"].removeprefix("Value error, ")
            for other in errors
            if _dotted_key(other, raw) == dotted
        )
    )
    message = messages[0] + "".join(
        ", or " + other.removeprefix("Input should be ") for other in messages[1:]
    )
    value = first.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    return f"{PARAMS_FILE}: {dotted or '<top level>'}: {message}{shown}"


def parse_params(raw: dict[str, Any]) -> Params:
    """Validate a params mapping; errors name the dotted key and the fix."""
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise RecliError(_format_validation_error(error, raw)) from None


def yaml_problem(path: Path, error: yaml.YAMLError) -> str:
    """One line for a YAML syntax error: the file, line and column, and what the parser found."""
    mark = getattr(error, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return (
        f"{where}: not valid YAML ({problem}): fix the syntax there (indentation, a ':' or quotes)"
    )


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Read and validate `params.yaml`."""
    if not path.exists():
        raise RecliError(f"{path} not found: run from the project root (where dvc.yaml lives)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise RecliError(yaml_problem(path, error)) from None
    if not isinstance(raw, dict):
        raise RecliError(f"{path} must be a mapping of sections, got {type(raw).__name__}")
    return parse_params(raw)
