"""How the CLI's answers look in a terminal: rich panels and tables, one builder per view.

Each view takes the result types of `recli.results` (or the metrics table) and returns what to
print, so the commands in `recli.cli` only fetch and print, and a view can be checked without
running a command. Titles, labels and ids are data and are escaped (`escape`): a `[bold]` or `:x:`
in a title is shown as written, and a control character (an ESC, a carriage return, a bidi
override) is shown as a backslash escape instead of reaching the terminal. Colour is added
explicitly; rich's automatic highlighting is off. A `label: value` line that wraps continues
under its value, not at the left edge.

Imports only rich and stdlib-only recli modules (no Annoy): `--help` and the error paths stay
light.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from rich.cells import cell_len
from rich.console import Console, Group
from rich.markup import escape as escape_markup
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from recli.contract import METRICS_FILE, term_text
from recli.errors import RecliError
from recli.explain import WHY_HISTORY_ITEMS
from recli.inputs import shown, visible

if TYPE_CHECKING:
    from recli.metrics_source import MetricsTable
    from recli.results import (
        Check,
        Cluster,
        Exploration,
        Interest,
        Item,
        Neighbour,
        Recommendation,
        Recommendations,
        User,
        UserProfile,
    )

NONE = "[dim]—[/]"
"""An empty cell."""
CHECK_COLOURS = {"ok": "green", "problem": "red", "warning": "yellow", "skipped": "dim"}
"""`recli doctor`'s status column."""
NARROW = 70
"""Terminals narrower than this (columns) get each table as stacked records: a squeezed table
wraps every cell to a few letters."""
TITLE_CHARS = 60
"""A query echoed in a title is cut to this many characters."""


# --------------------------------------------------------------------------------------------
# Consoles
# --------------------------------------------------------------------------------------------
def console(stderr: bool = False) -> Console:
    """A console for one command's output.

    Built per command, not at import: a Console reads the terminal width (and COLUMNS) when
    created. No emoji codes or automatic highlighting: titles are data (a `:x:` or a number in a
    title is not ours to restyle); colour is added explicitly.
    """
    return Console(stderr=stderr, emoji=False, highlight=False)


def error_console() -> Console:
    """stderr, for errors and progress (stdout stays clean for `--json` and pipes)."""
    return console(stderr=True)


def print_error(error: RecliError) -> None:
    """A project error as one red line on stderr (control characters in it made visible: a
    message can quote catalogue text)."""
    error_console().print(
        f"[red]error:[/] {escape_markup(visible(str(error)))}", highlight=False, soft_wrap=True
    )


def escape(text: str) -> str:
    """Data as rich markup that prints it as written: markup escaped, control characters shown
    as backslash escapes (`recli.inputs.visible`)."""
    return escape_markup(visible(text))


def _discard_stdout() -> None:
    """Point stdout at the null device, so the interpreter's own flush at exit does not fail a
    second time (with a traceback of its own) on what could not be written."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (a test runner's buffer): nothing is flushed at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, descriptor)
    finally:
        os.close(devnull)


def output_fault(error: OSError) -> NoReturn:
    """End the command after stdout failed to take its answer, as a Unix tool does: a closed
    pipe (`recli recommend 1 | head -1`) quietly with exit code 1, any other fault (a full disk,
    `> /dev/full`, an I/O error) as one error line."""
    _discard_stdout()
    if error.errno == errno.EPIPE:
        raise SystemExit(1) from None
    raise RecliError(
        f"cannot write the output: {error.strerror or error}; free some space or write elsewhere"
    ) from None


@contextmanager
def writing() -> Iterator[None]:
    """Write a command's answer on stdout (flushed at the end); an output fault becomes
    `output_fault`'s exit instead of a traceback."""
    try:
        yield
        sys.stdout.flush()
    except OSError as error:
        output_fault(error)


def show(parts: Iterable[Any]) -> None:
    """Print a view's parts (panels, tables, paragraphs) in order on stdout; on a terminal
    narrower than `NARROW` columns, tables are printed as stacked records."""
    out = console()
    with writing():
        for part in parts:
            out.print(part.stacked() if isinstance(part, Grid) and out.width < NARROW else part)


class Hanging:
    """`label value` as one line whose wrapped continuation lines start under `value` (not at
    the left edge), `indent` columns in. Both are markup.

    Wrapped here at render time, to whatever width the panel or console leaves: a one-row
    table would do the same, but laying out a table per header line cost about 15 ms of a
    cold `recli recommend` (measured), a tenth of the command.
    """

    def __init__(self, label: str, value: str, indent: int = 0) -> None:
        self.label, self.value, self.indent = label, value, indent

    def _parts(self) -> tuple[Text, Text]:
        head = Text.from_markup(self.label)
        head.append(" ")
        return head, Text.from_markup(self.value)

    def __rich_console__(self, console: Console, options: Any) -> Iterator[Text]:
        head, body = self._parts()
        hang = self.indent + head.cell_len
        lines = body.wrap(console, max(options.max_width - hang, 8))
        for number, line in enumerate(lines):
            prefix = Text(" " * self.indent) + head if number == 0 else Text(" " * hang)
            yield prefix + line

    def __rich_measure__(self, console: Console, options: Any) -> Measurement:
        head, body = self._parts()
        words = [cell_len(word) for word in body.plain.split()] or [0]
        hang = self.indent + head.cell_len
        widest = max(cell_len(line) for line in body.plain.split("\n"))
        return Measurement(hang + max(words), hang + widest).clamp(max_width=options.max_width)


def labelled(label: str, value: str, indent: int = 0) -> Hanging:
    """`label value`, wrapped continuation lines under `value` (`Hanging`)."""
    return Hanging(label, value, indent)


class Grid(Table):
    """A rich table that remembers its headers and cells, so a narrow terminal can show it as
    stacked records (`stacked`) instead of columns a few letters wide."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.headers: list[str] = []
        self.records: list[list[str]] = []

    def add_column(self, header: Any = "", *args: Any, **kwargs: Any) -> None:
        self.headers.append(str(header))
        super().add_column(header, *args, **kwargs)

    def add_row(self, *cells: Any, **kwargs: Any) -> None:
        self.records.append([cell if isinstance(cell, str) else "" for cell in cells])
        super().add_row(*cells, **kwargs)

    def stacked(self) -> Group:
        """Each row as a block: its first cell in bold (`#3`, `id 4`), then one `header: value`
        line per other cell, indented, a long or multi-line value continuing under itself;
        each block ends with a blank line, so the next part never reads as part of it."""
        parts: list[Any] = [f"[bold]{self.title}[/]", ""] if self.title else []
        first = self.headers[0] if self.headers else ""
        for record in self.records:
            if not record:
                continue
            heading = f"#{record[0]}" if first == "#" else f"{escape(first)} {record[0]}".strip()
            parts.append(f"[bold]{heading}[/]")
            for header, cell in zip(self.headers[1:], record[1:], strict=False):
                parts.append(labelled(f"{escape(header)}:", cell, indent=2))
            parts.append("")
        return Group(*parts)


def shortened(text: str, limit: int = TITLE_CHARS) -> str:
    """`text` on one line, control characters visible, cut to `limit` characters with an
    ellipsis (for titles)."""
    return shown(" ".join(text.split()), limit)


# --------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------
def genres_markup(item: Item) -> str:
    """The item's genres, comma-separated, or a dim dash."""
    return escape(", ".join(item.genres)) if item.genres else NONE


def title_markup(item: Item) -> str:
    """The item's title, marked `(new)` when it was held out of training (a cold item)."""
    cold = " [dim](new)[/]" if item.cold else ""
    return escape(item.title) + cold


def terms_markup(cluster: Cluster, limit: int = 5) -> str:
    """The group's top terms (`Action, #tag1`), or a dim dash."""
    names = cluster.term_names(limit)
    return escape(", ".join(names)) if names else NONE


def interests_markup(user: User, limit: int = 5) -> str:
    """The user's own over-represented terms with their lift, or why there are none."""
    names = user.interest_names(limit, with_lift=True)
    if names:
        return escape(", ".join(names))
    return "[dim]none stands out (no genre or tag over-represented in enough events)[/]"


def _table(title: str) -> Grid:
    return Grid(title=title, header_style="bold", title_justify="left")


Line = str | tuple[str, str]
"""A header line: markup, or (label, value) markup that wraps under its value."""


def _panel(lines: list[Line], title: str) -> Any:
    from rich.panel import Panel  # only the views with a header need it

    body = [line if isinstance(line, str) else labelled(*line) for line in lines]
    return Panel(Group(*body), title=title, title_align="left", expand=False)


# --------------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------------
def items_table(title: str, neighbours: list[Neighbour]) -> Grid:
    """`recli similar` and `recli search`: ranked items with their dot products."""
    table = _table(title)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("item", no_wrap=True)
    table.add_column("title")
    table.add_column("genres")
    table.add_column("score", justify="right", no_wrap=True)
    for neighbour in neighbours:
        table.add_row(
            str(neighbour.rank),
            escape(neighbour.item.item_id),
            title_markup(neighbour.item),
            genres_markup(neighbour.item),
            f"{neighbour.score:.3f}",
        )
    return table


def explanation(result: Recommendations) -> str:
    """The `--explain` paragraph: how the score and each reason in the table are formed."""
    weight = result.text_weight
    shares = (
        f"weighted {weight:.0%} text and {1 - weight:.0%} collaborative (index.text_weight)"
        if weight is not None
        else "weighted by index.text_weight"
    )
    return (
        "[bold]How the score is formed.[/] The score is one dot product between the user's and "
        "the item's fused vectors \\[a·text, b·collaborative], so it is the sum of a [cyan]text[/] "
        "part (how close the fine-tuned encoder puts the user's history text and the item's text) "
        "and a [magenta]collaborative[/] part (learned from who interacted with what, and in what "
        "order: matrix-factorisation factors, joined by a sequence model's state over the user's "
        "recent items and by item-to-item regression weights (EASE, in reduced rank) where "
        "validation chose them). Each part is first divided by its spread over "
        "users × items, "
        f"then {shares}. 'because' is the item among the user's {WHY_HISTORY_ITEMS} most recent "
        "whose fused vector is closest (dot product) to the recommendation; 'group ×N' marks an "
        "item the user's interest group likes N times more than everyone does, and 'group likes' "
        "lists the item's genres/tags the group over-represents."
    )


def recommendations_view(result: Recommendations, explain: bool) -> list[Any]:
    """`recli recommend`: who the user is, then the items with their reasons (and, with
    `explain`, each score's text and collaborative parts and a paragraph on how they are formed).
    """
    lines: list[Line] = [
        ("[bold]user[/]", f"[bold]{escape(result.user.user_id)}[/] · {result.user.events} events")
    ]
    if result.cluster is not None:
        share = f" ({result.cluster.share:.0%} of users)" if result.cluster.share else ""
        lines.append(
            (
                f"interest group {result.cluster.cluster}:",
                f"[bold]{escape(result.cluster.label)}[/]{share}",
            )
        )
    else:
        lines.append(("interest group:", "[dim]none (no clustered history)[/]"))
    if result.interests:
        lines.append(("interests:", interest_summary(result.interests)))
    lines.append(("stands out:", interests_markup(result.user)))
    if result.recent:
        lines.append(("recently:", "; ".join(escape(entry.item.title) for entry in result.recent)))
    header = _panel(lines, "recli recommend")

    groups: dict[str | None, list[Recommendation]] = {}
    for recommendation in result.items:
        groups.setdefault(recommendation.serves, []).append(recommendation)
    tables = [
        _recommendation_table(
            rows, explain, None if serves is None else f"serves: {escape(serves)}"
        )
        for serves, rows in groups.items()
    ]
    view: list[Any] = [header, *tables]
    if result.by_interest:
        view.append(
            "[dim]--by-interest: the whole-user vector and each interest's (the user pulled "
            "towards that interest's items) ask the index, and the slots are dealt by weight. "
            "Each list's rows are shown together, scored by the query that found them; "
            "--json's `dealt` is the order of dealing.[/]"
        )
    if explain:
        view.append(explanation(result))
    return view


def _recommendation_table(rows: list[Recommendation], explain: bool, title: str | None) -> Grid:
    table = Grid(header_style="bold", title=title, title_justify="left")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("title")
    table.add_column("genres")
    table.add_column("score", justify="right", no_wrap=True)
    if explain:
        table.add_column("text", justify="right", no_wrap=True, style="cyan")
        table.add_column("collab", justify="right", no_wrap=True, style="magenta")
    table.add_column("why")
    for recommendation in rows:
        why = []
        if recommendation.because is not None:
            why.append(f"because {escape(recommendation.because.item.title)}")
        if recommendation.cluster_lift is not None:
            why.append(f"[green]group ×{recommendation.cluster_lift:.1f}[/]")
        if recommendation.cluster_terms:
            why.append(f"[green]group likes {escape(', '.join(recommendation.cluster_terms))}[/]")
        cells = [
            str(recommendation.rank),
            title_markup(recommendation.item),
            genres_markup(recommendation.item),
            f"{recommendation.score:.3f}",
        ]
        if explain:
            cells += [
                f"{recommendation.text_score:.3f}",
                f"{recommendation.collaborative_score:.3f}",
            ]
        table.add_row(*cells, "\n".join(why) or NONE)
    return table


def exploration_view(result: Exploration) -> list[Any]:
    """`recli explore`: the topics the user engaged with, then each suggested topic with why
    and its items."""
    engaged = "; ".join(
        f"{escape(label)} [dim]{weight:.0%}[/]" for label, weight in result.engaged[:4]
    )
    more = len(result.engaged) - 4
    lines: list[Line] = [
        (
            "[bold]user[/]",
            f"[bold]{escape(result.user.user_id)}[/] · {result.user.events} events · "
            f"{len(result.engaged)} topics tried, {result.topics_left} not yet",
        ),
        ("tried most:", engaged + (f" [dim](+{more} more)[/]" if more > 0 else "")),
    ]
    view: list[Any] = [_panel(lines, "recli explore")]
    if not result.suggestions:
        view.append("[dim]This user has tried every topic: nothing new to suggest.[/]")
    for number, suggestion in enumerate(result.suggestions, start=1):
        why = []
        if suggestion.because:
            liked = " and ".join(escape(label) for label in suggestion.because)
            why.append(f"people who like {liked} often move on to it")
        if suggestion.closest_interest:
            why.append(f"closest to your interest {escape(suggestion.closest_interest)}")
        title = (
            f"{number}. [bold]{escape(suggestion.label)}[/] · "
            f"{suggestion.probability:.0%} likely next"
            + (f" · like {escape(suggestion.exemplar)}" if suggestion.exemplar else "")
        )
        if why:
            title += f"\n[dim]{'; '.join(why)}[/]"
        if suggestion.unseen < result.k:
            # In the heading, not after the rows: on a narrow terminal a line after the stacked
            # records reads as part of the next topic.
            title += f"\n[yellow]{_unseen_note(suggestion.unseen)}[/]"
        table = Grid(header_style="bold", title=title, title_justify="left")
        table.add_column("#", justify="right", no_wrap=True)
        table.add_column("title")
        table.add_column("genres")
        table.add_column("score", justify="right", no_wrap=True)
        for neighbour in suggestion.items:
            table.add_row(
                str(neighbour.rank),
                title_markup(neighbour.item),
                genres_markup(neighbour.item),
                f"{neighbour.score:.2f}",
            )
        view.append(table)
    if result.suggestions and len(result.suggestions) < result.topics_asked:
        # The header counts the topics left, but does not say the answer is short of --topics.
        view.append(f"[yellow]{_topics_note(len(result.suggestions), result.topics_asked)}[/]")
    return view


def _unseen_note(unseen: int) -> str:
    """Why a topic lists fewer items than `-k`: it has no more the user has not seen."""
    if unseen == 0:
        return "(no unseen items in this topic)"
    return f"(only {unseen} unseen item{'s' if unseen != 1 else ''} in this topic)"


def _topics_note(left: int, asked: int) -> str:
    """Why fewer topics are shown than `--topics`: the user has tried all the others."""
    return f"(only {left} untried topic{'s' if left != 1 else ''} left; {asked} asked for)"


def user_view(profile: UserProfile) -> list[Any]:
    """`recli user`: the user's group, interests and most frequent terms, then their history."""
    user = profile.user
    lines: list[Line] = [
        ("[bold]user[/]", f"[bold]{escape(user.user_id)}[/] · {user.events} events")
    ]
    if profile.cluster is not None:
        lines.append(
            (
                f"interest group {profile.cluster.cluster}:",
                f"[bold]{escape(profile.cluster.label)}[/]",
            )
        )
    else:
        lines.append(("interest group:", "[dim]none[/]"))
    lines.append(("stands out:", interests_markup(user)))
    if profile.cluster is not None:
        lines.append(("group terms:", terms_markup(profile.cluster)))
    if profile.top_genres:
        own = ", ".join(f"{genre} ({count})" for genre, count in profile.top_genres)
        lines.append(("most watched genres:", escape(own)))
    if profile.top_tags:
        tags = [(term_text({"kind": "tag", "term": tag}), count) for tag, count in profile.top_tags]
        tagged = ", ".join(f"{tag} ({count})" for tag, count in tags)
        lines.append(("most frequent tags:", escape(tagged)))
    table = _table("history, most recent first")
    table.add_column("date", no_wrap=True)
    table.add_column("item", no_wrap=True)
    table.add_column("title")
    table.add_column("genres")
    table.add_column("rating", justify="right", no_wrap=True)
    for entry in profile.history:
        rating = "—" if entry.rating is None else f"{entry.rating:g}"
        table.add_row(
            entry.date,
            escape(entry.item.item_id),
            title_markup(entry.item),
            genres_markup(entry.item),
            rating,
        )
    view: list[Any] = [_panel(lines, "recli user")]
    if profile.interests:
        view.append(interests_table(profile.interests))
    return [*view, table]


def interest_summary(interests: list[Interest], limit: int = 3) -> str:
    """`Romance · Drama 38% · Animation · Children's 30% · …`: the heaviest interests."""
    shown = [f"{escape(i.label)} [dim]{i.weight:.0%}[/]" for i in interests[:limit]]
    more = len(interests) - limit
    return "; ".join(shown) + (f" [dim](+{more} more)[/]" if more > 0 else "")


def interests_table(interests: list[Interest]) -> Grid:
    """The user's own interests: label, weight, events, the item that stands for it, when."""
    table = _table("interests, heaviest first (recent events count more)")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("interest")
    table.add_column("weight", justify="right", no_wrap=True)
    table.add_column("events", justify="right", no_wrap=True)
    table.add_column("stands for it")
    table.add_column("period", no_wrap=True)
    table.add_column("group", justify="right", no_wrap=True)
    for interest in interests:
        table.add_row(
            str(interest.interest + 1),
            escape(interest.label),
            f"{interest.weight:.0%}",
            str(interest.events),
            NONE if interest.medoid is None else title_markup(interest.medoid),
            interest.period,
            NONE if interest.cluster is None else str(interest.cluster),
        )
    return table


def clusters_table(groups: list[Cluster]) -> Grid:
    """`recli clusters`: every group with its size, share of users and top terms."""
    table = _table("interest groups")
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("label")
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("share", justify="right", no_wrap=True)
    table.add_column("top terms")
    for group in groups:
        share = "—" if group.share is None else f"{group.share:.1%}"
        table.add_row(
            str(group.cluster), escape(group.label), str(group.size), share, terms_markup(group)
        )
    return table


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def cluster_view(group: Cluster, member_ids: list[str]) -> list[Any]:
    """`recli cluster`: the group's header and members, its over-represented terms with their
    lift and shares, and its exemplar and favourite items (tables only for what the profile
    has)."""
    share = "" if group.share is None else f" · {group.share:.1%} of users"
    more = " …" if len(member_ids) < group.size and member_ids else ""
    view: list[Any] = [
        _panel(
            [
                f"[bold]{escape(group.label)}[/]",
                f"{group.size} users{share}",
                ("members:", f"{escape(', '.join(member_ids)) or '—'}{more}"),
            ],
            f"interest group {group.cluster}",
        )
    ]
    if group.top_terms:
        terms = _table("over-represented terms")
        terms.add_column("term")
        terms.add_column("lift", justify="right", no_wrap=True)
        terms.add_column("share in group", justify="right", no_wrap=True)
        terms.add_column("share overall", justify="right", no_wrap=True)
        for term in group.top_terms:
            if "term" not in term:
                continue
            lift = f"×{term['lift']:.2f}" if term.get("lift") is not None else "—"
            terms.add_row(
                escape(term_text(term)),
                lift,
                _share(term.get("share")),
                _share(term.get("share_overall")),
            )
        view.append(terms)
    for title, entries in (("exemplars", group.exemplars), ("favourites", group.top_items)):
        if not entries:
            continue
        table = _table(title)
        table.add_column("item", no_wrap=True)
        table.add_column("title")
        table.add_column("liked by", justify="right", no_wrap=True)
        for entry in entries:
            liked = "—" if entry.get("users") is None else f"{entry['users']} users"
            if entry.get("lift") is not None:
                liked += f" (×{entry['lift']:.1f})"
            table.add_row(
                escape(str(entry.get("item_id", "—"))), escape(str(entry.get("title", "—"))), liked
            )
        view.append(table)
    return view


def checks_table(checks: list[Check], artifacts: Path) -> Grid:
    """`recli doctor`: one coloured line per check."""
    table = _table(f"recli doctor ({escape(str(artifacts))})")
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("detail")
    for check in checks:
        colour = CHECK_COLOURS.get(check.status, "white")
        table.add_row(check.name, f"[{colour}]{check.status}[/]", escape(check.detail))
    return table


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
    "fused": "fused (served)",
    "multi_interest": "multi-interest lists",
    "explore": "exploration",
}
"""How `recli metrics` names the evaluation's models (its tables; `--json` keeps the keys of
`metrics/evaluation.json`). A model not listed is shown by its key."""


def model_name(model: str) -> str:
    """The name a reader knows a model by (`MODEL_NAMES`), else its key."""
    return MODEL_NAMES.get(model, model)


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
        lines.append(f"| {model_name(model)} | " + " | ".join(cells) + " |")
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
        grid.add_row(escape(model_name(model)), *cells)
    parts: list[Any] = [grid]
    if rev is not None:
        parts.append(f"[dim]changes are against {escape(rev)}[/]")
    return parts
