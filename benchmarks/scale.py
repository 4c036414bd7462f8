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

The data (`synthetic_events`, seeded and deterministic): about n/100 users with lognormal
activity (at least 5 events each, ~100 on average), about 9.5·√n items (0.1M events: 1k users,
3k items; 1M: 10k users, 9.5k items; 10M: 100k users, 30k items) with Zipf (exponent 1.1) item
popularity, items in 16 latent topics whose words make up the titles and descriptions, users who
prefer a few topics (so the text carries real signal), ratings 1-5 (higher in a user's favourite
topic), strictly increasing timestamps per user, and `|`-separated genres.

    python benchmarks/scale.py --sizes 100000 1000000
    python benchmarks/scale.py --sizes 20000 50000 --stages preprocess factorize --keep

Fine-tuning has a fixed step budget (`finetune.max_steps`), about 5 minutes on a 2-core CPU with
bf16 arithmetic (8 in float32) whatever the size, and the sequence models one too
(`sequence.max_steps`). On such a CPU a 0.1M-event run takes about 8 minutes and a 10M-event run
about 38; the target for 10M events is 45 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline.core.config import Params, load_params
from pipeline.core.parallel import usable_cores
from pipeline.data.source import RawData
from pipeline.workflow import STAGES, override, write_files, write_params

REPO = Path(__file__).resolve().parents[1]

DEFAULT_SIZES = (100_000, 1_000_000, 10_000_000)
TARGETS: dict[str, float] = {"max_total_minutes_at_10M": 45, "max_peak_gib": 12, "max_slope": 1.2}
"""The scaling targets: all stages within 45 minutes at 10M events, no stage above 12 GiB, and
no stage's wall time or peak memory growing faster than events^1.2."""
TARGET_SIZE = 10_000_000
MIN_EVENTS = 1_000

# The shape of the synthetic data.
EVENTS_PER_USER = 100  # mean; users = n_events / 100
MIN_USER_EVENTS = 5  # preprocess.min_user_interactions' default: nobody is dropped
ITEMS_PER_SQRT_EVENT = 9.5  # items = 9.5 * sqrt(n_events): 3k at 0.1M, 9.5k at 1M, 30k at 10M
ZIPF_EXPONENT = 1.1  # popularity ∝ 1 / rank^1.1: top 10% of items hold 41% (20k) to 70% (10M)
ACTIVITY_SIGMA = 1.0  # lognormal spread of events per user
FAVOURITE_TOPICS = 3  # topics a user prefers (Dirichlet-weighted)
GLOBAL_SHARE = 0.25  # share of a user's picks drawn by popularity alone, whatever the topic
PREFERENCE_ROUNDS = 8  # redraws of repeated (user, item) picks by the user's preference,
POPULARITY_ROUNDS = 16  # then by popularity alone, then uniformly from the catalogue
MEAN_GAP_SECONDS = 6 * 3600  # mean time between two events of a user
FIRST_TIMESTAMP = 1_420_070_400  # 2015-01-01
START_SPAN_SECONDS = 8 * 365 * 86_400  # users start within 8 years

TOPICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Space Opera", ("star", "orbit", "galaxy", "fleet", "nebula", "captain", "colony", "comet",
                     "station", "warp", "planet", "signal")),
    ("Mystery", ("detective", "clue", "alibi", "murder", "inspector", "secret", "shadow",
                 "witness", "riddle", "vault", "motive", "fog")),
    ("Romance", ("love", "heart", "kiss", "wedding", "letter", "summer", "promise", "sweetheart",
                 "dance", "rose", "vow", "longing")),
    ("Western", ("frontier", "outlaw", "sheriff", "saddle", "canyon", "dust", "gold", "rider",
                 "ranch", "revolver", "prairie", "bounty")),
    ("Horror", ("ghost", "haunted", "blood", "curse", "crypt", "scream", "demon", "midnight",
                "coffin", "witch", "terror", "grave")),
    ("Comedy", ("laugh", "prank", "blunder", "party", "roommate", "joke", "goof", "caper",
                "mixup", "hijinks", "jester", "giggle")),
    ("War", ("battle", "soldier", "trench", "general", "siege", "regiment", "medal", "bomber",
             "sniper", "front", "platoon", "armistice")),
    ("Fantasy", ("dragon", "wizard", "kingdom", "sword", "elf", "quest", "spell", "throne",
                 "castle", "prophecy", "enchanted", "realm")),
    ("Documentary", ("history", "nature", "archive", "interview", "climate", "ocean",
                     "wildlife", "science", "expedition", "truth", "inquiry", "footage")),
    ("Animation", ("cartoon", "puppy", "toybox", "bunny", "rainbow", "kitten", "talking",
                   "doodle", "sidekick", "bubble", "critter", "jingle")),
    ("Crime", ("heist", "gangster", "cartel", "robbery", "mob", "hustler", "smuggler", "racket",
               "getaway", "boss", "informant", "syndicate")),
    ("Sports", ("champion", "stadium", "coach", "league", "trophy", "rookie", "marathon",
                "boxer", "underdog", "season", "goal", "playoff")),
    ("Musical", ("song", "melody", "stage", "chorus", "band", "rhythm", "ballet", "concert",
                 "tune", "singer", "encore", "orchestra")),
    ("Thriller", ("conspiracy", "agent", "spy", "hostage", "chase", "assassin", "cipher",
                  "betrayal", "bunker", "target", "ransom", "escape")),
    ("Drama", ("family", "grief", "journey", "memory", "mother", "village", "winter", "silence",
               "river", "inheritance", "reunion", "farewell")),
    ("Sci-Fi", ("robot", "android", "cyborg", "laboratory", "clone", "virus", "future",
                "machine", "quantum", "mutant", "algorithm", "dystopia")),
)  # fmt: skip
"""Latent topics: a genre and the words its items' titles and descriptions are made of."""
GENERAL_WORDS = (
    "last", "first", "lost", "new", "old", "young", "strange", "great", "little", "dark",
    "golden", "silent", "story", "tale", "days", "return", "rise", "fall", "life", "world",
    "city", "road", "house", "time", "dream", "game", "night", "edge",
)  # fmt: skip
FILLER_WORDS = ("the", "a", "of", "in", "and", "with", "after", "before", "under", "beyond")


# --------------------------------------------------------------------------------------------
# Synthetic data
# --------------------------------------------------------------------------------------------
def scale_of(n_events: int) -> tuple[int, int]:
    """(users, items) of a synthetic data set with `n_events` events."""
    if n_events < MIN_EVENTS:
        raise ValueError(f"n_events must be at least {MIN_EVENTS}, got {n_events}")
    return n_events // EVENTS_PER_USER, round(ITEMS_PER_SQRT_EVENT * math.sqrt(n_events))


def _events_per_user(rng: np.random.Generator, n_events: int, n_users: int, cap: int) -> np.ndarray:
    """Lognormal activity, at least `MIN_USER_EVENTS` and at most `cap` each, summing exactly to
    `n_events` (largest remainders, then any capped surplus spread over the others)."""
    weights = rng.lognormal(0.0, ACTIVITY_SIGMA, n_users)
    extra = (n_events - MIN_USER_EVENTS * n_users) * weights / weights.sum()
    counts = MIN_USER_EVENTS + np.floor(extra).astype(np.int64)
    short = n_events - int(counts.sum())
    counts[np.argsort(-(extra - np.floor(extra)), kind="stable")[:short]] += 1
    surplus = int((counts - cap).clip(min=0).sum())
    counts = counts.clip(max=cap)
    while surplus:
        room = np.flatnonzero(counts < cap)
        take = rng.choice(room, size=min(surplus, room.size), replace=False)
        counts[take] += 1
        surplus -= take.size
    return counts


def _item_texts(
    rng: np.random.Generator, topic: np.ndarray
) -> tuple[list[str], list[list[str]], list[str]]:
    """Titles (with a year), genre lists and descriptions made of each item's topic words."""
    n_topics = len(TOPICS)
    titles, genres, descriptions = [], [], []
    years = rng.integers(1960, 2024, topic.size)
    for index, own in enumerate(topic.tolist()):
        genre, words = TOPICS[own]
        title_words = list(rng.choice(words, size=int(rng.integers(1, 3)), replace=False))
        if rng.random() < 0.6:
            title_words.insert(0, str(rng.choice(GENERAL_WORDS)))
        titles.append(" ".join(word.capitalize() for word in title_words) + f" ({years[index]})")
        other = int((own + rng.integers(1, n_topics)) % n_topics)
        genres.append([genre, TOPICS[other][0]] if rng.random() < 0.3 else [genre])
        picked = []
        for _ in range(int(rng.integers(8, 15))):
            draw = rng.random()
            if draw < 0.55:
                picked.append(str(rng.choice(words)))
            elif draw < 0.65:
                picked.append(str(rng.choice(TOPICS[other][1])))
            elif draw < 0.8:
                picked.append(str(rng.choice(GENERAL_WORDS)))
            else:
                picked.append(str(rng.choice(FILLER_WORDS)))
        descriptions.append(" ".join(picked).capitalize() + ".")
    return titles, genres, descriptions


def synthetic_events(n_events: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A deterministic synthetic data set of exactly `n_events` events: (interactions, items).

    Interactions: `user_id`, `item_id` (integers from 1), `rating` (1-5), `timestamp` (seconds,
    strictly increasing within a user), sorted by user then time, one event per (user, item).
    Items: `item_id`, `title`, `genres` (a list), `description`. See the module docstring for the
    shape (`scale_of` for the counts).
    """
    n_users, n_items = scale_of(n_events)
    rng = np.random.default_rng(seed)
    n_topics = len(TOPICS)

    # Items: a topic each, and a Zipf weight from a random popularity rank.
    topic = rng.integers(0, n_topics, n_items)
    weight = 1.0 / (rng.permutation(n_items) + 1.0) ** ZIPF_EXPONENT
    by_topic = np.argsort(topic, kind="stable")
    cumulative = np.cumsum(weight[by_topic])
    ends = np.cumsum(np.bincount(topic, minlength=n_topics))
    starts = ends - np.bincount(topic, minlength=n_topics)
    mass = np.bincount(topic, weights=weight, minlength=n_topics)
    offsets = np.concatenate([[0.0], np.cumsum(mass)])[:-1]

    # Users: a few favourite topics (popular topics more often), the main one weighted most.
    gumbel = -np.log(-np.log(rng.random((n_users, n_topics))))
    favourite = np.argsort(-(np.log(np.maximum(mass, 1e-300)) + gumbel), axis=1)[
        :, :FAVOURITE_TOPICS
    ]
    weights = -np.sort(-rng.dirichlet(np.ones(FAVOURITE_TOPICS), n_users), axis=1)  # main first
    share = np.cumsum(weights, axis=1)

    counts = _events_per_user(rng, n_events, n_users, cap=max(MIN_USER_EVENTS, n_items // 2))
    user = np.repeat(np.arange(n_users), counts)

    def by_preference(users: np.ndarray, overall_share: float) -> tuple[np.ndarray, np.ndarray]:
        """An item per event drawn from its user's topic mixture (or, with `overall_share`, by
        popularity alone), and whether it was in the user's main topic."""
        slot = (rng.random(users.size)[:, None] > share[users]).sum(axis=1)
        slot = slot.clip(max=FAVOURITE_TOPICS - 1)
        chosen = favourite[users, slot]
        overall = rng.random(users.size) < overall_share
        target = np.where(
            overall,
            rng.random(users.size) * cumulative[-1],
            offsets[chosen] + rng.random(users.size) * mass[chosen],
        )
        position = np.searchsorted(cumulative, target, side="right")
        low = np.where(overall, 0, starts[chosen])
        high = np.where(overall, n_items, ends[chosen]) - 1
        item = by_topic[position.clip(low, high)]
        return item, ~overall & (slot == 0)

    item, in_first_topic = by_preference(user, GLOBAL_SHARE)
    # One event per (user, item): repeated picks are redrawn, first by preference, then (once a
    # heavy user has exhausted their topics) by popularity, then uniformly from the catalogue.
    for attempt in range(1000):
        key = user * n_items + item
        order = np.argsort(key, kind="stable")
        repeated = np.zeros(key.size, dtype=bool)
        repeated[order[1:][key[order][1:] == key[order][:-1]]] = True
        if not repeated.any():
            break
        again = np.flatnonzero(repeated)
        if attempt < PREFERENCE_ROUNDS + POPULARITY_ROUNDS:
            overall_share = GLOBAL_SHARE if attempt < PREFERENCE_ROUNDS else 1.0
            item[again], in_first_topic[again] = by_preference(user[again], overall_share)
        else:
            item[again] = rng.integers(0, n_items, again.size)
            in_first_topic[again] = False
    else:  # pragma: no cover - the cap leaves every user at least half the catalogue
        raise RuntimeError("could not draw distinct items per user")

    rating = np.rint(3.2 + 0.8 * in_first_topic + rng.normal(0.0, 1.0, n_events)).clip(1, 5)
    first = np.cumsum(counts) - counts  # each user's first event
    gaps = 1 + rng.exponential(MEAN_GAP_SECONDS, n_events).astype(np.int64)
    elapsed = np.cumsum(gaps)
    within = elapsed - np.repeat(elapsed[first] - gaps[first], counts)  # restarts per user
    start = FIRST_TIMESTAMP + rng.integers(0, START_SPAN_SECONDS, n_users)
    interactions = pl.DataFrame(
        {
            "user_id": user + 1,
            "item_id": item + 1,
            "rating": rating.astype(np.int8),
            "timestamp": start[user] + within,
        }
    )

    titles, genres, descriptions = _item_texts(rng, topic)
    items = pl.DataFrame(
        {
            "item_id": np.arange(1, n_items + 1),
            "title": titles,
            "genres": genres,
            "description": descriptions,
        },
        schema={
            "item_id": pl.Int64,
            "title": pl.String,
            "genres": pl.List(pl.String),
            "description": pl.String,
        },
    )
    return interactions, items


def write_inputs(interactions: pl.DataFrame, items: pl.DataFrame, root: Path) -> dict[str, Any]:
    """Write a synthetic data set as bring-your-own CSV files under `root/data/input`; return the
    `data` params section that reads them (paths relative to `root`)."""
    raw = RawData(
        interactions=interactions,
        items=items.with_columns(tags=pl.lit([], pl.List(pl.String))),
        users=None,
        source="synthetic",
    )
    return write_files(raw, root).model_dump(mode="json")


# --------------------------------------------------------------------------------------------
# Running the stages
# --------------------------------------------------------------------------------------------
def _tail(path: Path, lines: int) -> list[str]:
    """The last non-empty `lines` lines of a log (progress bars' carriage returns split too)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8", errors="replace").replace("\r", "\n")
    return [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]


def _kill(process: subprocess.Popen[bytes], signum: int) -> None:
    """Send `signum` to the stage's process group (it runs in a session of its own)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def run_stage(stage: str, root: Path, timeout: float | None = None) -> dict[str, Any]:
    """Run one stage's `main(root)` in a child process; its wall time, peak RSS and outcome.

    `status` is `ok`, `failed` (non-zero exit), `killed` (a signal, such as the kernel's
    out-of-memory killer) or `timeout` (past `timeout` seconds: SIGTERM, then SIGKILL 30 s later).
    Peak memory is the child's own max RSS (`os.wait4`), not that of any process it starts.
    """
    logs = root / "bench_logs"
    logs.mkdir(parents=True, exist_ok=True)
    code = (
        f"from pathlib import Path; from pipeline import {stage}; {stage}.main(Path({str(root)!r}))"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    env.setdefault("TQDM_DISABLE", "1")  # progress bars would fill the stderr log
    timed_out = threading.Event()
    timers: list[threading.Timer] = []
    with open(logs / f"{stage}.out", "wb") as out, open(logs / f"{stage}.err", "wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        if timeout is not None:

            def expire() -> None:
                timed_out.set()
                # Armed before the SIGTERM, so the `finally` below always sees it to cancel.
                timers.append(threading.Timer(30, _kill, (process, signal.SIGKILL)))
                timers[-1].start()
                _kill(process, signal.SIGTERM)

            timers.append(threading.Timer(timeout, expire))
            timers[0].start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:  # Ctrl-C: take the stage down too
            _kill(process, signal.SIGKILL)
            os.waitpid(process.pid, 0)
            process.returncode = -signal.SIGKILL
            raise
        finally:
            for timer in timers:
                timer.cancel()
        seconds = time.perf_counter() - started
    exit_code = os.waitstatus_to_exitcode(status)
    process.returncode = exit_code  # reaped here, not by Popen
    if timed_out.is_set():
        outcome = "timeout"
    elif exit_code < 0:
        outcome = "killed"
    else:
        outcome = "ok" if exit_code == 0 else "failed"
    printed = _tail(logs / f"{stage}.out", 1)
    record: dict[str, Any] = {
        "status": outcome,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # ru_maxrss is KiB on Linux
        "exit_code": exit_code,
        "last_line": printed[0] if printed else "",
    }
    if outcome != "ok":
        why = f"signal {signal.Signals(-exit_code).name}" if exit_code < 0 else f"exit {exit_code}"
        if outcome == "timeout":
            why = f"past the {timeout:g} s timeout ({why})"
        record["error"] = "\n".join([why, *_tail(logs / f"{stage}.err", 20)])[-4000:]
    return record


# --------------------------------------------------------------------------------------------
# Scaling summary
# --------------------------------------------------------------------------------------------
def loglog_slope(sizes: Sequence[float], values: Sequence[float]) -> float | None:
    """The least-squares slope of log(value) against log(size): the exponent b of value ∝ size^b.

    None when fewer than two distinct sizes have a positive value."""
    pairs = [
        (s, v) for s, v in zip(sizes, values, strict=True) if s > 0 and v is not None and v > 0
    ]
    if len({s for s, _ in pairs}) < 2:
        return None
    x = np.log([s for s, _ in pairs])
    y = np.log([v for _, v in pairs])
    x_centred = x - x.mean()
    return float((x_centred * (y - y.mean())).sum() / (x_centred**2).sum())


def slopes(runs: Sequence[dict[str, Any]], stages: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per stage (and `total`): the log-log slopes of seconds and of peak RSS against events,
    over the sizes where the stage (for `total`, every stage) completed."""
    result: dict[str, dict[str, Any]] = {}
    for stage in [*stages, "total"]:
        if stage == "total":
            done = [run for run in runs if run["totals"]["complete"]]
            points = [
                (r["n_events"], r["totals"]["seconds"], r["totals"]["peak_rss_mib"]) for r in done
            ]
        else:
            points = [
                (
                    run["n_events"],
                    run["stages"][stage]["seconds"],
                    run["stages"][stage]["peak_rss_mib"],
                )
                for run in runs
                if run["stages"].get(stage, {}).get("status") == "ok"
            ]
        sizes = [n for n, _, _ in points]
        result[stage] = {
            "seconds": _rounded(loglog_slope(sizes, [s for _, s, _ in points])),
            "peak_rss_mib": _rounded(loglog_slope(sizes, [m for _, _, m in points])),
            "sizes": sizes,
        }
    return result


def _rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def totals(records: dict[str, dict[str, Any]], stages: Sequence[str]) -> dict[str, Any]:
    """Total wall time and largest peak RSS of one size's stages; `complete` when all ran."""
    ran = [record for record in records.values() if "seconds" in record]
    return {
        "seconds": round(sum(record["seconds"] for record in ran), 2),
        "minutes": round(sum(record["seconds"] for record in ran) / 60, 2),
        "peak_rss_mib": max((record["peak_rss_mib"] for record in ran), default=None),
        "complete": all(records.get(stage, {}).get("status") == "ok" for stage in stages),
    }


def judge(runs: Sequence[dict[str, Any]], per_stage: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each target's measured value and whether it is met (None where it cannot be measured)."""
    measured: dict[str, Any] = {}
    meets: dict[str, bool | None] = {}
    at_target = [
        run
        for run in runs
        if run["n_events"] == TARGET_SIZE and run["totals"]["complete"] and run["all_stages"]
    ]
    minutes = at_target[0]["totals"]["minutes"] if at_target else None
    measured["max_total_minutes_at_10M"] = minutes
    meets["max_total_minutes_at_10M"] = (
        None if minutes is None else minutes <= TARGETS["max_total_minutes_at_10M"]
    )
    peaks = [r["totals"]["peak_rss_mib"] for r in runs if r["totals"]["peak_rss_mib"] is not None]
    peak_gib = round(max(peaks) / 1024, 3) if peaks else None
    measured["max_peak_gib"] = peak_gib
    meets["max_peak_gib"] = None if peak_gib is None else peak_gib <= TARGETS["max_peak_gib"]
    steepest: tuple[float, str] | None = None
    for stage, row in per_stage.items():
        if stage == "total":
            continue
        for kind in ("seconds", "peak_rss_mib"):
            if row[kind] is not None and (steepest is None or row[kind] > steepest[0]):
                steepest = (row[kind], f"{stage} {kind}")
    measured["max_slope"] = None if steepest is None else steepest[0]
    measured["max_slope_of"] = None if steepest is None else steepest[1]
    meets["max_slope"] = None if steepest is None else steepest[0] <= TARGETS["max_slope"]
    return {"targets": dict(TARGETS), "measured": measured, "meets": meets}


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------
def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "polars": _version("polars"),
        "numpy": _version("numpy"),
    }
    for path, key, field in (
        ("/proc/cpuinfo", "cpu_model", "model name"),
        ("/proc/meminfo", "memory_total_gib", "MemTotal"),
    ):
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        value = next(
            (line.split(":", 1)[1].strip() for line in lines if line.startswith(field)), None
        )
        if key == "memory_total_gib" and value:
            value = round(int(value.split()[0]) / 1024**2, 2)  # kB
        info[key] = value
    probe = (
        "import torch; "
        "print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none')"
    )
    try:
        found = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True
        )
        info["accelerator"] = found.stdout.strip() or "none"
    except (subprocess.SubprocessError, OSError):
        info["accelerator"] = None
    return info


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


def code_version() -> str:
    """The commit the stages ran from, `+changes` when the pipeline or params differ from it
    (sizes measured from different code are not comparable stage by stage)."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        changed = _git("status", "--porcelain", "--", "pipeline", "params.yaml", "dvc.yaml")
    except (subprocess.SubprocessError, OSError):
        return "unknown"
    return f"{head}+changes" if changed else head


BUDGET_KEYS = (
    "finetune.max_steps",
    "finetune.batch_size",
    "finetune.eval_steps",
    "finetune.eval_users",
    "finetune.eval_items",
    "finetune.device",
    "embed.batch_size",
    "cluster.k",
    "factorize.algorithm",
    "factorize.epochs",
    "factorize.embedding_size",
    "sequence.epochs",
    "sequence.max_steps",
    "sequence.negatives",
    "sequence.patience",
    "sequence.eval_every",
    "sequence.max_length",
    "sequence.batch_size",
    "sequence.device",
    "index.n_trees",
    "index.recall_users",
    "evaluate.ease_reg_grid",
    "evaluate.itemknn_neighbors_grid",
    "evaluate.max_users",
    "evaluate.quadratic_peers_max_items",
)
"""The params that set how much work each stage does, recorded with the numbers."""


def budgets(params: Params) -> dict[str, Any]:
    """The step budgets of `params` and a digest of every section but `data`."""
    raw = params.model_dump(mode="json")
    found: dict[str, Any] = {}
    for dotted in BUDGET_KEYS:
        value: Any = raw
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        found[dotted] = value
    rest = json.dumps({k: v for k, v in raw.items() if k != "data"}, sort_keys=True)
    return {"budgets": found, "params_sha256": hashlib.sha256(rest.encode()).hexdigest()[:16]}


def count_label(n: int) -> str:
    """20000 -> 20k, 1000000 -> 1M, 2500000 -> 2.5M."""
    for scale, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= scale:
            return f"{n / scale:g}{suffix}"
    return str(n)


def _cell(record: dict[str, Any] | None) -> tuple[str, str]:
    if not record or "seconds" not in record:
        return (record["status"] if record else "-"), ""
    seconds = f"{record['seconds']:.1f}" + (
        "" if record["status"] == "ok" else f" {record['status']}"
    )
    return seconds, f"{record['peak_rss_mib']:.0f}"


def _slope_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the stage × size table (seconds, MiB; slopes last)."""
    runs = report["sizes"]
    header = ["stage"]
    for run in runs:
        label = count_label(run["n_events"])
        header += [f"{label} s", f"{label} MiB"]
    header += ["slope s", "slope MiB"]
    rows = []
    for stage in [*report["stages"], "total"]:
        row = [stage]
        for run in runs:
            if stage == "total":
                peak = run["totals"]["peak_rss_mib"]
                row += [f"{run['totals']['seconds']:.1f}", "" if peak is None else f"{peak:.0f}"]
            else:
                row += list(_cell(run["stages"].get(stage)))
        slope = report["slopes"].get(stage, {})
        row += [_slope_text(slope.get("seconds")), _slope_text(slope.get("peak_rss_mib"))]
        rows.append(row)
    return header, rows


def text_table(report: dict[str, Any]) -> str:
    """The table for a terminal."""
    header, rows = table_rows(report)
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in [header, *rows]
    ]
    return "\n".join(lines)


def markdown_table(report: dict[str, Any]) -> str:
    """The table as Markdown, for the README."""
    header, rows = table_rows(report)
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _write_json(report: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".tmp")
    partial.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    partial.replace(out)


def _summarise(report: dict[str, Any]) -> None:
    report["slopes"] = slopes(report["sizes"], report["stages"])
    report.update(judge(report["sizes"], report["slopes"]))


def bench(
    sizes: Sequence[int],
    out: Path,
    work: Path | None = None,
    keep: bool = False,
    stages: Sequence[str] = STAGES,
    timeout: float | None = None,
    seed: int = 42,
    add: bool = False,
) -> dict[str, Any]:
    """Generate each size, run `stages` on it in child processes, write `out` after every stage;
    the report. With `add`, the sizes already in `out` (measured with the same params and seed)
    are kept unless run again, so the sizes can be measured in separate sittings."""
    unknown = [stage for stage in stages if stage not in STAGES]
    if unknown:
        raise SystemExit(f"unknown stage(s) {unknown}: use some of {list(STAGES)}")
    stages = [stage for stage in STAGES if stage in stages]  # dvc.yaml order
    base = load_params(REPO / "params.yaml")
    scratch = Path(tempfile.mkdtemp(prefix="recli-bench-scale-")) if work is None else work
    report: dict[str, Any] = {
        "machine": machine(),
        "seed": seed,
        "stages": stages,
        **budgets(base),
        "sizes": [],
    }
    if add and out.exists():
        earlier = json.loads(out.read_text(encoding="utf-8"))
        if earlier.get("params_sha256") != report["params_sha256"] or earlier.get("seed") != seed:
            raise SystemExit(f"{out} was measured with other params or seed: drop --add")
        report["sizes"] = [run for run in earlier["sizes"] if run["n_events"] not in set(sizes)]
    try:
        for n_events in sorted(set(sizes)):
            root = (scratch / f"events-{n_events}").resolve()
            if root.exists():
                shutil.rmtree(root)
            started = time.perf_counter()
            interactions, items = synthetic_events(n_events, seed)
            data = write_inputs(interactions, items, root)
            write_params(override(base, {"data": data}), root)
            inputs = root / "data" / "input"
            run: dict[str, Any] = {
                "n_events": n_events,
                "code": code_version(),
                "n_users": interactions["user_id"].n_unique(),
                "n_items": items.height,
                "n_items_with_events": interactions["item_id"].n_unique(),
                "generate_seconds": round(time.perf_counter() - started, 2),
                "input_mib": round(sum(f.stat().st_size for f in inputs.iterdir()) / 2**20, 1),
                "all_stages": list(stages) == list(STAGES),
                "stages": {},
                "totals": totals({}, stages),
            }
            del interactions, items
            report["sizes"].append(run)
            report["sizes"].sort(key=lambda entry: entry["n_events"])
            print(
                f"{count_label(n_events)} events: {run['n_users']} users, {run['n_items']} items "
                f"({run['generate_seconds']:.1f} s to generate) in {root}",
                flush=True,
            )
            failed: str | None = None
            for stage in stages:
                if failed is not None:
                    run["stages"][stage] = {"status": "skipped", "reason": failed}
                    continue
                # Written before the stage starts: a run that is itself stopped shows where.
                run["stages"][stage] = {"status": "running", "started": time.strftime("%FT%T%z")}
                _write_json(report, out)
                record = run_stage(stage, root, timeout)
                run["stages"][stage] = record
                if record["status"] != "ok":
                    failed = f"{stage} {record['status']}"
                print(
                    f"  {stage:<10} {record['status']:<7} {record['seconds']:8.1f} s "
                    f"{record['peak_rss_mib']:8.0f} MiB  {record['last_line'][:80]}",
                    flush=True,
                )
                run["totals"] = totals(run["stages"], stages)
                _summarise(report)
                _write_json(report, out)
            run["totals"] = totals(run["stages"], stages)
            _summarise(report)
            _write_json(report, out)
            if not keep:
                shutil.rmtree(root, ignore_errors=True)
    finally:
        if work is None and not keep:
            shutil.rmtree(scratch, ignore_errors=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="events")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--timeout", type=float, help="seconds a stage may run (default: no limit)")
    parser.add_argument(
        "--work", type=Path, help="where the scratch projects go (default: a temp dir)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch projects")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("metrics/bench_scale.json"))
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    parser.add_argument(
        "--add", action="store_true", help="keep the other sizes already measured in --out"
    )
    args = parser.parse_args()
    if min(args.sizes) < MIN_EVENTS:
        parser.error(f"every size must be at least {MIN_EVENTS} events")
    report = bench(
        args.sizes, args.out, args.work, args.keep, args.stages, args.timeout, args.seed, args.add
    )
    print()
    print(text_table(report))
    if args.markdown:
        print()
        print(markdown_table(report))
    measured, meets = report["measured"], report["meets"]
    for key, target in report["targets"].items():
        verdict = {True: "met", False: "NOT met", None: "not measured"}[meets[key]]
        print(f"{key} <= {target:g}: {verdict} (measured {measured[key]})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
