"""The `recli` command line: one Typer app, thin commands over library functions.

Each command opens the served artifacts (`recli.serve`), asks one question and prints the answer
with a view from `recli.render`; `recli doctor` runs `recli.doctor` and `recli metrics` reads
`recli.metrics_source`.

Only stdlib, typer, rich and stdlib-only recli modules are imported at module level, and the
serving module (stdlib + annoy) is imported inside the commands that query: `recli recommend`
starts in about the time Python needs to import typer and rich. `recli search` encodes its query
with `recli.query_encoder` (numpy and tokenizers, imported lazily), never torch.

No `from __future__ import annotations` here, unlike the rest of the project: Typer reads every
command's annotations at each start, and string annotations cost it an `eval` per parameter
(about 2 ms per run, measured); the few names only needed for type checking are quoted instead.
"""

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from recli import __version__, render
from recli.contract import DEFAULT_ARTIFACTS, ENCODER_DIR, FINETUNE_DIR, INDEX_DIR
from recli.errors import RecliError

if TYPE_CHECKING:
    from recli.serve import Served


class _RecliGroup(TyperGroup):
    """Turns a `RecliError` from any command into one red line and exit code 1 (also under
    Typer's `CliRunner`, which calls the group directly rather than `main()`)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except RecliError as error:
            render.print_error(error)
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
        help=f"The pipeline's output folder ({INDEX_DIR}/, {FINETUNE_DIR}/); "
        "default: the global --artifacts.",
        show_default=False,
    ),
]
CountOption = Annotated[int, typer.Option("-k", "--k", help="How many items to show.")]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the answer as JSON on stdout, nothing else.")
]
IdArguments = {"ignore_unknown_options": True}
"""For commands that take an id: `-1` is an id to look up (and report as unknown), not an
option Click has never heard of."""


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
            help=f"The pipeline's output folder: {INDEX_DIR}/ (catalogue + Annoy index), "
            f"{ENCODER_DIR.as_posix()}.",
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


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, indent=2))


def _open(ctx: typer.Context, artifacts: Path | None) -> "Served":
    from recli.serve import Served

    return Served(_artifacts(ctx, artifacts))


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------
@app.command(context_settings=IdArguments)
def recommend(
    ctx: typer.Context,
    user_id: Annotated[str, typer.Argument(help="The user's id as in the dataset (e.g. 196).")],
    k: CountOption = 10,
    explain: Annotated[
        bool, typer.Option("--explain", help="Split each score into text and collaborative parts.")
    ] = False,
    by_interest: Annotated[
        bool,
        typer.Option(
            "--by-interest",
            help="One list per interest besides the whole-user one, dealt by weight and "
            "grouped by the interest each row serves.",
        ),
    ] = False,
    as_json: JsonOption = False,
    artifacts: ArtifactsOption = None,
) -> None:
    """A user's interest group and their top-k recommendations, each with the reason behind it."""
    with _open(ctx, artifacts) as served:
        result = served.recommend(user_id, k, by_interest=by_interest)
    if as_json:
        _print_json(result.to_json())
        return
    render.show(render.recommendations_view(result, explain))


@app.command(context_settings=IdArguments)
def explore(
    ctx: typer.Context,
    user_id: Annotated[str, typer.Argument(help="The user's id as in the dataset (e.g. 196).")],
    k: Annotated[int, typer.Option("-k", "--k", help="How many items per topic.")] = 5,
    topics: Annotated[int, typer.Option("--topics", "-t", help="How many topics to suggest.")] = 3,
    as_json: JsonOption = False,
    artifacts: ArtifactsOption = None,
) -> None:
    """Topics the user has not tried yet, the likeliest next new interest first, with the items
    in each they would enjoy most and why."""
    with _open(ctx, artifacts) as served:
        result = served.explore(user_id, k, topics)
    if as_json:
        _print_json(result.to_json())
        return
    render.show(render.exploration_view(result))


@app.command(context_settings=IdArguments)
def user(
    ctx: typer.Context,
    user_id: Annotated[str, typer.Argument(help="The user's id as in the dataset.")],
    history: Annotated[
        int, typer.Option("--history", "-n", help="How many history events to show.")
    ] = 10,
    as_json: JsonOption = False,
    artifacts: ArtifactsOption = None,
) -> None:
    """A user's profile: interest group, interest tags and recent history."""
    with _open(ctx, artifacts) as served:
        profile = served.user_profile(user_id, history)
    if as_json:
        _print_json(profile.to_json())
        return
    render.show(render.user_view(profile))


@app.command()
def clusters(
    ctx: typer.Context, as_json: JsonOption = False, artifacts: ArtifactsOption = None
) -> None:
    """Every interest group: id, label, size, share of users and top terms."""
    with _open(ctx, artifacts) as served:
        groups = served.clusters()
    if not groups:
        raise RecliError("the catalogue has no interest clusters: run `dvc repro cluster index`")
    if as_json:
        _print_json([group.to_json() for group in groups])
        return
    render.show([render.clusters_table(groups)])


@app.command(context_settings=IdArguments)
def cluster(
    ctx: typer.Context,
    cluster_id: Annotated[int, typer.Argument(help="The group's id (see `recli clusters`).")],
    members: Annotated[int, typer.Option(help="How many member user ids to show.")] = 10,
    as_json: JsonOption = False,
    artifacts: ArtifactsOption = None,
) -> None:
    """One interest group: its over-represented terms, exemplar items and some members."""
    with _open(ctx, artifacts) as served:
        group = served.cluster(cluster_id)
        member_ids = served.cluster_members(cluster_id, max(members, 0))
    if as_json:
        _print_json(group.to_json_detailed(member_ids))
        return
    render.show(render.cluster_view(group, member_ids))


@app.command(context_settings=IdArguments)
def similar(
    ctx: typer.Context,
    item_id: Annotated[str, typer.Argument(help="The item's id as in the dataset.")],
    k: CountOption = 10,
    as_json: JsonOption = False,
    artifacts: ArtifactsOption = None,
) -> None:
    """Items nearest to an item in the fused (text + collaborative) space."""
    with _open(ctx, artifacts) as served:
        item, neighbours = served.similar(item_id, k)
    if as_json:
        _print_json({"item": item.to_json(), "similar": [n.to_json() for n in neighbours]})
        return
    title = f"items like {escape(item.title)} ({escape(item.item_id)})"
    render.show([render.items_table(title, neighbours)])


@app.command()
def search(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help='What the user likes, e.g. "space opera, funny".')],
    k: CountOption = 10,
    encoder: Annotated[
        Path | None,
        typer.Option(
            help=f"Encoder directory; default: <artifacts>/{ENCODER_DIR.as_posix()}.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
    artifacts: ArtifactsOption = None,
) -> None:
    """Cold start: recommend from a free-text description, with the fine-tuned encoder."""
    if not text.strip():
        raise RecliError('empty search text: describe a taste, e.g. recli search "space opera"')
    from recli.inputs import is_text, not_text

    if not is_text(text):
        raise not_text("search text", text, 'recli search "space opera"')
    with _open(ctx, artifacts) as served:
        from recli.inputs import check_k

        check_k(k, served.n_items)
        location = served.encoder_path(encoder)
        with render.error_console().status("encoding the query…"):
            # numpy + tokenizers, exact to the pipeline's encoder: no torch start-up.
            from recli.query_encoder import QueryEncoder

            vector = QueryEncoder.load(location).encode([text])[0].tolist()
        neighbours = served.search(vector, k)
    if as_json:
        _print_json({"query": text, "items": [n.to_json() for n in neighbours]})
        return
    render.show([render.items_table(f"items for “{escape(render.shortened(text))}”", neighbours)])


@app.command()
def doctor(
    ctx: typer.Context, as_json: JsonOption = False, artifacts: ArtifactsOption = None
) -> None:
    """Check the served artifacts: present, right versions, index hash, fresh, answering."""
    from recli.doctor import doctor as run_checks

    artifacts = _artifacts(ctx, artifacts)
    checks = run_checks(artifacts)
    if as_json:
        _print_json([check.to_json() for check in checks])
    else:
        render.show([render.checks_table(checks, artifacts)])
    problems = [check for check in checks if check.status == "problem"]
    if problems:
        names = ", ".join(check.name for check in problems)
        raise RecliError(f"{len(problems)} problem(s) ({names}): fix them as the table says")


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
    as_json: JsonOption = False,
) -> None:
    """Show the evaluation table (every model, same split), optionally against a git revision."""
    from recli.metrics_source import load_table

    table = load_table(split, rev, cutoff)
    if as_json:

        def shown(rows: Any) -> Any:  # the columns the table would show (`--k`)
            return {m: {c: row[c] for c in table.columns if c in row} for m, row in rows.items()}

        baseline = None if table.baseline is None else shown(table.baseline)
        _print_json(
            {"split": table.split, "models": shown(table.rows), "rev": rev, "at_rev": baseline}
        )
        return
    if markdown:
        for line in render.metrics_markdown(table):
            typer.echo(line)
        return
    render.show(render.metrics_view(table, rev))


def main() -> None:
    """Console entry point: project errors become one red line on stderr and exit code 1."""
    try:
        app(standalone_mode=True)
    except RecliError as error:
        # Raised outside a command (the group turns those raised inside into the same line).
        render.print_error(error)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
