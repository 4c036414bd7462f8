"""Check the peers against the reference protocol, over several split seeds.

The pipeline's default split holds 5% of the items out of training (the cold-item slice), which
changes the warm split and its test items. Published and independently measured numbers for
MovieLens-100K use no such holdout, so this script re-runs the collaborative side of the pipeline
(`preprocess`, `factorize`, the peers of `evaluate`) with `preprocess.cold_item_fraction: 0`, for
several values of `preprocess.split.seed`, and reports test NDCG@10 per model: per seed, then mean
and standard deviation across seeds. With one test item per user, a single seed moves NDCG@10 by
several thousandths; the spread across seeds is the honest error bar for a one-split number.

Usage, from the repository root (MovieLens-100K must be cached or reachable, as for `dvc repro`):

    python scripts/check_peers.py                      # leave_last_out and random_holdout
    python scripts/check_peers.py --seeds 42 1 2 --protocols leave_last_out

It prints a table per protocol and writes JSON to `--out` (default `metrics/peer_check.json`).
Everything else comes from `params.yaml` (ALS settings, EASE's λ grid, ItemKNN's neighbours), so
the numbers are those of the committed configuration.

`--full` runs every stage instead (`pipeline.workflow.run_all` into a scratch folder per seed:
fine-tuning, the sequence models, fusion, the evaluation), so the sequential peer (SASRec), recli's
sequence model and the served fused model join the table, with the served model's paired per-user
difference from each peer per seed; 12 to 14 minutes a seed on 2 cores. Its results go under
`<protocol>_full` in the same JSON, which is rewritten after every seed:

    python scripts/check_peers.py --full --protocols leave_last_out
    python scripts/check_peers.py --full --protocols leave_last_out --seeds 4 --add

`--add` keeps the full runs already in the JSON (a seed run again replaces its old run), so the
seeds of a long check can be run a few at a time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline import factorize, preprocess
from pipeline.core.config import Params, load_params
from pipeline.data.source import RawData, load_source
from pipeline.evaluate import PEERS, peer_scorers
from pipeline.evaluation.protocol import SplitMatrices, evaluate_model
from pipeline.workflow import override, run_all
from recli.metrics_source import served_in


def best_peer(values: dict[str, float]) -> str:
    """The peer (one of the evaluation's `PEERS`; every other row is recli's own) with the
    highest value."""
    peers = {name: value for name, value in values.items() if name in PEERS}
    return max(peers, key=peers.__getitem__)


PROTOCOLS: dict[str, dict[str, Any]] = {
    "leave_last_out": {"preprocess.split.strategy": "leave_last_out"},
    # Per user: 70% train, 10% validation, 20% test.
    "random_holdout": {
        "preprocess.split.strategy": "random_holdout",
        "preprocess.split.validation_fraction": 0.1,
        "preprocess.split.test_fraction": 0.2,
    },
}
METRIC = "ndcg@10"


def run_seed(raw: RawData, base: Params, protocol: str, seed: int) -> dict[str, Any]:
    """Test NDCG@10 of every peer (and ALS) for one protocol and split seed, no cold items."""
    params = seed_params(base, protocol, seed)
    processed = preprocess.run(raw, params.preprocess)
    matrices = SplitMatrices.from_processed(processed)
    factors = factorize.run(matrices.train, params.factorize)
    scorers, tuning = peer_scorers(matrices, params.evaluate, factors, seed)
    test = {
        name: round(
            float(
                evaluate_model(
                    scorer, matrices, "test", params.evaluate.k, params.evaluate.coverage_k, seed
                ).summary()[METRIC]
            ),
            5,
        )
        for name, scorer in scorers.items()
    }
    return {"seed": seed, "ease_reg": tuning["ease_reg"], "test": test}


def seed_params(base: Params, protocol: str, seed: int) -> Params:
    """The configuration a seed runs with: the protocol's split, no cold items, that seed."""
    return override(
        base,
        {
            **PROTOCOLS[protocol],
            "preprocess.cold_item_fraction": 0.0,
            "preprocess.split.seed": seed,
        },
    )


def run_seed_full(base: Params, protocol: str, seed: int) -> dict[str, Any]:
    """Every stage for one protocol and seed, in a scratch folder: every model's test NDCG@10,
    and the served model's paired difference from each peer (from the run's own evaluation)."""
    params = seed_params(base, protocol, seed)
    # The download cache is the project's, wherever the scratch folder is.
    params = override(params, {"data.cache_dir": str(Path(base.data.cache_dir).resolve())})
    with tempfile.TemporaryDirectory(prefix=f"recli-check-{seed}-") as scratch:
        timings = run_all(params, Path(scratch))
        evaluation = json.loads((Path(scratch) / "metrics/evaluation.json").read_text())
    test = {name: row[METRIC] for name, row in evaluation["test"].items()}
    best, served = best_peer(test), served_in(evaluation)
    return {
        "seed": seed,
        "test": test,
        "served": served,
        "best_peer": best,
        "served_over_best_peer": round(test[served] / test[best], 4),
        "paired_vs_best_peer": evaluation["paired_test"][best],
        "paired_vs_sasrec": evaluation["paired_test"].get("sasrec"),
        "lightest_users": lightest_users(evaluation),
        "seconds": {stage: row["seconds"] for stage, row in timings.items()},
    }


def across_seeds_sd(values: list[float]) -> float:
    """Sample standard deviation across seeds; 0 for a single seed."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def lightest_users(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The lightest activity bucket of one run: the served model against the peer that is best
    in that bucket, with the paired per-user difference (the bucket is about a hundred users on
    MovieLens-100K, so one seed's difference is mostly noise; the seeds together say more)."""
    by_activity, served = evaluation["test_by_activity"], served_in(evaluation)
    bucket = next(iter(by_activity[served]))
    scores = {name: rows[bucket][METRIC] for name, rows in by_activity.items()}
    best = best_peer(scores)
    return {
        "bucket": bucket,
        "users": by_activity[served][bucket]["users"],
        "served": scores[served],
        "best_peer": best,
        "best_peer_score": scores[best],
        "paired_vs_best_peer": evaluation["paired_test_by_activity"][bucket][best],
    }


def summarise_full(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per model mean and sd across seeds, and the served model's gain over the best peer (the
    peer with the best mean), as a mean ratio and a mean paired difference over seeds."""
    summary: dict[str, Any] = {"models": summarise(runs)}
    means = {model: stats["mean"] for model, stats in summary["models"].items()}
    best = best_peer(means)
    served = [run["test"][served_in(run)] for run in runs]
    gains = [score - run["test"][best] for score, run in zip(served, runs, strict=True)]
    summary["best_peer"] = best
    summary["served_over_best_peer"] = round(statistics.fmean(served) / means[best], 4)
    summary["mean_difference"] = round(statistics.fmean(gains), 5)
    summary["difference_sd_across_seeds"] = round(across_seeds_sd(gains), 5)
    summary["seeds_served_ahead"] = sum(gain > 0 for gain in gains)
    lightest = [run["lightest_users"] for run in runs if "lightest_users" in run]
    if lightest:
        differences = [row["served"] - row["best_peer_score"] for row in lightest]
        summary["lightest_users"] = {
            "bucket": lightest[0]["bucket"],
            "seeds": len(lightest),
            "mean_difference_vs_bucket_best_peer": round(statistics.fmean(differences), 5),
            "difference_sd_across_seeds": round(across_seeds_sd(differences), 5),
            "seeds_served_ahead_or_level": sum(d >= 0 for d in differences),
        }
    return summary


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    models = list(runs[0]["test"])
    summary = {}
    for model in models:
        values = [run["test"][model] for run in runs]
        spread = across_seeds_sd(values)
        summary[model] = {"mean": round(statistics.fmean(values), 5), "sd": round(spread, 5)}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2, 3, 4])
    parser.add_argument(
        "--protocols", nargs="+", choices=sorted(PROTOCOLS), default=list(PROTOCOLS)
    )
    parser.add_argument("--out", type=Path, default=Path("metrics/peer_check.json"))
    parser.add_argument(
        "--full", action="store_true", help="run every stage: sequential peer and served model"
    )
    parser.add_argument(
        "--add", action="store_true", help="with --full: keep the other seeds' runs in --out"
    )
    args = parser.parse_args()

    base = load_params()
    # Other sections of an existing report are kept: a full run takes over an hour.
    report: dict[str, Any] = (
        json.loads(args.out.read_text(encoding="utf-8")) if args.out.exists() else {}
    )
    report.update({"metric": f"test {METRIC}", "cold_item_fraction": 0.0})
    if args.full:
        for protocol in args.protocols:
            kept = report.get(f"{protocol}_full", {}).get("runs", []) if args.add else []
            runs = [run for run in kept if run["seed"] not in args.seeds]
            for seed in args.seeds:
                runs.append(run_seed_full(base, protocol, seed))
                run = runs[-1]
                print(
                    f"{protocol} seed {seed}: "
                    + ", ".join(f"{m} {v:.4f}" for m, v in run["test"].items())
                    + f"; served / {run['best_peer']} {run['served_over_best_peer']:.3f}"
                    + f"  ({sum(run['seconds'].values()):.0f} s)",
                    flush=True,
                )
                report[f"{protocol}_full"] = {"runs": runs, "summary": summarise_full(runs)}
                write_report(report, args.out)
            summary = report[f"{protocol}_full"]["summary"]
            print(
                f"{protocol}, {len(runs)} seeds: served / {summary['best_peer']} "
                f"{summary['served_over_best_peer']:.3f}, mean difference "
                f"{summary['mean_difference']:+.4f} "
                f"(sd {summary['difference_sd_across_seeds']:.4f})"
            )
        return

    raw = load_source(base.data)  # once: only the split changes between runs
    for protocol in args.protocols:
        runs = []
        for seed in args.seeds:
            started = time.perf_counter()
            runs.append(run_seed(raw, base, protocol, seed))
            print(
                f"{protocol} seed {seed}: "
                + ", ".join(f"{m} {v:.4f}" for m, v in runs[-1]["test"].items())
                + f"  ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
        summary = summarise(runs)
        report[protocol] = {"runs": runs, "summary": summary}
        print(
            f"{protocol}, {len(runs)} seeds: "
            + ", ".join(f"{m} {s['mean']:.4f} ± {s['sd']:.4f}" for m, s in summary.items())
        )
    write_report(report, args.out)


def write_report(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
