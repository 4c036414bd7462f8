"""The CLI's errors and the edges a real terminal reaches, on the tiny real artifacts of
`tests/cli_artifacts.py`: one `error:` line and exit 1 for a bad input or missing or damaged
artifacts, exit 2 for a usage error; ids that are not UTF-8, negative ids, `-k` against what is
left to recommend, `--json` on every command that prints data, and narrow terminals."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_artifacts import ENV, edit_catalogue, invoke, one_error_line, place_encoder, runner

from recli.cli import app


# --------------------------------------------------------------------------------------------
# Errors: one line, exit 1; usage errors exit 2
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["recommend", "999"], "unknown user id '999': the catalogue has 40 users"),
        (["recommend", "999"], "nearest: 39, 38"),
        (["recommend", ""], "empty user id"),
        (["recommend", "abc"], "is not a number"),
        (["recommend", "3", "-k", "0"], "-k must be at least 1"),
        (["recommend", "3", "-k", "-2"], "-k must be at least 1"),
        (["recommend", "3", "-k", "31"], "more than the 22 items user '3' has not interacted"),
        (
            ["explore", "3", "-k", "31"],
            "more than the catalogue's 30 items: use -k between 1 and 30",
        ),
        (["user", "1000"], "unknown user id '1000'"),
        (["similar", "", "-k", "3"], "empty item id"),
    ],
)
def test_input_errors(facts: dict[str, Any], args: list[str], message: str) -> None:
    assert message in one_error_line(invoke(facts["root"], *args))


def test_missing_artifacts(tmp_path: Path) -> None:
    line = one_error_line(invoke(tmp_path / "nowhere", "recommend", "1"))
    assert "not found: run `dvc repro`" in line
    (tmp_path / "index").mkdir()
    line = one_error_line(invoke(tmp_path, "recommend", "1"))
    assert "catalogue.sqlite not found: run `dvc repro`" in line


def test_corrupted_catalogue(copy: Path, facts: dict[str, Any]) -> None:
    (copy / "index" / "catalogue.sqlite").write_bytes(b"this is not sqlite" * 100)
    line = one_error_line(invoke(copy, "recommend", facts["user_id"]))
    assert "corrupted" in line and "dvc repro -f index" in line


def test_schema_version_mismatch(copy: Path, facts: dict[str, Any]) -> None:
    connection = sqlite3.connect(copy / "index" / "catalogue.sqlite")
    connection.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    connection.commit()
    connection.close()
    line = one_error_line(invoke(copy, "recommend", facts["user_id"]))
    assert "schema version 99" in line and "dvc repro index" in line


def test_truncated_index(copy: Path, facts: dict[str, Any]) -> None:
    path = copy / "index" / "items.ann"
    path.write_bytes(path.read_bytes()[:1000])
    line = one_error_line(invoke(copy, "recommend", facts["user_id"]))
    assert "items.ann" in line and "dvc repro -f index" in line


@pytest.mark.parametrize(
    "args", [["recommend"], ["recommend", "3", "--bogus"], ["cluster", "x"], ["nonsense"]]
)
def test_usage_errors_exit_2(facts: dict[str, Any], args: list[str]) -> None:
    assert invoke(facts["root"], *args).exit_code == 2


def test_main_maps_errors_without_traceback(tmp_path: Path) -> None:
    process = subprocess.run(
        [sys.executable, "-m", "recli", "--artifacts", str(tmp_path / "x"), "recommend", "1"],
        capture_output=True,
        text=True,
    )
    assert process.returncode == 1
    assert process.stdout == ""
    assert process.stderr.startswith("error: ") and "Traceback" not in process.stderr


# --------------------------------------------------------------------------------------------
# Edges a real terminal reaches
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["recommend", "user", "similar"])
def test_an_id_that_is_not_utf8_is_one_error_line(facts: dict[str, Any], command: str) -> None:
    # A shell passes the byte 0xff to Python as the lone surrogate U+DCFF.
    line = one_error_line(invoke(facts["root"], command, "\udcff"))
    assert "'\\xff' is not valid UTF-8 text" in line and f"recli {command}" not in line[:20]


def test_search_text_that_is_not_utf8_is_one_error_line(facts: dict[str, Any]) -> None:
    line = one_error_line(invoke(facts["root"], "search", "robots \udcff"))
    assert "search text 'robots \\xff' is not valid UTF-8" in line


def test_negative_ids_are_looked_up_not_taken_for_options(facts: dict[str, Any]) -> None:
    assert "unknown cluster -1" in one_error_line(invoke(facts["root"], "cluster", "-1"))
    line = one_error_line(invoke(facts["root"], "recommend", "-5"))
    assert "unknown user id '-5'" in line


def test_k_is_checked_against_the_items_the_user_has_not_seen(facts: dict[str, Any]) -> None:
    unseen = 30 - len(facts["history_item_ids"])
    result = invoke(facts["root"], "recommend", facts["user_id"], "-k", str(unseen), "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["recommendations"]) == unseen
    line = one_error_line(invoke(facts["root"], "recommend", facts["user_id"], "-k", "29"))
    assert f"more than the {unseen} items user '{facts['user_id']}' has not" in line
    assert f"use -k between 1 and {unseen}" in line


@pytest.mark.parametrize(
    ("command", "target"),
    [
        ("recommend", "USER"),
        ("recommend --by-interest", "USER"),
        ("similar", "ITEM"),
        ("explore", "USER"),
        ("search", "robots"),
    ],
)
@pytest.mark.parametrize("k", ["31", "29", "1000000"])
def test_the_k_a_refusal_advises_is_accepted(
    facts: dict[str, Any], tiny_encoder_dir: Path, command: str, target: str, k: str
) -> None:
    target = {"USER": facts["user_id"], "ITEM": facts["item_id"]}.get(target, target)
    args = [*command.split(), target, "--json"]
    if command == "search":
        args += ["--encoder", str(tiny_encoder_dir)]
    first = invoke(facts["root"], *args, "-k", k)
    if first.exit_code == 0:
        return  # nothing to advise
    advised = re.fullmatch(
        r"error: -k \d+ is more than .*: use -k between 1 and (\d+)", one_error_line(first)
    )
    assert advised, first.stderr
    result = invoke(facts["root"], *args, "-k", advised[1])
    assert result.exit_code == 0, result.output


def test_a_user_who_has_seen_every_item_is_not_advised_an_empty_range(
    copy: Path, facts: dict[str, Any]
) -> None:
    edit_catalogue(
        copy,
        (
            "INSERT INTO history (user_idx, item_idx, timestamp, rating) "
            "SELECT u.user_idx, i.item_idx, 0, 5.0 FROM users u, items i WHERE u.user_id = ? "
            "AND i.item_idx NOT IN (SELECT item_idx FROM history WHERE user_idx = u.user_idx)",
            (facts["user_id"],),
        ),
    )
    for extra in ([], ["--by-interest"]):
        line = one_error_line(invoke(copy, "recommend", facts["user_id"], "-k", "1", *extra))
        assert f"user '{facts['user_id']}' has interacted with every item" in line
        assert "between 1 and 0" not in line


@pytest.mark.parametrize(
    ("args", "check"),
    [
        (["user", "USER", "-n", "2"], lambda p: len(p["history"]) == 2 and p["cluster"]),
        (["clusters"], lambda p: [c["label"] for c in p] == ["Block A · Action", "Block B"]),
        (
            ["cluster", "0", "--members", "2"],
            lambda p: (
                p["members"] == ["0", "1"]
                and [t["term"] for t in p["top_terms"]] == ["Action", "#tag1"]
                and p["exemplars"][0]["title"]
            ),
        ),
        (["similar", "ITEM", "-k", "2"], lambda p: [n["rank"] for n in p["similar"]] == [1, 2]),
        (["doctor"], lambda p: all(check["status"] != "problem" for check in p)),
    ],
)
def test_every_command_that_prints_data_has_json(
    facts: dict[str, Any], args: list[str], check: Any
) -> None:
    args = [{"USER": facts["user_id"], "ITEM": facts["item_id"]}.get(a, a) for a in args]
    result = invoke(facts["root"], *args, "--json")
    assert result.exit_code == 0, result.output
    assert check(json.loads(result.stdout))


def test_metrics_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "evaluation.json").write_text(
        json.dumps({"test": {"m": {"ndcg@10": 0.5, "ndcg@20": 0.6}}})
    )
    result = runner.invoke(app, ["metrics", "--json"], env=ENV)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["models"] == {"m": {"ndcg@10": 0.5}}


def test_weak_terms_are_not_shown_as_over_represented(facts: dict[str, Any]) -> None:
    result = invoke(facts["root"], "cluster", "0")
    assert result.exit_code == 0, result.output
    assert "Comedy" not in result.stdout  # lift ×1.01 in the profile


def test_a_narrow_terminal_gets_stacked_records(facts: dict[str, Any]) -> None:
    result = invoke(facts["root"], "recommend", facts["user_id"], "-k", "3", env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(len(line) <= 40 for line in lines)
    assert {"#1", "#2", "#3"} <= set(lines)
    assert any(line.startswith("  title: ") for line in lines)
    wide = invoke(facts["root"], "recommend", facts["user_id"], "-k", "3")
    assert "#1" not in wide.stdout.splitlines()  # a table there


def test_a_long_search_query_is_shortened_in_the_title(copy: Path, tiny_encoder_dir: Path) -> None:
    place_encoder(copy, tiny_encoder_dir)
    query = "space opera with robots " * 500
    result = invoke(copy, "search", query, "-k", "2")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) < 15
    assert "space opera with robots space opera" in result.stdout and "…" in result.stdout
    payload = json.loads(invoke(copy, "search", query, "-k", "2", "--json").stdout)
    assert payload["query"] == query and len(payload["items"]) == 2
