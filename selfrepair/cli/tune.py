"""`selfrepair tune`: the repair strategy improves itself (STOP) and is measured on held-out
tasks. training.tune does the work and reports what happens as records; this module shows
them."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from selfrepair.cli.common import (
    BUDGET_HELP,
    FORMATS,
    MODEL_HELP,
    QUIET_HELP,
    SANDBOX_HELP,
    Display,
    MaxSeconds,
    MaxTokens,
    SandboxKind,
)
from selfrepair.errors import SelfRepairError
from selfrepair.loaders import LOADERS


class Utility(str, Enum):
    rate = "rate"
    per_tokens = "rate-per-1k-tokens"
    per_minute = "rate-per-minute"


def tune(
    dev: Path = typer.Option(
        ..., "--dev", help="Task file the utility is measured on (each trial runs them all)."
    ),
    eval_data: Path = typer.Option(
        ...,
        "--eval",
        help="Task file of held-out tasks (none shared with --dev or --train): the tuned "
        "strategy against the default, at the end.",
    ),
    train: Path | None = typer.Option(
        None,
        "--train",
        help="Task file the improver learns from: it reads the failures of the best strategy "
        "on these rather than on --dev, so --dev only selects.",
    ),
    benchmark: str = typer.Option(
        "quixbugs", "--format", help=f"Format of the task files: {FORMATS}."
    ),
    model: str = typer.Option("smollm2", "--model", "-m", help=MODEL_HELP),
    improver: str | None = typer.Option(
        None,
        "--improver",
        help="Model spec of the improver, which proposes new prompts and feedback formats. "
        "Default: --model.",
    ),
    trials: int = typer.Option(
        8,
        "--trials",
        min=1,
        help="Strategies to try on --dev, the default first (more than a finished run had "
        "extend it).",
    ),
    budget: int = typer.Option(4, "--budget", min=1, help=BUDGET_HELP),
    max_tokens: int = MaxTokens,
    max_seconds: float = MaxSeconds,
    utility: Utility = typer.Option(
        Utility.rate,
        "--utility",
        help="What a trial maximises on --dev: rate (repair rate at the budget), "
        "rate-per-1k-tokens or rate-per-minute (repairs per 1,000 tokens, per minute).",
    ),
    recursive: bool = typer.Option(
        False,
        "--recursive",
        help="The improver may also rewrite its own prompt (STOP's recursive step).",
    ),
    eval_seeds: int = typer.Option(
        2, "--eval-seeds", min=1, help="Seeds each strategy runs the --eval tasks with."
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Folder for the study, every trial's run and the report. Give the folder of a "
        "killed run (same settings) to resume it.",
    ),
    seed: int = typer.Option(
        0,
        "--seed",
        help="Seed of the dev runs (every trial draws with it), Optuna's sampler and the "
        "improver; evaluation uses seed, seed+1, ...",
    ),
    sandbox: SandboxKind = typer.Option(SandboxKind.auto, "--sandbox", help=SANDBOX_HELP),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Tasks to run in parallel."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Tune the repair strategy (prompt templates per role, sampling, graph and its parameters,
    feedback format, budgets) on --dev: Optuna's TPE sampler for the numbers and choices, the
    improver model for prompts and feedback (its proposals screened: one that reaches for the
    tests, the sandbox or the verdict is refused and counted). Then the best strategy against
    the default on --eval, paired, with intervals: OUT/report.md, OUT/strategy.json."""
    import optuna

    from selfrepair.executor import open_executor
    from selfrepair.loaders import load_tasks
    from selfrepair.settings import Budget
    from selfrepair.training.tune import TuneSettings
    from selfrepair.training.tune import tune as run_tune

    for option, path in (("--dev", dev), ("--eval", eval_data), ("--train", train)):
        if path is not None and not path.is_file():
            raise SelfRepairError(f"{option} {path}: no such file")
    if benchmark not in LOADERS:
        raise SelfRepairError(f"--format {benchmark}: unknown (known: {FORMATS})")
    dev_tasks, eval_tasks = load_tasks(benchmark, dev), load_tasks(benchmark, eval_data)
    train_tasks = load_tasks(benchmark, train) if train else []
    settings = TuneSettings(
        model=model,
        improver=improver or model,
        trials=trials,
        budget=Budget(max_candidates=budget, max_tokens=max_tokens, max_seconds=max_seconds),
        utility=utility.value,
        seed=seed,
        recursive=recursive,
        eval_seeds=eval_seeds,
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the trials are shown here, once
    executor = open_executor("local", sandbox=sandbox.value, jobs=jobs)
    shown = Shown(not quiet)
    try:
        result = run_tune(train_tasks, dev_tasks, eval_tasks, settings, executor, out, shown.report)
    finally:
        shown.end_phase()
        executor.close()
    print_summary(result)
    typer.echo(f"report in {out / 'report.md'}; the tuned strategy in {out / 'strategy.json'}")


class Shown:
    """A progress bar per run on stderr, and a line per trial and per proposal."""

    def __init__(self, progress: bool) -> None:
        self.progress = progress
        self.phase: str | None = None
        self.display: Display | None = None
        self.errors = Console(stderr=True, quiet=not progress, highlight=False)

    def report(self, event: dict[str, Any]) -> None:
        if event["event"] == "repair":
            if event["phase"] != self.phase:
                self.end_phase()
                self.phase = event["phase"]
                self.display = Display(self.progress, event["phase"], event["total"]).__enter__()
            self.display.update(
                completed=event["done"], solved=event["solved"], tokens=event["tokens"]
            )
            return
        self.end_phase()
        if event["event"] == "trial":
            self.errors.print(
                f"trial {event['number']} ({event['kind']}): utility {event['utility']:.4g} "
                f"({event['solved']}/{event['tasks']} repaired); best so far {event['best']:.4g}"
            )
        elif event["event"] == "proposal":
            record = event["record"]
            verdict = (
                "accepted" + (" (no change)" if record["unchanged"] else "")
                if record["accepted"]
                else "refused: " + ", ".join(sorted(set(record["refused"])))
            )
            self.errors.print(f"proposal for trial {record['trial']}: {verdict}")

    def end_phase(self) -> None:
        if self.display is not None:
            self.display.__exit__(None, None, None)
        self.phase = self.display = None


def print_summary(result: dict[str, Any]) -> None:
    from selfrepair.training.tune import describe

    proposals = result["proposals"]
    evaluation = result["evaluation"]
    best = result["trials"][result["best_trial"]]["utility"] if result["trials"] else 0.0
    typer.echo(
        f"{len(result['trials'])} trials; best: trial {result['best_trial']} "
        f"(dev {result['settings']['utility']} {best:.4g})"
        + (", the default" if result["tuned_is_default"] else "")
    )
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(proposals["refused_by_kind"].items()))
    typer.echo(
        f"proposals: {proposals['made']} made, {proposals['accepted']} accepted, "
        f"{proposals['refused']} refused" + (f" ({kinds})" if kinds else "")
    )
    for name, entry in evaluation["strategies"].items():
        rate = entry["repair_rate"]
        typer.echo(
            f"eval {name}: repair rate {rate['value']:.3f} [{rate['low']:.3f}, {rate['high']:.3f}] "
            f"on {evaluation['tasks']} tasks x {len(entry['seeds'])} seeds; "
            f"{entry['tokens']:,} tokens, {entry['wall_seconds']:.0f} s"
        )
    if "difference" in evaluation:
        typer.echo("tuned - default: " + describe(evaluation["difference"]))
