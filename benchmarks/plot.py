"""Plot the committed benchmark results: PNGs in `benchmarks/plots/` from `metrics/bench_*.json`.

Nothing is measured here; every point comes from a metrics file a benchmark wrote:

- `scale_seconds.png`, `scale_memory.png` (`metrics/bench_scale.json`): each stage's wall time
  and peak memory against events, on log-log axes, with the scaling targets and a slope-1 guide;
- `sequence_validation.png` (`metrics/bench_sequence.json`): validation NDCG@10 per epoch of
  every model and seed, on both splits, against RecBole's published SASRec and the bar;
- `recommend_runs.png` (`metrics/bench_recommend.json`): every timed run of the baseline,
  `recli recommend` and `recli search`, in the order they ran, with medians and targets.

A plot whose metrics file is missing is skipped with a note. The output depends only on the
metrics files and the matplotlib version: matplotlib's default style, a fixed size and resolution,
and no timestamp or software tag in the PNGs. Usage, from the repository root (about 2 s):

    python benchmarks/plot.py
    python benchmarks/plot.py --metrics path/to/metrics --out /tmp/plots
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.style
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator

REPO = Path(__file__).resolve().parents[1]
DPI = 100
TARGET_SIZE = 10_000_000
"""The size the time target is set at (`max_total_minutes_at_10M`)."""
PNG_METADATA: dict[str, Any] = {"Software": None}
"""Drop matplotlib's version tag, so the same figure gives the same bytes."""

SEQUENCE_VARIANTS = {"sasrec": "SASRec", "sasrec_text": "recli sequence model"}
SEQUENCE_PROTOCOLS = {
    "reference": "reference split (no cold items)",
    "default": "the pipeline's split",
}


def read(metrics: Path, name: str) -> dict[str, Any] | None:
    path = metrics / name
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def events_label(n: float) -> str:
    """1e5 -> 0.1M, 1e7 -> 10M."""
    millions = n / 1e6
    return f"{millions:g}M"


def number_label(value: float) -> str:
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, bbox_inches="tight", metadata=PNG_METADATA)
    return path


# --------------------------------------------------------------------------------------------
# bench_scale.json
# --------------------------------------------------------------------------------------------
def _scale_series(data: dict[str, Any], key: str) -> dict[str, tuple[list[float], list[float]]]:
    """Per stage (and `total`), the sizes it completed at and its `key` there."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    sizes = sorted(data.get("sizes") or [], key=lambda size: size["n_events"])
    for stage in data.get("stages") or []:
        points = [
            (size["n_events"], size["stages"][stage][key])
            for size in sizes
            if (size.get("stages") or {}).get(stage, {}).get("status") == "ok"
        ]
        if points:
            series[stage] = ([x for x, _ in points], [y for _, y in points])
    total_key = "seconds" if key == "seconds" else "peak_rss_mib"
    totals = [
        (size["n_events"], size["totals"][total_key])
        for size in sizes
        if (size.get("totals") or {}).get("complete") and size.get("all_stages")
    ]
    if totals:
        series["total"] = ([x for x, _ in totals], [y for _, y in totals])
    return series


def _scale_title(data: dict[str, Any], what: str) -> str:
    machine = data.get("machine") or {}
    codes = sorted({size.get("code", "?") for size in data.get("sizes") or []})
    cores = machine.get("cpus_usable", machine.get("cpu_count", "?"))
    slope_target = (data.get("targets") or {}).get("max_slope")
    target = f" (target: no slope above {slope_target:g})" if slope_target else ""
    return (
        f"{what} against events, log-log{target}\n"
        f"{machine.get('cpu_model', 'unknown CPU')}, {cores} cores, "
        f"accelerator {machine.get('accelerator', 'unknown')}; code {', '.join(codes)}"
    )


def _log_log(ax: Axes, xs: list[float], unit: str) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(FixedLocator(xs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: events_label(x)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: number_label(y)))
    ax.set_xlabel("events (synthetic data)")
    ax.set_ylabel(unit)
    ax.grid(True, which="major", alpha=0.3)
    ax.set_xlim(min(xs) / 1.6, max(xs) * 1.6)


def _scale_plot(data: dict[str, Any], key: str, out: Path) -> Path | None:
    series = _scale_series(data, key)
    if not series:
        return None
    slopes = data.get("slopes") or {}
    targets = data.get("targets") or {}
    all_sizes = sorted({x for xs, _ in series.values() for x in xs})
    figure = Figure(figsize=(8.5, 5.2))
    ax = figure.add_subplot()
    colours = matplotlib.colormaps["tab10"]
    total_name = "all stages" if key == "seconds" else "largest stage peak"
    for index, (stage, (xs, ys)) in enumerate(series.items()):
        slope = (slopes.get(stage) or {}).get(key)
        name = total_name if stage == "total" else stage
        label = name + (f" (slope {slope:.2f})" if isinstance(slope, int | float) else "")
        if stage == "total":
            ax.plot(xs, ys, "o-", color="black", linewidth=2.5, label=label, zorder=3)
        else:
            ax.plot(xs, ys, "o-", color=colours(index % 10), linewidth=1.3, label=label)
    if "total" in series and key == "seconds" and len(all_sizes) > 1:
        (x0, *_), (y0, *_) = series["total"]
        guide = [x0, max(all_sizes)]
        ax.plot(
            guide,
            [y0 * x / x0 for x in guide],
            ":",
            color="grey",
            label=f"linear in events from {events_label(x0)}",
        )
    if key == "seconds" and targets.get("max_total_minutes_at_10M"):
        limit = 60 * targets["max_total_minutes_at_10M"]
        ax.plot([TARGET_SIZE], [limit], "_", color="red", markersize=28, markeredgewidth=2)
        ax.annotate(
            f"target at 10M: all stages ≤ {targets['max_total_minutes_at_10M']:g} min",
            (TARGET_SIZE, limit),
            xytext=(-14, 0),
            textcoords="offset points",
            ha="right",
            va="center",
            color="red",
            fontsize=9,
        )
    if key == "peak_rss_mib" and targets.get("max_peak_gib"):
        limit = 1024 * targets["max_peak_gib"]
        ax.axhline(limit, color="red", linestyle="--", linewidth=1)
        ax.annotate(
            f"target: every stage ≤ {targets['max_peak_gib']:g} GiB",
            (min(all_sizes), limit),
            xytext=(0, 4),
            textcoords="offset points",
            color="red",
            fontsize=9,
        )
    what = "Wall time per stage" if key == "seconds" else "Peak resident memory per stage"
    _log_log(ax, all_sizes, "wall seconds" if key == "seconds" else "peak MiB")
    ax.set_title(_scale_title(data, what), fontsize=10)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=9, frameon=False)
    return save(figure, out)


def plot_scale(metrics: Path, out: Path) -> list[Path]:
    data = read(metrics, "bench_scale.json")
    if data is None:
        return []
    written = [
        _scale_plot(data, "seconds", out / "scale_seconds.png"),
        _scale_plot(data, "peak_rss_mib", out / "scale_memory.png"),
    ]
    return [path for path in written if path is not None]


# --------------------------------------------------------------------------------------------
# bench_sequence.json
# --------------------------------------------------------------------------------------------
def plot_sequence(metrics: Path, out: Path) -> list[Path]:
    data = read(metrics, "bench_sequence.json")
    protocols = (data or {}).get("protocols") or {}
    if not protocols:
        return []
    figure = Figure(figsize=(11, 4.6))
    axes = figure.subplots(1, len(protocols), sharey=True, squeeze=False)[0]
    colours = {"sasrec": "tab:blue", "sasrec_text": "tab:orange"}
    styles = ["-", "--", ":", "-."]
    reference = (data or {}).get("reference") or {}
    bar = (data or {}).get("bar_validation_ndcg@10")
    for ax, (protocol, entry) in zip(axes, protocols.items(), strict=True):
        for variant, name in SEQUENCE_VARIANTS.items():
            runs = ((entry or {}).get(variant) or {}).get("runs") or {}
            for number, (seed, run) in enumerate(runs.items()):
                log = [row for row in run.get("log") or [] if "validation_ndcg@10" in row]
                if not log:
                    continue
                epochs = [row["epoch"] for row in log]
                scores = [row["validation_ndcg@10"] for row in log]
                ax.plot(
                    epochs,
                    scores,
                    styles[number % len(styles)],
                    color=colours.get(variant, "grey"),
                    linewidth=1.2,
                    label=f"{name}, seed {seed}",
                )
                best = run.get("best_epoch")
                if best in epochs:
                    ax.plot(best, scores[epochs.index(best)], "o", color=colours.get(variant))
        if protocol == "reference":
            if isinstance(reference.get("validation_ndcg@10"), int | float):
                ax.axhline(reference["validation_ndcg@10"], color="black", linewidth=1)
                ax.annotate(
                    f"RecBole 1.2.1 SASRec: {reference['validation_ndcg@10']:.3f}",
                    (0, reference["validation_ndcg@10"]),
                    xycoords=("axes fraction", "data"),
                    xytext=(4, 4),
                    textcoords="offset points",
                    fontsize=9,
                )
            if isinstance(bar, int | float):
                ax.axhline(bar, color="red", linestyle="--", linewidth=1)
                ax.annotate(
                    f"bar: ≥ {bar:.3f}",
                    (0, bar),
                    xycoords=("axes fraction", "data"),
                    xytext=(4, -12),
                    textcoords="offset points",
                    color="red",
                    fontsize=9,
                )
        ax.set_title(SEQUENCE_PROTOCOLS.get(protocol, protocol), fontsize=10)
        ax.set_xlabel("epoch (dot: the best, whose weights are kept)")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("validation NDCG@10")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=2, fontsize=9, frameon=False)
    threads = (data or {}).get("threads")
    figure.suptitle(
        "Sequence models on MovieLens-100K, validation NDCG@10 per epoch"
        + (f" ({threads} torch thread{'s' if threads != 1 else ''})" if threads else ""),
        fontsize=11,
    )
    figure.subplots_adjust(bottom=0.27, top=0.86, wspace=0.06)
    return [save(figure, out / "sequence_validation.png")]


# --------------------------------------------------------------------------------------------
# bench_recommend.json
# --------------------------------------------------------------------------------------------
def plot_recommend(metrics: Path, out: Path) -> list[Path]:
    data = read(metrics, "bench_recommend.json")
    if not data or not data.get("recommend_ms"):
        return []
    figure = Figure(figsize=(8.5, 4.6))
    ax = figure.add_subplot()
    rows = [
        ("baseline_ms", "baseline_ms_median", "python -c 'import typer, rich.table'", "tab:grey"),
        ("recommend_ms", "recommend_ms_median", "recli recommend", "tab:blue"),
        ("search_ms", "search_ms_median", "recli search (cold)", "tab:orange"),
    ]
    for key, median_key, label, colour in rows:
        times = data.get(key) or []
        if not times:
            continue
        runs = range(1, len(times) + 1)
        median = data.get(median_key)
        ax.plot(runs, times, "o", color=colour, markersize=4, label=f"{label}: median {median} ms")
        if isinstance(median, int | float):
            ax.axhline(median, color=colour, linewidth=1)
    baseline = data.get("baseline_ms_median")
    ratio = data.get("target_ratio")
    if isinstance(baseline, int | float) and isinstance(ratio, int | float):
        limit = baseline * ratio
        ax.axhline(limit, color="tab:blue", linestyle="--", linewidth=1)
        ax.plot([], [], "--", color="tab:blue", label=f"target: recommend ≤ {ratio:g} × baseline")
    search_target = data.get("search_target_ms")
    if isinstance(search_target, int | float):
        ax.axhline(search_target, color="tab:orange", linestyle="--", linewidth=1)
        ax.plot([], [], "--", color="tab:orange", label=f"target: search ≤ {search_target:g} ms")
    ax.set_yscale("log")
    ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: number_label(y)))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda y, _: number_label(y)))
    ax.set_xlabel("run (the commands take turns, so drift on a busy machine hits each alike)")
    ax.set_ylabel("wall ms, process start to exit")
    ax.grid(True, which="both", alpha=0.2)
    environment = data.get("environment") or {}
    catalogue = data.get("catalogue") or {}
    ax.set_title(
        f"Start-up from a new process, {data.get('runs', '?')} runs of each command\n"
        f"{environment.get('cpu', 'unknown CPU')}, {environment.get('cpus', '?')} cores; "
        f"{count(catalogue.get('users'))} users, {count(catalogue.get('items'))} items",
        fontsize=10,
    )
    ax.legend(loc="upper left", bbox_to_anchor=(0, -0.14), ncol=2, fontsize=9, frameon=False)
    return [save(figure, out / "recommend_runs.png")]


PLOTS: dict[str, Callable[[Path, Path], list[Path]]] = {
    "bench_scale.json": plot_scale,
    "bench_sequence.json": plot_sequence,
    "bench_recommend.json": plot_recommend,
}


def render(metrics: Path, out: Path) -> list[Path]:
    """Every plot whose metrics file is there; returns the files written."""
    written: list[Path] = []
    with matplotlib.style.context("default"):
        for name, plot in PLOTS.items():
            paths = plot(metrics, out)
            if not paths:
                print(f"skipped: {metrics / name} is missing or holds nothing to plot")
            written.extend(paths)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", type=Path, default=REPO / "metrics")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "plots")
    args = parser.parse_args(argv)
    for path in render(args.metrics, args.out):
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        print(f"wrote {shown}")


if __name__ == "__main__":
    main()
