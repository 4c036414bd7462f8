"""Bring-your-own files (`data.source: files`): interactions, items and optional tags as CSV, TSV
or parquet, read with the column names `data.files` gives and normalised into `RawData`.

Every text column is read as a string and typed per column, so ids keep their spelling (`007`).
A structural problem (missing file or column, non-numeric rating, bad encoding) raises
`RecliError` naming the file as `params.yaml` spells it and the key that fixes it.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline.config import FilesSource
from pipeline.raw import INTERACTIONS_SCHEMA, ITEMS_SCHEMA, RawData, drop_no_genre, title_year
from recli.errors import RecliError

TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": None, ".dat": None}
SEPARATOR_ALIASES = {"\\t": "\t", "tab": "\t"}
# How exported files spell a missing (NaN) id; such rows are dropped and counted like empty ids.
MISSING_ID_SPELLINGS = ("NaN", "nan")


def load_files(cfg: FilesSource, root: Path = Path(".")) -> RawData:
    """Read `data.files`: interactions, items and optional tags (CSV, TSV or parquet).

    Relative paths lie under `root`, the project folder (absolute ones stay as they are); messages
    show each path as `params.yaml` spells it, next to the key that sets it.
    """
    if cfg.interactions is None or cfg.items is None:
        raise RecliError("data.files.interactions and data.files.items must both be set")
    columns, item_columns = cfg.columns, cfg.item_columns

    events_path = Path(cfg.interactions)
    events = _read_table(events_path, root, "data.files.interactions", cfg)
    _require_columns(events, events_path, "data.files.columns", columns.model_dump())
    _require_rows(events, events_path, "data.files.interactions")
    interactions = events.select(
        _as_id(events, columns.user).alias("user_id"),
        _as_id(events, columns.item).alias("item_id"),
        _as_number(events, columns.rating, events_path, "rating", pl.Float64).alias("rating"),
        _as_number(events, columns.timestamp, events_path, "timestamp", pl.Int64).alias(
            "timestamp"
        ),
    )

    items_path = Path(cfg.items)
    catalogue = _read_table(items_path, root, "data.files.items", cfg)
    wanted = item_columns.model_dump(exclude={"list_separator"})
    _require_columns(catalogue, items_path, "data.files.item_columns", wanted)
    _require_rows(catalogue, items_path, "data.files.items")
    title = _as_text(catalogue, item_columns.title)
    items = catalogue.select(
        _as_id(catalogue, item_columns.item).alias("item_id"),
        title.alias("title"),
        title_year(title).alias("year"),
        _as_genres(catalogue, item_columns.genres, item_columns.list_separator).alias("genres"),
        _as_text(catalogue, item_columns.description).alias("description"),
    )
    sources = [events_path.name, items_path.name]

    if cfg.tags is not None:
        tags_path = Path(cfg.tags)
        tag_table = _read_table(tags_path, root, "data.files.tags", cfg)
        _require_columns(
            tag_table, tags_path, "data.files.tag_columns", cfg.tag_columns.model_dump()
        )
        tags = _group_tags(tag_table, cfg.tag_columns.item, cfg.tag_columns.tag)
        items = items.join(tags, on="item_id", how="left", maintain_order="left")
        sources.append(tags_path.name)
    else:
        items = items.with_columns(tags=pl.lit(None, pl.List(pl.String)))
    items = items.with_columns(pl.col("tags").fill_null(pl.lit([], pl.List(pl.String))))

    return RawData(
        interactions=interactions.cast(dict(INTERACTIONS_SCHEMA)),
        items=items.select(ITEMS_SCHEMA.names()).cast(dict(ITEMS_SCHEMA)),
        users=None,
        source="files: " + ", ".join(sources),
    )


def _read_table(path: Path, root: Path, key: str, cfg: FilesSource) -> pl.DataFrame:
    """Read `root / path` whole, every text column as a string (typing is done per column later);
    messages show `path`, the value of `key`."""
    file = Path(root) / path
    if not file.is_file():
        raise RecliError(f"{path} not found: set {key} in params.yaml to an existing file")
    if file.stat().st_size == 0:
        raise RecliError(f"{path} is empty: point {key} at a file with a header row and data")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            return pl.read_parquet(file)
        except (pl.exceptions.PolarsError, OSError) as error:
            raise RecliError(
                f"{path} is not a readable parquet file ({_first_line(error)}): re-export it"
            ) from None
    if suffix not in TEXT_SUFFIXES:
        raise RecliError(
            f"{path}: unsupported file type '{suffix}': "
            f"point {key} at a .csv, .tsv, .txt, .dat or .parquet file"
        )
    # YAML's single quotes keep `'\t'` as two characters; accept it as the tab it means.
    separator = SEPARATOR_ALIASES.get(cfg.separator or "", cfg.separator) or TEXT_SUFFIXES[suffix]
    if separator is None:
        raise RecliError(
            f"{path}: cannot tell the field separator of a {suffix} file: set data.files.separator"
        )
    if len(separator.encode("utf-8")) != 1:
        raise RecliError(f"data.files.separator must be one character, got {separator!r}")
    try:
        # Ids stay strings (`007` keeps its zeros) because nothing is inferred.
        return pl.read_csv(
            file,
            separator=separator,
            infer_schema=False,
            encoding="utf8" if cfg.encoding == "utf-8" else cfg.encoding,
        )
    except pl.exceptions.NoDataError:
        raise RecliError(
            f"{path} is empty: point {key} at a file with a header row and data"
        ) from None
    except pl.exceptions.PolarsError as error:
        if "utf-8" in str(error).lower() or "utf8" in str(error).lower():
            raise RecliError(
                f"{path} is not valid UTF-8: set data.files.encoding: latin-1 in params.yaml"
            ) from None
        raise RecliError(
            f"{path} could not be parsed ({_first_line(error)}): check data.files.separator "
            f"(now {separator!r}) and the file's quoting"
        ) from None


def _require_columns(
    frame: pl.DataFrame, path: Path, key: str, wanted: dict[str, str | None]
) -> None:
    for field, column in wanted.items():
        if column is None or column in frame.columns:
            continue
        found = ", ".join(frame.columns[:20]) + (", …" if frame.width > 20 else "")
        hint = ""
        if frame.width == 1 and any(mark in frame.columns[0] for mark in ",;\t|"):
            hint = " (only one column was read: set data.files.separator too)"
        elif "\ufffd" in found:
            # polars decodes a header leniently, so bad bytes show up here rather than as an error.
            hint = " (the header is not valid UTF-8: set data.files.encoding: latin-1)"
        raise RecliError(
            f"{path}: column '{column}' not found (columns: {found}): "
            f"set {key}.{field} to the right column name{hint}"
        )


def _require_rows(frame: pl.DataFrame, path: Path, key: str) -> None:
    if frame.is_empty():
        raise RecliError(f"{path} has a header but no rows: point {key} at a file with data")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _as_id(frame: pl.DataFrame, column: str) -> pl.Series:
    """Original ids as trimmed strings; empty or NaN cells become null (preprocess counts them)."""
    values = frame[column]
    if values.dtype.is_float():
        # A NaN id is a missing id, not a user called "NaN" (polars and numpy write NaN, not null).
        values = values.fill_nan(None)
        # Parquet writers often store integer ids as floats (pandas with nulls): `1.0` → `1`.
        whole = values.drop_nulls()
        if whole.is_finite().all() and (whole == whole.floor()).all():
            values = values.cast(pl.Int64)
    values = values.cast(pl.String).str.strip_chars()
    # Text exports spell a missing number `NaN` (pandas, polars) or `nan` (Python), as ratings do.
    return values.replace(["", *MISSING_ID_SPELLINGS], None)


def _as_text(frame: pl.DataFrame, column: str | None) -> pl.Series:
    if column is None:
        return pl.repeat(None, frame.height, dtype=pl.String, eager=True)
    return frame[column].cast(pl.String).str.strip_chars().replace("", None)


def _iso_seconds(text: pl.Series) -> pl.Series:
    """Unix seconds of ISO-8601 dates and datetimes (`2020-01-01`, `2020-01-01 10:00:00`,
    `2020-01-01T10:00:00Z`, with an offset or fractional seconds); null where a value is not
    one. A value without an offset is read as UTC."""
    parsed = pl.Series(values=[None] * len(text), dtype=pl.Int64)
    for pattern in ("%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"):
        with_zone = text.str.replace(r"Z$", "+00:00").str.to_datetime(
            pattern, strict=False, time_zone="UTC"
        )
        parsed = parsed.fill_null(with_zone.dt.epoch("s"))
    for pattern in (
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ):
        naive = text.str.to_datetime(pattern, strict=False, time_unit="ms")
        parsed = parsed.fill_null(naive.dt.epoch("s"))
    day = text.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("ms"))
    return parsed.fill_null(day.dt.epoch("s")).cast(pl.Float64)


def _as_number(
    frame: pl.DataFrame, column: str | None, path: Path, field: str, dtype: pl.DataType
) -> pl.Series:
    """A numeric column; a value that is present but not a number is a structural error."""
    if column is None:
        return pl.repeat(None, frame.height, dtype=dtype, eager=True)
    values = frame[column]
    if dtype == pl.Int64 and values.dtype == pl.Date:
        values = values.cast(pl.Datetime("ms"))
    if dtype == pl.Int64 and isinstance(values.dtype, pl.Datetime):
        return values.dt.epoch("s")
    if values.dtype == pl.String:
        text = values.str.strip_chars().replace("", None)
        parsed = text.cast(pl.Float64, strict=False)
        if dtype == pl.Int64 and field == "timestamp":
            parsed = parsed.fill_null(_iso_seconds(text))
        bad = text.is_not_null() & parsed.is_null()
        if bad.any():
            example = text.filter(bad)[0]
            row = int(bad.arg_max() or 0) + 2  # 1-based, after the header
            kind = "a number or an ISO-8601 date" if field == "timestamp" else "a number"
            raise RecliError(
                f"{path}: column '{column}' has {example!r}, not {kind} (line {row}): "
                f"fix the file, or set data.files.columns.{field} to a numeric column or null"
            )
        if dtype == pl.Int64:
            # Integers are parsed exactly (a float round-trip loses precision past 2**53).
            parsed = text.cast(pl.Int64, strict=False).fill_null(parsed.floor().cast(pl.Int64))
        values = parsed
    elif not values.dtype.is_numeric():
        raise RecliError(
            f"{path}: column '{column}' holds {values.dtype}, not numbers: "
            f"set data.files.columns.{field} to a numeric column or null"
        )
    if values.dtype.is_float():
        values = values.fill_nan(None)
        if dtype == pl.Int64:
            values = values.floor()
    return values.cast(dtype)


def _as_genres(frame: pl.DataFrame, column: str | None, separator: str) -> pl.Series:
    empty = pl.lit([], pl.List(pl.String))
    if column is None:
        return pl.Series(values=[[]] * frame.height, dtype=pl.List(pl.String))
    values = frame[column]
    if values.dtype != pl.List(pl.String):
        values = values.cast(pl.String).str.split(separator)
    cells = pl.element().str.strip_chars()
    genres = pl.lit(values).list.eval(cells.filter(cells != ""))
    return pl.select(drop_no_genre(genres).fill_null(empty)).to_series()


def _group_tags(frame: pl.DataFrame, item_column: str, tag_column: str) -> pl.DataFrame:
    """One lowercase, de-duplicated tag list per item, most used first (ties alphabetical)."""
    tags = pl.DataFrame(
        {
            "item_id": _as_id(frame, item_column),
            "tag": frame[tag_column]
            .cast(pl.String)
            .str.to_lowercase()
            .str.replace_all(r"\s+", " ")
            .str.strip_chars(),
        }
    ).filter(pl.col("item_id").is_not_null() & pl.col("tag").is_not_null() & (pl.col("tag") != ""))
    return (
        tags.group_by("item_id", "tag")
        .len()
        .sort(["item_id", "len", "tag"], descending=[False, True, False])
        .group_by("item_id", maintain_order=True)
        .agg(pl.col("tag").alias("tags"))
    )
