"""MovieLens-100K: both published formats parse to the same catalogue (synthetic content in the
real formats), and the cache, download and fallback order work with the network and pip replaced
by stubs. Nothing is downloaded."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipeline.data import movielens
from pipeline.data.movielens import (
    load_movielens_100k,
    parse_ml100k_grouplens,
    parse_ml100k_recbole,
)
from pipeline.data.raw import INTERACTIONS_SCHEMA, ITEMS_SCHEMA
from recli.errors import RecliError

RECBOLE_INTER = (
    b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    b"196\t242\t3\t881250949\n186\t1412\t3\t891717742\n22\t267\t1\t878887116\n"
)
RECBOLE_ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "242\tMisérables, Les\t1995\tDrama Musical\n"
    "1412\tLand Before Time III: The Time of the Great Giving (1995)\tV\tAnimation Children's\n"
    "267\tunkonwn\tunkonwn\tunknown\n"
).encode()
RECBOLE_USER = (
    b"user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
    b"196\t49\tM\twriter\t55105\n186\t39\tF\texecutive\t00000\n22\t25\tM\twriter\t40206\n"
)
GROUPLENS_DATA = b"196\t242\t3\t881250949\n186\t1412\t3\t891717742\n22\t267\t1\t878887116\n"


CHILDREN = "Children's"


def flags(*genres: str) -> str:
    return "|".join("1" if name in genres else "0" for name in movielens.ML100K_GENRES)


GROUPLENS_ITEM = (
    f"242|Misérables, Les (1995)|01-Jan-1995||http://us.imdb.com/x|{flags('Drama', 'Musical')}\n"
    "1412|Land Before Time III: The Time of the Great Giving (1995) (V)|V||"
    f"http://us.imdb.com/y|{flags('Animation', CHILDREN)}\n"
    f"267|unknown||||{flags('unknown')}\n"
).encode("latin-1")
GROUPLENS_USER = b"196|49|M|writer|55105\n186|39|F|executive|00000\n22|25|M|writer|40206\n"
EXPECTED_ML100K_ITEMS = pl.DataFrame(
    {
        "item_id": ["242", "1412", "267"],
        "title": [
            "Misérables, Les (1995)",
            "Land Before Time III: The Time of the Great Giving (1995) (V)",
            "unknown",
        ],
        "year": [1995, 1995, None],
        "genres": [["Drama", "Musical"], ["Animation", "Children's"], []],
        "tags": [[], [], []],
        "description": [None, None, None],
    },
    schema=ITEMS_SCHEMA,
)


def test_recbole_parser() -> None:
    raw = parse_ml100k_recbole(RECBOLE_INTER, RECBOLE_ITEM, RECBOLE_USER)
    assert raw.interactions.schema == INTERACTIONS_SCHEMA
    assert raw.interactions.row(0) == ("196", "242", 3.0, 881250949)
    # Titles regain their parenthesised year; the `V` year falls back to the title's (1995).
    assert_frame_equal(raw.items, EXPECTED_ML100K_ITEMS)
    assert raw.users is not None
    assert raw.users.schema == pl.Schema(
        {"user_id": pl.String, "age": pl.Int32, "gender": pl.String, "occupation": pl.String}
    )
    assert raw.users.row(1) == ("186", 39, "F", "executive")
    assert "recbole 1.2.1" in raw.source


def test_grouplens_parser_matches_recbole() -> None:
    raw = parse_ml100k_grouplens(GROUPLENS_DATA, GROUPLENS_ITEM, GROUPLENS_USER)
    recbole = parse_ml100k_recbole(RECBOLE_INTER, RECBOLE_ITEM, RECBOLE_USER)
    assert_frame_equal(raw.items, EXPECTED_ML100K_ITEMS)
    assert_frame_equal(raw.interactions, recbole.interactions)
    assert recbole.users is not None
    assert raw.users is not None
    assert_frame_equal(raw.users, recbole.users)


def test_grouplens_year_falls_back_to_release_date() -> None:
    item = f"5|Copycat|01-Jan-1995||url|{flags('Crime')}\n6|Odd|V||url|{flags()}\n".encode(
        "latin-1"
    )
    raw = parse_ml100k_grouplens(b"1\t5\t3\t1\n", item, b"1|20|M|none|0\n")
    assert raw.items["year"].to_list() == [1995, None]


# --------------------------------------------------------------------------------------------
# MovieLens-100K acquisition and cache (network and pip replaced by stubs)
# --------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_ml100k(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the tiny synthetic content pass the checksum and size checks."""
    monkeypatch.setattr(movielens, "ML100K_INTER_SHA256", hashlib.sha256(RECBOLE_INTER).hexdigest())
    monkeypatch.setattr(movielens, "ML100K_COUNTS", {"interactions": 3, "users": 3, "items": 3})


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def refuse_url(*args: object, **kwargs: object) -> None:
        calls.append("grouplens")
        raise OSError("network disabled in tests")

    def refuse_pip(*args: object, **kwargs: object) -> None:
        calls.append("pip")
        raise OSError("pip disabled in tests")

    monkeypatch.setattr(movielens.urllib.request, "urlopen", refuse_url)
    monkeypatch.setattr(movielens.subprocess, "run", refuse_pip)
    monkeypatch.delenv(movielens.OFFLINE_ENV, raising=False)
    return calls


def make_wheel(path: Path, inter: bytes = RECBOLE_INTER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as bundle:
        for kind, content in (("inter", inter), ("item", RECBOLE_ITEM), ("user", RECBOLE_USER)):
            bundle.writestr(f"{movielens.RECBOLE_ML100K_DIR}/ml-100k.{kind}", content)
    return path


@pytest.mark.usefixtures("tiny_ml100k")
def test_cached_wheel_is_used_without_network(tmp_path: Path, no_network: list[str]) -> None:
    make_wheel(tmp_path / "wheels" / "recbole-1.2.1-py3-none-any.whl")
    raw = load_movielens_100k(tmp_path)
    assert_frame_equal(raw.items, EXPECTED_ML100K_ITEMS)
    assert no_network == []


@pytest.mark.usefixtures("tiny_ml100k")
def test_tampered_wheel_fails_the_checksum(tmp_path: Path, no_network: list[str]) -> None:
    make_wheel(tmp_path / "wheels" / "recbole-1.2.1-py3-none-any.whl", b"x\n")
    with pytest.raises(RecliError, match="delete it"):
        load_movielens_100k(tmp_path)


@pytest.mark.usefixtures("tiny_ml100k")
def test_hand_placed_files_win(tmp_path: Path, no_network: list[str]) -> None:
    placed = tmp_path / "ml-100k"
    placed.mkdir()
    (placed / "u.data").write_bytes(GROUPLENS_DATA)
    (placed / "u.item").write_bytes(GROUPLENS_ITEM)
    (placed / "u.user").write_bytes(GROUPLENS_USER)
    raw = load_movielens_100k(tmp_path)
    assert "grouplens" in raw.source
    assert no_network == []

    (placed / "u.user").unlink()
    with pytest.raises(RecliError, match=r"lacks u\.user"):
        load_movielens_100k(tmp_path)


@pytest.mark.usefixtures("tiny_ml100k")
def test_wrong_sized_data_is_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(
        movielens, "ML100K_COUNTS", {"interactions": 100_000, "users": 943, "items": 1_682}
    )
    make_wheel(tmp_path / "wheels" / "recbole-1.2.1-py3-none-any.whl")
    with pytest.raises(RecliError, match="does not look like MovieLens-100K"):
        load_movielens_100k(tmp_path)


@pytest.mark.usefixtures("tiny_ml100k")
def test_grouplens_download_is_extracted_and_cached(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_network: list[str]
) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("ml-100k/u.data", GROUPLENS_DATA)
        bundle.writestr("ml-100k/u.item", GROUPLENS_ITEM)
        bundle.writestr("ml-100k/u.user", GROUPLENS_USER)
    downloads: list[str] = []

    def serve(url: str, timeout: float) -> io.BytesIO:
        downloads.append(url)
        assert timeout <= 10
        return io.BytesIO(archive.getvalue())

    monkeypatch.setattr(movielens.urllib.request, "urlopen", serve)
    first = load_movielens_100k(tmp_path)
    second = load_movielens_100k(tmp_path)
    assert downloads == [movielens.ML100K_URL]
    assert_frame_equal(first.items, second.items)
    assert (tmp_path / "ml-100k" / "u.data").read_bytes() == GROUPLENS_DATA


@pytest.mark.usefixtures("tiny_ml100k")
def test_falls_back_to_the_wheel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_network: list[str]
) -> None:
    def pip_download(command: list[str], **kwargs: object) -> object:
        no_network.append("pip")
        assert "recbole==1.2.1" in command and "--no-deps" in command
        make_wheel(Path(command[command.index("-d") + 1]) / "recbole-1.2.1-py3-none-any.whl")
        return type("Completed", (), {"returncode": 0, "stdout": "", "stderr": ""})()

    monkeypatch.setattr(movielens.subprocess, "run", pip_download)
    raw = load_movielens_100k(tmp_path)
    assert no_network == ["grouplens", "pip"]
    assert "recbole" in raw.source
    load_movielens_100k(tmp_path)
    assert no_network == ["grouplens", "pip"]


def test_offline_and_unfetchable_says_where_to_put_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_network: list[str]
) -> None:
    monkeypatch.setenv(movielens.OFFLINE_ENV, "1")
    with pytest.raises(RecliError) as caught:
        load_movielens_100k(tmp_path)
    message = str(caught.value)
    assert no_network == ["pip"]
    assert "u.data, u.item and u.user" in message
    assert str(tmp_path / "ml-100k") in message
    assert "\n" not in message


# --------------------------------------------------------------------------------------------
# A relative cache: read under the project root, shown as written
# --------------------------------------------------------------------------------------------
@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder, while the current directory is another one (with no cache of its own)."""
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(tmp_path)
    return root


@pytest.mark.usefixtures("tiny_ml100k")
def test_relative_cache_is_read_under_the_root(project: Path, no_network: list[str]) -> None:
    placed = project / "cache" / "ml-100k"
    placed.mkdir(parents=True)
    (placed / "u.data").write_bytes(GROUPLENS_DATA)
    (placed / "u.item").write_bytes(GROUPLENS_ITEM)
    (placed / "u.user").write_bytes(GROUPLENS_USER)
    raw = load_movielens_100k(Path("cache"), project)
    assert_frame_equal(raw.items, EXPECTED_ML100K_ITEMS)
    assert no_network == []

    (placed / "u.user").unlink()
    with pytest.raises(RecliError) as caught:
        load_movielens_100k(Path("cache"), project)
    assert str(caught.value).startswith(f"{Path('cache/ml-100k')} lacks u.user")
    assert str(project) not in str(caught.value)


@pytest.mark.usefixtures("tiny_ml100k")
def test_relative_cache_fetches_under_the_root(
    monkeypatch: pytest.MonkeyPatch, project: Path, no_network: list[str]
) -> None:
    destinations: list[Path] = []

    def pip_download(command: list[str], **kwargs: object) -> object:
        destination = Path(command[command.index("-d") + 1])
        destinations.append(destination)
        make_wheel(destination / "recbole-1.2.1-py3-none-any.whl", b"x\n")
        return type("Completed", (), {"returncode": 0, "stdout": "", "stderr": ""})()

    monkeypatch.setenv(movielens.OFFLINE_ENV, "1")
    monkeypatch.setattr(movielens.subprocess, "run", pip_download)
    with pytest.raises(RecliError) as caught:
        load_movielens_100k(Path("cache"), project)
    assert destinations == [project / "cache" / "wheels"]
    # The fetched wheel fails the checksum: the message names it as the params spell the cache.
    wheel = Path("cache/wheels/recbole-1.2.1-py3-none-any.whl")
    assert str(caught.value).startswith(f"{wheel} is not the published MovieLens-100K")


def test_relative_cache_unfetchable_says_where_to_put_files_as_written(
    monkeypatch: pytest.MonkeyPatch, project: Path, no_network: list[str]
) -> None:
    monkeypatch.setenv(movielens.OFFLINE_ENV, "1")
    with pytest.raises(RecliError) as caught:
        load_movielens_100k(Path("cache"), project)
    assert no_network == ["pip"]
    assert str(caught.value).endswith(f"into {Path('cache/ml-100k')}/")
