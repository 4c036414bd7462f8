"""Bring-your-own files in the tests: `write` a file's text in an encoding, and
`error_message`, the one-line error that reading a source gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core.config import FilesSource
from pipeline.data.files import load_files
from recli.errors import RecliError


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    """`text` written to `path` in `encoding`; the path."""
    path.write_bytes(text.encode(encoding))
    return path


def error_message(cfg: FilesSource, root: Path = Path(".")) -> str:
    """The message of the `RecliError` that reading `cfg` under `root` raises: one line."""
    with pytest.raises(RecliError) as caught:
        load_files(cfg, root)
    message = str(caught.value)
    assert "\n" not in message
    return message
