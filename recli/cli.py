"""The `recli` command line: one Typer app, thin commands over library functions.

Only stdlib, typer, rich, numpy and annoy are imported at module level so that every command starts
fast; anything heavier is imported inside the one command that needs it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from recli import __version__
from recli.errors import RecliError

app = typer.Typer(
    name="recli",
    help="Explore users' interests with language-model representations, from the terminal.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)
console = Console()
error_console = Console(stderr=True)

METRICS_FILE = Path("metrics/evaluation.json")


def _version(value: bool) -> None:
    if value:
        console.print(f"recli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """recli: who a user is, what they like, and what to show them next."""


def _load_metrics(rev: str | None) -> dict[str, Any]:
    if rev is None:
        if not METRICS_FILE.exists():
            raise RecliError(
                f"{METRICS_FILE} not found: run `dvc repro` first (from the project root)"
            )
        text = METRICS_FILE.read_text(encoding="utf-8")
    else:
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
    console.print(table)
    if rev is not None:
        console.print(f"[dim]changes are against {rev}[/]")


def main() -> None:
    """Console entry point: project errors become one red line on stderr and exit code 1."""
    try:
        app(standalone_mode=True)
    except RecliError as error:
        error_console.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
