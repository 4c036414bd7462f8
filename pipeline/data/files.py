"""Bring-your-own files (`data.source: files`): interactions, items and optional tags as CSV, TSV
or parquet, read with the column names `data.files` gives and normalised into `RawData`.

Each file is read whole, every text column as a string (`pipeline.data.reader`: file type,
separator, encoding), and typed here per column, so ids keep their spelling (`007`). A structural
problem (missing file or column, non-numeric rating, bad encoding) raises `RecliError` naming the
file as `params.yaml` spells it and the key that fixes it.

Nothing is reinterpreted quietly: timestamps in milliseconds, microseconds or nanoseconds are
converted to seconds with a one-line note on stderr saying so, as the reader notes a file read in
another encoding than `data.files.encoding`. Titles, descriptions and tags that look
double-encoded (`CafÃ©`: `pipeline.data.mojibake`) are noted too, and kept as they are.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from pipeline.core.config import FilesSource
from pipeline.data.mojibake import note_double_encoded
from pipeline.data.raw import INTERACTIONS_SCHEMA, ITEMS_SCHEMA, RawData, drop_no_genre, title_year
from pipeline.data.reader import note, read_table
from recli.errors import RecliError

# How exported files spell a missing (NaN) id; such rows are dropped and counted like empty ids.
MISSING_ID_SPELLINGS = ("NaN", "nan")

# Seconds per unit of a numeric timestamp.
TIMESTAMP_UNITS = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
# Where each unit's values start: every band holds the instants from 1973-03 to the year 5138 in
# its unit, so real dates of one unit never straddle a bound. Seconds also take every smaller
# number, which keeps small sortable counters as they are.
UNIT_BANDS = (("s", 0.0), ("ms", 1e11), ("us", 1e14), ("ns", 1e17))


def load_files(cfg: FilesSource, root: Path = Path(".")) -> RawData:
    """Read `data.files`: interactions, items and optional tags (CSV, TSV or parquet).

    Relative paths lie under `root`, the project folder (absolute ones stay as they are); messages
    show each path as `params.yaml` spells it, next to the key that sets it.
    """
    if cfg.interactions is None or cfg.items is None:
        raise RecliError("data.files.interactions and data.files.items must both be set")
    item_columns = cfg.item_columns

    events_path = Path(cfg.interactions)
    interactions = read_interactions(events_path, cfg, root)

    items_path = Path(cfg.items)
    catalogue = read_table(items_path, root, "data.files.items", cfg)
    wanted = item_columns.model_dump(exclude={"list_separator"})
    _require_columns(catalogue, items_path, "data.files.item_columns", wanted)
    _require_rows(catalogue, items_path, "data.files.items")
    title = _as_text(catalogue, item_columns.title)
    description = _as_text(catalogue, item_columns.description)
    note_double_encoded(items_path, {"title": title, "description": description})
    items = catalogue.select(
        _as_id(catalogue, item_columns.item).alias("item_id"),
        title.alias("title"),
        title_year(title).alias("year"),
        _as_genres(catalogue, item_columns.genres, item_columns.list_separator).alias("genres"),
        description.alias("description"),
    )
    sources = [events_path.name, items_path.name]

    if cfg.tags is not None:
        tags_path = Path(cfg.tags)
        tag_table = read_table(tags_path, root, "data.files.tags", cfg)
        _require_columns(
            tag_table, tags_path, "data.files.tag_columns", cfg.tag_columns.model_dump()
        )
        # Checked before `_group_tags` lowercases them, which would hide `Ã` in `ã`.
        note_double_encoded(tags_path, {"tag": tag_table[cfg.tag_columns.tag].cast(pl.String)})
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


def read_interactions(
    path: Path, cfg: FilesSource, root: Path = Path("."), key: str = "data.files.interactions"
) -> pl.DataFrame:
    """An interactions file (`root / path`) in `INTERACTIONS_SCHEMA`, read with `cfg`'s columns,
    separator, encoding and timestamp unit; messages name `key` as what sets the path."""
    columns = cfg.columns
    events = read_table(path, root, key, cfg)
    _require_columns(events, path, "data.files.columns", columns.model_dump())
    _require_rows(events, path, key)
    users = _as_id(events, columns.user)
    interactions = events.select(
        users.alias("user_id"),
        _as_id(events, columns.item).alias("item_id"),
        _as_rating(events, columns.rating, path).alias("rating"),
        _as_timestamp(events, columns.timestamp, path, cfg.timestamp_unit, users).alias(
            "timestamp"
        ),
    )
    return interactions.cast(dict(INTERACTIONS_SCHEMA))


def _require_columns(
    frame: pl.DataFrame, path: Path, key: str, wanted: dict[str, str | None]
) -> None:
    for field, column in wanted.items():
        if column is None or column in frame.columns:
            continue
        found = ", ".join(frame.columns[:20]) + (", …" if frame.width > 20 else "")
        hint = ""
        # A header that is not valid UTF-8 is refused by the reader, with the encoding to set.
        if frame.width == 1 and any(mark in frame.columns[0] for mark in ",;\t|"):
            hint = " (only one column was read: set data.files.separator too)"
        raise RecliError(
            f"{path}: column '{column}' not found (columns: {found}): "
            f"set {key}.{field} to the right column name{hint}"
        )


def _require_rows(frame: pl.DataFrame, path: Path, key: str) -> None:
    if frame.is_empty():
        raise RecliError(f"{path} has a header but no rows: point {key} at a file with data")


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


def _bad_value(
    path: Path, column: str, text: pl.Series, bad: pl.Series, kind: str, key: str
) -> None:
    """Stop at the first value where `bad` holds, naming its line (1-based, after the header)."""
    bad = bad.fill_null(False)
    if bad.any():
        example = text.filter(bad)[0]
        row = int(bad.arg_max() or 0) + 2
        raise RecliError(
            f"{path}: column '{column}' has {example!r}, not {kind} (line {row}): "
            f"fix the file, or set data.files.columns.{key} to a numeric column or null"
        )


def _as_rating(frame: pl.DataFrame, column: str | None, path: Path) -> pl.Series:
    """The rating column as Float64; a value that is present but not a number is an error."""
    if column is None:
        return pl.repeat(None, frame.height, dtype=pl.Float64, eager=True)
    values = frame[column]
    if values.dtype == pl.String:
        text = values.str.strip_chars().replace("", None)
        values = text.cast(pl.Float64, strict=False)
        _bad_value(path, column, text, text.is_not_null() & values.is_null(), "a number", "rating")
    elif not values.dtype.is_numeric():
        raise RecliError(
            f"{path}: column '{column}' holds {values.dtype}, not numbers: "
            "set data.files.columns.rating to a numeric column or null"
        )
    values = values.cast(pl.Float64)
    return values.fill_nan(None)


def _as_timestamp(
    frame: pl.DataFrame, column: str | None, path: Path, unit: str, users: pl.Series
) -> pl.Series:
    """Unix seconds (Int64) from numbers in `unit` (`auto`: told by their size), ISO-8601 text
    or parquet dates; a value that is present but none of these is an error. Fractions of a
    second are floored; `users` only serves the note on a conversion."""
    if column is None:
        return pl.repeat(None, frame.height, dtype=pl.Int64, eager=True)
    values = frame[column]
    if values.dtype == pl.Date:
        values = values.cast(pl.Datetime("ms"))
    if isinstance(values.dtype, pl.Datetime):
        return values.dt.epoch("s")
    dates = pl.repeat(None, frame.height, dtype=pl.Int64, eager=True)
    if values.dtype == pl.String:
        text = values.str.strip_chars().replace("", None)
        floats = text.cast(pl.Float64, strict=False)
        dates = _iso_seconds(text).cast(pl.Int64)
        bad = text.is_not_null() & floats.is_null() & dates.is_null()
        _bad_value(path, column, text, bad, "a number or an ISO-8601 date", "timestamp")
        # Integers are parsed exactly (a float round-trip loses precision past 2**53).
        exact = text.cast(pl.Int64, strict=False)
    elif values.dtype.is_integer():
        text = values.cast(pl.String)
        # A UInt64 past Int64 becomes null here and is refused below.
        exact = values.cast(pl.Int64, strict=False)
        floats = values.cast(pl.Float64)
    elif values.dtype.is_numeric():
        text = values.cast(pl.String)
        floats = values.cast(pl.Float64)
        exact = pl.repeat(None, frame.height, dtype=pl.Int64, eager=True)
    else:
        raise RecliError(
            f"{path}: column '{column}' holds {values.dtype}, not numbers: "
            "set data.files.columns.timestamp to a numeric column or null"
        )
    # NaN is a missing time, as in the rating column; infinity or a number past Int64 is no time.
    beyond = exact.is_null() & floats.is_not_nan() & ~(floats.abs() < 2.0**63)
    _bad_value(path, column, text, beyond, "a time", "timestamp")
    numbers = exact.fill_null(floats.fill_nan(None).floor().cast(pl.Int64))
    told = unit != "auto"
    unit = unit if told else _timestamp_unit(numbers, path, column)
    factor = TIMESTAMP_UNITS[unit]
    if factor == 1:
        return numbers.fill_null(dates)
    seconds = numbers // factor
    _note_conversion(path, column, unit, told, numbers, seconds, users)
    return seconds.fill_null(dates)


def _timestamp_unit(numbers: pl.Series, path: Path, column: str) -> str:
    """The unit every number in `numbers` has by its size (`UNIT_BANDS`); a column whose numbers
    fall in several bands is refused, since no one unit reads all of them as plausible times."""
    size = numbers.cast(pl.Float64).abs()
    band = pl.Series(values=[0] * numbers.len(), dtype=pl.Int8)
    for _, start in UNIT_BANDS[1:]:
        band = band + (size >= start).cast(pl.Int8)
    present = band.filter(numbers.is_not_null())
    found = present.unique().sort().to_list()
    if not found:
        return "s"
    if len(found) == 1:
        return UNIT_BANDS[found[0]][0]
    shown = []
    for which in (found[0], found[-1]):
        row = int((band == which).fill_null(False).arg_max() or 0)
        name = UNIT_NAMES[UNIT_BANDS[which][0]]
        shown.append(f"{numbers[row]} (line {row + 2}) looks like {name}")
    raise RecliError(
        f"{path}: column '{column}' mixes time units: {shown[0]}, {shown[1]}: make the column "
        "one unit, or set data.files.timestamp_unit to its unit (s, ms, us or ns; s keeps "
        "every number as it is)"
    )


def _date(seconds: int) -> str:
    try:
        return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d")
    except (OverflowError, OSError, ValueError):
        return f"{seconds} s"


def _note_conversion(
    path: Path,
    column: str,
    unit: str,
    told: bool,
    numbers: pl.Series,
    seconds: pl.Series,
    users: pl.Series,
) -> None:
    """Say which unit the timestamps were read in, the dates that gives, and how many events lost
    their order within a second (preprocess then orders them by a seeded draw, as any tie)."""
    present = seconds.drop_nulls()
    if present.is_empty():
        return
    events = pl.DataFrame({"user": users, "number": numbers, "second": seconds}).drop_nulls(
        "second"
    )
    tied = (
        events.group_by("user", "second")
        .agg(pl.len(), pl.col("number").n_unique().alias("instants"))
        .filter(pl.col("instants") > 1)["len"]
        .sum()
    )
    ties = (
        f"; {tied} events now share their second with an event of the same user at another "
        "instant (preprocess orders such ties by preprocess.split.seed)"
        if tied
        else ""
    )
    why = (
        "as data.files.timestamp_unit says"
        if told
        else "told by their size (set data.files.timestamp_unit if that is wrong)"
    )
    note(
        f"{path}: column '{column}' holds {UNIT_NAMES[unit]} since 1970 "
        f"({_date(int(present.min()))} to {_date(int(present.max()))}), {why}: "
        f"converted to seconds{ties}"
    )


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
