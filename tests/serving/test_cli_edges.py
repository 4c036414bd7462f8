"""The CLI at its edges: what a user can type or pipe into, and the answers it must not give
short or silently.

Every test runs the real `recli` (Typer's `CliRunner` on `recli.cli.app`, or `python -m recli`
in a subprocess where a real file descriptor matters) against the tiny real artifacts of
`tests/cli_artifacts.py`, some of them edited in a private copy to hold what a catalogue can
hold: control characters in titles, ids that are not numbers, an index that answers short. What
the screens say is in `test_cli_screens.py`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_artifacts import WIDTHS, edit_catalogue, invoke, one_error_line

BIG = "99999999999999999999"  # more than SQLite's 64-bit integers
HOSTILE = "\x1b[31mRed\x1b[0m \u202eevil\u202c \x07bell\r\x9bend"
"""A title as a catalogue can hold it: an SGR colour, a bidi override, a bell, a carriage
return and a C1 control."""
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""Characters that must never reach the terminal raw (a line feed is layout)."""


def recli_process(*args: str, **kwargs: Any) -> list[str]:
    return [sys.executable, "-m", "recli", *args]


# --------------------------------------------------------------------------------------------
# 1. No traceback on any input or output fault
# --------------------------------------------------------------------------------------------
INTEGERS = [
    (["cluster", "N"], "cluster id"),
    (["cluster", "0", "--members", "N"], "--members"),
    (["user", "USER", "--history", "N"], "--history"),
    (["user", "USER", "-n", "N"], "--history"),
    (["explore", "USER", "--topics", "N"], "--topics"),
    (["explore", "USER", "-k", "N"], "-k"),
    (["recommend", "USER", "-k", "N"], "-k"),
    (["similar", "ITEM", "-k", "N"], "-k"),
    (["search", "robots", "-k", "N"], "-k"),
    (["metrics", "--k", "N"], "--k"),
]
"""Every integer a command takes, `N` where it goes, and how the refusal names it."""


def _filled(facts: dict[str, Any], args: list[str], value: str) -> list[str]:
    return [
        {"USER": facts["user_id"], "ITEM": facts["item_id"], "N": value}.get(a, a) for a in args
    ]


@pytest.mark.parametrize("big", [BIG, f"-{BIG}", "9" * 5000, "-" + "9" * 5000])
@pytest.mark.parametrize(("args", "named"), INTEGERS)
def test_an_integer_too_large_for_sqlite_is_one_error_line(
    facts: dict[str, Any], args: list[str], named: str, big: str
) -> None:
    line = one_error_line(invoke(facts["root"], *_filled(facts, args, big)))
    assert f"{named} " in line and "is out of range" in line and "e.g." in line
    assert len(line) < 250  # however many digits were typed


@pytest.mark.parametrize("args", [args for args, _ in INTEGERS])
def test_a_value_that_is_no_integer_is_echoed_short_and_visible(
    facts: dict[str, Any], args: list[str]
) -> None:
    for typed, echoed in [
        ("x" * 5000, "'" + "x" * 39 + "…'"),
        ("\x1b[2J\u202e7\x9b", "'\\x1b[2J\\u202e7\\x9b'"),
        ("12abc", "'12abc'"),
    ]:
        result = invoke(facts["root"], *_filled(facts, args, typed))
        assert result.exit_code == 2, result.output  # a usage error, as Click gives it
        assert f"{echoed} is not a valid int." in result.stderr
        assert "Invalid value for" in result.stderr
        assert len(result.stderr) < 1000 and not RAW.search(result.stderr)


@pytest.mark.parametrize(
    "args",
    [["recommend", "USER", "LONG"], ["similar", "100", "LONG"], ["metrics", "--split", "LONG"]],
)
def test_a_long_word_anywhere_is_echoed_short(facts: dict[str, Any], args: list[str]) -> None:
    # Extra arguments are quoted by Click itself, a split by recli: both cut short.
    long = "y" * 5000 + "\x1b"
    args = [long if a == "LONG" else facts["user_id"] if a == "USER" else a for a in args]
    result = invoke(facts["root"], *args)
    assert result.exit_code in (1, 2), result.output
    assert "yyy…" in result.stderr and "y" * 41 not in result.stderr
    assert len(result.stderr) < 1000 and not RAW.search(result.stderr)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize(
    "args",
    [["recommend", "USER", "--json"], ["recommend", "USER"], ["recommend", "--help"], ["--help"]],
)
def test_a_full_output_device_is_one_error_line(facts: dict[str, Any], args: list[str]) -> None:
    args = [facts["user_id"] if a == "USER" else a for a in args]
    with open("/dev/full", "w") as full:
        process = subprocess.run(
            recli_process("--artifacts", str(facts["root"]), *args),
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "100"},
        )
    assert process.returncode == 1
    assert "Traceback" not in process.stderr
    assert process.stderr.strip().splitlines() == [
        "error: cannot write the output: No space left on device; free some space or write "
        "elsewhere"
    ]


@pytest.mark.parametrize(
    "args", [["recommend", "USER", "-k", "20"], ["recommend", "USER", "--json"]]
)
def test_a_closed_pipe_ends_quietly(facts: dict[str, Any], args: list[str]) -> None:
    args = [facts["user_id"] if a == "USER" else a for a in args]
    process = subprocess.Popen(
        recli_process("--artifacts", str(facts["root"]), *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before the first line is written
    stderr = process.stderr.read().decode()
    assert process.wait() in (1, 141)
    assert stderr == ""


def test_a_long_id_is_shortened_in_the_error_line(facts: dict[str, Any]) -> None:
    line = one_error_line(invoke(facts["root"], "recommend", "x" * 100_000))
    assert "'" + "x" * 39 + "…'" in line
    assert len(line) < 250
    line = one_error_line(invoke(facts["root"], "similar", "9" * 60))
    assert "unknown item id '" + "9" * 39 + "…'" in line
    assert "nearest: 129, 128" in line  # a numeric id is still matched by value


@pytest.mark.parametrize("command", ["recommend", "user", "similar", "explore"])
def test_control_characters_in_an_id_are_escaped(facts: dict[str, Any], command: str) -> None:
    line = one_error_line(invoke(facts["root"], command, "\x1b[2J\u202eevil\x07\r\x9b"))
    assert not RAW.search(line)
    assert "'\\x1b[2J\\u202eevil\\x07\\r\\x9b'" in line
    # A lone surrogate that is not a shell's undecodable byte cannot crash the error either.
    line = one_error_line(invoke(facts["root"], command, "a\ud800b"))
    assert "'a\\ud800b' is not valid UTF-8" in line


@pytest.fixture
def hostile(copy: Path, facts: dict[str, Any]) -> Path:
    """The artifacts with control characters in the titles of the user's top pick and of an
    item in their recent history, and in an interest group's label."""
    history_item = sorted(facts["history_item_ids"])[0]
    edit_catalogue(
        copy,
        (
            "UPDATE items SET title = ? WHERE item_id IN (?, ?)",
            (HOSTILE, facts["expected_top_item_id"], history_item),
        ),
        ("UPDATE clusters SET label = ? WHERE cluster = 0", (HOSTILE,)),
    )
    return copy


@pytest.mark.parametrize("columns", WIDTHS)
@pytest.mark.parametrize(
    "args",
    [
        ["recommend", "USER", "-k", "5"],
        ["recommend", "USER", "-k", "5", "--by-interest", "--explain"],
        ["user", "USER"],
        ["similar", "TOP", "-k", "3"],
        ["clusters"],
        ["cluster", "0"],
        ["explore", "USER"],
    ],
)
def test_control_characters_in_titles_are_escaped_on_screen(
    hostile: Path, facts: dict[str, Any], args: list[str], columns: int
) -> None:
    names = {"USER": facts["user_id"], "TOP": facts["expected_top_item_id"]}
    result = invoke(hostile, *[names.get(a, a) for a in args], columns=columns)
    assert result.exit_code == 0, result.output
    assert not RAW.search(result.stdout), repr(result.stdout)
    assert "\\x1b[31mRed" in result.stdout or args[0] == "explore"  # explore shows other items


def test_json_keeps_titles_exact_and_escapes_them_itself(
    hostile: Path, facts: dict[str, Any]
) -> None:
    result = invoke(hostile, "recommend", facts["user_id"], "--json")
    assert result.exit_code == 0, result.output
    assert not RAW.search(result.stdout)  # JSON \u escapes, C1 and bidi controls too
    payload = json.loads(result.stdout)
    assert payload["recommendations"][0]["title"] == HOSTILE
    assert payload["cluster"]["label"] == HOSTILE


# --------------------------------------------------------------------------------------------
# Unknown ids: the closest spellings only when they are close
# --------------------------------------------------------------------------------------------
@pytest.fixture
def text_ids(copy: Path) -> Path:
    """The artifacts with item ids that are words, not numbers (`film-100`, …)."""
    edit_catalogue(copy, ("UPDATE items SET item_id = 'film-' || item_id", ()))
    return copy


def test_a_misspelt_text_id_gets_the_close_ones(text_ids: Path) -> None:
    line = one_error_line(invoke(text_ids, "similar", "flim-101"))
    assert "unknown item id 'flim-101'" in line
    assert "nearest: film-101" in line


def test_an_unrelated_text_id_gets_no_nearest(text_ids: Path) -> None:
    line = one_error_line(invoke(text_ids, "similar", "zebra"))
    assert "unknown item id 'zebra': the catalogue has 30 items (e.g. film-100" in line
    assert "nearest" not in line


def test_a_numeric_id_still_gets_the_nearest_by_value(facts: dict[str, Any]) -> None:
    line = one_error_line(invoke(facts["root"], "recommend", "45"))
    assert line.endswith("nearest: 39, 38, 37, 36, 35")


# --------------------------------------------------------------------------------------------
# 2. No silent short or meaningless answers
# --------------------------------------------------------------------------------------------
def test_similar_refuses_more_than_the_other_items(facts: dict[str, Any]) -> None:
    others = facts["n_items"] - 1
    line = one_error_line(invoke(facts["root"], "similar", facts["item_id"], "-k", str(others + 1)))
    assert (
        f"more than the {others} other items in the catalogue: use -k between 1 and {others}"
        in line
    )
    result = invoke(facts["root"], "similar", facts["item_id"], "-k", str(others), "--json")
    assert result.exit_code == 0, result.output
    found = [row["item_id"] for row in json.loads(result.stdout)["similar"]]
    assert len(found) == others and facts["item_id"] not in found


@pytest.mark.parametrize("columns", [40, 120])
def test_explore_says_when_a_topic_or_the_topics_fall_short(
    facts: dict[str, Any], columns: int
) -> None:
    # The user has tried every topic but block B, whose items they have none of.
    unseen = len(facts["block_b_item_ids"])
    args = ["explore", facts["user_id"], "-k", str(unseen + 5), "--topics", "3"]
    result = invoke(facts["root"], *args, columns=columns)
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= columns
    screen = " ".join(result.stdout.split())  # a note may wrap on a narrow terminal
    payload = json.loads(invoke(facts["root"], *args, "--json").stdout)
    (suggestion,) = payload["suggestions"]
    assert suggestion["unseen_items"] == unseen and len(suggestion["items"]) == unseen
    note = f"(only {unseen} unseen items in this topic)"
    # Under the topic's heading, before its rows.
    label, last = suggestion["label"], suggestion["items"][-1]["title"]
    assert screen.index(label) < screen.index(note) < screen.rindex(last)
    assert screen.endswith("(only 1 untried topic left; 3 asked for)")
    assert payload["topics_left"] == 1
    # Asked for no more than there is: the answer is whole and says nothing more.
    args = ["explore", facts["user_id"], "-k", str(unseen), "--topics", "1"]
    whole = invoke(facts["root"], *args, columns=columns)
    assert whole.exit_code == 0, whole.output
    assert "unseen items" not in whole.stdout and "untried" not in whole.stdout
    payload = json.loads(invoke(facts["root"], *args, "--json").stdout)
    assert [len(s["items"]) for s in payload["suggestions"]] == [unseen]
    assert payload["suggestions"][0]["unseen_items"] == unseen


def _narrow_encoder(directory: Path) -> Path:
    """A saved 2-wide random BERT sentence encoder (the packaged tokenizer), to match an index
    whose text part is 2-d."""
    from tiny_encoder import build_tiny_encoder

    return build_tiny_encoder(directory, width=2, layers=1, heads=1, max_positions=64)


@pytest.fixture(scope="module")
def short_index(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Artifacts whose Annoy index comes back short: 2-d text vectors, so the trees have many
    small leaves, and a `search_k` of 1, so an approximate search visits one of them."""
    from cli_artifacts import build_artifacts

    root = tmp_path_factory.mktemp("short_index")
    facts = build_artifacts(root, text_dimension=2)
    edit_catalogue(root, ("UPDATE meta SET value = '1' WHERE key = 'search_k'", ()))
    facts["encoder"] = _narrow_encoder(tmp_path_factory.mktemp("narrow_encoder"))
    return facts


@pytest.mark.parametrize("k", [10, 20, 29])
def test_similar_returns_exactly_k_when_the_index_comes_back_short(
    short_index: dict[str, Any], k: int
) -> None:
    result = invoke(short_index["root"], "similar", short_index["item_id"], "-k", str(k), "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)["similar"]
    assert [row["rank"] for row in found] == list(range(1, k + 1))
    assert short_index["item_id"] not in {row["item_id"] for row in found}
    scores = [row["score"] for row in found]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("k", [10, 25, 30])
def test_search_returns_exactly_k_when_the_index_comes_back_short(
    short_index: dict[str, Any], k: int
) -> None:
    encoder = str(short_index["encoder"])
    args = ["search", "space opera", "-k", str(k), "--encoder", encoder]
    result = invoke(short_index["root"], *args, "--json")
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)["items"]
    assert len(items) == k and len({item["item_id"] for item in items}) == k
    table = invoke(short_index["root"], *args)
    assert table.exit_code == 0, table.output
    assert table.stdout.count("Film ") == k


@pytest.mark.parametrize("text", ["!!! ???", "…", "🤖🚀", "\u200b", "☃ ☃", "[MASK]"])
def test_a_search_with_no_words_the_encoder_knows_is_refused(
    facts: dict[str, Any], tiny_encoder_dir: Path, text: str
) -> None:
    result = invoke(facts["root"], "search", text, "--encoder", str(tiny_encoder_dir))
    line = one_error_line(result)
    assert "has no words the encoder knows" in line and 'e.g. recli search "space opera"' in line


@pytest.mark.parametrize("text", ["robots", "1984", "東京", "sci-fi!!!"])
def test_a_search_with_a_word_is_answered(
    facts: dict[str, Any], tiny_encoder_dir: Path, text: str
) -> None:
    result = invoke(facts["root"], "search", text, "-k", "3", "--encoder", str(tiny_encoder_dir))
    assert result.exit_code == 0, result.output
    assert result.stdout.count("Film ") == 3


def test_negative_members_are_refused_and_zero_shows_none(facts: dict[str, Any]) -> None:
    line = one_error_line(invoke(facts["root"], "cluster", "0", "--members", "-5"))
    assert "--members must be at least 0 (got -5)" in line
    result = invoke(facts["root"], "cluster", "0", "--members", "0", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["members"] == []
    help_text = invoke(facts["root"], "cluster", "--help").stdout
    assert "(0: none)" in help_text
