"""The benchmarks' plots (`benchmarks/plot.py`): drawn from the committed metrics files, the same
bytes every time, and nothing but a note where a metrics file is missing."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_plot", REPO / "benchmarks" / "plot.py")
assert _spec is not None and _spec.loader is not None
bench_plot = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_plot)

PLOTS = {
    "bench_scale.json": ["scale_seconds.png", "scale_memory.png"],
    "bench_sequence.json": ["sequence_validation.png"],
    "bench_recommend.json": ["recommend_runs.png"],
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def metrics_copy(tmp_path: Path) -> Path:
    """The committed benchmark metrics files that are there, in a folder of their own."""
    target = tmp_path / "metrics"
    target.mkdir()
    present = [name for name in PLOTS if (REPO / "metrics" / name).is_file()]
    if not present:
        pytest.skip("no committed benchmark metrics")
    for name in present:
        shutil.copy(REPO / "metrics" / name, target / name)
    return target


def test_every_plot_is_drawn_the_same_twice(metrics_copy: Path, tmp_path: Path) -> None:
    expected = sorted(
        png for name, pngs in PLOTS.items() if (metrics_copy / name).is_file() for png in pngs
    )
    first = bench_plot.render(metrics_copy, tmp_path / "first")
    second = bench_plot.render(metrics_copy, tmp_path / "second")
    assert sorted(path.name for path in first) == expected
    for one, other in zip(first, second, strict=True):
        data = one.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and b"Software" not in data
        assert data == other.read_bytes(), one.name


def test_missing_metrics_draw_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_plot.render(tmp_path, tmp_path / "plots") == []
    assert not (tmp_path / "plots").exists()
    assert capsys.readouterr().out.count("skipped") == len(PLOTS)


def test_a_partial_scale_run_plots_what_it_measured(tmp_path: Path) -> None:
    # A stopped run: one size, one stage done. Nothing to fit a slope to, but a point to plot.
    partial = {
        "stages": ["preprocess", "finetune"],
        "sizes": [
            {
                "n_events": 100_000,
                "all_stages": False,
                "stages": {
                    "preprocess": {"status": "ok", "seconds": 1.0, "peak_rss_mib": 100.0},
                    "finetune": {"status": "failed", "seconds": 2.0, "peak_rss_mib": 200.0},
                },
                "totals": {"seconds": 3.0, "peak_rss_mib": 200.0, "complete": False},
            }
        ],
        "slopes": {"preprocess": {"seconds": None, "peak_rss_mib": None}},
    }
    assert bench_plot._scale_series(partial, "seconds") == {"preprocess": ([100_000], [1.0])}
    metrics = tmp_path / "partial"
    metrics.mkdir()
    (metrics / "bench_scale.json").write_text(json.dumps(partial), encoding="utf-8")
    written = bench_plot.plot_scale(metrics, tmp_path / "plots")
    assert [path.name for path in written] == PLOTS["bench_scale.json"]
