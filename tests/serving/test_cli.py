"""The CLI's commands on the tiny real artifacts of `tests/cli_artifacts.py`: what each one
prints, `search` with a tiny encoder and what `recommend` imports, and the lists per interest and
exploration. Input errors, damaged artifacts and the edges a real terminal reaches are in
`test_cli_errors.py`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_artifacts import ENV, edit_catalogue, invoke, one_error_line, place_encoder, runner

from recli import __version__
from recli.cli import app

HEAVY = {
    "torch",
    "transformers",
    "sentence_transformers",
    "sklearn",
    "polars",
    "numpy",
    "pandas",
    "pydantic",
}


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------
def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.stdout


def test_recommend(facts: dict[str, Any]) -> None:
    result = invoke(facts["root"], "recommend", facts["user_id"], "-k", "5")
    assert result.exit_code == 0, result.output
    assert f"user {facts['user_id']}" in result.stdout
    assert facts["cluster_label"] in result.stdout
    assert f"stands out: {facts['user_term']}" in result.stdout  # the user's own
    assert f"interests: {facts['interest_label']} 100%" in result.stdout  # one block: one
    assert facts["expected_top_title"] in result.stdout
    assert "because" in result.stdout and "group ×2.0" in result.stdout
    assert "How the score is formed" not in result.stdout


def test_recommend_explain(facts: dict[str, Any]) -> None:
    result = invoke(facts["root"], "recommend", facts["user_id"], "--explain")
    assert result.exit_code == 0, result.output
    assert "How the score is formed" in result.stdout
    assert "50% text" in result.stdout and "collab" in result.stdout


def test_recommend_json(facts: dict[str, Any]) -> None:
    result = invoke(facts["root"], "recommend", facts["user_id"], "-k", "4", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["user"] == facts["user_id"]
    assert payload["cluster"]["label"] == facts["cluster_label"]
    (interest,) = payload["interests"]
    assert interest["label"] == facts["interest_label"] and interest["weight"] == 1.0
    assert interest["cluster"] == facts["interest_cluster"] == facts["cluster"]
    assert interest["medoid"]["item_id"] in facts["history_item_ids"]
    recommendations = payload["recommendations"]
    assert len(recommendations) == 4
    ids = [r["item_id"] for r in recommendations]
    assert ids[0] == facts["expected_top_item_id"]
    assert not set(ids) & facts["history_item_ids"]
    for recommendation in recommendations:
        assert {"item_id", "title", "score", "because"} <= recommendation.keys()
        assert recommendation["because"]["item_id"] in facts["history_item_ids"]


def test_command_level_artifacts_and_env(facts: dict[str, Any]) -> None:
    after = runner.invoke(
        app, ["recommend", facts["user_id"], "--artifacts", str(facts["root"])], env=ENV
    )
    assert after.exit_code == 0, after.output
    from_env = runner.invoke(
        app, ["recommend", facts["user_id"]], env={**ENV, "RECLI_ARTIFACTS": str(facts["root"])}
    )
    assert from_env.exit_code == 0, from_env.output


def test_user(facts: dict[str, Any]) -> None:
    result = invoke(facts["root"], "user", facts["user_id"], "-n", "3")
    assert result.exit_code == 0, result.output
    assert facts["cluster_label"] in result.stdout
    assert "group terms: Action, #tag1" in result.stdout
    assert f"stands out: {facts['user_term']}" in result.stdout
    assert "interests, heaviest first" in result.stdout and facts["interest_label"] in result.stdout
    assert "most frequent tags: #tag" in result.stdout  # the synthetic items are tagged
    assert "most recent first" in result.stdout
    assert result.stdout.count("1970-01-01") == 3  # the synthetic timestamps are small


def test_clusters_and_cluster(facts: dict[str, Any]) -> None:
    result = invoke(facts["root"], "clusters")
    assert result.exit_code == 0, result.output
    assert "Block A · Action" in result.stdout and "Block B" in result.stdout
    assert "50.0%" in result.stdout
    result = invoke(facts["root"], "cluster", "0", "--members", "3")
    assert result.exit_code == 0, result.output
    assert "members: 0, 1, 2 …" in result.stdout
    assert "exemplars" in result.stdout and facts["expected_top_title"] in result.stdout
    assert "×1.50" in result.stdout
    # Cluster 1's profile has only the required keys.
    assert invoke(facts["root"], "cluster", "1").exit_code == 0
    assert "unknown cluster 5" in one_error_line(invoke(facts["root"], "cluster", "5"))


def test_similar(facts: dict[str, Any]) -> None:
    result = invoke(facts["root"], "similar", facts["item_id"], "-k", "3")
    assert result.exit_code == 0, result.output
    assert "items like Film 0" in result.stdout
    assert "Film 14 (1994)" in result.stdout  # the strongest item of the same block
    assert "unknown item id '99'" in one_error_line(invoke(facts["root"], "similar", "99"))


def test_doctor(facts: dict[str, Any], copy: Path) -> None:
    result = invoke(facts["root"], "doctor")
    assert result.exit_code == 0, result.output
    assert "index sha256" in result.stdout and "problem" not in result.stdout
    data = (copy / "index" / "items.ann").read_bytes()
    (copy / "index" / "items.ann").write_bytes(data[: len(data) // 2])
    result = invoke(copy, "doctor")
    assert result.exit_code == 1
    assert "problem" in result.stdout
    assert "error: 3 problem(s) (served files, index, index sha256)" in result.stderr


def test_metrics_still_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "metrics").mkdir()
    rows = {"als": {"ndcg@10": 0.07, "hr@10": 0.13}, "ease": {"ndcg@10": 0.08, "hr@10": 0.12}}
    (tmp_path / "metrics" / "evaluation.json").write_text(json.dumps({"test": rows}))
    result = runner.invoke(app, ["metrics", "--markdown"], env=ENV)
    assert result.exit_code == 0, result.output
    assert "| EASE | 0.0800 | 0.1200 |" in result.stdout  # the name a reader knows


def test_metrics_against_a_git_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    metrics_file = tmp_path / "metrics" / "evaluation.json"
    metrics_file.parent.mkdir()
    metrics_file.write_text(json.dumps({"test": {"ease": {"ndcg@10": 0.05}}}))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run(["git", "add", "metrics"], check=True)
    subprocess.run([*git, "commit", "-qm", "baseline"], check=True)
    metrics_file.write_text(json.dumps({"test": {"ease": {"ndcg@10": 0.08}}}))
    result = runner.invoke(app, ["metrics", "--rev", "HEAD"], env=ENV)
    assert result.exit_code == 0, result.output
    assert "0.0800 (+0.0300)" in result.stdout and "changes are against HEAD" in result.stdout
    line = one_error_line(runner.invoke(app, ["metrics", "--rev", "no-such-rev"], env=ENV))
    assert "no metrics/evaluation.json at git revision 'no-such-rev'" in line


def test_metrics_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    line = one_error_line(runner.invoke(app, ["metrics"], env=ENV))
    assert "metrics/evaluation.json not found: run `dvc repro` first" in line
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "evaluation.json").write_text("{not json")
    line = one_error_line(runner.invoke(app, ["metrics"], env=ENV))
    assert "is corrupted: run `dvc repro -f evaluate`" in line
    (tmp_path / "metrics" / "evaluation.json").write_text(json.dumps({"test": {"m": {"hr@5": 1}}}))
    assert "unknown split 'train'" in one_error_line(
        runner.invoke(app, ["metrics", "--split", "train"], env=ENV)
    )
    assert "no metrics at --k 10" in one_error_line(runner.invoke(app, ["metrics"], env=ENV))
    result = runner.invoke(app, ["metrics", "--k", "5", "--markdown"], env=ENV)
    assert result.exit_code == 0 and "| m | 1.0000 |" in result.stdout


# --------------------------------------------------------------------------------------------
# search (loads the tiny encoder) and what `recommend` imports
# --------------------------------------------------------------------------------------------
def test_search_with_the_tiny_encoder(copy: Path, tiny_encoder_dir: Path) -> None:
    place_encoder(copy, tiny_encoder_dir)
    result = invoke(copy, "search", "space opera with robots", "-k", "3")
    assert result.exit_code == 0, result.output
    assert "items for “space opera with robots”" in result.stdout
    assert result.stdout.count("Film ") == 3
    line = one_error_line(invoke(copy, "search", "   "))
    assert "empty search text" in line
    shutil.rmtree(copy / "finetune")
    line = one_error_line(invoke(copy, "search", "robots"))
    assert "no encoder at" in line and "dvc repro finetune" in line


def test_recommend_imports_nothing_heavy(facts: dict[str, Any]) -> None:
    command = ["-X", "importtime", "-m", "recli", "recommend", facts["user_id"]]
    process = subprocess.run(
        [sys.executable, *command, "--artifacts", str(facts["root"])],
        capture_output=True,
        text=True,
    )
    assert process.returncode == 0, process.stderr
    imported = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in process.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert {"recli", "rich", "annoy"} <= imported  # the parse found the real list
    assert not imported & HEAVY, sorted(imported & HEAVY)
    # A plain call is answered by `recli.entry` without Typer (and its copy of Click).
    assert "typer" not in imported and "click" not in imported


def test_benchmark_script_runs(copy: Path, tiny_encoder_dir: Path, tmp_path: Path) -> None:
    place_encoder(copy, tiny_encoder_dir)
    script = Path(__file__).parents[2] / "benchmarks" / "recommend.py"
    out = tmp_path / "bench.json"
    arguments = ["--artifacts", str(copy), "--runs", "1", "--users", "3"]
    subprocess.run(
        [sys.executable, str(script), *arguments, "--out", str(out), "--no-compile"],
        check=True,
        capture_output=True,
    )
    result = json.loads(out.read_text())
    assert result["ratio"] > 0 and result["in_process"]["users"] == 3
    assert result["search_ms_median"] > 0 and result["search_target_ms"] == 2000


# --------------------------------------------------------------------------------------------
# Interests: several lists per user, and exploration
# --------------------------------------------------------------------------------------------
def test_recommend_by_interest(facts: dict[str, Any]) -> None:
    result = invoke(facts["root"], "recommend", facts["user_id"], "-k", "6", "--by-interest")
    assert result.exit_code == 0, result.output
    assert "serves: overall taste" in result.stdout
    assert f"serves: {facts['interest_label']}" in result.stdout
    payload = json.loads(
        invoke(
            facts["root"], "recommend", facts["user_id"], "-k", "6", "--by-interest", "--json"
        ).stdout
    )
    rows = payload["recommendations"]
    assert len(rows) == 6 and [row["rank"] for row in rows] == list(range(1, 7))
    # Whole-user share 0.5 and one interest of weight 1: the slots alternate, overall first...
    dealt = sorted(rows, key=lambda row: row["dealt"])
    assert [row["serves"] for row in dealt] == ["overall taste", facts["interest_label"]] * 3
    # ...and the rows are shown grouped by the list they serve, in the order first dealt.
    assert [row["serves"] for row in rows] == ["overall taste"] * 3 + [facts["interest_label"]] * 3
    ids = [row["item_id"] for row in rows]
    assert len(set(ids)) == 6
    assert not set(ids) & facts["history_item_ids"]
    assert set(ids) <= facts["block_a_item_ids"]  # both lists are the user's own block


def test_recommend_serves_by_interest_by_default_where_fuse_chose_so(
    facts: dict[str, Any], copy: Path
) -> None:
    facts_id = facts["user_id"]

    def answer(*flags: str) -> dict[str, Any]:
        return json.loads(invoke(copy, "recommend", facts_id, "-k", "6", *flags, "--json").stdout)

    whole = answer()
    assert whole["by_interest"] is False  # the fixture's fuse did not choose the lists
    assert {row.get("serves") for row in whole["recommendations"]} == {None}
    chosen = {"whole_user_share": 0.5, "pull": 0.5, "by_default": True}
    edit_catalogue(
        copy, ("UPDATE meta SET value = ? WHERE key = 'multi_interest'", (json.dumps(chosen),))
    )
    default = invoke(copy, "recommend", facts_id, "-k", "6")
    assert default.exit_code == 0, default.output
    assert "serves: overall taste" in default.stdout
    assert "served by default" in " ".join(default.stdout.split())
    asked = json.loads(
        invoke(copy, "recommend", facts_id, "-k", "6", "--by-interest", "--json").stdout
    )
    served = json.loads(invoke(copy, "recommend", facts_id, "-k", "6", "--json").stdout)
    assert served == asked and served["by_interest"] is True
    single = json.loads(
        invoke(copy, "recommend", facts_id, "-k", "6", "--whole-user", "--json").stdout
    )
    assert single == whole


def test_explore_suggests_the_only_topic_the_user_has_not_tried(facts: dict[str, Any]) -> None:
    result = invoke(facts["root"], "explore", facts["user_id"], "-k", "4", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    block_a, block_b = facts["topic_labels"][:2], facts["topic_labels"][2]
    assert {entry["label"] for entry in payload["engaged_topics"]} <= set(block_a)
    assert payload["topics_left"] == 1
    (suggestion,) = payload["suggestions"]
    assert suggestion["label"] == block_b and suggestion["probability"] == 1.0
    assert set(suggestion["because"]) <= set(block_a) and suggestion["because"]
    assert suggestion["closest_interest"] == facts["interest_label"]
    ids = [item["item_id"] for item in suggestion["items"]]
    assert len(ids) == 4 and set(ids) <= facts["block_b_item_ids"]
    scores = [item["score"] for item in suggestion["items"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("columns", ["80", "120"])
def test_explore_user_and_by_interest_read_at_common_widths(
    facts: dict[str, Any], columns: str
) -> None:
    for args in (
        ["explore", facts["user_id"]],
        ["user", facts["user_id"]],
        ["recommend", facts["user_id"], "--by-interest"],
    ):
        result = invoke(facts["root"], *args, env={"COLUMNS": columns})
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert max(len(line) for line in lines) <= int(columns)
    explored = invoke(facts["root"], "explore", facts["user_id"], env={"COLUMNS": "80"}).stdout
    assert facts["topic_labels"][2] in explored and "likely next" in explored
    assert "often move on to it" in explored


def test_explore_input_errors(facts: dict[str, Any]) -> None:
    line = one_error_line(invoke(facts["root"], "explore", facts["user_id"], "--topics", "0"))
    assert "--topics must be at least 1" in line
    line = one_error_line(invoke(facts["root"], "explore", "no-such-user"))
    assert "user id 'no-such-user'" in line
