"""Measure how every pipeline stage scales with the number of events.

For each size in `--sizes`, a synthetic data set of that many events (`synthetic_events`) is
written as bring-your-own CSV files into a scratch project's `data/input/`, with `params.yaml` the
committed one with only its `data` section replaced (so the default step budgets are what is
measured). Every stage then runs in its own child process, as `dvc repro` would run it, and its
wall time, peak memory (the child's max RSS, from `os.wait4`), exit code and last printed line are
recorded. A stage that fails, is killed or runs past `--timeout` records the tail of its stderr,
and the later stages of that size are skipped with the reason.

After all sizes: per stage, the log-log slope of wall time and of peak memory against events
(least squares over the sizes the stage completed at; 1.0 is linear), the total wall time and the
largest peak per size, and the scaling targets (at most 45 minutes in all at 10M events, at most
12 GiB peak, no slope above 1.2) with whether each is met where it can be measured. Everything
goes to `--out` (default `metrics/bench_scale.json`), rewritten after every stage, so a long run
that is stopped leaves its partial results; a table is printed at the end (`--markdown`: also as
a Markdown table for the README).

The data (`scaling/synthetic.py`, seeded and deterministic): about n/100 users with lognormal
activity (at least 5 events each, ~100 on average), about 9.5·√n items (0.1M events: 1k users,
3k items; 1M: 10k users, 9.5k items; 10M: 100k users, 30k items) with Zipf (exponent 1.1) item
popularity, items in 16 latent topics whose words make up the titles and descriptions, users who
prefer a few topics (so the text carries real signal), ratings 1-5 (higher in a user's favourite
topic), strictly increasing timestamps per user, and `|`-separated genres.

`--shape products` measures a description-rich product catalogue instead (`scaling/products.py`):
about n/7 sparse users (~7 events each, who shop a category in sequence) and n/13.5 items with
long titles and descriptions in 16 categories but no genres, so the text is the only content.
Its report (default `metrics/bench_text_rich.json`, default size 60k events) carries the target
of at most 15 minutes in all at the size closest to 60k events in place of the 10M one.

    python benchmarks/scale.py --sizes 100000 1000000
    python benchmarks/scale.py --sizes 20000 50000 --stages preprocess factorize --keep
    python benchmarks/scale.py --shape products --sizes 60000
    python benchmarks/scale.py --backend ray --workers 2 --sizes 1000000 10000000

`--backend ray` runs every stage with `engine.backend: ray` on a Ray cluster of `--workers` CPUs
started on this machine for the run (`scaling/ray_cluster.py`); each stage's record adds the peak
memory of the cluster's workers beside the driver's (the stage's own process) and its events per
second per worker, and the report, kept under `--out`'s `ray` key beside the local one, judges
the driver's peak at 10M events (at most 2 GiB).

Fine-tuning has a fixed step budget (`finetune.max_steps`), about 5 minutes on a 2-core CPU with
bf16 arithmetic (8 in float32) whatever the size, and the sequence models one too
(`sequence.max_steps`). On such a CPU a 0.1M-event run takes about 8 minutes and a 10M-event run
about 38; the target for 10M events is 45 minutes on 2 cores.

This file is the command line; the parts are in `benchmarks/scaling/`: `synthetic` and
`products` (the data), `runner` (the stages in child processes, and `bench`, the whole run),
`summary` (slopes, totals and targets) and `report` (the machine, the code, the budgets, and the
tables).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scaling.report import markdown_table, text_table
from scaling.runner import SHAPES, bench
from scaling.synthetic import MIN_EVENTS

from pipeline.workflow import STAGES

DEFAULT_SIZES = {"movies": (100_000, 1_000_000, 10_000_000), "products": (60_000,)}
DEFAULT_OUT = {"movies": "metrics/bench_scale.json", "products": "metrics/bench_text_rich.json"}


def main() -> None:
    """The command line: measure `--sizes`, write `--out`, print the table and the verdicts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=list(SHAPES), default="movies", help="the data's shape")
    parser.add_argument(
        "--sizes", type=int, nargs="+", help="events (default: 0.1M 1M 10M; products: 60k)"
    )
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--timeout", type=float, help="seconds a stage may run (default: no limit)")
    parser.add_argument(
        "--work", type=Path, help="where the scratch projects go (default: a temp dir)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch projects")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--out",
        type=Path,
        help=f"the report (default: {DEFAULT_OUT['movies']}; products: {DEFAULT_OUT['products']})",
    )
    parser.add_argument(
        "--backend",
        choices=["local", "ray"],
        default="local",
        help="ray: every stage on a Ray cluster started here (kept under --out's `ray` key)",
    )
    parser.add_argument("--workers", type=int, default=2, help="the Ray cluster's CPUs (ray)")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    parser.add_argument(
        "--add", action="store_true", help="keep the other sizes already measured in --out"
    )
    args = parser.parse_args()
    args.sizes = args.sizes or list(DEFAULT_SIZES[args.shape])
    args.out = args.out or Path(DEFAULT_OUT[args.shape])
    if min(args.sizes) < MIN_EVENTS:
        parser.error(f"every size must be at least {MIN_EVENTS} events")
    report = bench(
        args.sizes,
        args.out,
        args.work,
        args.keep,
        args.stages,
        args.timeout,
        args.seed,
        args.add,
        args.shape,
        args.backend,
        args.workers,
    )
    print()
    print(text_table(report))
    if args.markdown:
        print()
        print(markdown_table(report))
    measured, meets = report["measured"], report["meets"]
    for key, target in report["targets"].items():
        verdict = {True: "met", False: "NOT met", None: "not measured"}[meets[key]]
        limit = "at every size" if isinstance(target, bool) else f"<= {target:g}"
        print(f"{key} {limit}: {verdict} (measured {measured[key]})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
