"""The `recli` command line: one Typer app, thin commands over library functions.

Each command opens the served artifacts (`recli.serve`), asks one question and prints the answer
with a view from `recli.views` (written out by `recli.render`); `recli doctor` runs
`recli.doctor`, and `recli metrics` reads `recli.metrics_source` and shows it with
`recli.metrics_view`.

The console script starts in `recli.entry`, which answers a plain `recli recommend` itself
(with `recli.answer.recommend`, the function the `recommend` command here calls too) and hands
every other command line to this app.

Module level imports only stdlib, typer, rich and stdlib-only recli modules; the serving module
(stdlib + annoy) is imported by the commands that query, `recli.query_encoder` (numpy,
tokenizers; never torch) by `recli search` alone.

Whatever is typed ends in an answer, one error line (exit 1) or a usage error (exit 2), and what
a user typed is echoed short, control characters visible (`recli.inputs.shown`). A closed pipe
or a full disk ends the command as a Unix tool would (`recli.render.writing`); `--help` on a narrow
terminal is plain text with every option name whole (`recli.narrow_help`, imported only for help).

No `from __future__ import annotations` here, unlike the rest of the project: Typer reads every
command's annotations at each start, and string annotations cost it an `eval` per parameter on
every run; the few names only needed for type checking are quoted instead.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from recli import __version__, render, views
from recli.answer import RecommendCall
from recli.answer import recommend as answer_recommend
from recli.cli_parts import RecliCommand, RecliGroup, RecliInteger
from recli.contract import DEFAULT_ARTIFACTS, ENCODER_DIR, FINETUNE_DIR, INDEX_DIR
from recli.errors import RecliError
from recli.inputs import shown

if TYPE_CHECKING:
    from recli.serve import Served

app = typer.Typer(
    name="recli",
    cls=RecliGroup,
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


CountOption = Annotated[
    int,
    typer.Option(
        "-k",
        "--k",
        help="How many items to show.",
        click_type=RecliInteger("pass how many items to show, e.g. -k 10"),
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the answer as JSON on stdout, nothing else.")
]
ProjectOption = Annotated[
    Path, typer.Option(help="The project folder: params.yaml and the pipeline's data/.")
]
IdArguments = {"ignore_unknown_options": True}
"""For commands that take an id: `-1` is an id to look up (and report as unknown), not an
option Click has never heard of."""


def _version(value: bool) -> None:
    if value:
        with render.writing():
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


def _open(ctx: typer.Context, artifacts: Path | None) -> "Served":
    from recli.serve import Served

    return Served(_artifacts(ctx, artifacts))


def _project_run(project: Path, arguments: list[str]) -> None:
    """Run `python -m pipeline.<arguments>` in `project`, as the pipeline runs (serving code
    never imports the pipeline), and exit with its code."""
    import subprocess
    import sys

    if not (project / "params.yaml").is_file():
        raise RecliError(
            f"{shown(str(project))} has no params.yaml: run from the project folder or pass "
            "--project"
        )
    command = [sys.executable, "-m", *arguments]
    raise typer.Exit(subprocess.run(command, cwd=project, check=False).returncode)


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------
@app.command(cls=RecliCommand, context_settings=IdArguments)
def recommend(
    ctx: typer.Context,
    user_id: Annotated[str, typer.Argument(help="The user's id as in the dataset (e.g. 196).")],
    k: CountOption = 10,
    explain: Annotated[
        bool, typer.Option("--explain", help="Split each score into text and collaborative parts.")
    ] = False,
    by_interest: Annotated[
        bool | None,
        typer.Option(
            "--by-interest/--whole-user",
            help="One list per interest besides the whole-user one, dealt by weight and "
            "grouped by the interest each row serves (scored by that list's query), or the "
            "whole-user list alone; default: what the pipeline chose on validation.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
    artifacts: ArtifactsOption = None,
) -> None:
    """A user's interest group and their top-k recommendations, each with the reason behind it."""
    answer_recommend(
        RecommendCall(_artifacts(ctx, artifacts), user_id, k, explain, by_interest, as_json=as_json)
    )


@app.command(cls=RecliCommand, context_settings=IdArguments)
def explore(
    ctx: typer.Context,
    user_id: Annotated[str, typer.Argument(help="The user's id as in the dataset (e.g. 196).")],
    k: Annotated[
        int,
        typer.Option(
            "-k",
            "--k",
            help="How many items per topic.",
            click_type=RecliInteger("pass how many items per topic, e.g. -k 5"),
        ),
    ] = 5,
    topics: Annotated[
        int,
        typer.Option(
            "--topics",
            "-t",
            help="How many topics to suggest.",
            click_type=RecliInteger("pass how many topics to suggest, e.g. --topics 3"),
        ),
    ] = 3,
    as_json: JsonOption = False,
    artifacts: ArtifactsOption = None,
) -> None:
    """Topics the user has not tried yet, the likeliest next new interest first, with the items
    in each they would enjoy most and why."""
    with _open(ctx, artifacts) as served:
        result = served.explore(user_id, k, topics)
    if as_json:
        render.print_json(result.to_json())
        return
    render.show(views.exploration_view(result))


@app.command(cls=RecliCommand, context_settings=IdArguments)
def user(
    ctx: typer.Context,
    user_id: Annotated[str, typer.Argument(help="The user's id as in the dataset.")],
    history: Annotated[
        int,
        typer.Option(
            "--history",
            "-n",
            help="How many history events to show.",
            click_type=RecliInteger("pass how many history events to show, e.g. --history 10"),
        ),
    ] = 10,
    as_json: JsonOption = False,
    artifacts: ArtifactsOption = None,
) -> None:
    """A user's profile: interest group, interest tags and recent history."""
    with _open(ctx, artifacts) as served:
        profile = served.user_profile(user_id, history)
    if as_json:
        render.print_json(profile.to_json())
        return
    render.show(views.user_view(profile))


@app.command(cls=RecliCommand)
def clusters(
    ctx: typer.Context, as_json: JsonOption = False, artifacts: ArtifactsOption = None
) -> None:
    """Every interest group: id, label, size, share of users and top terms."""
    with _open(ctx, artifacts) as served:
        groups = served.clusters()
    if not groups:
        raise RecliError("the catalogue has no interest clusters: run `dvc repro cluster index`")
    if as_json:
        render.print_json([group.to_json() for group in groups])
        return
    render.show([views.clusters_table(groups)])


@app.command(cls=RecliCommand, context_settings=IdArguments)
def cluster(
    ctx: typer.Context,
    cluster_id: Annotated[
        int,
        typer.Argument(
            help="The group's id (see `recli clusters`).",
            click_type=RecliInteger(
                "pass one of the ids `recli clusters` lists, e.g. `recli cluster 0`"
            ),
        ),
    ],
    members: Annotated[
        int,
        typer.Option(
            help="How many member user ids to show (0: none).",
            click_type=RecliInteger("pass how many member ids to show, e.g. --members 10"),
        ),
    ] = 10,
    as_json: JsonOption = False,
    artifacts: ArtifactsOption = None,
) -> None:
    """One interest group: its over-represented terms, exemplar items and some members."""
    with _open(ctx, artifacts) as served:
        group = served.cluster(cluster_id)
        member_ids = served.cluster_members(cluster_id, members)
    if as_json:
        render.print_json(group.to_json_detailed(member_ids))
        return
    render.show(views.cluster_view(group, member_ids))


@app.command(cls=RecliCommand, context_settings=IdArguments)
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
        render.print_json({"item": item.to_json(), "similar": [n.to_json() for n in neighbours]})
        return
    title = f"items like {render.escape(item.title)} ({render.escape(item.item_id)})"
    render.show([views.items_table(title, neighbours)])


@app.command(cls=RecliCommand)
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
    from recli.inputs import check_k, is_text, not_text

    if not is_text(text):
        raise not_text("search text", text, 'recli search "space opera"')
    with _open(ctx, artifacts) as served:
        check_k(k, served.n_items)
        location = served.encoder_path(encoder)
        with render.error_console().status("encoding the query…"):
            # numpy + tokenizers, exact to the pipeline's encoder: no torch start-up.
            from recli.query_encoder import QueryEncoder

            query_encoder = QueryEncoder.load(location)
            if not query_encoder.known_words(text):
                # Its vector would be the encoder's bias alone: ten items unrelated to anything.
                raise RecliError(
                    f"search text '{shown(text)}' has no words the encoder knows (only "
                    "punctuation, symbols or unknown characters): describe a taste in words, "
                    'e.g. recli search "space opera"'
                )
            vector = query_encoder.encode([text])[0].tolist()
        neighbours = served.search(vector, k)
    if as_json:
        render.print_json({"query": text, "items": [n.to_json() for n in neighbours]})
        return
    title = f"items for “{render.escape(render.shortened(text))}”"
    render.show([views.items_table(title, neighbours)])


@app.command(cls=RecliCommand)
def doctor(
    ctx: typer.Context, as_json: JsonOption = False, artifacts: ArtifactsOption = None
) -> None:
    """Check the served artifacts: present, right versions, index hash, fresh, answering."""
    from recli.doctor import doctor as run_checks

    artifacts = _artifacts(ctx, artifacts)
    checks = run_checks(artifacts)
    if as_json:
        render.print_json([check.to_json() for check in checks])
    else:
        render.show([views.checks_table(checks, artifacts)])
    problems = [check for check in checks if check.status == "problem"]
    if problems:
        names = ", ".join(check.name for check in problems)
        raise RecliError(f"{len(problems)} problem(s) ({names}): fix them as the table says")


@app.command(cls=RecliCommand)
def metrics(
    split: Annotated[str, typer.Option(help="Which split to show: test or validation.")] = "test",
    rev: Annotated[
        str | None, typer.Option(help="Compare with the metrics committed at this git revision.")
    ] = None,
    cutoff: Annotated[
        int | None,
        typer.Option(
            "--k",
            help="Only the metrics at this cut-off (default 10; 0 shows all).",
            click_type=RecliInteger("pass a cut-off the evaluation used, e.g. --k 10"),
        ),
    ] = 10,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print a Markdown table (for READMEs and reports).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Show the evaluation table (every model, same split), optionally against a git revision."""
    from recli import metrics_view
    from recli.metrics_source import load_table

    table = load_table(split, rev, cutoff)
    if as_json:

        def shown(rows: Any) -> Any:  # the columns the table would show (`--k`)
            return {m: {c: row[c] for c in table.columns if c in row} for m, row in rows.items()}

        baseline = None if table.baseline is None else shown(table.baseline)
        render.print_json(
            {"split": table.split, "models": shown(table.rows), "rev": rev, "at_rev": baseline}
        )
        return
    if markdown:
        with render.writing():
            for line in metrics_view.metrics_markdown(table):
                typer.echo(line)
        return
    render.show(metrics_view.metrics_view(table, rev))


EXPORT_MAX_K = 1000
"""The most items per user `recli export` writes (`export.k` has the same bound)."""


@app.command(cls=RecliCommand)
def export(
    to: Annotated[
        Path,
        typer.Argument(help="A new folder for the lists (an earlier export's is replaced)."),
    ],
    count: Annotated[
        int | None,
        typer.Option(
            "-k",
            "--k",
            help="Items per user (default: export.k in params.yaml).",
            click_type=RecliInteger("pass how many items per user, e.g. -k 20"),
            show_default=False,
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            help="local or ray (default: engine.backend in params.yaml).", show_default=False
        ),
    ] = None,
    project: ProjectOption = Path("."),
) -> None:
    """Write every user's top k unseen items, each with a reason, as parquet files."""
    if count is not None and not 1 <= count <= EXPORT_MAX_K:
        raise RecliError(f"-k must be between 1 and {EXPORT_MAX_K} (got {count}): e.g. -k 20")
    if backend is not None and backend not in ("local", "ray"):
        raise RecliError(f"--backend must be local or ray (got '{shown(backend)}')")
    # The batch job is the pipeline's own (`pipeline.export`).
    arguments = ["pipeline.export", "--to", str(to.resolve())]
    arguments += [] if count is None else ["--k", str(count)]
    arguments += [] if backend is None else ["--backend", backend]
    _project_run(project, arguments)


@app.command(cls=RecliCommand, context_settings=IdArguments)
def add(
    user_id: Annotated[str, typer.Argument(help="The user's id (a new id makes a new user).")],
    item_id: Annotated[str, typer.Argument(help="The item's id as in the catalogue.")],
    at: Annotated[
        str | None,
        typer.Option(
            help="When: seconds since 1970 or an ISO date/time (default: now).", show_default=False
        ),
    ] = None,
    rating: Annotated[
        float | None, typer.Option(help="The rating, where the data has them.", show_default=False)
    ] = None,
    project: ProjectOption = Path("."),
) -> None:
    """Add one event: the user's recommendations change at once, nothing is refit."""
    # `--name=value`: an id or a time may start with "-".
    arguments = ["pipeline.live", "add", f"--user={user_id}", f"--item={item_id}"]
    arguments += [] if at is None else [f"--at={at}"]
    arguments += [] if rating is None else [f"--rating={rating}"]
    _project_run(project, arguments)


@app.command(cls=RecliCommand)
def ingest(
    file: Annotated[
        Path,
        typer.Argument(help="Events as the pipeline reads them (data.files settings)."),
    ],
    project: ProjectOption = Path("."),
) -> None:
    """Add a file of events in one transaction: every user it touches is recomputed."""
    _project_run(project, ["pipeline.live", "ingest", str(file.resolve())])


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
