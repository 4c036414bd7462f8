"""The console entry point answers a plain `recli recommend` without Typer, and exactly as Typer.

`recli.entry.main` reads the command line itself and hands anything it is not sure of to the
Typer app (`recli.cli.main`). Whatever the command line, both ends are the same: the same bytes
on stdout and stderr and the same exit code, on the tiny real artifacts of
`tests/cli_artifacts.py`. That a plain call is taken without Typer, the point of it all, is
`tests/serving/test_cli.py`'s `test_recommend_imports_nothing_heavy`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recli import cli, entry
from recli.contract import DEFAULT_ARTIFACTS

FIXTURES = [HealthCheck.function_scoped_fixture]
LARGEST = 2**63 - 1


def ending(main: Any, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[Any, ...]:
    """(exit code, stdout, stderr) of `main` run on `argv` in this process."""
    saved = sys.argv
    sys.argv = ["recli", *argv]
    try:
        main()
        code: Any = 0
    except SystemExit as stop:
        code = 0 if stop.code is None else stop.code
    finally:
        sys.argv = saved
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["recommend", "7"], ("data", "7", 10, False, None, False)),
        (["recommend", "7", "-k", "3"], ("data", "7", 3, False, None, False)),
        (["recommend", "--k=3", "7", "--json"], ("data", "7", 3, False, None, True)),
        (["--artifacts", "a", "recommend", "--k", "3", "7"], ("a", "7", 3, False, None, False)),
        (["recommend", "7", "--whole-user"], ("data", "7", 10, False, False, False)),
        (
            ["--artifacts=a", "recommend", "7", "--artifacts", "b"],
            ("b", "7", 10, False, None, False),
        ),
        (
            ["recommend", "--explain", "--by-interest", "x y"],
            ("data", "x y", 10, True, True, False),
        ),
        (["recommend", "7", "-k", "0"], ("data", "7", 0, False, None, False)),
    ],
)
def test_plain_calls_are_read(argv: list[str], expected: tuple[Any, ...]) -> None:
    call = entry.read_recommend(argv, {})
    assert call is not None
    artifacts, *rest = expected
    assert call == entry.RecommendCall(Path(artifacts), *rest)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["recommend"],
        ["recommend", "--help"],
        ["--version"],
        ["similar", "7"],
        ["recommend", "7", "8"],
        ["recommend", "-1"],
        ["recommend", "--", "7"],
        ["recommend", "7", "-k"],
        ["recommend", "7", "-k", "-3"],
        ["recommend", "7", "-k", "+3"],
        ["recommend", "7", "-k", "1_0"],
        ["recommend", "7", "-k", "٣"],  # a digit to Python, not to this reader
        ["recommend", "7", "-k", str(LARGEST + 1)],
        ["recommend", "7", "-k", "9" * 5000],
        ["recommend", "7", "-k=3"],
        ["recommend", "7", "-k3"],
        ["recommend", "7", "-k", "3", "--k", "4"],
        ["recommend", "7", "-k", "3", "-k", "4"],
        ["recommend", "7", "--json", "--json"],
        ["recommend", "7", "--by-interest", "--whole-user"],
        ["recommend", "7", "--json=1"],
        ["recommend", "7", "--artifacts"],
        ["recommend", "7", "--artifacts="],
        ["recommend", "7", "--artifacts", "-x"],
        ["--artifacts", "a", "--artifacts", "b", "recommend", "7"],
        ["recommend", "7", "--unknown"],
    ],
)
def test_anything_else_goes_to_typer(argv: list[str]) -> None:
    assert entry.read_recommend(argv, {}) is None


def test_artifacts_from_the_environment_as_typer_reads_them() -> None:
    assert entry.read_recommend(["recommend", "7"], {"RECLI_ARTIFACTS": "e"}).artifacts == Path("e")
    empty = entry.read_recommend(["recommend", "7"], {"RECLI_ARTIFACTS": ""})
    assert empty.artifacts == DEFAULT_ARTIFACTS
    given = entry.read_recommend(["--artifacts", "a", "recommend", "7"], {"RECLI_ARTIFACTS": "e"})
    assert given.artifacts == Path("a")


def _plain(root: str) -> st.SearchStrategy[list[str]]:
    """Plain calls, as people type them: the fast path's."""
    option = st.sampled_from(
        [
            ["-k", "3"],
            ["--k", "14"],
            ["--k=1"],
            ["--json"],
            ["--explain"],
            ["--by-interest"],
            ["--whole-user"],
        ]
    )
    return st.builds(
        lambda prefix, user, options: [
            *prefix,
            "recommend",
            user,
            *[word for option in options for word in option],
        ],
        st.sampled_from([[], ["--artifacts", root], [f"--artifacts={root}"]]),
        st.sampled_from(["0", "1", "21", "39", "99999"]),
        st.lists(option, max_size=3, unique_by=lambda option: option[0].split("=")[0]),
    )


def _mistyped(root: str) -> st.SearchStrategy[list[str]]:
    """Command lines around `recommend` with what a user might mistype, repeat or misplace."""
    user = st.sampled_from(["0", "39", "100", "", "x\x1b[2J", "-1", "é"])
    k = st.sampled_from(["1", "0", "15", "40", str(LARGEST), str(LARGEST + 1)])
    k_forms = st.one_of(
        k.map(lambda n: ["-k", n]),
        k.map(lambda n: ["--k", n]),
        k.map(lambda n: [f"--k={n}"]),
        st.sampled_from([["-k", "-2"], ["-k3"], ["-k", "x"], ["-k"]]),
    )
    artifacts = st.sampled_from(
        [["--artifacts", root], [f"--artifacts={root}"], ["--artifacts", "missing"]]
    )
    flags = st.sampled_from(
        [["--json"], ["--explain"], ["--by-interest"], ["--whole-user"], ["--"], ["--bogus"]]
    )
    parts = st.lists(st.one_of(k_forms, artifacts, flags), max_size=4)
    return st.builds(
        lambda prefix, command, first, rest, extra: [
            *prefix,
            command,
            *[word for part in rest[:1] for word in part],
            *first,
            *[word for part in rest[1:] for word in part],
            *extra,
        ],
        st.sampled_from(
            [[], ["--artifacts", root], [f"--artifacts={root}"], ["--artifacts", "no"]]
        ),
        st.sampled_from(["recommend", "recommend", "recommend", "similar"]),
        user.map(lambda u: [u]),
        parts,
        st.sampled_from([[], [], ["7"], ["--json"]]),
    )


@settings(max_examples=70, deadline=None, suppress_health_check=FIXTURES)
@given(data=st.data(), environment=st.sampled_from([None, "", "root", "missing"]))
def test_same_ending_either_way(
    facts: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    data: st.DataObject,
    environment: str | None,
) -> None:
    root = str(facts["root"])
    argv = data.draw(st.one_of(_plain(root), _mistyped(root)))
    monkeypatch.chdir(tmp_path)  # the default `data` folder is not there
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    if environment is None:
        monkeypatch.delenv("RECLI_ARTIFACTS", raising=False)
    else:
        monkeypatch.setenv("RECLI_ARTIFACTS", root if environment == "root" else environment)
    fast = ending(entry.main, argv, capsys)
    typer = ending(cli.main, argv, capsys)
    assert fast == typer, argv
