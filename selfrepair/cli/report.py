"""`selfrepair report` (an HTML page of runs) and `selfrepair export` (a run's trajectories
as JSONL): what a finished run directory shows."""

from __future__ import annotations

from pathlib import Path

import typer

from selfrepair.report import write_report
from selfrepair.store import TrajectoryStore


def report(
    run_dirs: list[Path] = typer.Argument(
        ...,
        help="Run directories (each with run.sqlite, results.jsonl, summary.json); "
        "several are compared side by side. An `improve` --out folder is drawn as its rounds, "
        "a `tune` --out folder as its search.",
        show_default=False,
        metavar="RUN_DIR",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Where to write the HTML page. Default: FIRST_RUN_DIR/report.html.",
    ),
) -> None:
    """Write an HTML report of runs: summary table, repair-rate plots, each task's trajectory;
    of improve folders: base and every round with intervals and p-values, and each phase's seconds;
    of tune folders: each trial's utility and the best so far, the proposals refused by kind,
    and the tuned strategy against the default."""
    written = write_report(run_dirs, out)
    typer.echo(f"wrote {written}")


def export(
    run_dir: Path = typer.Argument(
        ..., help="A run directory (holding run.sqlite).", show_default=False
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="The JSONL file to write, one trajectory a line."
    ),
) -> None:
    """Export a run's trajectories (every step: messages, candidate, test report, review,
    tokens, seconds; and the outcome) as JSONL, the format training reads."""
    with TrajectoryStore(run_dir, read_only=True) as store:
        count = store.export_jsonl(out)
    typer.echo(f"wrote {count} trajectories to {out}")
