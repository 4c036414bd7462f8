"""What the CLI's screens say, at every width: ranks and scores of the lists per interest,
model names in `recli metrics`, every option name in `--help`, and wrapped lines that keep their
indent. The real `recli` (Typer's `CliRunner` on `recli.cli.app`) against the tiny real artifacts
of `tests/cli_artifacts.py`, some edited in a private copy.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import typer
from cli_artifacts import ENV, WIDTHS, edit_catalogue, invoke, runner

from recli.cli import app


# --------------------------------------------------------------------------------------------
# 3. What the screens say
# --------------------------------------------------------------------------------------------
@pytest.fixture
def crossing_interest(copy: Path, facts: dict[str, Any]) -> Path:
    """The artifacts with the user's one interest pointing at the other block, pulled hard: the
    interest's list then finds items the whole-user vector scores in another order."""
    from annoy import AnnoyIndex

    from recli import catalogue

    connection = sqlite3.connect(copy / "index" / "catalogue.sqlite")
    meta = catalogue.read_meta(connection)
    (item_idx,) = connection.execute("SELECT item_idx FROM items WHERE item_id = '125'").fetchone()
    (user_idx,) = connection.execute(
        "SELECT user_idx FROM users WHERE user_id = ?", (facts["user_id"],)
    ).fetchone()
    connection.close()
    index = AnnoyIndex(meta["dimension"], "dot")
    index.load(str(copy / "index" / "items.ann"))
    mean = catalogue.pack_vector(index.get_item_vector(item_idx))
    index.unload()
    settings = json.dumps({"whole_user_share": 0.5, "pull": 3.0})
    edit_catalogue(
        copy,
        ("UPDATE user_interests SET mean = ? WHERE user_idx = ?", (mean, user_idx)),
        ("UPDATE meta SET value = ? WHERE key = 'multi_interest'", (settings,)),
    )
    return copy


def _ranked_rows(stdout: str) -> list[tuple[str, int, float]]:
    """(list served, rank, score) of each row of `recommend --by-interest`, as printed: from
    the tables on a wide terminal, from the stacked records on a narrow one."""
    rows: list[tuple[str, int, float]] = []
    serves = ""
    rank = 0
    for line in stdout.splitlines():
        if line.startswith("serves: "):
            serves = line.removeprefix("serves: ").strip()
        elif match := re.match(r"│\s*(\d+)\s*│[^│]*│[^│]*│\s*(-?\d+\.\d+)\s*│", line):
            rows.append((serves, int(match[1]), float(match[2])))
        elif match := re.fullmatch(r"#(\d+)\s*", line):
            rank = int(match[1])
        elif match := re.match(r"  score: (-?\d+\.\d+)", line):
            rows.append((serves, rank, float(match[1])))
    return rows


@pytest.mark.parametrize("columns", WIDTHS)
def test_by_interest_ranks_run_1_to_k_and_scores_fall_within_each_list(
    crossing_interest: Path, facts: dict[str, Any], columns: int
) -> None:
    args = ["recommend", facts["user_id"], "-k", "10", "--by-interest"]
    result = invoke(crossing_interest, *args, columns=columns)
    assert result.exit_code == 0, result.output
    rows = _ranked_rows(result.stdout)
    assert [rank for _, rank, _ in rows] == list(range(1, 11))
    lists = list(dict.fromkeys(serves for serves, _, _ in rows))
    assert lists == ["overall taste", facts["interest_label"]]
    for served in lists:
        scores = [score for serves, _, score in rows if serves == served]
        assert scores == sorted(scores, reverse=True), (served, scores)
    payload = json.loads(invoke(crossing_interest, *args, "--json").stdout)["recommendations"]
    assert [(r["serves"], r["rank"], round(r["score"], 3)) for r in payload] == [
        (serves, rank, pytest.approx(score, abs=1e-3)) for serves, rank, score in rows
    ]
    # The dealing by weight alternated between the two lists, overall taste first.
    dealt = sorted(payload, key=lambda row: row["dealt"])
    assert [row["serves"] for row in dealt] == ["overall taste", facts["interest_label"]] * 5
    for row in payload:  # the split still adds up for the list's own query
        assert row["text_score"] + row["collaborative_score"] == pytest.approx(row["score"])


@pytest.fixture
def committed_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The repository's own metrics/evaluation.json, in a folder `recli metrics` reads from."""
    source = Path(__file__).resolve().parents[2] / "metrics" / "evaluation.json"
    (tmp_path / "metrics").mkdir()
    shutil.copy(source, tmp_path / "metrics" / "evaluation.json")
    monkeypatch.chdir(tmp_path)
    return json.loads(source.read_text())


@pytest.mark.parametrize("columns", WIDTHS)
def test_metrics_show_model_names_and_no_duplicate_columns(
    committed_metrics: dict[str, Any], columns: int
) -> None:
    result = runner.invoke(app, ["metrics"], env={**ENV, "COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    for key in ("zero_shot", "text_sequence", "ease_low_rank", "multi_interest", "itemknn"):
        assert key not in result.stdout
    served = committed_metrics.get("served", "fused")
    served_name = {"fused": "fused vector", "multi_interest": "multi-interest lists"}[served]
    for name in (f"{served_name} (served)", "recli sequence model", "EASE, reduced rank"):
        assert name in result.stdout
    assert "hr@10 = recall@10" in result.stdout
    models = len(committed_metrics["test"])
    assert result.stdout.count("recall@10") == (1 if columns >= 70 else models)  # per table


def test_metrics_markdown_and_json(committed_metrics: dict[str, Any]) -> None:
    markdown = runner.invoke(app, ["metrics", "--markdown"], env=ENV).stdout.splitlines()
    headers = [cell.strip() for cell in markdown[0].strip("|").split("|")]
    assert headers == ["model", "hr@10 = recall@10", "ndcg@10", "mrr@10", "coverage@10"]
    assert len(set(headers)) == len(headers)
    rows = committed_metrics["test"]
    assert markdown[2].startswith(f"| popularity | {rows['popularity']['hr@10']:.4f} |")
    assert f"| fused vector (served) | {rows['fused']['hr@10']:.4f} |" in "\n".join(markdown)
    # --json keeps the evaluation's own keys and every column.
    payload = json.loads(runner.invoke(app, ["metrics", "--json"], env=ENV).stdout)
    assert set(payload["models"]) == set(committed_metrics["test"])
    assert (
        payload["models"]["zero_shot"]["recall@10"]
        == committed_metrics["test"]["zero_shot"]["recall@10"]
    )


def _commands() -> list[list[str]]:
    group = typer.main.get_command(app)
    return [[], *([name] for name in group.commands)]  # type: ignore[attr-defined]


def _option_names(path: list[str]) -> set[str]:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return {
        name
        for param in command.params
        if param.param_type_name == "option" and not param.hidden
        for name in (*param.opts, *param.secondary_opts)
    }


@pytest.mark.parametrize("columns", WIDTHS)
@pytest.mark.parametrize("path", _commands(), ids=lambda path: " ".join(path) or "recli")
def test_help_shows_every_option_name_in_full(path: list[str], columns: int) -> None:
    result = runner.invoke(app, [*path, "--help"], env={**ENV, "COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns
    words = set(re.findall(r"(?<![\w-])-{1,2}[\w-]+", result.stdout))
    names = _option_names(path)
    assert names and names <= words, sorted(names - words)


@pytest.fixture
def long_titles(copy: Path) -> Path:
    """The artifacts with every title long enough to wrap at 120 columns."""
    subtitle = ": the extended director's cut, restored from the original negative, with notes"
    edit_catalogue(copy, ("UPDATE items SET title = title || ?", (subtitle,)))
    return copy


LABELS = (
    "user ",
    "interest group",
    "interests: ",
    "stands out: ",
    "recently: ",
    "tried most: ",
    "group terms: ",
    "most watched genres: ",
    "most frequent tags: ",
)


@pytest.mark.parametrize("columns", WIDTHS)
@pytest.mark.parametrize(
    "args", [["recommend", "USER", "-k", "3"], ["user", "USER", "-n", "3"], ["explore", "USER"]]
)
def test_wrapped_lines_keep_their_indent(
    long_titles: Path, facts: dict[str, Any], args: list[str], columns: int
) -> None:
    args = [facts["user_id"] if a == "USER" else a for a in args]
    result = invoke(long_titles, *args, columns=columns)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns
    top = next(number for number, line in enumerate(lines) if line.startswith("╭"))
    bottom = next(number for number, line in enumerate(lines) if line.startswith("╰"))
    panel = [line[2:] for line in lines[top + 1 : bottom]]
    assert any(line.startswith(("recently: ", "tried most: ", "stands out: ")) for line in panel)
    label = ""
    for line in panel:
        if line.startswith(LABELS):
            label = next(prefix for prefix in LABELS if line.startswith(prefix))
            continue
        # A continuation: indented under its label's value, never back at the left edge.
        indent = len(line) - len(line.lstrip())
        assert indent >= min(len(label), 10) and line.strip(), (label, line)
    # Stacked records (narrow terminals): every line of a record, up to the blank line that
    # ends it, is indented under its heading.
    in_record = False
    for line in lines:
        if re.fullmatch(r"#\d+\s*", line):
            in_record = True
        elif not line.strip():
            in_record = False
        elif in_record:
            assert line.startswith("  "), line
            if not re.match(r"  [\w ]+: ", line):
                assert line.startswith("     "), line  # a wrapped value, under the value
