"""How `recli metrics` shows the evaluation table: the models' names, the columns, the views.

`MODEL_NAMES` names each model as a reader knows it; the docs' tables reuse it
(`scripts/render_docs.py`), so the terminal and the docs agree. A column equal to an earlier one
in every row is folded into it (`metric_columns`); the table prints as a `Grid` with the best
value of each column in bold green (and each change against a git revision), or as Markdown.

Apart from `recli.views` because only `recli metrics` (and the docs script) needs it: the
commands that answer from the served artifacts never load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from recli.contract import METRICS_FILE
from recli.render import Grid, escape

if TYPE_CHECKING:
    from recli.metrics_source import MetricsTable

MODEL_NAMES = {
    "popularity": "popularity",
    "itemknn": "ItemKNN",
    "ease": "EASE",
    "als": "ALS",
    "zero_shot": "text, zero-shot",
    "finetuned": "text, fine-tuned",
    "sasrec": "SASRec",
    "text_sequence": "recli sequence model",
    "ease_low_rank": "EASE, reduced rank",
    "fused": "fused vector",
    "multi_interest": "multi-interest lists",
    "explore": "exploration",
}
"""How `recli metrics` names the evaluation's models (its tables; `--json` keeps the keys of
`metrics/evaluation.json`). A model not listed is shown by its key; the served one (`served` in
the file) is marked `(served)` after its name (`served_name`)."""


def model_name(model: str) -> str:
    """The name a reader knows a model by (`MODEL_NAMES`), else its key."""
    return MODEL_NAMES.get(model, model)


def served_name(model: str, served: str | None) -> str:
    """`model_name`, marked `(served)` when `model` is what `recli recommend` serves."""
    return model_name(model) + (" (served)" if model == served else "")


def metric_columns(table: MetricsTable) -> list[tuple[str, str]]:
    """(column, header) of each metric to show, a column equal to an earlier one in every row
    (and at the revision compared with) folded into it: with one held-out item per user,
    recall@k is hr@k, and one column headed `hr@10 = recall@10` says so."""

    def values(rows: dict[str, dict[str, float]] | None, column: str) -> list[float | None]:
        return [row.get(column) for row in (rows or {}).values()]

    kept: list[str] = []
    headers: dict[str, str] = {}
    for column in table.columns:
        same = next(
            (
                earlier
                for earlier in kept
                if values(table.rows, earlier) == values(table.rows, column)
                and values(table.baseline, earlier) == values(table.baseline, column)
                and None not in values(table.rows, column)
            ),
            None,
        )
        if same is None:
            kept.append(column)
            headers[column] = column
        else:
            headers[same] += f" = {column}"
    return [(column, headers[column]) for column in kept]


def metrics_markdown(table: MetricsTable) -> list[str]:
    """`recli metrics --markdown`: the table as Markdown lines, four decimals."""
    columns = metric_columns(table)
    lines = [
        "| model | " + " | ".join(header for _, header in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for model, row in table.rows.items():
        cells = [f"{row[column]:.4f}" if column in row else "—" for column, _ in columns]
        lines.append(f"| {served_name(model, table.served)} | " + " | ".join(cells) + " |")
    return lines


def metrics_view(table: MetricsTable, rev: str | None = None) -> list[Any]:
    """`recli metrics`: each column's best value in bold green and, against `rev`, each value's
    change since that revision."""
    columns, baseline = metric_columns(table), table.baseline
    best = {
        column: max(row.get(column, float("-inf")) for row in table.rows.values())
        for column, _ in columns
    }
    grid = Grid(title=f"{table.split} metrics ({METRICS_FILE})", header_style="bold")
    grid.add_column("model", no_wrap=True)
    for _, header in columns:
        grid.add_column(header, justify="right", no_wrap=True)
    for model, row in table.rows.items():
        cells = []
        for column, _ in columns:
            value = row.get(column)
            text = "—" if value is None else f"{value:.4f}"
            if value is not None and value == best[column]:
                text = f"[bold green]{text}[/]"
            if baseline is not None and value is not None and column in baseline.get(model, {}):
                delta = value - baseline[model][column]
                colour = "green" if delta > 0 else "red" if delta < 0 else "dim"
                text += f" [{colour}]({delta:+.4f})[/]"
            cells.append(text)
        grid.add_row(escape(served_name(model, table.served)), *cells)
    parts: list[Any] = [grid]
    if rev is not None:
        parts.append(f"[dim]changes are against {escape(rev)}[/]")
    return parts
