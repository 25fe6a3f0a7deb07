"""`selfrepair bench`: a benchmark's tasks through a repair strategy, or SWE-bench instances
(from local mirrors) through the issue graph.

Everything is checked (the data, the mirrors, the model) before the run directory exists.
The run directory's results.jsonl gets each task's row as it finishes (summary.json follows);
running the same command again resumes the run: finished tasks are kept, cut-off ones continue.
"""

from __future__ import annotations

import json
import re
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from selfrepair.agents.code.repo import open_repository, resolve_commit
from selfrepair.cli.common import (
    BUDGET_HELP,
    JSON_HELP,
    MODEL_HELP,
    QUIET_HELP,
    SANDBOX_HELP,
    Display,
    ExecutorOption,
    MaxSeconds,
    MaxTokens,
    Refiner,
    Reviewer,
    SandboxKind,
    Seed,
    Strategy,
    StrategyFile,
    Verifier,
    budget_config,
    command_line,
    executor_line,
    role_config,
    strategy_from_file,
)
from selfrepair.errors import SelfRepairError
from selfrepair.executor import open_executor
from selfrepair.files import write_atomically
from selfrepair.graphs.issue import issue_sampling
from selfrepair.graphs.jobs import RepairJob, Rollout
from selfrepair.graphs.run import open_checkpointer
from selfrepair.loaders import load_tasks
from selfrepair.metrics import result_row
from selfrepair.rundir import PREDICTIONS, ResultsWriter, check_run_dir, prepare_run_dir
from selfrepair.settings import Budget, Sampling
from selfrepair.types import Task, Trajectory


class Benchmark(str, Enum):
    quixbugs = "quixbugs"
    humanevalfix = "humanevalfix"
    humaneval = "humaneval"
    swebench = "swebench"
    synth = "synth"


STRATEGY_HELP = (
    "How to search for a repair: best-of-n, refine or tree; for swebench the issue graph (the "
    "default) or localise-repair (one suspect function at a time, for small models). "
    "The default is best-of-n because it measured best for small models: on QuixBugs with "
    "Qwen2.5-Coder-0.5B at a budget of 8 it solved 7 of 8 tasks, refine 4 of 8 with three times the tokens."
)


def bench(
    benchmark: Benchmark = typer.Argument(
        ...,
        help="Which benchmark: quixbugs, humanevalfix (HumanEvalPack JSONL), humaneval, swebench (instances JSON, with --repos), or synth (function-level tasks from `selfrepair synth`: DIR/functions*.jsonl).",
    ),
    data: Path | None = typer.Option(
        None, "--data", help="The benchmark's data file (not for humaneval)."
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Run only the first N tasks."),
    model: str = typer.Option("smollm2", "--model", help=MODEL_HELP),
    strategy: Strategy | None = typer.Option(
        None, "--strategy", help=STRATEGY_HELP, show_default=False
    ),
    strategy_file: Path | None = StrategyFile,
    reviewer: str | None = Reviewer,
    refiner: str | None = Refiner,
    verifier: str | None = Verifier,
    budget: int = typer.Option(8, "--budget", min=1, help=BUDGET_HELP),
    max_tokens: int = MaxTokens,
    max_seconds: float = MaxSeconds,
    seed: int = Seed,
    jobs: int = typer.Option(
        1,
        "--jobs",
        "-j",
        min=1,
        help="Tasks to run in parallel (on each node, with --executor ray).",
    ),
    sandbox: SandboxKind = typer.Option(SandboxKind.auto, "--sandbox", help=SANDBOX_HELP),
    executor_spec: str = ExecutorOption,
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Run directory. Default: runs/bench-BENCHMARK-STRATEGY-MODEL-bBUDGET[-nLIMIT]; "
        "running the same command again resumes it.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
    repos: Path | None = typer.Option(
        None,
        "--repos",
        help="swebench: the directory of local repository mirrors (OWNER__NAME, OWNER/NAME or NAME).",
    ),
) -> None:
    """Run a benchmark's tasks through the repair loop; write results.jsonl and summary.json
    and print the repair rate, pass@1, pass@k and pass@t. swebench runs the issue graph on
    local mirrors and also writes predictions.jsonl for SWE-bench's harness."""
    limits = Budget(max_candidates=budget, max_tokens=max_tokens, max_seconds=max_seconds)
    if benchmark is Benchmark.swebench:
        if strategy not in (None, Strategy.localise_repair):
            raise SelfRepairError(
                f"--strategy does not apply to swebench, except localise-repair "
                f"(got {strategy.value}): it runs the issue graph"
            )
        tasks = swebench_tasks(data, repos, limit)
        strategy_name = strategy.value if strategy else "issue"
    else:
        if strategy is Strategy.localise_repair:
            raise SelfRepairError(
                "--strategy localise-repair is for repository tasks: bench swebench"
            )
        if data is not None and not data.is_file():
            raise SelfRepairError(
                f"--data {data}: {'a directory, not a file' if data.is_dir() else 'no such file'}"
            )
        tasks = load_tasks(benchmark.value, data)[:limit]
        if not tasks:
            raise SelfRepairError(f"{data or benchmark.value}: no tasks")
        strategy_name = (strategy or Strategy.best_of_n).value
    tuned = strategy_from_file(strategy_file, strategy, repository=benchmark is Benchmark.swebench)
    if tuned is not None:
        strategy_name, limits = tuned.graph, tuned.budget(limits)
    roles = role_config(reviewer, refiner, verifier, strategy_name)
    if tuned is not None:
        sampling = tuned.sampling(seed)
    elif strategy_name == "issue":
        sampling = issue_sampling(seed)
    else:
        sampling = Sampling(seed=seed)
    rollout = Rollout(strategy_name, model, limits, sampling, reviewer, refiner, verifier)
    config = (
        {
            "command": "bench",
            "benchmark": benchmark.value,
            "data": str(data.resolve()) if data else None,
            "limit": limit,
            "strategy": strategy_name,
            "model": model,
            "budget": budget_config(limits),
            "seed": seed,
        }
        | roles
        | ({"repos": str(repos.resolve())} if repos is not None else {})
    )
    if tuned is not None:
        config["strategy_settings"] = tuned.model_dump()
    name = f"bench-{benchmark.value}-{strategy_name}-{slug(model)}-b{budget}" + (
        f"-n{limit}" if limit else ""
    )
    run_dir = out or Path("runs") / name
    check_run_dir(run_dir, config)
    executor = open_executor(executor_spec, sandbox=sandbox.value, jobs=jobs)
    try:
        for spec in rollout.specs:
            executor.load(spec)
        store = prepare_run_dir(run_dir, config)
        tokens: dict[str, int] = {}
        finished: list[Trajectory] = []
        nodes = executor.describe()["nodes"]
        where = (
            ""
            if executor.name == "local"
            else f" on {executor.name}, {nodes} node{'s' if nodes > 1 else ''}"
        )
        with Display(
            not (quiet or json_output), f"{benchmark.value} ({strategy_name}){where}", len(tasks)
        ) as display:

            def on_step(trajectory: Trajectory) -> None:
                tokens[trajectory.task.task_id] = trajectory.tokens
                display.update(tokens=sum(tokens.values()))

            def done(trajectory: Trajectory) -> None:
                finished.append(trajectory)
                tokens[trajectory.task.task_id] = trajectory.tokens
                display.update(
                    completed=len(finished),
                    solved=sum(t.solved for t in finished),
                    tokens=sum(tokens.values()),
                )

            job = RepairJob(
                rollout,
                store,
                open_checkpointer(store),
                on_step,
            )
            summary_config = config | {
                "command_line": command_line(),
                "executor": executor.describe(),
            }
            predictions = []
            with ResultsWriter(run_dir, summary_config) as results:
                for trajectory in executor.run(job, tasks, done):
                    results.add(result_row(trajectory))
                    if benchmark is Benchmark.swebench:
                        predictions.append(json.dumps(prediction(trajectory, model)) + "\n")
                        write_atomically(run_dir / PREDICTIONS, "".join(predictions))
            summary = results.summary
        store.close()
    finally:
        executor.close()
    if json_output:
        typer.echo(json.dumps({"run_dir": str(run_dir), "summary": summary}))
    else:
        print_summary(summary, run_dir, quiet)
        if benchmark is Benchmark.swebench:
            typer.echo(f"predictions: {run_dir / PREDICTIONS}")
    if summary["errors"]:
        typer.echo(
            f"{summary['errors']} task(s) ended in an error (see results.jsonl); "
            "run the same command again to retry them",
            err=True,
        )
        raise typer.Exit(1)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")[:40] or "run"


def print_summary(summary: dict[str, Any], run_dir: Path, quiet: bool) -> None:
    if quiet:
        typer.echo(
            f"{summary['solved']}/{summary['tasks']} solved, repair rate {summary['repair_rate']:.3f}, "
            f"pass@1 {summary['pass@1']:.3f}, {summary['tokens']:,} tokens ({run_dir})"
        )
        return
    table = Table(
        title=f"{summary['config']['benchmark']}: {summary['config']['strategy']}, {summary['config']['model']}"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("tasks", str(summary["tasks"]))
    table.add_row("solved", str(summary["solved"]))
    table.add_row("repair rate", f"{summary['repair_rate']:.3f}")
    table.add_row("pass@1 (first candidate)", f"{summary['pass@1']:.3f}")
    for k, rate in summary["pass@k"].items():
        table.add_row(f"pass@{k}", f"{rate:.3f}")
    curve = summary["pass@t"]
    for tokens, rate in curve[:: max(1, len(curve) // 5)] + ([curve[-1]] if len(curve) > 5 else []):
        table.add_row(f"pass@t, {tokens:,} tokens", f"{rate:.3f}")
    table.add_row("tokens", f"{summary['tokens']:,}")
    per = summary["tokens_per_solved"]
    table.add_row("tokens per solved task", "-" if per is None else f"{per:,.0f}")
    table.add_row("replies cut at the token limit", str(summary["truncated_replies"]))
    table.add_row("suspicious runs (attempts on the verdict)", str(summary["suspicious"]))
    for key, label in (
        ("lines_beyond_reference", "lines changed beyond the reference fix (fixes)"),
        ("candidate_lines_beyond_reference", "lines changed beyond the reference fix (candidates)"),
    ):
        if summary.get(key) is not None:
            table.add_row(label, f"{summary[key]:.2f}")
    table.add_row("sandbox seconds", f"{summary['sandbox_seconds']:.1f}")
    table.add_row("wall seconds (sum over tasks)", f"{summary['wall_seconds']:.1f}")
    table.add_row("reviewer errors", str(summary["reviewer_errors"]))
    table.add_row("tasks ended in an error", str(summary["errors"]))
    if "executor" in summary["config"]:
        table.add_row("executor", executor_line(summary["config"]["executor"]))
    Console().print(table)
    typer.echo(f"run directory: {run_dir}")


# -- swebench ----------------------------------------------------------------------------


def swebench_tasks(data: Path | None, repos: Path | None, limit: int | None) -> list[Task]:
    """SWE-bench instances, each pointed at its local mirror (a stale mirror is refused now)."""
    if data is None or not data.is_file():
        raise SelfRepairError(
            f"--data: give the SWE-bench instances file (JSON or JSONL){f'; no such file: {data}' if data else ''}"
        )
    if repos is None or not repos.is_dir():
        raise SelfRepairError(
            "--repos: give the directory of local repository mirrors (nothing is cloned from the internet)"
        )
    tasks = load_tasks("swebench", data)[:limit]
    if not tasks:
        raise SelfRepairError(f"{data}: no instances")
    local = []
    for task in tasks:
        mirror = find_mirror(repos, task)
        resolve_commit(open_repository(mirror), task.base_commit or "HEAD")
        local.append(task.model_copy(update={"repo": str(mirror.resolve())}))
    return local


def find_mirror(repos: Path, task: Task) -> Path:
    """The local mirror of a SWE-bench task's repository under `repos`: OWNER__NAME (the
    harness's own naming), OWNER/NAME or NAME, each with or without a .git suffix."""
    github = task.metadata.get("github_repo") or re.sub(
        r"^.*github\.com[/:]", "", task.repo or ""
    ).removesuffix(".git")
    owner, _, name = github.partition("/")
    tried = []
    for relative in (f"{owner}__{name}", f"{owner}/{name}", name):
        for candidate in (repos / relative, repos / f"{relative}.git"):
            tried.append(candidate)
            if candidate.is_dir():
                return candidate
    raise SelfRepairError(
        f"{task.task_id}: no local mirror of {github} under {repos} (looked for "
        + ", ".join(str(p.relative_to(repos)) for p in tried)
        + ")"
    )


def prediction(trajectory: Trajectory, model_name: str) -> dict[str, str]:
    """SWE-bench's prediction: the passing patch, else the last tested candidate's (the
    official harness judges it on its own environment, which may differ from ours), else
    nothing."""
    patch = trajectory.metadata.get("patch", "")
    if not patch:
        tested = trajectory.candidates
        patch = tested[-1].candidate.diff if tested else ""
    return {
        "instance_id": trajectory.task.task_id,
        "model_name_or_path": model_name,
        "model_patch": patch,
    }
