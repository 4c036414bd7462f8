from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.core.config import Params, load_params, parse_params
from recli.errors import RecliError

REPO = Path(__file__).resolve().parents[2]


def test_committed_params_are_valid_and_round_trip() -> None:
    params = load_params(REPO / "params.yaml")
    assert parse_params(params.model_dump(mode="json")) == params


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"preprocess": {"split": {"strategy": "by_magic"}}}, "preprocess.split.strategy"),
        ({"factorize": {"epochs": -1}}, "factorize.epochs"),
        ({"factorize": {"embeding_size": 8}}, "factorize.embeding_size"),
        ({"evaluate": {"k": [0]}}, "evaluate.k.0"),
        ({"data": {"source": "files"}}, "data.files.interactions"),
        ({"preprocess": {"min_user_interactions": 2}}, "at least 3"),
    ],
)
def test_bad_values_name_the_dotted_key(raw: dict, expected: str) -> None:
    with pytest.raises(RecliError, match=r"params\.yaml") as error:
        parse_params(raw)
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_and_malformed_file(tmp_path: Path) -> None:
    with pytest.raises(RecliError, match="not found"):
        load_params(tmp_path / "params.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("preprocess: [unclosed\n")
    with pytest.raises(RecliError, match="not valid YAML"):
        load_params(bad)


def test_a_yaml_syntax_error_names_its_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("data:\n  source: files\n preprocess:\n  seed: 1\n")  # line 3 is mis-indented
    with pytest.raises(RecliError) as caught:
        load_params(bad)
    message = str(caught.value)
    assert f"{bad}:3:" in message and "not valid YAML" in message
    assert "\n" not in message


def test_defaults_match_the_committed_file() -> None:
    # params.yaml is the one visible place for defaults: it spells out every default in the code.
    committed = yaml.safe_load((REPO / "params.yaml").read_text())
    assert parse_params(committed) == Params()
