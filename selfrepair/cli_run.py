"""`selfrepair fix` (repair one file or directory) and `selfrepair bench` (many tasks).

Both validate everything they can (the path, the data, the model, the sandbox, and for fix
that the tests fail at all) before they create the run directory, so bad input leaves nothing
behind. A run directory holds run.sqlite (trajectories and LangGraph checkpoints),
results.jsonl (one row per finished task) and summary.json. Running the same command again
on the same directory resumes it: finished tasks are kept, cut-off ones continue.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from selfrepair.agents.models import Model, load_model
from selfrepair.errors import SelfRepairError
from selfrepair.graphs.budget import Budget
from selfrepair.graphs.run import open_checkpointer, repair_task
from selfrepair.metrics import result_row, summarize
from selfrepair.sandbox.choose import open_sandbox
from selfrepair.sandbox.core import Sandbox
from selfrepair.sandbox.testing import run_tests
from selfrepair.store import TrajectoryStore, store_path
from selfrepair.types import Task, Trajectory

RESULTS = "results.jsonl"
SUMMARY = "summary.json"
CONFIG_KEY = "run_config"


class Strategy(str, Enum):
    refine = "refine"
    best_of_n = "best-of-n"
    tree = "tree"


class SandboxKind(str, Enum):
    auto = "auto"
    docker = "docker"
    local = "local"


class Benchmark(str, Enum):
    quixbugs = "quixbugs"
    humanevalfix = "humanevalfix"
    humaneval = "humaneval"
    swebench = "swebench"


MODEL_HELP = "Model spec: smollm2 (default, embedded), hf:PATH_OR_ID[+ADAPTER], openai:NAME@URL, vllm:NAME, scripted:FILE."
BUDGET_HELP = "Most candidates (model replies) to try per task."
SANDBOX_HELP = "Where tests run: auto (Docker when a daemon answers and the image is built, else local), docker, local."
QUIET_HELP = "No progress display; print only the result."
JSON_HELP = "Print one JSON object with the result on stdout (no progress display)."


# -- shared pieces ---------------------------------------------------------------------


def check_reachable(model: Model) -> None:
    """In-process backends are reachable once loaded; a server is asked for one token, so an
    unreachable one is refused before any run directory exists."""
    if model.spec.startswith("openai:"):
        from selfrepair.types import Message

        model.generate([Message(role="user", content="Say OK.")], n=1, temperature=0.0, max_tokens=1)


def prepare_run_dir(run_dir: Path, config: dict[str, Any]) -> TrajectoryStore:
    """Create the run directory, or reopen it to resume when it holds a run of the same
    configuration; a different run there is refused rather than mixed in."""
    if run_dir.exists() and not run_dir.is_dir():
        raise SelfRepairError(f"--out {run_dir} is a file, not a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not store_path(run_dir).exists():
            raise SelfRepairError(f"--out {run_dir} is not empty and is not a run directory")
        store = TrajectoryStore(run_dir, create=False)
        recorded = json.loads(store.get_meta(CONFIG_KEY) or "{}")
        if recorded != config:
            store.close()
            different = sorted(k for k in set(recorded) | set(config) if recorded.get(k) != config.get(k))
            raise SelfRepairError(
                f"{run_dir} holds a run with other settings ({', '.join(different)}); "
                "choose another --out to start a new run"
            )
        return store
    run_dir.mkdir(parents=True, exist_ok=True)
    store = TrajectoryStore(run_dir)
    store.set_meta(CONFIG_KEY, json.dumps(config, sort_keys=True))
    return store


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def write_results(run_dir: Path, trajectories: list[Trajectory], config: dict[str, Any]) -> dict[str, Any]:
    """results.jsonl and summary.json for the finished trajectories; returns the summary."""
    rows = [result_row(t) for t in trajectories]
    write_atomically(run_dir / RESULTS, "".join(json.dumps(row) + "\n" for row in rows))
    summary = summarize(rows) | {"errors": sum(r["outcome"] == "error" for r in rows), "config": config}
    write_atomically(run_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return summary


def budget_config(budget: Budget) -> dict[str, Any]:
    return dataclasses.asdict(budget)


def command_line() -> str:
    """This command as typed, recorded in summary.json."""
    return " ".join(shlex.quote(a) for a in ["selfrepair", *sys.argv[1:]])


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")[:40] or "run"


class Display:
    """A rich progress bar on stderr (candidates or tasks, solved, tokens, elapsed), or
    nothing with --quiet / --json."""

    def __init__(self, enabled: bool, description: str, total: int) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("solved {task.fields[solved]}"),
            TextColumn("{task.fields[tokens]:,} tokens"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not enabled,
            transient=False,
        )
        self.task = self.progress.add_task(description, total=total, solved=0, tokens=0)

    def update(self, **fields: Any) -> None:
        self.progress.update(self.task, **fields)

    def __enter__(self) -> Display:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


def read_spec(spec: str | None) -> str | None:
    """--spec is a file when one by that name exists, else the text itself."""
    if spec is None:
        return None
    path = Path(spec)
    if len(spec) < 4096 and "\n" not in spec and path.is_file():
        return path.read_text(encoding="utf-8")
    return spec


# -- fix -------------------------------------------------------------------------------


def is_test_file(path: str) -> bool:
    parts = Path(path).parts
    name = parts[-1]
    return (
        name == "conftest.py"
        or (name.startswith("test_") and name.endswith(".py"))
        or name.endswith("_test.py")
        or any(part in ("tests", "test") for part in parts[:-1])
    )


def fix_task(path: Path, test_cmd: str, spec: str | None) -> tuple[Task, Path]:
    """The task for PATH and the directory its files are relative to. A file is repaired in
    its directory (the tests live there too). Test files become the task's tests: the model
    is not shown them, and a candidate cannot change what runs."""
    from selfrepair.loaders import load_directory

    root = path if path.is_dir() else path.parent
    (task,) = load_directory(root, test_cmd, spec or "")
    tests = {name: text for name, text in task.files.items() if is_test_file(name)}
    code = {name: text for name, text in task.files.items() if name not in tests}
    if path.is_file():
        entry = path.name
        if entry not in code:
            raise SelfRepairError(f"{path} is not a source file to repair (a test file, or not text)")
    else:
        sources = [name for name in code if name.endswith(".py")]
        if not sources:
            raise SelfRepairError(f"{path} holds no Python source outside its tests")
        entry = sources[0] if len(sources) == 1 else None
    # The files are laid out from the task itself, not a checkout, so it is no repository task.
    fields = task.model_dump() | {"files": code, "entry_file": entry, "repo": None, "base_commit": None}
    fields["tests"] = task.tests.model_dump() | {"files": tests}
    return Task.model_validate(fields), root


def unified_patch(task: Task, files: dict[str, str]) -> str:
    chunks = []
    for path, new in sorted(files.items()):
        old = task.files.get(path, "")
        chunks.extend(
            difflib.unified_diff(
                old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path}", f"b/{path}"
            )
        )
    return "".join(chunks)


def describe_step(trajectory: Trajectory, index: int) -> str:
    step = trajectory.steps[index]
    if step.candidate is None:
        outcome = f"no candidate: {step.error}"
    elif step.report is None:
        outcome = "not run"
    elif step.report.passed:
        outcome = "tests pass"
    else:
        outcome = step.report.reason or "tests fail"
    line = f"  #{step.index} {step.kind}" + (f" (from #{step.parent})" if step.parent is not None else "")
    line += f": {outcome}"
    if step.review is not None:
        line += f"; reviewer: {step.review.verdict} ({step.review.confidence:.2f})"
        if step.reviewer_error:
            line += " [reviewer error: accepted a failing candidate]"
    return line


def not_fixed_report(trajectory: Trajectory, run_dir: Path) -> str:
    """What an unsuccessful fix tried: why it stopped, its cost, and each step's outcome."""
    lines = [f"not fixed ({trajectory.outcome}: {trajectory.error or trajectory.metadata.get('stop_reason', '')})"]
    lines.append(f"tried {len(trajectory.steps)} candidates, {trajectory.tokens:,} tokens; run directory {run_dir}")
    lines.extend(describe_step(trajectory, s.index) for s in trajectory.steps)
    return "\n".join(lines)


def fix(
    path: Path = typer.Argument(..., help="The file or directory to repair.", show_default=False),
    test_cmd: str = typer.Option(
        ..., "--test-cmd", help="Shell command that runs the tests in PATH's directory, e.g. 'pytest -q'."
    ),
    spec: Optional[str] = typer.Option(
        None, "--spec", help="What the code should do: the text, or a file holding it. Default: from the code."
    ),
    model: str = typer.Option("smollm2", "--model", help=MODEL_HELP),
    strategy: Strategy = typer.Option(Strategy.best_of_n, "--strategy", help="How to search for a repair."),
    budget: int = typer.Option(8, "--budget", min=1, help=BUDGET_HELP),
    sandbox: SandboxKind = typer.Option(SandboxKind.auto, "--sandbox", help=SANDBOX_HELP),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Run directory (trajectories, results, summary). Default: runs/fix-TIMESTAMP. "
        "Give an existing one to resume a cut-off run."
    ),
    patch: bool = typer.Option(False, "--patch", help="Print the fix as a unified diff instead of writing the files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
    issue: Optional[str] = typer.Option(
        None, "--issue", help="Repository mode: the issue to resolve (its text, or a file holding it). PATH is then "
        "a git repository, repaired in a private checkout by the issue graph (--strategy does not apply)."
    ),
    base: Optional[str] = typer.Option(
        None, "--base", help="Repository mode: the commit to repair. Default: HEAD, which needs a clean working tree."
    ),
    branch: Optional[str] = typer.Option(
        None, "--branch", help="Repository mode: commit the fix on this new branch (your checkout is not touched)."
    ),
) -> None:
    """Repair PATH until --test-cmd passes. Exit 0: fixed (files written, or the patch printed);
    exit 1: not fixed within budget (what was tried is printed). With --issue, PATH is a git
    repository: the fix is written to RUN_DIR/fix.patch, or committed with --branch."""
    if issue is not None or base is not None or branch is not None:
        from selfrepair.cli_issue import fix_repository

        return fix_repository(
            path, issue, test_cmd, base=base, branch=branch, model=model, budget=budget, sandbox=sandbox.value,
            out=out, patch=patch, quiet=quiet, json_output=json_output,
        )  # fmt: skip
    if not path.exists():
        raise SelfRepairError(f"{path}: no such file or directory")
    if not test_cmd.strip():
        raise SelfRepairError("--test-cmd is empty")
    task, root = fix_task(path.resolve(), test_cmd, read_spec(spec))
    limits = Budget(max_candidates=budget)
    box = open_sandbox(sandbox.value)
    try:
        baseline = run_tests(box, task)
        if baseline.passed:
            raise SelfRepairError(f"nothing to repair: `{test_cmd}` already passes in {root}")
        if baseline.exit_code in (126, 127):  # the shell's "cannot execute" and "not found"
            raise SelfRepairError(f"the test command cannot run in the sandbox: {baseline.reason}")
        loaded = load_model(model)
        check_reachable(loaded)
        config = {
            "command": "fix",
            "path": str(path.resolve()),
            "test_cmd": test_cmd,
            "spec": task.spec,
            "strategy": strategy.value,
            "model": model,
            "budget": budget_config(limits),
        }
        run_dir = out or Path("runs") / f"fix-{time.strftime('%Y%m%d-%H%M%S')}"
        store = prepare_run_dir(run_dir, config)
        checkpointer = open_checkpointer(run_dir)
        with Display(not (quiet or json_output), f"fixing {path.name}", budget) as display:

            def on_step(trajectory: Trajectory) -> None:
                display.update(
                    completed=len(trajectory.steps), solved=int(trajectory.solved), tokens=trajectory.tokens
                )

            trajectory = repair_task(
                task, loaded, box, strategy.value, limits, store,
                checkpointer=checkpointer, baseline=baseline, on_step=on_step,
            )  # fmt: skip
        write_results(run_dir, [trajectory], config | {"command_line": command_line()})
        store.close()
    finally:
        box.close()
    report_fix(trajectory, task, root, run_dir, patch, quiet, json_output)


def report_fix(
    trajectory: Trajectory, task: Task, root: Path, run_dir: Path, patch: bool, quiet: bool, json_output: bool
) -> None:
    solution = trajectory.steps[trajectory.solution_step] if trajectory.solved else None
    files = solution.candidate.files if solution else {}
    diff = unified_patch(task, files) if solution else ""
    if solution and not patch:
        for relative, text in files.items():
            write_atomically(root / relative, text)
    if solution:
        (run_dir / "fix.patch").write_text(diff, encoding="utf-8")
    if json_output:
        typer.echo(
            json.dumps(
                {
                    "solved": trajectory.solved,
                    "outcome": trajectory.outcome,
                    "error": trajectory.error,
                    "run_dir": str(run_dir),
                    "files": sorted(files) if not patch else [],
                    "patch": diff,
                    "steps": [describe_step(trajectory, s.index).strip() for s in trajectory.steps],
                    "result": result_row(trajectory),
                }
            )
        )
    elif solution:
        if patch:
            typer.echo(diff, nl=False)
        elif not quiet:
            typer.echo(
                f"fixed in {len(trajectory.steps)} candidates, {trajectory.tokens:,} tokens, "
                f"{trajectory.wall_seconds:.1f} s; wrote {', '.join(sorted(files))} (patch in {run_dir / 'fix.patch'})"
            )
    else:
        typer.echo(not_fixed_report(trajectory, run_dir), err=quiet)
    if not solution:
        raise typer.Exit(1)


# -- bench -----------------------------------------------------------------------------


def load_benchmark(kind: Benchmark, data: Path | None) -> list[Task]:
    from selfrepair.loaders import load_tasks

    if data is not None and not data.is_file():
        raise SelfRepairError(f"--data {data}: no such file")
    return load_tasks(kind.value, data)


def run_tasks(
    tasks: list[Task], jobs: int, work: Callable[[Task], Trajectory], done: Callable[[Trajectory], None]
) -> Iterator[Trajectory]:
    """Trajectories in task order; `done` hears each one as it finishes."""
    if jobs == 1:
        for task in tasks:
            trajectory = work(task)
            done(trajectory)
            yield trajectory
        return
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(work, task) for task in tasks]
        for future in futures:
            future.add_done_callback(lambda f: done(f.result()) if f.exception() is None else None)
        for future in futures:
            yield future.result()


def bench(
    benchmark: Benchmark = typer.Argument(..., help="Which benchmark: quixbugs, humanevalfix (HumanEvalPack JSONL), humaneval, or swebench (instances JSON, with --repos)."),
    data: Optional[Path] = typer.Option(None, "--data", help="The benchmark's data file (not for humaneval)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Run only the first N tasks."),
    model: str = typer.Option("smollm2", "--model", help=MODEL_HELP),
    strategy: Strategy = typer.Option(Strategy.refine, "--strategy", help="How to search for a repair."),
    budget: int = typer.Option(8, "--budget", min=1, help=BUDGET_HELP),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Tasks to run in parallel."),
    sandbox: SandboxKind = typer.Option(SandboxKind.auto, "--sandbox", help=SANDBOX_HELP),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Run directory. Default: runs/bench-BENCHMARK-STRATEGY-MODEL-bBUDGET[-nLIMIT]; "
        "running the same command again resumes it."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
    repos: Optional[Path] = typer.Option(
        None, "--repos", help="swebench: the directory of local repository mirrors (OWNER__NAME, OWNER/NAME or NAME)."
    ),
) -> None:
    """Run a benchmark's tasks through the repair loop; write results.jsonl and summary.json
    and print the repair rate, pass@1, pass@k and pass@t. swebench runs the issue graph on
    local mirrors and also writes predictions.jsonl for SWE-bench's harness."""
    if benchmark is Benchmark.swebench:
        from selfrepair.cli_issue import bench_swebench

        summary = bench_swebench(
            data, repos, limit=limit, model=model, budget=budget, jobs=jobs, sandbox=sandbox.value, out=out,
            quiet=quiet, json_output=json_output,
        )  # fmt: skip
        run_dir = Path(summary["predictions"]).parent
        if json_output:
            typer.echo(json.dumps({"run_dir": str(run_dir), "summary": summary}))
        else:
            print_summary(summary, run_dir, quiet)
            typer.echo(f"predictions: {summary['predictions']}")
        if summary["errors"]:
            raise typer.Exit(1)
        return
    tasks = load_benchmark(benchmark, data)
    tasks = tasks[:limit] if limit else tasks
    if not tasks:
        raise SelfRepairError(f"{data or benchmark.value}: no tasks")
    limits = Budget(max_candidates=budget)
    loaded = load_model(model)
    check_reachable(loaded)
    box = open_sandbox(sandbox.value, pool_size=jobs)
    config = {
        "command": "bench",
        "benchmark": benchmark.value,
        "data": str(data.resolve()) if data else None,
        "limit": limit,
        "strategy": strategy.value,
        "model": model,
        "budget": budget_config(limits),
    }
    name = f"bench-{benchmark.value}-{strategy.value}-{slug(model)}-b{budget}" + (f"-n{limit}" if limit else "")
    run_dir = out or Path("runs") / name
    try:
        store = prepare_run_dir(run_dir, config)
        checkpointer = open_checkpointer(run_dir)
        tokens: dict[str, int] = {}
        finished: list[Trajectory] = []
        with Display(not (quiet or json_output), f"{benchmark.value} ({strategy.value})", len(tasks)) as display:

            def on_step(trajectory: Trajectory) -> None:
                tokens[trajectory.task.task_id] = trajectory.tokens
                display.update(tokens=sum(tokens.values()))

            def work(task: Task) -> Trajectory:
                return repair_task(
                    task, loaded, box, strategy.value, limits, store, checkpointer=checkpointer, on_step=on_step
                )

            def done(trajectory: Trajectory) -> None:
                finished.append(trajectory)
                tokens[trajectory.task.task_id] = trajectory.tokens
                display.update(
                    completed=len(finished),
                    solved=sum(t.solved for t in finished),
                    tokens=sum(tokens.values()),
                )

            trajectories = []
            summary_config = config | {"command_line": command_line()}
            for trajectory in run_tasks(tasks, jobs, work, done):
                trajectories.append(trajectory)
                summary = write_results(run_dir, trajectories, summary_config)
        store.close()
    finally:
        box.close()
    if json_output:
        typer.echo(json.dumps({"run_dir": str(run_dir), "summary": summary}))
    else:
        print_summary(summary, run_dir, quiet)
    if summary["errors"]:
        typer.echo(
            f"{summary['errors']} task(s) ended in an error (see results.jsonl); "
            "run the same command again to retry them",
            err=True,
        )
        raise typer.Exit(1)


def print_summary(summary: dict[str, Any], run_dir: Path, quiet: bool) -> None:
    if quiet:
        typer.echo(
            f"{summary['solved']}/{summary['tasks']} solved, repair rate {summary['repair_rate']:.3f}, "
            f"pass@1 {summary['pass@1']:.3f}, {summary['tokens']:,} tokens ({run_dir})"
        )
        return
    table = Table(title=f"{summary['config']['benchmark']}: {summary['config']['strategy']}, {summary['config']['model']}")
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
    table.add_row("sandbox seconds", f"{summary['sandbox_seconds']:.1f}")
    table.add_row("wall seconds (sum over tasks)", f"{summary['wall_seconds']:.1f}")
    table.add_row("reviewer errors", str(summary["reviewer_errors"]))
    table.add_row("tasks ended in an error", str(summary["errors"]))
    Console().print(table)
    typer.echo(f"run directory: {run_dir}")


# -- export ----------------------------------------------------------------------------


def export(
    run_dir: Path = typer.Argument(..., help="A run directory (holding run.sqlite).", show_default=False),
    out: Path = typer.Option(..., "--out", "-o", help="The JSONL file to write, one trajectory a line."),
) -> None:
    """Export a run's trajectories (every step: messages, candidate, test report, review,
    tokens, seconds; and the outcome) as JSONL, the format training reads."""
    with TrajectoryStore(run_dir, create=False) as store:
        count = store.export_jsonl(out)
    typer.echo(f"wrote {count} trajectories to {out}")


