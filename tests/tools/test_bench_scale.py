"""The scaling benchmark's parts that need no stage run (`benchmarks/scaling/`): the synthetic
data (shape, skew, signal, determinism, and that the project's own files loader reads it back
whole) and the log-log slope and target arithmetic behind its report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from scaling.report import markdown_table, text_table
from scaling.runner import bench
from scaling.summary import index_verdict, judge, loglog_slope, slopes, totals
from scaling.synthetic import MIN_EVENTS, scale_of, synthetic_events, write_inputs

from pipeline.core.config import DataConfig
from pipeline.core.sections import PreprocessConfig
from pipeline.data.source import load_source
from pipeline.preprocess import clean
from pipeline.workflow import STAGES

N_EVENTS = 20_000


@pytest.fixture(scope="module")
def generated() -> tuple[pl.DataFrame, pl.DataFrame]:
    return synthetic_events(N_EVENTS, seed=42)


def test_exact_counts_and_the_documented_scale(
    generated: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    interactions, items = generated
    n_users, n_items = scale_of(N_EVENTS)
    assert interactions.height == N_EVENTS
    assert interactions["user_id"].n_unique() == n_users == N_EVENTS // 100
    assert items.height == n_items == items["item_id"].n_unique()
    assert interactions["item_id"].is_in(items["item_id"].implode()).all()
    assert scale_of(10_000_000) == (100_000, 30_042)
    assert scale_of(1_000_000) == (10_000, 9_500)
    with pytest.raises(ValueError, match="at least"):
        synthetic_events(10, seed=7)


def test_every_user_has_five_distinct_items(generated: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    interactions, _ = generated
    per_user = interactions.group_by("user_id").len()["len"]
    assert per_user.min() >= 5
    assert per_user.max() > 3 * per_user.median()  # varied activity: a long tail of heavy users
    assert interactions.select(pl.struct("user_id", "item_id").is_unique().all()).item()
    assert set(interactions["rating"].unique().to_list()) == {1, 2, 3, 4, 5}


def test_item_popularity_is_skewed(generated: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    interactions, items = generated
    counts = interactions.group_by("item_id").len().sort("len", descending=True)["len"]
    top_share = counts.head(items.height // 10).sum() / interactions.height
    assert top_share > 0.4


def test_timestamps_increase_within_a_user(generated: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    interactions, _ = generated
    steps = interactions.select(
        pl.col("user_id"), pl.col("timestamp").diff().over("user_id").alias("step")
    ).drop_nulls()
    assert steps.height == N_EVENTS - interactions["user_id"].n_unique()
    assert (steps["step"] > 0).all()


def test_users_prefer_a_few_topics(generated: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    interactions, items = generated
    topics = items.select("item_id", pl.col("genres").list.first().alias("topic"))
    by_user = (
        interactions.join(topics, on="item_id")
        .group_by("user_id", "topic")
        .len()
        .sort("len", descending=True)
        .group_by("user_id")
        .agg((pl.col("len").head(3).sum() / pl.col("len").sum()).alias("top3"))
    )
    # 3 of 16 topics would hold about a fifth of a user's events if users had no preference.
    assert by_user["top3"].mean() > 0.5
    assert items["description"].str.split(" ").list.len().min() >= 8
    assert items["title"].str.contains(r"\(\d{4}\)$").all()


def test_deterministic_for_a_seed(generated: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    again = synthetic_events(N_EVENTS, seed=42)
    assert_frame_equal(generated[0], again[0])
    assert_frame_equal(generated[1], again[1])
    other = synthetic_events(N_EVENTS, seed=43)
    assert not other[0].equals(generated[0])


def test_written_files_read_back_whole(
    generated: tuple[pl.DataFrame, pl.DataFrame], tmp_path: Path
) -> None:
    interactions, items = generated
    data = DataConfig.model_validate(write_inputs(interactions, items, tmp_path))
    assert data.source == "files"
    assert (tmp_path / "data" / "input" / "interactions.csv").exists()
    raw = load_source(data, tmp_path)
    assert raw.interactions.height == N_EVENTS
    assert raw.items.height == items.height
    assert raw.items["genres"].to_list() == items["genres"].to_list()
    assert raw.items["description"].to_list() == items["description"].to_list()
    assert raw.items["year"].null_count() == 0
    _, kept, counts = clean(raw, PreprocessConfig())
    dropped = {key: value for key, value in counts.items() if key.startswith("dropped_")}
    assert dropped and not any(dropped.values()), dropped
    assert kept.height == items["item_id"].is_in(interactions["item_id"].implode()).sum()


def test_loglog_slope_on_known_powers() -> None:
    sizes = [1e5, 1e6, 1e7]
    assert loglog_slope(sizes, [3 * n for n in sizes]) == pytest.approx(1.0)
    assert loglog_slope(sizes, [n**2 / 1e9 for n in sizes]) == pytest.approx(2.0)
    assert loglog_slope(sizes, [5.0, 5.0, 5.0]) == pytest.approx(0.0)
    assert loglog_slope([1e5, 1e6], [2.0, 2.0 * 10**0.5]) == pytest.approx(0.5)
    assert loglog_slope([1e5], [1.0]) is None
    assert loglog_slope([1e5, 1e6], [1.0, 0.0]) is None  # one usable point


def _run(n_events: int, minutes_each: float, mib: float, stages: tuple[str, ...]) -> dict[str, Any]:
    records = {
        stage: {"status": "ok", "seconds": minutes_each * 60, "peak_rss_mib": mib}
        for stage in stages
    }
    return {
        "n_events": n_events,
        "all_stages": stages == STAGES,
        "stages": records,
        "totals": totals(records, stages),
    }


def test_slopes_and_targets_from_runs() -> None:
    stages = STAGES
    each = 40.0 / len(stages)  # minutes per stage at 10M: 40 in all, within the 45 target
    runs = [_run(1_000_000, each / 10, 1024, stages), _run(10_000_000, each, 4096, stages)]
    per_stage = slopes(runs, stages)
    assert per_stage["finetune"]["seconds"] == pytest.approx(1.0)
    assert per_stage["total"]["peak_rss_mib"] == pytest.approx(0.602, abs=1e-3)
    verdict = judge(runs, per_stage)
    assert verdict["measured"]["max_total_minutes_at_10M"] == pytest.approx(40.0)
    assert verdict["meets"] == {
        "max_total_minutes_at_10M": True,
        "max_peak_gib": True,
        "max_slope": True,
        "index_beats_exact": None,  # no size measured the index
    }
    slow = [_run(1_000_000, each / 10, 1024, stages), _run(10_000_000, 2 * each, 16384, stages)]
    assert judge(slow, slopes(slow, stages))["meets"] == {
        "max_total_minutes_at_10M": False,
        "max_peak_gib": False,
        "max_slope": False,
        "index_beats_exact": None,
    }
    one = [_run(100_000, 0.1, 500, ("preprocess",))]
    unmeasured = judge(one, slopes(one, ("preprocess",)))["meets"]
    assert unmeasured == {
        "max_total_minutes_at_10M": None,
        "max_peak_gib": True,
        "max_slope": None,
        "index_beats_exact": None,
    }


def _index(ann_ms: float, exact_ms: float, recall: float) -> dict[str, Any]:
    return {
        "ann_query_ms_median": ann_ms,
        "exact_query_ms_median": exact_ms,
        "ann_recall@10": recall,
        "recall_target": 0.98,
    }


def test_the_index_target_needs_a_faster_query_at_the_recall_target_at_every_size() -> None:
    runs = [_run(100_000, 1, 512, STAGES), _run(1_000_000, 1, 512, STAGES)]
    runs[0]["index"], runs[1]["index"] = _index(0.1, 0.2, 0.99), _index(0.5, 2.0, 0.985)
    measured, met = index_verdict(runs)
    assert met is True
    assert measured == {
        "100000": {"speedup": 2.0, "recall@10": 0.99},
        "1000000": {"speedup": 4.0, "recall@10": 0.985},
    }
    runs[1]["index"] = _index(0.5, 2.0, 0.97)  # faster, but under the target
    assert index_verdict(runs)[1] is False
    runs[1]["index"] = _index(3.0, 2.0, 1.0)  # exact, but slower than exact search
    assert index_verdict(runs)[1] is False
    assert index_verdict([_run(100_000, 1, 512, STAGES)]) == ({}, None)


def test_the_product_shape_is_timed_at_the_size_closest_to_60k() -> None:
    stages = STAGES
    each = 12.0 / len(stages)  # minutes per stage: 12 in all, within the 15 target
    runs = [_run(20_000, each / 3, 512, stages), _run(50_000, each, 1024, stages)]
    verdict = judge(runs, slopes(runs, stages), shape="products")
    assert list(verdict["targets"]) == [
        "max_total_minutes_at_60k",
        "max_peak_gib",
        "max_slope",
        "index_beats_exact",
    ]
    assert verdict["targets"]["max_total_minutes_at_60k"] == 15
    assert verdict["measured"]["max_total_minutes_at_60k"] == pytest.approx(12.0)
    assert verdict["measured"]["max_total_minutes_at_60k_events"] == 50_000
    assert verdict["meets"]["max_total_minutes_at_60k"] is True
    slow = [_run(60_000, 2 * each, 1024, stages), _run(200_000, each, 1024, stages)]
    assert judge(slow, slopes(slow, stages), shape="products")["meets"] == {
        "max_total_minutes_at_60k": False,
        "max_peak_gib": True,
        "max_slope": True,
        "index_beats_exact": None,
    }
    # The closest size ran only some stages: the time target is not measured, not judged elsewhere.
    partial = [_run(60_000, 0.1, 500, ("preprocess",)), _run(100_000, each, 1024, stages)]
    verdict = judge(partial, slopes(partial, stages), shape="products")
    assert verdict["meets"]["max_total_minutes_at_60k"] is None
    assert verdict["measured"]["max_total_minutes_at_60k_events"] is None


def test_tables_name_every_stage_and_size() -> None:
    stages = ("preprocess", "factorize")
    runs = [_run(20_000, 0.1, 100, stages), _run(50_000, 0.2, 120, stages)]
    report = {"stages": list(stages), "sizes": runs, "slopes": slopes(runs, stages)}
    markdown = markdown_table(report).splitlines()
    assert markdown[0] == "| stage | 20k s | 20k MiB | 50k s | 50k MiB | slope s | slope MiB |"
    assert [line.split(" | ")[0] for line in markdown[2:]] == [
        "| preprocess",
        "| factorize",
        "| total",
    ]
    assert "0.76" in markdown[2]  # log(2) / log(2.5)
    assert len(text_table(report).splitlines()) == 4


def test_on_the_ray_backend_the_driver_is_judged_at_10m() -> None:
    runs = [_run(10_000_000, 1, 1536, STAGES)]
    verdict = judge(runs, slopes(runs, STAGES), backend="ray")
    assert verdict["targets"]["max_driver_gib_at_10M"] == 2
    assert verdict["measured"]["max_driver_gib_at_10M"] == 1.5
    assert verdict["meets"]["max_driver_gib_at_10M"] is True
    runs = [_run(10_000_000, 1, 3072, STAGES)]
    heavy = judge(runs, slopes(runs, STAGES), backend="ray")
    assert heavy["meets"]["max_driver_gib_at_10M"] is False
    assert "max_driver_gib_at_10M" not in judge(runs, slopes(runs, STAGES))["targets"]


@pytest.mark.slow
def test_a_ray_run_records_the_driver_and_its_workers_beside_the_local_report(
    tmp_path: Path,
) -> None:
    # A real head node started by the benchmark, and the first stage run on it.
    out = tmp_path / "bench_scale.json"
    out.write_text(json.dumps({"backend": "local", "sizes": []}), encoding="utf-8")
    report = bench(
        [MIN_EVENTS], out, tmp_path / "work", stages=["preprocess"], backend="ray", workers=1
    )
    record = report["sizes"][0]["stages"]["preprocess"]
    assert record["status"] == "ok", record
    assert record["workers_peak_rss_mib"] > 0 and record["workers_seen"] >= 1
    assert record["events_per_second_per_worker"] > 0
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["backend"] == "local"  # the local report is kept
    assert written["ray"]["backend"] == "ray" and written["ray"]["workers"] == 1
    assert written["ray"]["sizes"][0]["stages"]["preprocess"] == record
