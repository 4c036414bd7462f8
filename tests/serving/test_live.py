"""Live updates on a small project built by every real stage (tiny random encoder).

What a user adds changes what is served at once, by the pipeline's own rules: the served vector
`pipeline.live` derives from a history is the one the stages derive from the same history (each
part within float32 rounding of batched against one-at-a-time products); an added event is in the
user's history, out of their recommendations and in their new vector; a new id is a new user;
a batch is all or nothing, even when the process is killed in the middle of it; and the next
pipeline run reads every logged event.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from synthetic import small_pipeline_params

from pipeline import preprocess, workflow
from pipeline.core.config import Params, parse_params
from pipeline.core.layout import Layout
from pipeline.data.artifacts import read_processed
from pipeline.live import TEXT, LiveUpdater, ServedUserModel, one_event
from pipeline.models.fusion import ALS, LINEAR, Fusion, sequence_source
from pipeline.models.sasrec import MODELS
from recli.contract import CATALOGUE_FILE, INDEX_DIR, LIVE_FILE, file_digest
from recli.errors import RecliError
from recli.live import live_path, make_folder
from recli.serve import Served

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _params(root: Path, encoder: Path) -> Params:
    raw = small_pipeline_params(root, encoder)
    raw["sequence"].update(batch_size=32, max_steps=20)
    raw["fuse"].update(weight_grid=[0.05, 0.5], sequence_share_grid=[0.0, 0.5])
    return parse_params(raw)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    """The small project, every stage run."""
    root = tmp_path_factory.mktemp("live")
    workflow.run_all(_params(root, tiny_encoder_dir), root)
    return root


@pytest.fixture
def project(built: Path, tmp_path: Path) -> Path:
    """A copy of the built project each test may add to."""
    root = tmp_path / "project"
    shutil.copytree(built, root)
    return root


def _all_events(layout: Layout) -> pl.DataFrame:
    history = read_processed(layout).history_served
    return history.select("user_idx", "item_idx", "timestamp")


def test_a_history_gives_the_vectors_the_stages_serve(built: Path) -> None:
    layout = Layout(built)
    events = _all_events(layout)
    # Every part a fusion can hold, whichever the small project's validation chose.
    every = ((ALS, (1.0,)), *((sequence_source(n), (1.0,)) for n in MODELS), (LINEAR, (1.0,)))
    model = ServedUserModel.load(layout, Fusion(0.5, 1.0, 1.0, behaviour=every))
    users, parts = model.parts(events)
    order = np.argsort(users)
    served = {
        TEXT: layout.embed / "user_embeddings_served.npy",
        ALS: layout.factorize / "user_factors_served.npy",
        LINEAR: layout.factorize / "linear_user_vectors_served.npy",
        **{
            sequence_source(name): layout.sequence / f"{name}_user_vectors_served.npy"
            for name in MODELS
        },
    }
    assert set(parts) == set(served)
    for name, path in served.items():
        expected = np.load(path)[users[order]]
        # The encoder and the sequence model run in batches made up differently from the
        # stages' (row order, padding), which moves the last float32 bits; the rest is exact.
        np.testing.assert_allclose(parts[name][order], expected, atol=2e-5, err_msg=name)
    # And the fusion `fuse` chose gives the served fused vectors.
    chosen = ServedUserModel.load(layout)
    users, parts = chosen.parts(events)
    fused = np.load(layout.fuse / "fused_user_vectors_served.npy")[users]
    np.testing.assert_allclose(chosen.fused(parts), fused, atol=5e-5)


def _unseen_item(served: Served, user_id: str) -> str:
    user = served.user(user_id)
    seen = set(served.history_indices(user.user_idx))
    free = next(index for index in range(served.n_items) if index not in seen)
    return served.items([free])[free].item_id


def test_an_added_event_is_served_at_once(project: Path) -> None:
    with Served(project / "data") as served:
        user_id = served.first_user_id()
        before = served.user(user_id)
        item_id = _unseen_item(served, user_id)
    with LiveUpdater(project) as updater:
        added = updater.add(one_event(user_id, item_id, None, None), "test")
        model = updater.model
    assert (added.events, added.users, added.new_users) == (1, [user_id], [])
    with Served(project / "data") as served:
        after = served.user(user_id)
        assert after.live and after.events == before.events + 1
        assert served.history(after.user_idx, limit=1)[0].item.item_id == item_id
        listed = [row.item.item_id for row in served.recommend(user_id, k=5).items]
        assert item_id not in listed
        # The vector is the one the pipeline's rules give the whole new history.
        events = _all_events(Layout(project)).filter(pl.col("user_idx") == after.user_idx)
        item_idx = served.item(item_id).item_idx
        new = pl.DataFrame(
            {"user_idx": [after.user_idx], "item_idx": [item_idx], "timestamp": [2**40]},
            schema=events.schema,
        )
        _, parts = model.parts(pl.concat([events, new]))
        np.testing.assert_allclose(after.vector, model.fused(parts)[0], atol=1e-5)
        assert not np.allclose(after.vector, before.vector, atol=1e-4)


def test_a_new_id_is_a_new_user_served_from_their_first_events(project: Path) -> None:
    with Served(project / "data") as served:
        items = [served.items([index])[index].item_id for index in (0, 1)]
        catalogue_users = served.n_users
    rows = pl.concat([one_event("newcomer", item, None, None) for item in items])
    with LiveUpdater(project) as updater:
        added = updater.add(rows, "test")
    assert added.new_users == ["newcomer"] and added.below_minimum == ["newcomer"]
    with Served(project / "data") as served:
        user = served.user("newcomer")
        assert user.live and user.user_idx == catalogue_users and user.events == 2
        listed = [row.item.item_id for row in served.recommend("newcomer", k=5).items]
        assert len(listed) == 5 and not set(items) & set(listed)


def test_too_many_unknown_items_add_nothing(project: Path) -> None:
    with Served(project / "data") as served:
        user_id = served.first_user_id()
    rows = pl.concat(
        [one_event(user_id, "no-such-item", None, None), one_event(user_id, "0", None, None)]
    )
    with LiveUpdater(project) as updater, pytest.raises(RecliError, match="nothing was added"):
        updater.add(rows, "test")
    assert not live_path(project / "data").exists()
    with Served(project / "data") as served:
        assert not served.user(user_id).live


KILLED_IN_BATCH = textwrap.dedent(
    """
    import os, signal, sys
    import polars as pl
    from recli import live
    from pipeline.live import LiveUpdater, one_event

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    live.Batch.set_user = die  # killed after the events are written, before the users are
    users = sys.argv[2].split(",")
    rows = pl.concat([one_event(user, sys.argv[3], None, None) for user in users])
    with LiveUpdater(sys.argv[1]) as updater:
        updater.add(rows, "killed")
    """
)


def test_a_batch_killed_midway_leaves_nothing(project: Path) -> None:
    with Served(project / "data") as served:
        users = served.user_ids(2)
        item_id = served.items([0])[0].item_id
    with LiveUpdater(project) as updater:  # a first batch, kept
        updater.add(one_event("newcomer", item_id, None, None), "first")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", KILLED_IN_BATCH, str(project), ",".join(users), item_id],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    with Served(project / "data") as served:  # the next reader rolls the journal back
        assert served.live is not None
        assert served.live.counts() == {"events": 1, "users": 1, "logged": 1}
        assert not any(served.user(user).live for user in users)
    connection = sqlite3.connect(live_path(project / "data"))
    assert connection.execute("SELECT source FROM batches").fetchall() == [("first",)]
    connection.close()


def test_the_next_run_reads_every_logged_event(project: Path) -> None:
    with Served(project / "data") as served:
        user_id = served.first_user_id()
        item_id = _unseen_item(served, user_id)
    with LiveUpdater(project) as updater:
        updater.add(one_event(user_id, item_id, 1893456000, 4.0), "test")
    layout = Layout(project)
    before = read_processed(layout).history_served.height
    preprocess.main(project)
    after = read_processed(layout)
    assert after.history_served.height == before + 1
    user_idx = after.users.filter(pl.col("user_id") == user_id)["user_idx"].item()
    item_idx = after.items.filter(pl.col("item_id") == item_id)["item_idx"].item()
    last = after.history_served.filter(pl.col("user_idx") == user_idx).sort("timestamp")[-1]
    assert (last["item_idx"].item(), last["timestamp"].item()) == (item_idx, 1893456000)


def test_recli_add_and_ingest_on_the_command_line(project: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with Served(project / "data") as served:
        user_id = served.first_user_id()
        item_id = _unseen_item(served, user_id)
    recli = [sys.executable, "-m", "recli"]
    sealed = catalogue_digest(project)
    result = subprocess.run(
        [*recli, "add", user_id, item_id, "--at", "2026-12-08T10:00", "--project", str(project)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("added 1 event for 1 user")
    events = project / "more.csv"
    events.write_text(f"user_id,item_id,rating,timestamp\nfresh,{item_id},,1765188000\n")
    result = subprocess.run(
        [*recli, "ingest", str(events), "--project", str(project)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "(1 new)" in result.stdout and "drops users with fewer than" in result.stdout
    result = subprocess.run(
        [*recli, "add", user_id, "no-such-item", "--project", str(project)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "nothing was added" in result.stderr
    with Served(project / "data") as served:
        assert served.live is not None and served.live.counts()["events"] == 2
        recommended = served.recommend(user_id, k=3)
    assert len(recommended.items) == 3
    assert catalogue_digest(project) == sealed  # what the pipeline built is never written


def catalogue_digest(project: Path) -> str:
    return file_digest(project / "data" / INDEX_DIR / CATALOGUE_FILE)


WRITER = textwrap.dedent(
    """
    import sys
    import polars as pl
    from pipeline.live import LiveUpdater, one_event

    user_id, items = sys.argv[2], sys.argv[3].split(",")
    with LiveUpdater(sys.argv[1]) as updater:
        updater.model  # loaded before the first batch, so the batches come quickly
        print("ready", flush=True)
        for number, item in enumerate(items):
            updater.add(one_event(user_id, item, 2_000_000_000 + number, None), "writer")
    """
)


def test_readers_see_each_batch_whole_while_one_is_written(project: Path) -> None:
    with Served(project / "data") as served:
        user_id = served.first_user_id()
        user = served.user(user_id)
        seen = set(served.history_indices(user.user_idx))
        items = [
            served.items([index])[index].item_id
            for index in range(served.n_items)
            if index not in seen
        ][:8]
        built = user.events
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(project), user_id, ",".join(items)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
    counts = set()
    while writer.poll() is None:
        with Served(project / "data") as served:
            user = served.user(user_id)
            history = served.history_indices(user.user_idx)
            listed = served.recommend(user_id, k=5).items
        # The vector, the event count and the history are one batch's, whichever it is.
        assert user.events == len(history)
        assert not {row.item.item_idx for row in listed} & set(history)
        counts.add(user.events)
    assert writer.returncode == 0, writer.stderr.read() if writer.stderr else ""
    with Served(project / "data") as served:
        assert served.user(user_id).events == built + len(items)
    assert len(counts) >= 2  # the reads did overlap the writes


def test_a_damaged_live_store_is_one_line_and_the_catalogue_is_untouched(project: Path) -> None:
    path = live_path(project / "data")
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(b"not a database at all" * 100)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "recli", "--artifacts", str(project / "data"), "recommend", "1"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "is corrupted or not a live store" in result.stderr
    assert path.read_bytes() == b"not a database at all" * 100  # nothing it holds is lost


def test_the_committed_live_folder_is_the_one_recli_makes(tmp_path: Path) -> None:
    made = make_folder(tmp_path)
    assert (made / "README.md").read_text() == (REPO / "data/live/README.md").read_text()
    assert (REPO / "data/live/.gitignore").read_text().split() == [
        LIVE_FILE,
        f"{LIVE_FILE}-journal",
        f".{LIVE_FILE}.new",
    ]
