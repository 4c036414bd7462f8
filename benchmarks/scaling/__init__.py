"""The scale benchmark's parts; `benchmarks/scale.py` is its command line.

- `synthetic`: the seeded synthetic data set of a given number of events (the `movies` shape:
  dense users, short texts, genres), the machinery every shape shares, and the writing of
  bring-your-own files;
- `products`: the `products` shape, a description-rich product catalogue (sparse users who shop
  a category in sequence, long titles and descriptions, no genres), timed against 15 minutes at
  60k events;
- `runner`: each stage in a child process (wall time, peak memory, outcome) and `bench`, the
  whole run over the sizes;
- `summary`: the log-log slopes, the totals and the targets;
- `report`: what the numbers were measured on (machine, code, budgets) and the tables.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
"""The repository root: the committed `params.yaml`, and where the stages run."""
