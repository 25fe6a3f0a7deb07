"""The `selfrepair` command. Each area's commands live in a `cli_*` module and register here."""

from __future__ import annotations

import sys

import typer

from selfrepair import __version__
from selfrepair.errors import SelfRepairError

app = typer.Typer(
    name="selfrepair",
    help="Language models that repair code and learn from their own repairs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def root() -> None:
    """Language models that repair code and learn from their own repairs."""


@app.command()
def version() -> None:
    """Print the installed selfrepair version."""
    typer.echo(__version__)


def main() -> None:
    """Entry point: a SelfRepairError becomes one line on stderr and exit status 2."""
    try:
        app()
    except SelfRepairError as error:
        typer.echo(f"selfrepair: error: {error}", err=True)
        sys.exit(2)
