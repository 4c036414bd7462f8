"""Formatting shared by every table: numbers, model names, cells, Markdown tables and the
line under each table that says where its numbers come from."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from recli.metrics_view import MODEL_NAMES

EXTRA_NAMES = {
    "random": "random order (floor)",
    "text": "recli sequence model",  # how the index stage's grid keys name it
}
"""Keys that are not evaluation models but appear where models do."""


def model_name(key: str) -> str:
    """The name the CLI shows for a model key, else a few extra keys' names, else the key."""
    return MODEL_NAMES.get(key, EXTRA_NAMES.get(key, key))


def served_name(key: str, served: str) -> str:
    """`model_name`, marked `(served)` on the served model's row (as `recli metrics` marks it)."""
    return model_name(key) + (" (served)" if key == served else "")


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def num(value: Any, places: int = 4) -> str:
    """A metric to `places` decimals; integers as integers with thousands separators; absent
    values as a dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{places}f}"
    return str(value)


def secs(value: Any) -> str:
    """Seconds: whole seconds, a tenth below ten (a stage of 0.4 s is not 0)."""
    if not is_number(value):
        return "—"
    return f"{value:.1f}" if value < 10 else f"{value:,.0f}"


def signed(value: Any, places: int = 4) -> str:
    """A difference, with its sign always shown."""
    return f"{value:+.{places}f}" if is_number(value) else "—"


def share(value: Any, places: int = 1) -> str:
    """A fraction in [0, 1] as a percentage."""
    return f"{100 * value:.{places}f}%" if is_number(value) else "—"


def paired(entry: Mapping[str, Any] | None, places: int = 4) -> str:
    """A paired difference `{ndcg@10_difference, standard_error, z}` as `+d ± se (z 2.1)`."""
    if not isinstance(entry, Mapping) or not is_number(entry.get("ndcg@10_difference")):
        return "—"
    text = signed(entry["ndcg@10_difference"], places)
    if is_number(entry.get("standard_error")):
        text += f" ± {entry['standard_error']:.{places}f}"
    if is_number(entry.get("z")):
        text += f" (z {entry['z']:.2f})"
    return text


def metric_header(key: str) -> str:
    """`ndcg@10` → `NDCG@10`: the metric names a reader knows."""
    name, _, cut = key.partition("@")
    readable = {
        "hr": "HR",
        "ndcg": "NDCG",
        "mrr": "MRR",
        "recall": "Recall",
        "coverage": "coverage",
        "ild": "intra-list diversity",
        "novelty": "novelty",
        "interest_coverage": "interest coverage",
    }.get(name, name)
    return f"{readable}@{cut}" if cut else readable


def cell(text: Any) -> str:
    """A table cell: a `|` inside the text would end the cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], left: int = 1) -> str:
    """A Markdown table; the first `left` columns are text (left-aligned), the rest numbers."""
    rows = [list(row) for row in rows]
    lines = [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "|" + "|".join(":---" if i < left else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


PAIR_HEADER = ("measure", "value")
"""The header of the two-column tables that list one run's numbers."""


def source(*parts: str) -> str:
    """The line under a table that says where its numbers come from."""
    return "<small>From " + "; ".join(parts) + ".</small>"


def bold_if(text: str, condition: bool) -> str:
    return f"**{text}**" if condition else text


def events_label(n_events: Any) -> str:
    """100000 → `0.1M`, 10000000 → `10M`, 10⁹ → `1B`: the sizes the scale benchmark is read by."""
    if not is_number(n_events):
        return str(n_events)
    if n_events >= 1_000_000_000:
        return f"{n_events / 1_000_000_000:g}B"
    millions = n_events / 1_000_000
    return f"{millions:g}M" if millions >= 0.1 else f"{n_events / 1000:g}k"


def folded_columns(
    rows: Mapping[str, Mapping[str, Any]], columns: Sequence[str]
) -> list[list[str]]:
    """Group columns equal in every row: with one held-out item per user, recall@k is hr@k,
    and one column headed `HR@10 = Recall@10` says so instead of repeating it."""
    groups: list[list[str]] = []
    for column in columns:
        values = [row.get(column) for row in rows.values()]
        for group in groups:
            if None not in values and [row.get(group[0]) for row in rows.values()] == values:
                group.append(column)
                break
        else:
            groups.append([column])
    return groups


def summary(
    data: Mapping[str, Any],
    labels: Sequence[tuple[str, str, Callable[[Any], str]]],
    rest: bool = True,
) -> list[list[str]]:
    """(what, value) rows for the keys in `labels` that are present, in that order, then (when
    `rest`) any other scalar keys under their own names: a key added later still shows."""
    rows = [[label, fmt(data[key])] for key, label, fmt in labels if key in data]
    if rest:
        known = {key for key, _, _ in labels}
        rows += [
            [f"`{key}`", num(value)]
            for key, value in data.items()
            if key not in known and (is_number(value) or isinstance(value, str | bool))
        ]
    return rows
