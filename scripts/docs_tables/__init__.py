"""The documentation's results tables, rendered from `metrics/*.json`.

`scripts/render_docs.py` is the command; the modules are

- `metrics`: reading the metrics folder, and what a missing file or key means;
- `formatting`: numbers, cells and Markdown tables, the same in every table;
- `results`, `stages`, `interests`, `tuning`, `checks`, `benchmarks`: one function per table,
  grouped by what they show (`tuning` holds every read of `metrics/fuse.json` and `index.json`);
- `registry`: the block name → function map (`TABLES`) and `render_table`;
- `render`: the markers in the pages, rewriting or checking them, and the command line.
"""
