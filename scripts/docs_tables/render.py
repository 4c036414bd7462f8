"""Render the documentation's results tables from `metrics/*.json`.

The blocks between `<!-- table: NAME -->` and `<!-- /table -->` in every page: finding them,
re-rendering them, writing the pages back (or, with `--check`, only naming the stale blocks),
and the command line `scripts/render_docs.py` runs.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from docs_tables.metrics import METRICS, REPO, Metrics
from docs_tables.registry import TABLES, UnknownTableError, render_table

DOCS = REPO / "docs"
README = REPO / "README.md"
BENCHMARKS_README = REPO / "benchmarks" / "README.md"

BLOCK = re.compile(
    r"<!-- table: (?P<name>[a-z0-9-]+) -->\n(?P<body>.*?)<!-- /table -->",
    re.DOTALL,
)
"""One generated block. The body is everything between the two markers."""


def block(name: str, body: str) -> str:
    """A whole block, markers included. The blank lines keep the table a Markdown table and
    not part of the HTML comment before it."""
    return f"<!-- table: {name} -->\n\n{body.strip()}\n\n<!-- /table -->"


def block_names(text: str) -> list[str]:
    """The names of the blocks in a page, in order."""
    return [match["name"] for match in BLOCK.finditer(text)]


def render_text(text: str, metrics: Metrics | Path = METRICS) -> tuple[str, list[str]]:
    """The page with every block re-rendered, and the names of the blocks that changed."""
    source_metrics = metrics if isinstance(metrics, Metrics) else Metrics(metrics)
    stale: list[str] = []

    def replace(match: re.Match[str]) -> str:
        fresh = block(match["name"], render_table(match["name"], source_metrics))
        if fresh != match.group(0):
            stale.append(match["name"])
        return fresh

    return BLOCK.sub(replace, text), stale


def pages(docs: Path = DOCS) -> list[Path]:
    """Every Markdown page under `docs`, in a stable order, and with the site's own docs the
    README and the benchmarks' README (their tables come from the same metrics)."""
    if docs.resolve() != DOCS.resolve():
        return sorted(docs.rglob("*.md"))
    readmes = [path for path in (README, BENCHMARKS_README) if path.exists()]
    return sorted(docs.rglob("*.md")) + readmes


def render_docs(
    docs: Path = DOCS, metrics: Path = METRICS, check: bool = False
) -> list[tuple[Path, str]]:
    """Re-render every block of every page; write the pages unless `check`. Returns the
    (page, block name) of each block that was out of date."""
    source_metrics = Metrics(metrics)
    stale: list[tuple[Path, str]] = []
    for page in pages(docs):
        text = page.read_text(encoding="utf-8")
        updated, names = render_text(text, source_metrics)
        stale += [(page, name) for name in names]
        if names and not check:
            page.write_text(updated, encoding="utf-8")
    return stale


def main(argv: list[str] | None = None) -> int:
    """The command line: rewrite every stale block, or with `--check` only name them; the exit
    code (0, 1 when `--check` finds a stale block, 2 for a block name no function renders)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    parser.add_argument("--docs", type=Path, default=DOCS, help="the Markdown pages' folder")
    parser.add_argument("--metrics", type=Path, default=METRICS, help="the metrics folder")
    args = parser.parse_args(argv)
    try:
        stale = render_docs(args.docs, args.metrics, check=args.check)
    except UnknownTableError as unknown:
        known = ", ".join(sorted(TABLES))
        print(f"error: no table is called '{unknown}' (known: {known})", file=sys.stderr)
        return 2

    def shown(page: Path) -> str:
        try:
            return str(page.relative_to(Path.cwd()))
        except ValueError:
            return str(page)

    if args.check:
        for page, name in stale:
            print(f"{shown(page)}: table '{name}' differs from what the metrics render")
        if stale:
            print("run: python scripts/render_docs.py", file=sys.stderr)
            return 1
        print("every docs table matches the metrics")
        return 0
    for page, name in stale:
        print(f"rewrote {shown(page)}: {name}")
    if not stale:
        print("every docs table was already up to date")
    return 0
