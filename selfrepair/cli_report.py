"""`selfrepair report`: one self-contained HTML page for one or more run directories."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from selfrepair.report import write_report


def report(
    run_dirs: list[Path] = typer.Argument(
        ...,
        help="Run directories (each with run.sqlite, results.jsonl, summary.json); "
        "several are compared side by side.",
        show_default=False,
        metavar="RUN_DIR",
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Where to write the HTML page. Default: FIRST_RUN_DIR/report.html."
    ),
) -> None:
    """Write an HTML report of runs: summary table, repair-rate plots, each task's trajectory."""
    written = write_report(run_dirs, out)
    typer.echo(f"wrote {written}")
