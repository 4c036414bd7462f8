"""The real pipeline through real DVC, on a tiny bring-your-own dataset in a scratch repo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kill_points import kill_at_every_write_point, run_stage
from synthetic import make_raw

from pipeline.workflow import STAGES
from recli import live

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # Stage commands call `python`: make it this interpreter, whatever the shell's PATH says.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@e", GIT_COMMITTER_NAME="t")
    env["GIT_COMMITTER_EMAIL"] = "t@e"
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("project")
    for name in ("pipeline", "recli"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    raw = make_raw(n_users=40, n_items=50, per_user=12)
    (root / "data" / "input").mkdir(parents=True)
    live.make_folder(root / "data")  # a dependency of `preprocess`
    raw.interactions.write_csv(root / "data/input/ratings.csv")
    raw.items.select("item_id", "title").write_csv(root / "data/input/movies.csv")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["source"] = "files"
    params["data"]["files"].update(
        interactions="data/input/ratings.csv", items="data/input/movies.csv"
    )
    params["data"]["files"]["item_columns"]["genres"] = None
    params["evaluate"]["ease_reg_grid"] = [1.0, 10.0]
    # The real stages with a tiny random encoder and a few steps: the wiring is under test here.
    params["text"]["max_seq_length"] = 32
    params["finetune"].update(
        base_model=str(tiny_encoder_dir), max_steps=4, batch_size=8, eval_steps=2, eval_users=20
    )
    params["cluster"]["k"] = 3
    params["sequence"].update(epochs=4, embedding_size=16)
    params["index"]["n_trees"] = 10
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["git", "init", "-q"], root)
    _run([sys.executable, "-m", "dvc", "init", "-q"], root)
    _run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], root)
    _run([sys.executable, "-m", "dvc", "repro"], root)
    return root


def test_repro_produces_metrics_for_every_model(project: Path) -> None:
    metrics = json.loads((project / "metrics/evaluation.json").read_text())
    assert set(metrics["test"]) == {
        "popularity",
        "itemknn",
        "ease",
        "als",
        "sasrec",
        "zero_shot",
        "finetuned",
        "text_sequence",
        "ease_low_rank",
        "fused",
        "multi_interest",
        "explore",
    }
    assert set(metrics["cold_items"]) == {
        "random", "als", "sasrec", "zero_shot", "finetuned", "text_sequence", "fused"
    }  # fmt: skip
    assert set(metrics["paired_test"]) == set(metrics["test"]) - {"fused"}
    assert (project / "data/index/catalogue.sqlite").exists()
    assert (project / "data/finetune/model").is_dir()
    assert metrics["test"]["ease"]["users"] == 40
    linear = json.loads((project / "data/factorize/linear.json").read_text())
    assert linear["rank"] == 40  # 512 asked: the training scores of 40 users have 40 directions
    shown = json.loads(
        _run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], project).stdout
    )
    # DVC reports each metrics file's content under its path: find evaluation.json's.
    reported = _find_key(shown, "metrics/evaluation.json")
    assert reported is not None, shown
    assert reported["data"]["test"]["ease"]["ndcg@10"] == metrics["test"]["ease"]["ndcg@10"]
    assert (project / "dvc.lock").exists()


def test_what_is_served_knows_every_event_of_the_user(project: Path) -> None:
    # The split is for measuring: serving must never recommend what a user already has, their
    # held-out validation and test events and cold-item events included.
    import polars as pl

    from pipeline.core.layout import Layout
    from pipeline.data.artifacts import read_processed
    from recli.serve import Served

    processed = read_processed(Layout(project))
    everything = processed.history_served
    assert everything.height == sum(
        processed.split(name).height for name in ("train", "validation", "test", "cold")
    )
    item_ids = dict(processed.items.select("item_idx", "item_id").iter_rows())
    owned: dict[str, set[str]] = {}
    for user_id, item in (
        everything.join(processed.users, on="user_idx").select("user_id", "item_idx").iter_rows()
    ):
        owned.setdefault(str(user_id), set()).add(item_ids[item])
    held_out = pl.concat([processed.validation, processed.test]).height
    assert held_out > 0
    with Served(project / "data") as served:
        for user_id, items in owned.items():
            unseen = served.n_items - len(items)
            result = served.recommend(user_id, min(10, unseen))
            recommended = {r.item.item_id for r in result.items}
            assert recommended and not recommended & items, user_id
            by_interest = served.recommend(user_id, min(10, unseen), by_interest=True)
            dealt = [r.item.item_id for r in by_interest.items]
            assert len(dealt) == len(set(dealt)) == min(10, unseen), user_id
            assert not set(dealt) & items, user_id
            explored = served.explore(user_id, k=3, topics=2)
            suggested = {n.item.item_id for s in explored.suggestions for n in s.items}
            assert not suggested & items, user_id
            assert {label for label, _ in explored.engaged}.isdisjoint(
                s.label for s in explored.suggestions
            ), user_id
            assert result.user.events == len(
                everything.filter(pl.col("user_idx") == served.user(user_id).user_idx)
            )


def _find_key(tree: object, key: str) -> dict | None:
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        for value in tree.values():
            found = _find_key(value, key)
            if found is not None:
                return found
    return None


def _stale_stages(project: Path) -> set[str]:
    status = _run([sys.executable, "-m", "dvc", "status", "--json"], project).stdout
    return set(json.loads(status or "{}"))


def test_editing_a_stage_module_makes_only_that_stage_and_later_ones_stale(project: Path) -> None:
    evaluate_module = project / "pipeline/evaluate.py"
    original = evaluate_module.read_text()
    try:
        evaluate_module.write_text(original + "\n# a change to the report code\n")
        assert _stale_stages(project) == {"evaluate"}
    finally:
        evaluate_module.write_text(original)
    contracts = project / "pipeline/data/artifacts.py"
    original = contracts.read_text()
    try:
        # Every stage reads or writes through the stage contracts: all of them depend on it.
        contracts.write_text(original + "\n# a change to how artifacts are read\n")
        assert _stale_stages(project) == set(STAGES)
    finally:
        contracts.write_text(original)
    assert _stale_stages(project) == set()


def test_second_repro_is_a_no_op(project: Path) -> None:
    output = _run([sys.executable, "-m", "dvc", "repro"], project).stdout
    assert "Running stage" not in output


def test_param_change_reruns_only_downstream(project: Path) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["factorize"]["embedding_size"] = 8
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    output = _run([sys.executable, "-m", "dvc", "repro"], project).stdout
    assert "Running stage 'factorize'" in output
    assert "Running stage 'preprocess'" not in output


def test_index_killed_at_any_write_point_leaves_all_old_or_all_new_outputs(
    project: Path, tmp_path: Path
) -> None:
    before, after = tmp_path / "before", tmp_path / "after"
    shutil.copytree(project, before, symlinks=True)
    params = yaml.safe_load((before / "params.yaml").read_text())
    params["index"]["n_trees"] = 6  # a new index, catalogue and metrics
    (before / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(before, after, symlinks=True)
    assert run_stage(after, "index") == 0
    seen = kill_at_every_write_point(before, after, "index")
    assert "old" in seen and "new" in seen, seen
