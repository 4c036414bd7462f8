"""Benchmark `recli recommend` (wall time against the typer + rich floor, and the query alone)
and `recli search` from a cold start (target: at most 2 s).

The target: `recli recommend USER_ID`, timed from process start to exit, takes at most 1.3 × the
time of `python -c "import typer, rich.table"` (the libraries every command needs, so a floor no
CLI built on them can beat). Medians of interleaved runs, so drift on a busy machine hits both.
For reference it also times a bare Typer command that prints a 10-row rich table: the share of
the difference that any Typer + rich CLI pays (building a Console, the command tree, rendering).

Usage, from the repository root (after `dvc repro`, or on any artifacts folder):

    python benchmarks/recommend.py                     # data/, 15 runs of each command
    python benchmarks/recommend.py --artifacts /tmp/tiny --runs 25 --users 500
    python benchmarks/recommend.py --out metrics/bench_recommend.json   # (the default)

It prints a small table and writes JSON to `--out`: the two medians and their ratio, the user
queried (the catalogue's first with history), and in-process timings over many users (`--users`) of
`recli.serve.Served.recommend`, without Python start-up and imports: once with a fresh `Served`
per query (open the catalogue, map the index, query: what a CLI process does) and once on one open
`Served` (the query alone), and what the tamper check (`recli.integrity`) costs each command.

Before timing, it compiles recli's modules to bytecode (`compileall`), as `pip install` does:
with `PYTHONDONTWRITEBYTECODE` set, Python would otherwise recompile them on every run and the
benchmark would time the compiler. `--no-compile` skips that.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from recli import contract, integrity, serve

BASELINE = [sys.executable, "-c", "import typer, rich.table"]
# For reference only: what any Typer command that prints a 10-row rich table pays (a Console, a
# command tree, rendering), so the report can tell recli's own cost from the framework's.
FLOOR = [
    sys.executable,
    "-c",
    "import typer\n"
    "from rich.console import Console\n"
    "from rich.table import Table\n"
    "app = typer.Typer()\n"
    "@app.command()\n"
    "def show(name: str) -> None:\n"
    "    table = Table('#', 'title', 'score')\n"
    "    for i in range(10):\n"
    "        table.add_row(str(i), f'{name} {i}', f'{i / 3:.3f}')\n"
    "    Console().print(table)\n"
    "app()",
    "film",
]
TARGET_RATIO = 1.3
SEARCH_TARGET_MS = 2000.0
"""`recli search` from a cold start (a new process, the encoder read from disk): at most 2 s."""
SEARCH_QUERY = "funny space adventure with robots"


def _wall_ms(command: list[str]) -> float:
    started = time.perf_counter()
    process = subprocess.run(command, capture_output=True, text=True)
    elapsed = 1000 * (time.perf_counter() - started)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{process.stderr}")
    return elapsed


def time_commands(artifacts: Path, user_id: str, k: int, runs: int) -> dict[str, list[float]]:
    recli = [sys.executable, "-m", "recli", "--artifacts", str(artifacts)]
    recommend = [*recli, "recommend", user_id, "-k", str(k)]
    search = [*recli, "search", SEARCH_QUERY, "-k", str(k)]
    commands = {
        "baseline": BASELINE,
        "recommend": recommend,
        "typer_table_floor": FLOOR,
        "search": search,
    }
    for command in commands.values():  # warm the file cache; not counted
        _wall_ms(command)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            times[name].append(_wall_ms(command))
    return times


def time_queries(artifacts: Path, users: list[str], k: int) -> dict[str, float]:
    fresh, warm = [], []
    for user_id in users:
        started = time.perf_counter()
        with serve.Served(artifacts) as served:
            served.recommend(user_id, k)
        fresh.append(1000 * (time.perf_counter() - started))
    with serve.Served(artifacts) as served:
        served.recommend(users[0], k)  # maps the index
        for user_id in users:
            started = time.perf_counter()
            served.recommend(user_id, k)
            warm.append(1000 * (time.perf_counter() - started))
    return {
        "users": len(users),
        "open_and_query_ms_median": round(statistics.median(fresh), 3),
        "query_ms_median": round(statistics.median(warm), 3),
        "query_ms_max": round(max(warm), 3),
    }


def time_integrity(artifacts: Path, repeats: int = 200) -> dict[str, float]:
    """What the tamper check costs each `recli` command that opens the artifacts: the sizes and
    sampled digests of the catalogue and the index against the index stage's record
    (`recli.integrity.check_sampled`), and, for scale, the full sha256 `recli doctor` reads."""
    files = [
        artifacts / contract.INDEX_DIR / contract.CATALOGUE_FILE,
        artifacts / contract.INDEX_DIR / contract.INDEX_FILE,
    ]
    sampled = []
    for _ in range(repeats):
        started = time.perf_counter()
        integrity.check_sampled(artifacts, files)
        sampled.append(1000 * (time.perf_counter() - started))
    started = time.perf_counter()
    integrity.check_full(artifacts)
    full = 1000 * (time.perf_counter() - started)
    return {
        "sampled_check_ms_median": round(statistics.median(sampled), 4),
        "sampled_check_bytes_read": sum(
            min(path.stat().st_size, integrity.SAMPLES * integrity.BLOCK) for path in files
        ),
        "served_bytes": sum(path.stat().st_size for path in files),
        "full_check_ms_every_served_file": round(full, 2),
    }


def _cpu() -> str:
    """The CPU's model name (Linux), which timings depend on."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=contract.DEFAULT_ARTIFACTS)
    parser.add_argument("--runs", type=int, default=15, help="runs of each command")
    parser.add_argument("--users", type=int, default=200, help="users for in-process timing")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("metrics/bench_recommend.json"))
    parser.add_argument("--no-compile", action="store_true", help="do not precompile recli")
    args = parser.parse_args()

    if not args.no_compile:
        compileall.compile_dir(Path(serve.__file__).parent, quiet=1)
    with serve.Served(args.artifacts) as served:
        user_id = served.first_user_id()
        users = served.user_ids(args.users)
        n_items, n_users = served.n_items, served.n_users
    times = time_commands(args.artifacts, user_id, args.k, args.runs)
    baseline = statistics.median(times["baseline"])
    recommend = statistics.median(times["recommend"])
    floor = statistics.median(times["typer_table_floor"])
    queries = time_queries(args.artifacts, users, args.k)
    search = statistics.median(times["search"])
    check = time_integrity(args.artifacts)

    result = {
        "baseline_command": 'python -c "import typer, rich.table"',
        "recommend_command": f"recli --artifacts {args.artifacts} recommend {user_id} -k {args.k}",
        "runs": args.runs,
        "baseline_ms_median": round(baseline, 2),
        "recommend_ms_median": round(recommend, 2),
        "ratio": round(recommend / baseline, 3),
        "typer_table_floor_ms_median": round(floor, 2),
        "target_ratio": TARGET_RATIO,
        "meets_target": recommend / baseline <= TARGET_RATIO,
        "baseline_ms": [round(t, 2) for t in times["baseline"]],
        "recommend_ms": [round(t, 2) for t in times["recommend"]],
        "search_command": f"recli --artifacts {args.artifacts} search {SEARCH_QUERY!r} -k {args.k}",
        "search_ms_median": round(search, 2),
        "search_target_ms": SEARCH_TARGET_MS,
        "search_meets_target": search <= SEARCH_TARGET_MS,
        "search_ms": [round(t, 2) for t in times["search"]],
        "in_process": queries,
        "integrity": {
            **check,
            "sampled_check_share_of_recommend": round(
                check["sampled_check_ms_median"] / recommend, 5
            ),
        },
        "catalogue": {"items": n_items, "users": n_users, "artifacts": str(args.artifacts)},
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "cpu": _cpu(),
            "bytecode_precompiled": not args.no_compile,
            **{name: metadata.version(name) for name in ("typer", "rich", "annoy")},
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"recli recommend, {n_items} items, {args.runs} runs", header_style="bold")
    table.add_column("what")
    table.add_column("median ms", justify="right")
    table.add_row("python -c 'import typer, rich.table'", f"{baseline:.1f}")
    table.add_row(f"recli recommend {user_id}", f"{recommend:.1f}")
    table.add_row("[dim]reference: a Typer command printing a 10-row table[/]", f"{floor:.1f}")
    verdict = "meets" if result["meets_target"] else "misses"
    table.add_row(f"ratio ({verdict} ≤ {TARGET_RATIO})", f"{recommend / baseline:.2f}×")
    table.add_row(
        f"in-process open + query ({queries['users']} users)",
        f"{queries['open_and_query_ms_median']:.2f}",
    )
    table.add_row("in-process query alone", f"{queries['query_ms_median']:.2f}")
    table.add_row(
        "tamper check (sizes + sampled digests)", f"{check['sampled_check_ms_median']:.3f}"
    )
    verdict = "meets" if result["search_meets_target"] else "misses"
    table.add_row(
        f"recli search (cold process; {verdict} ≤ {SEARCH_TARGET_MS:.0f} ms)", f"{search:.1f}"
    )
    Console().print(table)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
