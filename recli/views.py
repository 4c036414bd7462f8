"""The CLI's answers as rich panels and tables: one builder per view.

Each view takes the result types of `recli.results` and returns what to print, so the commands
in `recli.cli` only fetch and print, and a view can be checked without running a command:
`recli recommend`, `explore`, `user`, `clusters`, `cluster`, `similar`, `search` and `doctor`.
The evaluation table of `recli metrics` has its own module (`recli.metrics_view`), which only
that command loads. Every title, label and id goes through `recli.render.escape`: data is shown
as written, never as markup.

Apart from `recli.render` so a view reads as what it shows, with how text reaches the terminal
(consoles, wrapping, narrow terminals, output faults) left to that module.

Imports only rich and stdlib-only recli modules (no Annoy).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recli.contract import term_text
from recli.explain import WHY_HISTORY_ITEMS
from recli.render import Grid, Line, escape, panel, titled_table

if TYPE_CHECKING:
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


# --------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------
def genres_markup(item: Item) -> str:
    """The item's genres, comma-separated, or a dim dash."""
    return escape(", ".join(item.genres)) if item.genres else NONE


def genres_column(table: Grid, items: list[Item]) -> Callable[[Item], list[str]]:
    """Add a genres column to `table` here, unless no item has a genre (a catalogue of titles
    and descriptions: a column of dashes); the cells a row then gives it (none without it)."""
    if not any(item.genres for item in items):
        return lambda item: []
    table.add_column("genres")
    return lambda item: [genres_markup(item)]


def with_terms(items: list[Item]) -> bool:
    """Whether a user's "stands out" line can say anything: some item of theirs has a genre or
    a tag (on a catalogue with neither, the interests' phrases describe the user instead)."""
    return any(item.genres or item.tags for item in items)


def title_markup(item: Item) -> str:
    """The item's title, marked `(new)` when it was held out of training (a cold item)."""
    cold = " [dim](new)[/]" if item.cold else ""
    return escape(item.title) + cold


def terms_markup(cluster: Cluster, limit: int = 5) -> str:
    """The group's top terms (`Action, #tag1`), or a dim dash."""
    names = cluster.term_names(limit)
    return escape(", ".join(names)) if names else NONE


def over_represented_markup(user: User, limit: int = 5) -> str:
    """The user's own over-represented terms with their lift, or why there are none."""
    names = user.term_names(limit, with_lift=True)
    if names:
        return escape(", ".join(names))
    return "[dim]none stands out (no genre or tag over-represented in enough events)[/]"


# --------------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------------
def items_table(title: str, neighbours: list[Neighbour]) -> Grid:
    """`recli similar` and `recli search`: ranked items with their dot products."""
    table = titled_table(title)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("item", no_wrap=True)
    table.add_column("title")
    genres = genres_column(table, [neighbour.item for neighbour in neighbours])
    table.add_column("score", justify="right", no_wrap=True)
    for neighbour in neighbours:
        table.add_row(
            str(neighbour.rank),
            escape(neighbour.item.item_id),
            title_markup(neighbour.item),
            *genres(neighbour.item),
            f"{neighbour.score:.3f}",
        )
    return table


def explanation(result: Recommendations) -> str:
    """The `--explain` paragraph: how the score and each reason in the table are formed."""
    weight = result.text_weight
    shares = (
        f"weighted {weight:.0%} text and {1 - weight:.0%} collaborative (fuse.text_weight)"
        if weight is not None
        else "weighted by fuse.text_weight"
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


def events_text(user: User) -> str:
    """How many events the user has, and whether some were added since the build."""
    if not user.live:
        return f"{user.events} events"
    return (
        f"{user.events} events, some added since the build [dim](served from all of them; "
        "group and interests are the build's until the next `dvc repro`)[/]"
    )


def recommendations_view(result: Recommendations, explain: bool) -> list[Any]:
    """`recli recommend`: who the user is, then the items with their reasons (and, with
    `explain`, each score's text and collaborative parts and a paragraph on how they are formed).
    """
    lines: list[Line] = [
        ("[bold]user[/]", f"[bold]{escape(result.user.user_id)}[/] · {events_text(result.user)}")
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
    if with_terms([entry.item for entry in result.recent]):
        lines.append(("stands out:", over_represented_markup(result.user)))
    if result.recent:
        lines.append(("recently:", "; ".join(escape(entry.item.title) for entry in result.recent)))
    header = panel(lines, "recli recommend")

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
        how = (
            "One list per interest, served by default: on validation it was more accurate than "
            "the whole-user list alone (--whole-user shows that one). "
            if result.by_default
            else "--by-interest: "
        )
        view.append(
            f"[dim]{how}The whole-user vector and each interest's (the user pulled "
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
    genres = genres_column(table, [recommendation.item for recommendation in rows])
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
            *genres(recommendation.item),
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
    view: list[Any] = [panel(lines, "recli explore")]
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
        genres = genres_column(table, [neighbour.item for neighbour in suggestion.items])
        table.add_column("score", justify="right", no_wrap=True)
        for neighbour in suggestion.items:
            table.add_row(
                str(neighbour.rank),
                title_markup(neighbour.item),
                *genres(neighbour.item),
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
        ("[bold]user[/]", f"[bold]{escape(user.user_id)}[/] · {events_text(user)}")
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
    if with_terms([entry.item for entry in profile.history]):
        lines.append(("stands out:", over_represented_markup(user)))
    if profile.cluster is not None:
        lines.append(("group terms:", terms_markup(profile.cluster)))
    if profile.top_genres:
        own = ", ".join(f"{genre} ({count})" for genre, count in profile.top_genres)
        lines.append(("most watched genres:", escape(own)))
    if profile.top_tags:
        tags = [(term_text({"kind": "tag", "term": tag}), count) for tag, count in profile.top_tags]
        tagged = ", ".join(f"{tag} ({count})" for tag, count in tags)
        lines.append(("most frequent tags:", escape(tagged)))
    table = titled_table("history, most recent first")
    table.add_column("date", no_wrap=True)
    table.add_column("item", no_wrap=True)
    table.add_column("title")
    genres = genres_column(table, [entry.item for entry in profile.history])
    table.add_column("rating", justify="right", no_wrap=True)
    for entry in profile.history:
        rating = "—" if entry.rating is None else f"{entry.rating:g}"
        table.add_row(
            entry.date,
            escape(entry.item.item_id),
            title_markup(entry.item),
            *genres(entry.item),
            rating,
        )
    view: list[Any] = [panel(lines, "recli user")]
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
    table = titled_table("interests, heaviest first (recent events count more)")
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
    table = titled_table("interest groups")
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
        panel(
            [
                f"[bold]{escape(group.label)}[/]",
                f"{group.size} users{share}",
                ("members:", f"{escape(', '.join(member_ids)) or '—'}{more}"),
            ],
            f"interest group {group.cluster}",
        )
    ]
    if group.top_terms:
        terms = titled_table("over-represented terms")
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
        table = titled_table(title)
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
    table = titled_table(f"recli doctor ({escape(str(artifacts))})")
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("detail")
    for check in checks:
        colour = CHECK_COLOURS.get(check.status, "white")
        table.add_row(check.name, f"[{colour}]{check.status}[/]", escape(check.detail))
    return table
