"""Answering `recli recommend`: the one function both the console entry point (`recli.entry`)
and the Typer command (`recli.cli`) run, so the two ways in cannot drift apart.

Imports only the standard library here; rich and the serving modules when it answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple


class RecommendCall(NamedTuple):
    """A `recli recommend` command line, read."""

    artifacts: Path
    user_id: str
    k: int
    explain: bool
    by_interest: bool | None
    """None: as the catalogue serves by default."""
    as_json: bool


def recommend(call: RecommendCall) -> None:
    """Answer a `recommend` call: open the artifacts, ask, print the table or the JSON."""
    from recli import render, views
    from recli.serve import Served

    with Served(call.artifacts) as served:
        result = served.recommend(call.user_id, call.k, by_interest=call.by_interest)
    if call.as_json:
        render.print_json(result.to_json())
        return
    render.show(views.recommendations_view(result, call.explain))
