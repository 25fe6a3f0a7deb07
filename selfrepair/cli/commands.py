"""The `selfrepair` command's commands. Each family lives in a module of its own and is
registered here; `common` holds what they share. The entry point is `selfrepair.cli.main`."""

from __future__ import annotations

import typer

from selfrepair import __version__
from selfrepair.cli import models, sandbox
from selfrepair.cli.bench import bench
from selfrepair.cli.fix import fix
from selfrepair.cli.improve import improve
from selfrepair.cli.report import export, report
from selfrepair.cli.serve import serve
from selfrepair.cli.synth import synth
from selfrepair.cli.train import train_app
from selfrepair.cli.tune import tune

app = typer.Typer(
    name="selfrepair",
    help="Language models that repair code and learn from their own repairs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # joins a docstring's wrapped lines into one paragraph
)


@app.callback()
def root() -> None:
    """Language models that repair code and learn from their own repairs."""


@app.command()
def version() -> None:
    """Print the installed selfrepair version."""
    typer.echo(__version__)


app.command("fix")(fix)
app.command("bench")(bench)
app.command("report")(report)
app.command("export")(export)
app.add_typer(train_app, name="train")
app.command("improve")(improve)
app.command("serve")(serve)
app.add_typer(models.app, name="models")
app.add_typer(sandbox.app, name="sandbox")
app.command("synth")(synth)
app.command("tune")(tune)
