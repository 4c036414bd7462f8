"""Properties of the CLI over whatever a user can type: any text as an id, any integer as a count.

Whatever the input, `recli` ends with exit code 0, 1 (a `RecliError`: exactly one `error:` line
on stderr) or 2 (a usage error), never with a traceback; nothing it prints carries a raw control
character (an id or title is echoed with its escapes visible); and an answer lists exactly as
many rows as it says: `-k` items, the history or members asked for (or all there are, and
`recli explore` says so when a topic, or the list of topics, falls short).

The real CLI (Typer's `CliRunner` on `recli.cli.app`) answers from the tiny real artifacts of
`tests/cli_artifacts.py`; the example budgets keep the file well under a minute.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from recli.cli import app
from recli.inputs import is_number

runner = CliRunner()
ENV = {"COLUMNS": "120", "RECLI_ARTIFACTS": None, "FORCE_COLOR": None}
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
"""Characters that must never reach the terminal raw (a line feed is layout)."""
LARGEST = 2**63 - 1
FIXTURES = [HealthCheck.function_scoped_fixture]  # the artifacts are built once per module
USERS = [str(user) for user in range(40)]  # the ids `cli_artifacts` builds
ITEMS = [str(item) for item in range(100, 130)]

any_char = st.characters(exclude_categories=())  # surrogates and controls included
controls = st.characters(
    categories=["Cc", "Cf", "Cs", "Zl", "Zp"], include_characters="\x1b\r\x07\u202e"
)
ids = st.one_of(
    st.text(any_char, max_size=30),
    st.text(controls, min_size=1, max_size=10),
    st.builds(
        lambda part, times: part * times,
        st.text(any_char, min_size=1, max_size=4),
        st.integers(200, 20_000),
    ),
    st.builds(
        lambda dash, rest: dash + rest, st.sampled_from(["-", "--"]), st.text(any_char, max_size=12)
    ),
    st.integers().map(str),
    st.sampled_from(USERS + ITEMS),
)
"""Any text a shell (or a script) can pass as an id: every code point, runs of control
characters, very long strings, leading dashes, numbers, and ids that exist."""
counts = st.one_of(
    st.integers(-5, 45),
    st.integers(-(10**30), 10**30),
    st.integers(),
    st.sampled_from([LARGEST, LARGEST + 1, -LARGEST - 1, -LARGEST - 2]),
)


def run(root: Path, *args: str) -> Any:
    return runner.invoke(app, ["--artifacts", str(root), *args], env=ENV)


def check_ending(result: Any) -> None:
    """The properties every run has, whatever it was asked."""
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    assert not RAW.search(result.stdout), repr(result.stdout[:400])
    assert not RAW.search(result.stderr), repr(result.stderr[:400])
    if result.exit_code == 1:
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert result.stdout == ""


def table_ranks(stdout: str) -> list[int]:
    return [int(match[1]) for match in re.finditer(r"^│\s*(\d+)\s*│", stdout, re.MULTILINE)]


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(
        st.text(any_char, max_size=12),
        st.from_regex(r"\s{0,2}[+-]?[0-9_\u0660-\u0669]{0,6}\s{0,2}", fullmatch=True),
        st.integers().map(str),
    ),
    digits=st.integers(1, 6000),
)
def test_a_number_is_what_int_reads_however_many_digits(text: str, digits: int) -> None:
    try:
        int(text)
    except ValueError:
        number = False
    else:
        number = True
    assert is_number(text) == number
    # Longer, the same: int() refuses more than 4300 digits, but they are still a number.
    longer = re.sub(r"\d", lambda digit: digit[0] * digits, text, count=1)
    assert is_number(longer) == number


INTEGER_PARAMETERS = [
    ["cluster", "N"],
    ["cluster", "0", "--members", "N"],
    ["user", "USER", "--history", "N"],
    ["explore", "USER", "--topics", "N"],
    ["explore", "USER", "-k", "N"],
    ["recommend", "USER", "-k", "N"],
    ["similar", "ITEM", "-k", "N"],
]


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURES)
@given(args=st.sampled_from(INTEGER_PARAMETERS), value=ids)
def test_any_text_as_an_integer_ends_cleanly_and_is_echoed_short(
    facts: dict[str, Any], args: list[str], value: str
) -> None:
    filled = [{"USER": facts["user_id"], "ITEM": ITEMS[0], "N": value}.get(a, a) for a in args]
    result = run(facts["root"], *filled)
    check_ending(result)
    assert len(result.stderr) < 1500, result.stderr[:400]


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURES)
@given(command=st.sampled_from(["recommend", "user", "similar", "explore"]), given_id=ids)
def test_any_id_ends_cleanly(facts: dict[str, Any], command: str, given_id: str) -> None:
    check_ending(run(facts["root"], command, given_id))


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURES)
@given(given_id=ids)
def test_any_id_after_a_double_dash_is_looked_up(facts: dict[str, Any], given_id: str) -> None:
    # After `--` nothing is an option: every id is an id, answered or refused in one line.
    result = run(facts["root"], "recommend", "--json", "--", given_id)
    check_ending(result)
    assert result.exit_code in (0, 1)


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURES)
@given(
    command=st.sampled_from(["recommend", "similar"]),
    k=counts,
    as_json=st.booleans(),
    by_interest=st.booleans(),
)
def test_recommend_and_similar_list_exactly_k(
    facts: dict[str, Any], command: str, k: int, as_json: bool, by_interest: bool
) -> None:
    target = facts["user_id"] if command == "recommend" else facts["item_id"]
    extra = ["--by-interest"] if by_interest and command == "recommend" else []
    result = run(facts["root"], command, target, "-k", str(k), *extra, *(["--json"] * as_json))
    check_ending(result)
    assert result.exit_code in (0, 1)
    if command == "recommend":
        possible = facts["n_items"] - len(facts["history_item_ids"])
    else:
        possible = facts["n_items"] - 1  # never the item itself
    assert (result.exit_code == 0) == (1 <= k <= possible), result.output
    if result.exit_code:
        if possible < k <= LARGEST:  # the -k it advises is the most that is then accepted
            assert result.stderr.rstrip().endswith(f"use -k between 1 and {possible}")
        return
    if as_json:
        payload = json.loads(result.stdout)
        rows = payload["recommendations"] if command == "recommend" else payload["similar"]
        assert [row["rank"] for row in rows] == list(range(1, k + 1))
        assert len({row["item_id"] for row in rows}) == k
    else:
        assert table_ranks(result.stdout) == list(range(1, k + 1))


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURES)
@given(history=counts)
def test_user_lists_the_history_asked_for(facts: dict[str, Any], history: int) -> None:
    result = run(facts["root"], "user", facts["user_id"], "--history", str(history), "--json")
    check_ending(result)
    assert (result.exit_code == 0) == (1 <= history <= LARGEST), result.output
    if result.exit_code == 0:
        payload = json.loads(result.stdout)
        assert len(payload["history"]) == min(history, payload["events"])


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURES)
@given(cluster=st.one_of(st.integers(-3, 3), counts), members=counts, as_json=st.booleans())
def test_cluster_lists_the_members_asked_for(
    facts: dict[str, Any], cluster: int, members: int, as_json: bool
) -> None:
    args = ["cluster", str(cluster), "--members", str(members), *(["--json"] * as_json)]
    result = run(facts["root"], *args)
    check_ending(result)
    known = cluster in (0, 1)
    assert (result.exit_code == 0) == (known and 0 <= members <= LARGEST), result.output
    if result.exit_code:
        return
    size = 20  # each block's users form one cluster
    if as_json:
        assert len(json.loads(result.stdout)["members"]) == min(members, size)
        return
    (line,) = [line for line in result.stdout.splitlines() if "members:" in line]
    listed = line.split("members:", 1)[1].strip(" │").removesuffix("…").strip()
    shown = [] if listed == "—" else listed.split(", ")
    assert len(shown) == min(members, size)
    assert line.rstrip(" │").endswith("…") == (0 < members < size)


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURES)
@given(k=counts, topics=counts, as_json=st.booleans())
def test_explore_lists_the_topics_and_items_asked_for(
    facts: dict[str, Any], k: int, topics: int, as_json: bool
) -> None:
    args = ["explore", facts["user_id"], "-k", str(k), "--topics", str(topics)]
    result = run(facts["root"], *args, *(["--json"] * as_json))
    check_ending(result)
    assert (result.exit_code == 0) == (1 <= k <= facts["n_items"] and 1 <= topics <= LARGEST)
    if result.exit_code:
        return
    unseen = len(facts["block_b_item_ids"])  # block B: the one topic left, none of it seen
    topics_left = 1
    if as_json:
        # min(k, unseen) items, and the count that says why when it is fewer than k.
        payload = json.loads(result.stdout)
        assert payload["topics_left"] == topics_left
        assert len(payload["suggestions"]) == min(topics, topics_left)
        for suggestion in payload["suggestions"]:
            assert len(suggestion["items"]) == min(k, unseen)
            assert suggestion["unseen_items"] == unseen
        return
    assert table_ranks(result.stdout) == list(range(1, min(k, unseen) + 1))
    screen = " ".join(result.stdout.split())  # a note may wrap
    short_items = f"(only {unseen} unseen items in this topic)"
    assert (short_items in screen) == (k > unseen)
    short_topics = f"(only {topics_left} untried topic left; {topics} asked for)"
    assert (short_topics in screen) == (topics > topics_left)


@settings(max_examples=20, deadline=None, suppress_health_check=FIXTURES)
@given(text=st.one_of(st.text(any_char, max_size=40), st.text(controls, max_size=8)), k=counts)
def test_any_search_text_ends_cleanly(
    facts: dict[str, Any], tiny_encoder_dir: Path, text: str, k: int
) -> None:
    args = ["search", text, "-k", str(k), "--encoder", str(tiny_encoder_dir)]
    result = run(facts["root"], *args)
    check_ending(result)
    if result.exit_code == 0:
        assert table_ranks(result.stdout) == list(range(1, k + 1))
