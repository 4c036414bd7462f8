"""The `recli` command line: one Typer app, thin commands over library functions.

Only stdlib, typer and rich are imported at module level, and the serving module (stdlib + annoy)
is imported inside the commands that query: `recli recommend` starts in about the time Python
needs to import typer and rich. `recli search` is the one command that loads torch (lazily).

No `from __future__ import annotations` here, unlike the rest of the project: Typer reads every
command's annotations at each start, and string annotations cost it an `eval` per parameter
(about 2 ms per run, measured); the few names only needed for type checking are quoted instead.
"""

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from recli import __version__
from recli.errors import RecliError

if TYPE_CHECKING:
    from recli.serve import Cluster, Item, Neighbour, Recommendations, Served, User

METRICS_FILE = Path("metrics/evaluation.json")
# The same as recli.serve.DEFAULT_ARTIFACTS, repeated so that --help does not import annoy.
DEFAULT_ARTIFACTS = Path("data")


def _console(stderr: bool = False) -> Console:
    # Built per command, not at import: a Console reads the terminal width (and COLUMNS) when
    # created. No emoji codes or automatic highlighting: titles are data (a `:x:` or a number in
    # a title is not ours to restyle); colour is added explicitly.
    return Console(stderr=stderr, emoji=False, highlight=False)


def _error_console() -> Console:
    return _console(stderr=True)


def print_error(error: RecliError) -> None:
    """A project error as one red line on stderr."""
    _error_console().print(f"[red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)


class _RecliGroup(TyperGroup):
    """Turns a `RecliError` from any command into one red line and exit code 1 (also under
    Typer's `CliRunner`, which calls the group directly rather than `main()`)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except RecliError as error:
            print_error(error)
            raise typer.Exit(1) from None


app = typer.Typer(
    name="recli",
    cls=_RecliGroup,
    help="Explore users' interests with language-model representations, from the terminal.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)

ArtifactsOption = Annotated[
    Path | None,
    typer.Option(
        "--artifacts",
        help="The pipeline's output folder (index/, finetune/); default: the global --artifacts.",
        show_default=False,
    ),
]
CountOption = Annotated[int, typer.Option("-k", "--k", help="How many items to show.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"recli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    artifacts: Annotated[
        Path,
        typer.Option(
            "--artifacts",
            envvar="RECLI_ARTIFACTS",
            help="The pipeline's output folder: index/ (catalogue + Annoy index), finetune/model.",
        ),
    ] = DEFAULT_ARTIFACTS,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """recli: who a user is, what they like, and what to show them next."""
    ctx.obj = {"artifacts": artifacts}


def _artifacts(ctx: typer.Context, artifacts: Path | None) -> Path:
    """The command's --artifacts, else the global one (which defaults to `data`)."""
    if artifacts is not None:
        return artifacts
    return (ctx.find_root().obj or {}).get("artifacts", DEFAULT_ARTIFACTS)


def _open(ctx: typer.Context, artifacts: Path | None) -> "Served":
    from recli.serve import Served

    return Served(_artifacts(ctx, artifacts))


# --------------------------------------------------------------------------------------------
# Rendering helpers
# --------------------------------------------------------------------------------------------
def _genres(item: "Item") -> str:
    return escape(", ".join(item.genres)) if item.genres else "[dim]—[/]"


def _title(item: "Item") -> str:
    cold = " [dim](new)[/]" if item.cold else ""
    return escape(item.title) + cold


def _terms(cluster: "Cluster", limit: int = 5) -> str:
    names = cluster.term_names(limit)
    return escape(", ".join(names)) if names else "[dim]—[/]"


def _interests(user: "User", limit: int = 5) -> str:
    """The user's own over-represented terms with their lift, or why there are none."""
    names = user.interest_names(limit, with_lift=True)
    if names:
        return escape(", ".join(names))
    return "[dim]none stands out (no genre or tag over-represented in enough events)[/]"


def _items_table(title: str, neighbours: list["Neighbour"]) -> Table:
    table = Table(title=title, header_style="bold", title_justify="left")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("item", no_wrap=True)
    table.add_column("title")
    table.add_column("genres")
    table.add_column("score", justify="right", no_wrap=True)
    for neighbour in neighbours:
        table.add_row(
            str(neighbour.rank),
            escape(neighbour.item.item_id),
            _title(neighbour.item),
            _genres(neighbour.item),
            f"{neighbour.score:.3f}",
        )
    return table


def _explanation(result: "Recommendations") -> str:
    from recli.serve import WHY_HISTORY_ITEMS

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
        "and a [magenta]collaborative[/] part (matrix-factorisation factors learned from who "
        "interacted with what). Each part is first divided by its spread over users × items, "
        f"then {shares}. 'because' is the item among the user's {WHY_HISTORY_ITEMS} most recent "
        "whose fused vector is closest (dot product) to the recommendation; 'group ×N' marks an "
        "item the user's interest group likes N times more than everyone does, and 'group likes' "
        "lists the item's genres/tags the group over-represents."
    )


def _recommendations_view(result: "Recommendations", explain: bool) -> list[Any]:
    from rich.panel import Panel

    lines = [
        f"[bold]user {escape(result.user.user_id)}[/] · {result.user.train_count} training events"
    ]
    if result.cluster is not None:
        share = f" ({result.cluster.share:.0%} of users)" if result.cluster.share else ""
        lines.append(
            f"interest group {result.cluster.cluster}: [bold]{escape(result.cluster.label)}[/]"
            f"{share}"
        )
    else:
        lines.append("interest group: [dim]none (no clustered history)[/]")
    lines.append(f"interests: {_interests(result.user)}")
    if result.recent:
        recent = "; ".join(escape(entry.item.title) for entry in result.recent)
        lines.append(f"recently: {recent}")
    header = Panel("\n".join(lines), title="recli recommend", title_align="left", expand=False)

    table = Table(header_style="bold")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("title")
    table.add_column("genres")
    table.add_column("score", justify="right", no_wrap=True)
    if explain:
        table.add_column("text", justify="right", no_wrap=True, style="cyan")
        table.add_column("collab", justify="right", no_wrap=True, style="magenta")
    table.add_column("why")
    for recommendation in result.items:
        why = []
        if recommendation.because is not None:
            why.append(f"because {escape(recommendation.because.item.title)}")
        if recommendation.cluster_lift is not None:
            why.append(f"[green]group ×{recommendation.cluster_lift:.1f}[/]")
        if recommendation.cluster_terms:
            why.append(f"[green]group likes {escape(', '.join(recommendation.cluster_terms))}[/]")
        cells = [
            str(recommendation.rank),
            _title(recommendation.item),
            _genres(recommendation.item),
            f"{recommendation.score:.3f}",
        ]
        if explain:
            cells += [
                f"{recommendation.text_score:.3f}",
                f"{recommendation.collaborative_score:.3f}",
            ]
        table.add_row(*cells, "\n".join(why) or "[dim]—[/]")
    view: list[Any] = [header, table]
    if explain:
        view.append(_explanation(result))
    return view


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------
@app.command()
def recommend(
    ctx: typer.Context,
    user_id: Annotated[str, typer.Argument(help="The user's id as in the dataset (e.g. 196).")],
    k: CountOption = 10,
    explain: Annotated[
        bool, typer.Option("--explain", help="Split each score into text and collaborative parts.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (user, cluster, recommendations) only.")
    ] = False,
    artifacts: ArtifactsOption = None,
) -> None:
    """A user's interest group and their top-k recommendations, each with the reason behind it."""
    with _open(ctx, artifacts) as served:
        result = served.recommend(user_id, k)
    if as_json:
        typer.echo(json.dumps(result.to_json(), ensure_ascii=False, indent=2))
        return
    console = _console()
    for part in _recommendations_view(result, explain):
        console.print(part)


@app.command()
def user(
    ctx: typer.Context,
    user_id: Annotated[str, typer.Argument(help="The user's id as in the dataset.")],
    history: Annotated[
        int, typer.Option("--history", "-n", help="How many history events to show.")
    ] = 10,
    artifacts: ArtifactsOption = None,
) -> None:
    """A user's profile: interest group, interest tags and recent history."""
    from rich.panel import Panel

    with _open(ctx, artifacts) as served:
        profile = served.user_profile(user_id, history)
    lines = [
        f"[bold]user {escape(profile.user.user_id)}[/] · {profile.user.train_count} training events"
    ]
    if profile.cluster is not None:
        lines.append(
            f"interest group {profile.cluster.cluster}: [bold]{escape(profile.cluster.label)}[/]"
        )
    else:
        lines.append("interest group: [dim]none[/]")
    lines.append(f"interests: {_interests(profile.user)}")
    if profile.cluster is not None:
        lines.append(f"group terms: {_terms(profile.cluster)}")
    if profile.top_genres:
        own = ", ".join(f"{genre} ({count})" for genre, count in profile.top_genres)
        lines.append(f"most watched genres: {escape(own)}")
    if profile.top_tags:
        tagged = ", ".join(f"#{tag} ({count})" for tag, count in profile.top_tags)
        lines.append(f"most frequent tags: {escape(tagged)}")
    console = _console()
    console.print(Panel("\n".join(lines), title="recli user", title_align="left", expand=False))
    table = Table(title="history, most recent first", header_style="bold", title_justify="left")
    table.add_column("date", no_wrap=True)
    table.add_column("item", no_wrap=True)
    table.add_column("title")
    table.add_column("genres")
    table.add_column("rating", justify="right", no_wrap=True)
    for entry in profile.history:
        rating = "—" if entry.rating is None else f"{entry.rating:g}"
        table.add_row(
            entry.date, escape(entry.item.item_id), _title(entry.item), _genres(entry.item), rating
        )
    console.print(table)


@app.command()
def clusters(ctx: typer.Context, artifacts: ArtifactsOption = None) -> None:
    """Every interest group: id, label, size, share of users and top terms."""
    with _open(ctx, artifacts) as served:
        groups = served.clusters()
    if not groups:
        raise RecliError("the catalogue has no interest clusters: run `dvc repro cluster index`")
    table = Table(title="interest groups", header_style="bold", title_justify="left")
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("label")
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("share", justify="right", no_wrap=True)
    table.add_column("top terms")
    for group in groups:
        share = "—" if group.share is None else f"{group.share:.1%}"
        table.add_row(
            str(group.cluster), escape(group.label), str(group.size), share, _terms(group)
        )
    _console().print(table)


@app.command()
def cluster(
    ctx: typer.Context,
    cluster_id: Annotated[int, typer.Argument(help="The group's id (see `recli clusters`).")],
    members: Annotated[int, typer.Option(help="How many member user ids to show.")] = 10,
    artifacts: ArtifactsOption = None,
) -> None:
    """One interest group: its over-represented terms, exemplar items and some members."""
    from rich.panel import Panel

    from recli.serve import term_text

    with _open(ctx, artifacts) as served:
        group = served.cluster(cluster_id)
        member_ids = served.cluster_members(cluster_id, max(members, 0))
    share = "" if group.share is None else f" · {group.share:.1%} of users"
    console = _console()
    console.print(
        Panel(
            f"[bold]{escape(group.label)}[/]\n{group.size} users{share}\n"
            f"members: {escape(', '.join(member_ids)) or '—'}"
            + (" …" if len(member_ids) < group.size and member_ids else ""),
            title=f"interest group {group.cluster}",
            title_align="left",
            expand=False,
        )
    )
    if group.top_terms:
        terms = Table(title="over-represented terms", header_style="bold", title_justify="left")
        terms.add_column("term")
        terms.add_column("lift", justify="right", no_wrap=True)
        terms.add_column("share in group", justify="right", no_wrap=True)
        terms.add_column("share overall", justify="right", no_wrap=True)
        for term in group.top_terms:
            if "term" not in term:
                continue
            cells = [
                f"×{term['lift']:.2f}" if term.get("lift") is not None else "—",
                f"{term['share']:.1%}" if term.get("share") is not None else "—",
                f"{term['share_overall']:.1%}" if term.get("share_overall") is not None else "—",
            ]
            terms.add_row(escape(term_text(term)), *cells)
        console.print(terms)
    for title, entries in (("exemplars", group.exemplars), ("favourites", group.top_items)):
        if not entries:
            continue
        table = Table(title=title, header_style="bold", title_justify="left")
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
        console.print(table)


@app.command()
def similar(
    ctx: typer.Context,
    item_id: Annotated[str, typer.Argument(help="The item's id as in the dataset.")],
    k: CountOption = 10,
    artifacts: ArtifactsOption = None,
) -> None:
    """Items nearest to an item in the fused (text + collaborative) space."""
    with _open(ctx, artifacts) as served:
        item, neighbours = served.similar(item_id, k)
    title = f"items like {escape(item.title)} ({escape(item.item_id)})"
    _console().print(_items_table(title, neighbours))


@app.command()
def search(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help='What the user likes, e.g. "space opera, funny".')],
    k: CountOption = 10,
    encoder: Annotated[
        Path | None,
        typer.Option(
            help="Encoder directory; default: <artifacts>/finetune/model.", show_default=False
        ),
    ] = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Cold start: recommend from a free-text description, with the fine-tuned encoder."""
    if not text.strip():
        raise RecliError('empty search text: describe a taste, e.g. recli search "space opera"')
    with _open(ctx, artifacts) as served:
        from recli.serve import check_k

        check_k(k, served.n_items)
        location = served.encoder_path(encoder)
        with _error_console().status("loading the encoder…"):
            try:
                from pipeline.encoder import encode, load_encoder
            except ImportError as error:
                raise RecliError(
                    f"`recli search` needs the pipeline's encoder dependencies ({error.name}): "
                    'pip install -e "."'
                ) from None
            # One query: the CPU answers before a GPU would finish initialising.
            model = load_encoder(str(location), device="cpu")
        vector = encode(model, [text])[0].tolist()
        neighbours = served.search(vector, k)
    _console().print(_items_table(f"items for “{escape(text)}”", neighbours))


@app.command()
def doctor(ctx: typer.Context, artifacts: ArtifactsOption = None) -> None:
    """Check the served artifacts: present, right versions, index hash, fresh, answering."""
    from recli.serve import doctor as run_checks

    artifacts = _artifacts(ctx, artifacts)
    checks = run_checks(artifacts)
    colours = {"ok": "green", "problem": "red", "warning": "yellow", "skipped": "dim"}
    table = Table(title=f"recli doctor ({artifacts})", header_style="bold", title_justify="left")
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("detail")
    for check in checks:
        colour = colours.get(check.status, "white")
        table.add_row(check.name, f"[{colour}]{check.status}[/]", escape(check.detail))
    _console().print(table)
    problems = [check for check in checks if check.status == "problem"]
    if problems:
        names = ", ".join(check.name for check in problems)
        raise RecliError(f"{len(problems)} problem(s) ({names}): fix them as the table says")


def _load_metrics(rev: str | None) -> dict[str, Any]:
    if rev is None:
        if not METRICS_FILE.exists():
            raise RecliError(
                f"{METRICS_FILE} not found: run `dvc repro` first (from the project root)"
            )
        text = METRICS_FILE.read_text(encoding="utf-8")
    else:
        import subprocess

        try:
            text = subprocess.run(
                ["git", "show", f"{rev}:{METRICS_FILE.as_posix()}"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        except (subprocess.CalledProcessError, FileNotFoundError):
            raise RecliError(
                f"no {METRICS_FILE} at git revision '{rev}': "
                "pass a commit, tag or branch that has one"
            ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise RecliError(f"{METRICS_FILE} is corrupted: run `dvc repro -f evaluate`") from None


@app.command()
def metrics(
    split: Annotated[str, typer.Option(help="Which split to show: test or validation.")] = "test",
    rev: Annotated[
        str | None, typer.Option(help="Compare with the metrics committed at this git revision.")
    ] = None,
    cutoff: Annotated[
        int | None,
        typer.Option("--k", help="Only the metrics at this cut-off (default 10; 0 shows all)."),
    ] = 10,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print a Markdown table (for READMEs and reports).")
    ] = False,
) -> None:
    """Show the evaluation table (every model, same split), optionally against a git revision."""
    current = _load_metrics(None)
    if split not in ("test", "validation") or split not in current:
        raise RecliError(f"unknown split '{split}': use --split test or --split validation")
    baseline = _load_metrics(rev)[split] if rev is not None else None
    rows: dict[str, dict[str, float]] = current[split]
    columns = [name for name in next(iter(rows.values())) if name != "users"]
    if cutoff:
        columns = [name for name in columns if name.endswith(f"@{cutoff}")]
        if not columns:
            raise RecliError(f"no metrics at --k {cutoff}: use a cut-off from evaluate.k in params")
    if markdown:
        typer.echo("| model | " + " | ".join(columns) + " |")
        typer.echo("|---|" + "---:|" * len(columns))
        for model, row in rows.items():
            cells = [f"{row[column]:.4f}" if column in row else "—" for column in columns]
            typer.echo(f"| {model} | " + " | ".join(cells) + " |")
        return
    best = {
        column: max(row.get(column, float("-inf")) for row in rows.values()) for column in columns
    }
    table = Table(title=f"{split} metrics ({METRICS_FILE})", header_style="bold")
    table.add_column("model", no_wrap=True)
    for column in columns:
        table.add_column(column, justify="right", no_wrap=True)
    for model, row in rows.items():
        cells = []
        for column in columns:
            value = row.get(column)
            text = "—" if value is None else f"{value:.4f}"
            if value is not None and value == best[column]:
                text = f"[bold green]{text}[/]"
            if baseline is not None and value is not None and column in baseline.get(model, {}):
                delta = value - baseline[model][column]
                colour = "green" if delta > 0 else "red" if delta < 0 else "dim"
                text += f" [{colour}]({delta:+.4f})[/]"
            cells.append(text)
        table.add_row(model, *cells)
    console = _console()
    console.print(table)
    if rev is not None:
        console.print(f"[dim]changes are against {rev}[/]")


def main() -> None:
    """Console entry point: project errors become one red line on stderr and exit code 1."""
    try:
        app(standalone_mode=True)
    except RecliError as error:
        # Raised outside a command (the group turns those raised inside into the same line).
        print_error(error)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
