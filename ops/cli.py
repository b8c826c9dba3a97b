"""The root `tqa` command: composes the ml, serving and ops sub-commands."""

from __future__ import annotations

import sys

import typer

from ml import cli as ml_cli
from ml import cli_data, cli_history, cli_tracking
from ml.errors import UserError
from ops.infra.cli import app as infra_app
from serving import cli as serving_cli

app = typer.Typer(
    name="tqa",
    help="Transformers QA: ask the HuggingFace Transformers repository a question, get a cited answer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Transformers QA: ask the HuggingFace Transformers repository a question, get a cited answer."""


for sub in (ml_cli.app, cli_history.app, cli_data.app, cli_tracking.app, serving_cli.app):
    app.registered_commands.extend(sub.registered_commands)
    app.registered_groups.extend(sub.registered_groups)


app.add_typer(infra_app, name="infra")


def main() -> None:
    """Entry point: user mistakes become one clear sentence and exit code 2, never a traceback."""
    try:
        app()
    except UserError as exc:
        typer.secho(f"Error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
