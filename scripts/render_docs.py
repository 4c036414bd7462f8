"""Render the documentation's results tables from `metrics/*.json`.

Every number table in `docs/` sits between two markers,

    <!-- table: evaluation-test -->
    ...generated Markdown...
    <!-- /table -->

and the name after `table:` says which function of `TABLES` (`docs_tables/registry.py`) writes
it. Tables typed by hand drift from the metrics as soon as the pipeline runs again; generated
ones cannot.

Usage, from the repository root:

    python scripts/render_docs.py            # rewrite every block in docs/*.md and the READMEs
    python scripts/render_docs.py --check    # exit 1 naming each block that is out of date

A metrics file or key that is absent is not an error: the block then renders what is present, or
one line saying what is missing, so the docs build on a checkout where a benchmark was never run.
A block name no function renders is an error (exit 2): it is a typo in a page.

The tables live in the `docs_tables` package next to this script, one module per group of
tables; this file is the command and re-exports what the tests use. The standard library only,
plus the CLI's own model names (`recli.metrics_view.MODEL_NAMES`), so a model reads the same in
the docs as in `recli metrics`. That import brings in `rich`, one of recli's own dependencies,
and nothing of the training stack.
"""

from __future__ import annotations

import sys

from docs_tables.metrics import METRICS, WRITTEN_BY, Metrics, MissingMetricsError
from docs_tables.registry import TABLES, UnknownTableError, render_table
from docs_tables.render import (
    BLOCK,
    DOCS,
    block,
    block_names,
    main,
    pages,
    render_docs,
    render_text,
)

__all__ = [
    "BLOCK",
    "DOCS",
    "METRICS",
    "TABLES",
    "WRITTEN_BY",
    "Metrics",
    "MissingMetricsError",
    "UnknownTableError",
    "block",
    "block_names",
    "main",
    "pages",
    "render_docs",
    "render_table",
    "render_text",
]

if __name__ == "__main__":
    sys.exit(main())
