"""The `selfrepair` command. Each family of commands lives in a module of its own and is
registered here; `common` holds what they share."""

from __future__ import annotations

import signal
import sys

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
from selfrepair.errors import SelfRepairError

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


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Stopped(BaseException):
    """SIGTERM or SIGHUP (a `kill`, a supervisor, a closed terminal), raised in the main
    thread like Ctrl-C's KeyboardInterrupt: every `finally` on the way out runs, so servers
    are stopped, sandboxes closed and their containers removed. A BaseException, so that no
    `except Exception` on the way catches it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def stop(signum: int, _frame: object) -> None:
    # Further stop signals are ignored while the way out runs: it is bounded (a server gets
    # seconds to stop, then SIGKILL), and a second SIGTERM must not cut it short.
    for other in STOP_SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    raise Stopped(signum)


def main() -> None:
    """Entry point: a SelfRepairError becomes one line on stderr and exit status 2; SIGTERM
    and SIGHUP stop the command cleanly with exit status 128 + the signal's number."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    try:
        app()
    except SelfRepairError as error:
        typer.echo(f"selfrepair: error: {error}", err=True)
        sys.exit(2)
    except Stopped as stopped:
        # Every step and checkpoint is committed as it lands, so a run stopped anywhere
        # resumes; nothing it started is left running.
        name = signal.Signals(stopped.signum).name
        typer.echo(
            f"selfrepair: stopped by {name}; a run resumes when the same command is run again",
            err=True,
        )
        sys.exit(128 + stopped.signum)
