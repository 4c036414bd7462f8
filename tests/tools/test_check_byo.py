"""The sparse bring-your-own check's data cut, on hand-built ratings with known answers: runs of
consecutive events in time order, near-equal lengths, ties in time not ordered by the file."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import check_byo  # noqa: E402  (a script, not a package: importable once scripts/ is on the path)


def _ratings(events: dict[str, list[tuple[str, int]]]) -> pl.DataFrame:
    rows = [
        {"userId": user, "movieId": item, "rating": "4.0", "timestamp": timestamp}
        for user, history in events.items()
        for item, timestamp in history
    ]
    return pl.DataFrame(rows)


def test_histories_are_cut_into_consecutive_runs_in_time_order() -> None:
    # user "1" has 10 events listed out of time order; runs of about 4 -> ceil(10/4) = 3 runs
    history = [(f"m{t}", t) for t in (5, 1, 9, 3, 7, 2, 10, 4, 8, 6)]
    runs = check_byo.sessionise(_ratings({"1": history, "2": [("a", 1), ("b", 2), ("c", 3)]}), 4)
    by_user = {
        user: sorted(zip(group["timestamp"], group["movieId"], strict=True))
        for (user,), group in runs.group_by("userId")
    }
    assert sorted(by_user) == ["1-0", "1-1", "1-2", "2-0"]
    times = {user: [t for t, _ in events] for user, events in by_user.items()}
    assert times["1-0"] == [1, 2, 3, 4]  # lengths 4, 3, 3: floor(position * 3 / 10)
    assert times["1-1"] == [5, 6, 7]
    assert times["1-2"] == [8, 9, 10]
    assert times["2-0"] == [1, 2, 3]
    assert runs.height == 13  # no event lost or repeated
    assert set(runs.columns) == {"userId", "movieId", "rating", "timestamp"}


def test_equal_timestamps_are_not_ordered_by_the_file() -> None:
    # 40 events at one timestamp, listed by item id: which items open the first run must depend
    # on the seed, not on the file's order
    ratings = _ratings({"u": [(f"{i:03d}", 100) for i in range(40)]})
    first_runs = {
        tuple(
            check_byo.sessionise(ratings, 10, seed=seed)
            .filter(pl.col("userId") == "u-0")["movieId"]
            .sort()
        )
        for seed in (1, 2, 3)
    }
    assert len(first_runs) == 3
    assert tuple(f"{i:03d}" for i in range(10)) not in first_runs


def test_runs_shorter_than_leave_last_out_needs_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        check_byo.sessionise(_ratings({"1": [("a", 1)]}), 2)


def test_text_only_reads_no_genres_and_keeps_titles_and_tags(tmp_path: Path) -> None:
    from pipeline.core.config import load_params
    from pipeline.data.source import load_source
    from pipeline.workflow import INPUT_DIR, override

    folder = tmp_path / "input"
    folder.mkdir()
    (folder / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,10,4.0,100\n1,20,3.0,200\n2,10,5.0,150\n"
    )
    (folder / "movies.csv").write_text(
        'movieId,title,genres\n10,"Heat (1995)",Action|Crime\n20,"Babe (1995)",Children|Drama\n'
    )
    (folder / "tags.csv").write_text("userId,movieId,tag,timestamp\n1,10,heist,100\n")
    (tmp_path / INPUT_DIR).mkdir(parents=True)
    for name in ("ratings.csv", "movies.csv", "tags.csv"):
        (tmp_path / INPUT_DIR / name).write_text((folder / name).read_text())
    read = {}
    for text_only in (False, True):
        params = override(load_params(), {"data": check_byo.data_params(folder, text_only)})
        read[text_only] = load_source(params.data, tmp_path).items.sort("item_id")
    assert read[False]["genres"].to_list() == [["Action", "Crime"], ["Children", "Drama"]]
    assert read[True]["genres"].to_list() == [[], []]
    assert read[True]["title"].to_list() == read[False]["title"].to_list()
    assert read[True]["tags"].to_list() == [["heist"], []]
