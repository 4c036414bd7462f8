"""Bring-your-own files' timestamps: one unit, converted to seconds in the reader and said
where converted; mixed units and values that are no time are refused with the setting."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from byo_files import error_message, write
from polars.testing import assert_frame_equal

from pipeline.core.config import FileColumns, FilesSource
from pipeline.core.sections import PreprocessConfig, SplitConfig
from pipeline.data.files import load_files
from pipeline.preprocess import run

# 2021-01-01 00:00:00 UTC plus half a second, and a day later, in each unit.
NEW_YEAR = 1609459200


def timestamp_events(tmp_path: Path, stamps: list[str], users: list[str] | None = None) -> Path:
    users = users or ["u1"] * len(stamps)
    rows = "".join(f"{user},1,4,{stamp}\n" for user, stamp in zip(users, stamps, strict=True))
    return write(tmp_path / "events.csv", "user_id,item_id,rating,timestamp\n" + rows)


def items_file(tmp_path: Path) -> Path:
    return write(tmp_path / "items.csv", "item_id,title,genres\n1,A,\n")


@pytest.mark.parametrize(
    ("unit", "name", "factor"),
    [("ms", "milliseconds", 10**3), ("us", "microseconds", 10**6), ("ns", "nanoseconds", 10**9)],
)
def test_sub_second_units_are_told_by_size_and_converted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], unit: str, name: str, factor: int
) -> None:
    stamps = [str(NEW_YEAR * factor + factor // 2), str((NEW_YEAR + 86400) * factor)]
    events = timestamp_events(tmp_path, stamps)
    raw = load_files(FilesSource(interactions=events, items=items_file(tmp_path)))
    assert raw.interactions["timestamp"].to_list() == [NEW_YEAR, NEW_YEAR + 86400]
    assert capsys.readouterr().err == (
        f"data: {events}: column 'timestamp' holds {name} since 1970 (2021-01-01 to 2021-01-02), "
        "told by their size (set data.files.timestamp_unit if that is wrong): "
        "converted to seconds\n"
    )


def test_parquet_milliseconds_are_converted(tmp_path: Path) -> None:
    events = tmp_path / "events.parquet"
    pl.DataFrame(
        {"user_id": ["a", "b"], "item_id": ["1", "1"], "timestamp": [NEW_YEAR * 1000, None]}
    ).write_parquet(events)
    cfg = FilesSource(
        interactions=events, items=items_file(tmp_path), columns=FileColumns(rating=None)
    )
    assert load_files(cfg).interactions["timestamp"].to_list() == [NEW_YEAR, None]


def test_seconds_are_kept_without_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = timestamp_events(tmp_path, ["874965758", "12.7", "", "2021-01-01"])
    raw = load_files(FilesSource(interactions=events, items=items_file(tmp_path)))
    assert raw.interactions["timestamp"].to_list() == [874965758, 12, None, NEW_YEAR]
    assert capsys.readouterr().err == ""


def test_collapsed_order_within_a_second_is_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ms = NEW_YEAR * 1000
    # u1's first two events were 300 ms apart and now share a second; u2's event shares that
    # second with u1's, which changes no one's order; u1's third event was already tied.
    events = timestamp_events(
        tmp_path, [str(ms + 100), str(ms + 400), str(ms + 400), str(ms)], ["u1", "u1", "u1", "u2"]
    )
    load_files(FilesSource(interactions=events, items=items_file(tmp_path)))
    assert (
        capsys.readouterr()
        .err.rstrip("\n")
        .endswith(
            "converted to seconds; 3 events now share their second with an event of the same user "
            "at another instant (preprocess orders such ties by preprocess.split.seed)"
        )
    )


def test_mixed_units_are_refused_with_the_setting(tmp_path: Path) -> None:
    events = timestamp_events(tmp_path, [str(NEW_YEAR), "5", str(NEW_YEAR * 10**6)])
    message = error_message(FilesSource(interactions=events, items=items_file(tmp_path)))
    assert message == (
        f"{events}: column 'timestamp' mixes time units: {NEW_YEAR} (line 2) looks like seconds, "
        f"{NEW_YEAR * 10**6} (line 4) looks like microseconds: make the column one unit, or set "
        "data.files.timestamp_unit to its unit (s, ms, us or ns; s keeps every number as it is)"
    )


def test_told_unit_converts_every_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A zero placeholder among milliseconds is "mixed" by size; the setting settles it.
    events = timestamp_events(tmp_path, ["0", str(NEW_YEAR * 1000 + 999)])
    cfg = FilesSource(interactions=events, items=items_file(tmp_path), timestamp_unit="ms")
    assert load_files(cfg).interactions["timestamp"].to_list() == [0, NEW_YEAR]
    assert "as data.files.timestamp_unit says: converted to seconds" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["inf", "-inf", "1e400", "9223372036854775808"])
def test_timestamps_that_are_no_time_are_refused(tmp_path: Path, value: str) -> None:
    events = timestamp_events(tmp_path, [str(NEW_YEAR), value])
    message = error_message(FilesSource(interactions=events, items=items_file(tmp_path)))
    assert message == (
        f"{events}: column 'timestamp' has {value!r}, not a time (line 3): fix the file, "
        "or set data.files.columns.timestamp to a numeric column or null"
    )


def test_parquet_infinite_timestamp_is_refused(tmp_path: Path) -> None:
    events = tmp_path / "events.parquet"
    pl.DataFrame({"user_id": ["a"], "item_id": ["1"], "timestamp": [float("inf")]}).write_parquet(
        events
    )
    cfg = FilesSource(
        interactions=events, items=items_file(tmp_path), columns=FileColumns(rating=None)
    )
    assert "not a time (line 2)" in error_message(cfg)


def test_splits_see_seconds_whatever_unit_the_file_had(tmp_path: Path) -> None:
    """The conversion happens in the reader, so splits, interest periods and everything after
    them see the same seconds from a millisecond file as from a second one."""
    users = [f"u{user}" for user in range(4) for _ in range(5)]
    items = [str(item) for _ in range(4) for item in range(5)]
    seconds = [NEW_YEAR + 3600 * index for index in range(20)]
    items_path = write(
        tmp_path / "items.csv", "item_id,title,genres\n" + "".join(f"{i},T{i},\n" for i in range(5))
    )
    processed = {}
    for unit, factor in (("s", 1), ("ms", 1000)):
        rows = "".join(
            f"{user},{item},4,{stamp * factor}\n"
            for user, item, stamp in zip(users, items, seconds, strict=True)
        )
        events = write(tmp_path / f"events_{unit}.csv", "user_id,item_id,rating,timestamp\n" + rows)
        raw = load_files(FilesSource(interactions=events, items=items_path))
        for strategy in ("leave_last_out", "temporal"):
            cfg = PreprocessConfig(
                min_user_interactions=3,
                cold_item_fraction=0.0,
                split=SplitConfig(strategy=strategy),
            )
            processed[unit, strategy] = run(raw, cfg)
    for strategy in ("leave_last_out", "temporal"):
        seconds_run, ms_run = processed["s", strategy], processed["ms", strategy]
        for name in ("train", "validation", "test"):
            assert_frame_equal(getattr(ms_run, name), getattr(seconds_run, name))
        kept = pl.concat([seconds_run.train, seconds_run.validation, seconds_run.test])
        assert set(kept["timestamp"].to_list()) <= set(seconds)
