"""The serving contract: term spelling, the fused-vector layout, digests, and no dependencies."""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from recli import contract

REPO = Path(__file__).parents[2]


# --------------------------------------------------------------------------------------------
# How a term is spelled
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("term", "shown"),
    [
        ({"kind": "tag", "term": "dark comedy"}, "#dark comedy"),
        ({"kind": "genre", "term": "Drama"}, "Drama"),
        ({"kind": "era", "term": "1990s films"}, "1990s films"),
        ({"term": "Drama"}, "Drama"),  # older profiles record no kind: shown as they are
        ({"kind": "era", "term": 1997}, "1997"),
    ],
)
def test_term_text(term: dict[str, object], shown: str) -> None:
    assert contract.term_text(term) == shown


def test_a_tag_never_reads_as_the_genre_of_the_same_name() -> None:
    genre = contract.term_text({"kind": "genre", "term": "comedy"})
    tag = contract.term_text({"kind": "tag", "term": "comedy"})
    assert genre != tag and tag == contract.TAG_PREFIX + genre


# --------------------------------------------------------------------------------------------
# How a fused vector is laid out
# --------------------------------------------------------------------------------------------
def test_text_and_collaborative_parts_of_a_list() -> None:
    fused = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert contract.text_part(fused, 2) == [1.0, 2.0]
    assert contract.collaborative_part(fused, 2) == [3.0, 4.0, 5.0]
    assert contract.text_part(fused, 0) == []
    assert contract.collaborative_part(fused, 0) == fused
    assert contract.text_part(fused, 5) == fused
    assert contract.collaborative_part(fused, 5) == []


def test_parts_keep_the_sequence_type() -> None:
    assert contract.text_part((1.0, 2.0, 3.0), 1) == (1.0,)
    assert contract.collaborative_part((1.0, 2.0, 3.0), 1) == (2.0, 3.0)


def test_fuse_parts_is_the_inverse_of_the_split() -> None:
    text, collaborative = [0.5, -0.5, 2.0], [1.5, 0.0]
    fused = contract.fuse_parts(text, collaborative)
    assert fused == [0.5, -0.5, 2.0, 1.5, 0.0]
    assert contract.text_part(fused, len(text)) == text
    assert contract.collaborative_part(fused, len(text)) == collaborative
    assert contract.fuse_parts((1.0,), ()) == [1.0]  # always a list, as Annoy takes


def test_dot_is_the_sum_of_the_products_in_order() -> None:
    left, right = [0.1, 0.2, 0.3, 1e16, -1e16], [0.7, 0.11, 0.13, 1.0, 1.0]
    # Bit for bit what `sum` gives over the products in order: the scores recli printed before.
    assert contract.dot(left, right) == sum(a * b for a, b in zip(left, right, strict=True))
    assert contract.dot((2.0, 3.0), [4.0, 5.0]) == 23.0
    assert contract.dot([], []) == 0
    with pytest.raises(ValueError):
        contract.dot([1.0, 2.0], [1.0])  # vectors of two spaces never meet silently


def _dot_products(tree: ast.AST) -> list[int]:
    """Lines where a dot product is written out: `sum(a * b for a, b in zip(...))`, or
    `sum(v * v for v in ...)` (a squared norm)."""
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "sum"):
            continue
        if not (node.args and isinstance(node.args[0], ast.GeneratorExp)):
            continue
        product, (loop, *_) = node.args[0].elt, node.args[0].generators
        if not (isinstance(product, ast.BinOp) and isinstance(product.op, ast.Mult)):
            continue
        factors = [getattr(side, "id", None) for side in (product.left, product.right)]
        zipped = getattr(loop.iter, "func", None)
        if getattr(zipped, "id", None) == "zip" or factors[0] == factors[1] is not None:
            found.append(node.lineno)
    return found


def test_the_dot_product_is_written_once() -> None:
    written = {
        path.name: lines
        for path in sorted((REPO / "recli").glob("*.py"))
        if path.name != "contract.py"
        and (lines := _dot_products(ast.parse(path.read_text(encoding="utf-8"))))
    }
    assert written == {}, "use recli.contract.dot"
    assert _dot_products(ast.parse((REPO / "recli" / "contract.py").read_text())) != []


# --------------------------------------------------------------------------------------------
# How a file is fingerprinted
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 5, (1 << 20) + 3])  # empty, one block, more than one
def test_file_digest_is_the_sha256_of_the_whole_file(tmp_path: Path, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    digest = contract.file_digest(path)
    assert digest == hashlib.sha256(data).hexdigest()
    assert len(digest) == 64 and len(digest[: contract.DIGEST_CHARS]) == 16


def test_empty_file_digest_is_the_known_constant(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    assert contract.file_digest(tmp_path / "empty").startswith("e3b0c44298fc1c14")


# --------------------------------------------------------------------------------------------
# Where things live
# --------------------------------------------------------------------------------------------
def test_paths_are_relative_and_nest_as_documented() -> None:
    assert not contract.DEFAULT_ARTIFACTS.is_absolute()
    assert contract.ENCODER_DIR.parts[0] == contract.FINETUNE_DIR
    assert contract.METRICS_FILE.as_posix() == "metrics/evaluation.json"
    assert {contract.CATALOGUE_FILE, contract.INDEX_FILE} == {"catalogue.sqlite", "items.ann"}


# --------------------------------------------------------------------------------------------
# Standard library only: importing costs nothing on the `recli recommend` path
# --------------------------------------------------------------------------------------------
def _imported_by(module: str) -> list[str]:
    """Top-level names of the modules `import module` adds, in a fresh interpreter."""
    code = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        f"import {module}\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in set(sys.modules) - before})))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    return json.loads(output)


@pytest.mark.parametrize(
    "module",
    [
        "recli.contract",
        "recli.catalogue",
        "recli.results",
        "recli.explain",
        "recli.inputs",
        "recli.metrics_source",
    ],
)
def test_imports_only_the_standard_library(module: str) -> None:
    imported = _imported_by(module)
    assert "recli" in imported  # the probe saw the import happen
    third_party = [
        name for name in imported if name != "recli" and name not in sys.stdlib_module_names
    ]
    assert third_party == []


def test_the_probe_would_see_a_third_party_import() -> None:
    imported = _imported_by("recli.ann_index")  # Annoy, on purpose
    assert "annoy" in imported and "annoy" not in sys.stdlib_module_names
