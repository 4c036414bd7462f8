"""`recli doctor`: every check the served artifacts can fail, one line each.

`Served` checks only what costs next to nothing on each query (present, right schema, the sizes and
sampled digests of the served files, the index's item count). The doctor also reads every byte: each
served file's sha256 against the index stage's record (`recli.integrity`), the index's sha256
against the one the catalogue recorded (an index from another run has the same size and items but
other vectors), the upstream files the index was built from (a stage re-ran but `index` did not),
the encoder `recli search` needs, one real query, that no user is recommended an item they already
have (`HISTORY_USERS` users spread over the catalogue, every event counted), and what an interrupted
stage left in staging. It reports instead of raising, so one broken artifact does not hide the state
of the others.
"""

from __future__ import annotations

import time
from pathlib import Path

from recli import integrity, transaction
from recli.catalogue import MetaKey
from recli.contract import DEFAULT_ARTIFACTS, DIGEST_CHARS, ENCODER_DIR, file_digest
from recli.errors import RecliError
from recli.results import Check
from recli.serve import Served

REQUIRED_META = (
    MetaKey.DIMENSION,
    MetaKey.TEXT_DIMENSION,
    MetaKey.METRIC,
    MetaKey.TEXT_SCALE,
    MetaKey.INDEX_SHA256,
)
"""Meta keys without which the catalogue cannot serve or be checked."""
HISTORY_USERS = 1000
"""Users (spread evenly over the catalogue) whose top 10 is checked against their history."""


def doctor(artifacts: Path = DEFAULT_ARTIFACTS) -> list[Check]:
    """Every check the served artifacts can fail, including the full-file hashes."""
    checks: list[Check] = []
    artifacts = Path(artifacts)
    if not artifacts.is_dir():
        return [Check("artifacts folder", "problem", f"{artifacts} not found: run `dvc repro`")]
    checks.append(Check("artifacts folder", "ok", str(artifacts)))
    try:
        served = Served(artifacts)
    except RecliError as error:
        checks.append(Check("catalogue", "problem", str(error)))
        return [*checks, _staging_check(artifacts)]
    with served:
        meta = served.meta
        checks.append(
            Check(
                "catalogue",
                "ok",
                f"schema {meta.get(MetaKey.SCHEMA_VERSION)}, {served.n_users} users, "
                f"{served.n_items} items, {len(served.clusters())} clusters",
            )
        )
        missing = [key for key in REQUIRED_META if key not in meta]
        checks.append(
            Check(
                "catalogue meta",
                "problem",
                f"missing {', '.join(missing)}: run `dvc repro -f index`",
            )
            if missing
            else Check(
                "catalogue meta",
                "ok",
                f"{meta[MetaKey.DIMENSION]}-d ({meta[MetaKey.TEXT_DIMENSION]} text), "
                f"metric {meta[MetaKey.METRIC]}, text weight {meta.get(MetaKey.TEXT_WEIGHT)}",
            )
        )
        checks.append(_served_files_check(served.artifacts))
        try:
            index = served.index
            searched = ""
            if served.narrower_search:
                rescore = served.meta.get(MetaKey.SEARCH_RESCORE, 1)
                searched = f", searched in {served.search_index.f}-d ({rescore}× k candidates)"
            users = f" and {served.n_users} users" if served.user_rows else ""
            checks.append(
                Check("index", "ok", f"{served.n_items} items{users}, {index.f}-d{searched}")
            )
        except RecliError as error:
            checks.append(Check("index", "problem", str(error)))
        checks.append(_hash_check(served))
        checks.extend(_upstream_checks(served))
        checks.append(_live_check(served))
        if not any(check.status == "problem" for check in checks):
            checks.append(_query_check(served))
            checks.append(_history_check(served))
    checks.append(_staging_check(artifacts))
    encoder = artifacts / ENCODER_DIR
    checks.append(
        Check("encoder", "ok", str(encoder))
        if encoder.exists()
        else Check(
            "encoder",
            "warning",
            f"{encoder} not found: only `recli search` needs it (`dvc repro finetune`)",
        )
    )
    return checks


def _served_files_check(artifacts: Path) -> Check:
    """Every byte of every served file against the index stage's record (`recli.integrity`)."""
    try:
        results = integrity.check_full(artifacts)
    except RecliError as error:
        return Check("served files", "problem", str(error))
    problems = [problem for _, problem in results if problem is not None]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return Check("served files", "problem", problems[0] + more)
    return Check("served files", "ok", f"{len(results)} files match the index stage's sha256")


def _hash_check(served: Served) -> Check:
    expected = served.meta.get(MetaKey.INDEX_SHA256)
    if not served.index_path.exists():
        return Check("index sha256", "skipped", "no index file")
    if expected is None:
        return Check("index sha256", "warning", f"the catalogue records no {MetaKey.INDEX_SHA256}")
    actual = file_digest(served.index_path)
    expected = str(expected)
    if not expected or not actual.startswith(expected):
        return Check(
            "index sha256",
            "problem",
            f"{actual[: len(expected) or DIGEST_CHARS]} but the catalogue expects {expected}: "
            "the index and catalogue are from different runs, run `dvc repro -f index`",
        )
    return Check("index sha256", "ok", f"{expected} matches")


def _upstream_checks(served: Served) -> list[Check]:
    built_from = served.meta.get(MetaKey.BUILT_FROM) or {}
    if not isinstance(built_from, dict) or not built_from:
        return [
            Check(
                "upstream files",
                "skipped",
                f"the catalogue records no {MetaKey.BUILT_FROM} digests",
            )
        ]
    stale, checked, absent = [], 0, 0
    # Keys are paths relative to the artifacts folder: digests of the files the index was built
    # from, which tell a stale catalogue from a fresh one.
    roots = transaction.allowed_roots(served.artifacts)[:1]
    for relative, expected in built_from.items():
        path = served.artifacts / str(relative)
        # Read from the catalogue: a path that leads out of the artifacts folder is not
        # something the index stage wrote, and is never opened.
        if Path(str(relative)).is_absolute() or not transaction.inside(path, roots):
            return [
                Check(
                    "upstream files",
                    "problem",
                    f"the catalogue names {str(relative)[:80]!r}, outside the artifacts "
                    "folder, as an upstream file: it was edited, run `dvc repro -f index`",
                )
            ]
        if not path.exists():
            absent += 1
            continue
        checked += 1
        if not expected or not file_digest(path).startswith(str(expected)):
            stale.append(relative)
    if stale:
        return [
            Check(
                "upstream files",
                "problem",
                f"changed since the index was built ({', '.join(stale)}): run `dvc repro`",
            )
        ]
    if not checked:
        return [Check("upstream files", "skipped", "none of the pipeline's files are present")]
    note = f" ({absent} not present)" if absent else ""
    return [Check("upstream files", "ok", f"{checked} match the catalogue{note}")]


def _query_check(served: Served) -> Check:
    user_id = served.first_user_id()
    started = time.perf_counter()
    try:
        result = served.recommend(user_id, min(10, served.n_items))
    except RecliError as error:
        return Check("test query", "problem", str(error))
    elapsed = 1000 * (time.perf_counter() - started)
    return Check(
        "test query",
        "ok",
        f"recommend {user_id}: {len(result.items)} items in {elapsed:.1f} ms",
    )


def _history_check(served: Served, limit: int = HISTORY_USERS) -> Check:
    """No recommendation is an item the user already has, over up to `limit` users."""
    users = served.user_ids()
    step = max(1, len(users) // limit)
    chosen = users[::step][:limit]
    k = min(10, served.n_items)
    offenders = []
    for user_id in chosen:
        user = served.user(user_id)
        # Read apart from what `recommend` leaves out, so a fault there shows up here.
        history = {entry.item.item_idx for entry in served.history(user.user_idx)}
        if k > served.n_items - len(history):
            continue  # has nearly everything: `recommend` refuses, which is right
        items = served.recommend(user_id, k).items
        if any(entry.item.item_idx in history for entry in items):
            offenders.append(user_id)
    if offenders:
        return Check(
            "served history",
            "problem",
            f"{len(offenders)} of {len(chosen)} users are recommended an item they already have "
            f"(first: user {offenders[0]}): run `dvc repro -f index`",
        )
    return Check(
        "served history",
        "ok",
        f"no top {k} of {len(chosen)} users holds an item from their history",
    )


def _live_check(served: Served) -> Check:
    """What was added since the build (`recli.live`), and what the next run will read."""
    if served.live is None:
        return Check("live updates", "ok", "no event added since the build")
    counts = served.live.counts()
    earlier = counts["logged"] - counts["events"]
    return Check(
        "live updates",
        "ok",
        f"{counts['events']} events added since the build, {counts['users']} users served from "
        f"them; the next `dvc repro` reads all {counts['logged']} logged events"
        + (f" ({earlier} added against an earlier build)" if earlier else ""),
    )


def _staging_check(artifacts: Path) -> Check:
    """What interrupted stages left in `<artifacts>/.staging`: a committed set not yet moved in
    (finished by the next command) is not the same as an abandoned, uncommitted one."""
    root = transaction.staging_root(artifacts)
    try:
        committed = transaction.committed(artifacts)
        for stage in committed:
            transaction.read_journal(artifacts, stage)
    except RecliError as error:
        return Check("staging", "problem", str(error))
    left = sorted(path.name for path in root.iterdir() if path.is_dir()) if root.is_dir() else []
    if not left:
        return Check("staging", "ok", "no interrupted stage left outputs behind")
    if committed:
        return Check(
            "staging",
            "warning",
            f"{', '.join(committed)} committed new outputs that are not all in place yet: the "
            "next `recli` command or `dvc repro` puts them in place",
        )
    return Check(
        "staging",
        "warning",
        f"a run of {', '.join(left)} that was killed before its commit (or is running now) left "
        f"{root}: the outputs in place are the previous run's; the next `dvc repro {left[0]}` "
        "removes it",
    )
