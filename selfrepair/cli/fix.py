"""`selfrepair fix`: repair a file or directory, or (with --issue) resolve an issue in a git
repository.

Both modes take one path (`fix`); a Target says what differs: the task, how its tests run, the
graph that repairs it and what becomes of a fix. Everything that can be is validated (the
path, the model, the sandbox, that the tests end within --max-seconds and fail, and fail by
testing something; for a repository also the base commit, a clean working tree where it
matters and the branch name) before the run directory is created, so bad input leaves
nothing behind.
Running the same command again on the same --out resumes it. Neither mode touches what the
user did not ask for: a repository is repaired in a private checkout, and its fix lands as
RUN_DIR/fix.patch or a new branch.
"""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from selfrepair.agents.code.repo import (
    check_new_branch,
    checkout,
    commit_to_branch,
    open_repository,
    require_clean,
    resolve_commit,
)
from selfrepair.agents.models.backends import check_reachable, load_model
from selfrepair.agents.models.protocol import Model
from selfrepair.cli.common import (
    BUDGET_HELP,
    JSON_HELP,
    MODEL_HELP,
    QUIET_HELP,
    SANDBOX_HELP,
    Display,
    MaxSeconds,
    MaxTokens,
    Refiner,
    Reviewer,
    SandboxKind,
    Seed,
    Strategy,
    StrategyFile,
    StrategySettings,
    Verifier,
    budget_config,
    command_line,
    role_config,
    strategy_from_file,
)
from selfrepair.errors import SelfRepairError
from selfrepair.files import read_input, write_atomically
from selfrepair.graphs.issue import issue_sampling, repair_issue, run_candidate_tests
from selfrepair.graphs.localise_repair import repair_localised
from selfrepair.graphs.run import load_roles, open_checkpointer, repair_task
from selfrepair.metrics import result_row
from selfrepair.paths import is_test_file
from selfrepair.rundir import PATCH, check_run_dir, prepare_run_dir, write_results
from selfrepair.sandbox.choose import open_sandbox
from selfrepair.sandbox.core import Sandbox
from selfrepair.sandbox.testing import run_tests, untestable
from selfrepair.settings import Budget, Sampling
from selfrepair.store import TrajectoryStore
from selfrepair.types import Step, Task, TestReport, TestSpec, Trajectory

REPOSITORY_TEST_TIMEOUT_S = 600.0  # a repository's suite takes longer than one function's tests


def fix(
    path: Path = typer.Argument(..., help="The file or directory to repair.", show_default=False),
    test_cmd: str = typer.Option(
        ...,
        "--test-cmd",
        help="Shell command that runs the tests in PATH's directory, e.g. 'pytest -q'.",
    ),
    spec: str | None = typer.Option(
        None,
        "--spec",
        help="What the code should do: the text, or a file holding it. Default: from the code. "
        "Not with --issue (the issue is the specification).",
    ),
    model: str = typer.Option("smollm2", "--model", help=MODEL_HELP),
    strategy: Strategy | None = typer.Option(
        None,
        "--strategy",
        help="How to search for a repair: refine, best-of-n (the default) or tree. "
        "With --issue: the issue graph (the default), or localise-repair (one suspect function "
        "at a time, for small models; when no test fails yet, it writes a reproduction test).",
    ),
    strategy_file: Path | None = StrategyFile,
    budget: int = typer.Option(8, "--budget", min=1, help=BUDGET_HELP),
    max_tokens: int = MaxTokens,
    max_seconds: float = MaxSeconds,
    seed: int = Seed,
    sandbox: SandboxKind = typer.Option(SandboxKind.auto, "--sandbox", help=SANDBOX_HELP),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Run directory (trajectories, results, summary). Default: runs/fix-TIMESTAMP. "
        "Give an existing one to resume a cut-off run.",
    ),
    patch: bool = typer.Option(
        False, "--patch", help="Print the fix as a unified diff instead of writing the files."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
    issue: str | None = typer.Option(
        None,
        "--issue",
        help="Repository mode: the issue to resolve (its text, or a file holding it). PATH is then "
        "a git repository, repaired in a private checkout by the issue graph.",
    ),
    base: str | None = typer.Option(
        None,
        "--base",
        help="Repository mode: the commit to repair. Default: HEAD, which needs a clean working tree.",
    ),
    branch: str | None = typer.Option(
        None,
        "--branch",
        help="Repository mode: commit the fix on this new branch (your checkout is not touched).",
    ),
    reviewer: str | None = Reviewer,
    refiner: str | None = Refiner,
    verifier: str | None = Verifier,
) -> None:
    """Repair PATH until --test-cmd passes. Exit 0: fixed (files written, or the patch printed);
    exit 1: not fixed within budget (what was tried is printed). With --issue, PATH is a git
    repository: the fix is written to RUN_DIR/fix.patch, or committed with --branch."""
    if not test_cmd.strip():
        raise SelfRepairError("--test-cmd is empty")
    limits = Budget(max_candidates=budget, max_tokens=max_tokens, max_seconds=max_seconds)
    repository = issue is not None or base is not None or branch is not None
    tuned = strategy_from_file(strategy_file, strategy, repository=repository)
    if tuned is not None:
        limits = tuned.budget(limits)
    with ExitStack() as stack:
        if repository:
            if spec is not None:
                raise SelfRepairError(
                    "--spec does not apply to repository mode (--issue, --base, --branch)"
                )
            if strategy not in (None, Strategy.localise_repair):
                raise SelfRepairError(
                    "--strategy does not apply to repository mode (--issue, --base, --branch), "
                    f"except localise-repair (got {strategy.value}): it runs the issue graph"
                )
            target = repository_target(
                path, issue, test_cmd, base, branch, seed, stack, localised=strategy is not None
            )
        else:
            if strategy is Strategy.localise_repair:
                raise SelfRepairError("--strategy localise-repair needs repository mode (--issue)")
            target = files_target(
                path, test_cmd, spec, strategy or Strategy.best_of_n, seed, patch, tuned
            )
        roles = role_config(reviewer, refiner, verifier, target.config["strategy"])
        if roles and "issue" in target.config:
            raise SelfRepairError(
                "--reviewer, --refiner and --verifier apply to files, not to repository mode: "
                "its graph takes one --model"
            )
        box = open_sandbox(sandbox.value)
        stack.callback(box.close)
        # The preflight: the tests on the code as given, cut at --max-seconds like every run.
        seconds = min(limits.max_seconds, target.task.tests.timeout_s)
        baseline = target.test(box, seconds)
        check_baseline(baseline, test_cmd, target.where, seconds)
        if baseline.passed and not target.reproduces:
            raise SelfRepairError(f"nothing to repair: `{test_cmd}` already passes {target.passes}")
        config = (
            target.config
            | {
                "test_cmd": test_cmd,
                "model": model,
                "budget": budget_config(limits),
                "seed": seed,
            }
            | roles
        )
        run_dir = out or default_run_dir()
        check_run_dir(run_dir, config)
        loaded = load_model(model)
        check_reachable(loaded)
        role_models = load_roles(reviewer, refiner, verifier)
        store = prepare_run_dir(run_dir, config)
        with Display(not (quiet or json_output), f"fixing {target.name}", budget) as display:
            trajectory = target.repair(
                loaded,
                box,
                limits,
                store,
                checkpointer=open_checkpointer(store),
                baseline=baseline,
                on_step=lambda t: show_step(display, t),
                **role_models,
            )
        write_results(run_dir, [result_row(trajectory)], config | {"command_line": command_line()})
        store.close()
    diff, written, details = target.deliver(trajectory, run_dir)
    report_fix(trajectory, run_dir, diff, written, patch, quiet, json_output, **details)


Repair = Callable[..., Trajectory]  # (model, sandbox, budget, store, **graph options)


@dataclass(frozen=True)
class Target:
    """What one mode of `fix` repairs and how: the task's tests on the code as given (cut at
    a number of seconds), the graph that repairs it, and what becomes of a fix: the diff, the
    line saying where it went, and the details for --json."""

    task: Task
    name: str  # shown while it runs: "fixing NAME"
    where: str  # where its tests run, for a refusal
    passes: str  # ... for "already passes ..."
    config: dict[str, Any]  # the run directory's settings, less the ones every mode has
    test: Callable[[Sandbox, float], TestReport]
    repair: Repair
    deliver: Callable[[Trajectory, Path], tuple[str, str, dict[str, Any]]]
    # Whether its graph writes a reproduction test when no test fails yet (so a suite that
    # passes on the code as given is no refusal).
    reproduces: bool = False


def files_target(
    path: Path,
    test_cmd: str,
    spec: str | None,
    strategy: Strategy,
    seed: int,
    patch: bool,
    tuned: StrategySettings | None = None,
) -> Target:
    """A file or directory, repaired by `strategy`'s graph, or as a strategy file (`tuned`)
    says; its fix is written to the files (or only printed, with --patch)."""
    if not path.exists():
        raise SelfRepairError(f"{path}: no such file or directory")
    task, root = fix_task(path.resolve(), test_cmd, read_spec(spec))
    graph = tuned.graph if tuned is not None else strategy.value

    def repair(
        model: Model, box: Sandbox, limits: Budget, store: TrajectoryStore, **options: Any
    ) -> Trajectory:
        sampling = tuned.sampling(seed) if tuned is not None else Sampling(seed=seed)
        return repair_task(task, model, box, graph, limits, store, sampling=sampling, **options)

    def deliver(trajectory: Trajectory, run_dir: Path) -> tuple[str, str, dict[str, Any]]:
        solution = trajectory.steps[trajectory.solution_step] if trajectory.solved else None
        files = solution.candidate.files if solution else {}
        if solution and not patch:
            for relative, text in files.items():
                write_atomically(root / relative, text)
        written = f"wrote {', '.join(sorted(files))} (patch in {run_dir / PATCH})"
        diff = unified_patch(task, files) if solution else ""
        return diff, written, {"files": sorted(files) if not patch else []}

    return Target(
        task=task,
        name=path.name,
        where=str(root),
        passes=f"in {root}",
        config={
            "command": "fix",
            "path": str(path.resolve()),
            "spec": task.spec,
            "strategy": graph,
        }
        | ({"strategy_settings": tuned.model_dump()} if tuned is not None else {}),
        test=lambda box, seconds: run_tests(box, task, seconds=seconds),
        repair=repair,
        deliver=deliver,
    )


def repository_target(
    path: Path,
    issue: str | None,
    test_cmd: str,
    base: str | None,
    branch: str | None,
    seed: int,
    stack: ExitStack,
    localised: bool = False,
) -> Target:
    """ISSUE in the git repository at PATH, repaired in a private checkout of the base commit
    (held open by `stack`) by the issue graph, or with `localised` by localise-repair (one
    suspect function at a time); its fix goes to RUN_DIR/fix.patch, and is committed on BRANCH
    when one is named."""
    issue_text = (read_spec(issue) or "").strip()
    if not issue_text:
        raise SelfRepairError("--issue is empty: give the issue's text or a file holding it")
    repository = open_repository(path)
    if base is None:
        require_clean(repository)  # repairing HEAD would silently drop the uncommitted changes
    commit = resolve_commit(repository, base or "HEAD")
    if branch is not None:
        check_new_branch(repository, branch)
    root = Path(repository.working_tree_dir or repository.git_dir)
    task = Task(
        task_id=f"{root.name}@{commit[:12]}",
        spec=issue_text,
        repo=str(root),
        base_commit=commit,
        tests=TestSpec(kind="command", command=test_cmd, timeout_s=REPOSITORY_TEST_TIMEOUT_S),
        metadata={"mode": "issue"},
    )
    work = stack.enter_context(checkout(repository, commit))

    def repair(
        model: Model, box: Sandbox, limits: Budget, store: TrajectoryStore, **options: Any
    ) -> Trajectory:
        if localised:
            return repair_localised(
                task, model, box, limits, store, work=work, sampling=Sampling(seed=seed), **options
            )
        return repair_issue(
            task, model, box, limits, store, work=work, sampling=issue_sampling(seed), **options
        )

    def deliver(trajectory: Trajectory, run_dir: Path) -> tuple[str, str, dict[str, Any]]:
        diff = trajectory.metadata.get("patch", "") if trajectory.solved else ""
        made = None
        if diff and branch is not None:
            title = issue_text.splitlines()[0].lstrip("# ").strip()[:60]
            made = commit_to_branch(
                repository, commit, diff, branch, f"Fix: {title}\n\nMade by selfrepair."
            )
        where = (
            f"committed on branch {branch} ({made[:12]})"
            if made
            else f"apply it with: git -C {root} apply {(run_dir / PATCH).resolve()}"
        )
        details = {"base": commit, "branch": branch if made else None, "commit": made}
        return diff, f"patch in {run_dir / PATCH}; {where}", details

    return Target(
        task=task,
        name=root.name,
        where=f"{root.name} at {commit[:12]}",
        passes=f"at {commit[:12]}; add a test that shows the issue (or let --strategy "
        "localise-repair write one)",
        config={
            "command": "fix",
            "mode": "issue",
            "path": str(root),
            "base": commit,
            "issue": issue_text,
            "strategy": "localise-repair" if localised else "issue",
        },
        test=lambda box, seconds: run_candidate_tests(box, work, task, None, seconds=seconds),
        repair=repair,
        deliver=deliver,
        reproduces=localised,
    )


def check_baseline(baseline: TestReport, test_cmd: str, where: str, seconds: float) -> None:
    """A test command that hangs, runs no tests, or cannot start is bad input: no candidate
    could be told from the bug by it. Refused on the code as given, before any model call;
    `seconds` is the limit it ran under."""
    if baseline.timed_out:
        raise SelfRepairError(
            f"--test-cmd `{test_cmd}` did not finish within {seconds:g} s on {where} (each test "
            "run is cut at --max-seconds or the test timeout, whichever is sooner): a test that "
            "hangs cannot tell a fix from the bug"
        )
    problem = untestable(baseline)
    if problem:
        raise SelfRepairError(
            f"--test-cmd `{test_cmd}` cannot test {where} in the sandbox: {problem}"
        )


def default_run_dir() -> Path:
    return Path("runs") / f"fix-{time.strftime('%Y%m%d-%H%M%S')}"


def show_step(display: Display, trajectory: Trajectory) -> None:
    display.update(
        completed=len(trajectory.steps), solved=int(trajectory.solved), tokens=trajectory.tokens
    )


def read_spec(spec: str | None) -> str | None:
    """--spec (or --issue) is a file when one by that name exists, else the text itself."""
    if spec is None:
        return None
    path = Path(spec)
    if len(spec) < 4096 and "\n" not in spec and path.is_file():
        return read_input(path, f"--spec {path}")
    return spec


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
            raise SelfRepairError(
                f"{path} is not a source file to repair (a test file, or not text)"
            )
    else:
        sources = [name for name in code if name.endswith(".py")]
        if not sources:
            raise SelfRepairError(f"{path} holds no Python source outside its tests")
        entry = sources[0] if len(sources) == 1 else None
    # The files are laid out from the task itself, not a checkout, so it is no repository task.
    fields = task.model_dump() | {
        "files": code,
        "entry_file": entry,
        "repo": None,
        "base_commit": None,
    }
    fields["tests"] = task.tests.model_dump() | {"files": tests}
    return Task.model_validate(fields), root


def unified_patch(task: Task, files: dict[str, str]) -> str:
    chunks = []
    for path, new in sorted(files.items()):
        old = task.files.get(path, "")
        chunks.extend(
            difflib.unified_diff(
                old.splitlines(keepends=True),
                new.splitlines(keepends=True),
                f"a/{path}",
                f"b/{path}",
            )
        )
    return "".join(chunks)


def report_fix(
    trajectory: Trajectory,
    run_dir: Path,
    diff: str,
    written: str,
    patch: bool,
    quiet: bool,
    json_output: bool,
    **details: object,
) -> None:
    """The result as both modes print it: the patch (RUN_DIR/fix.patch, and on stdout with
    --patch), one line saying what was done, or what an unsuccessful repair tried; exit 1
    when nothing was fixed. `details` go into --json's object."""
    if diff:
        write_atomically(run_dir / PATCH, diff)
    if json_output:
        answer = {
            "solved": trajectory.solved,
            "outcome": trajectory.outcome,
            "error": trajectory.error,
            "run_dir": str(run_dir),
            **details,
            "patch": diff,
            "steps": [describe_step(step).strip() for step in trajectory.steps],
            "result": result_row(trajectory),
        }
        typer.echo(json.dumps(answer))
    elif diff and patch:
        typer.echo(diff, nl=False)
    elif diff and not quiet:
        typer.echo(
            f"fixed in {len(trajectory.steps)} candidates, {trajectory.tokens:,} tokens, "
            f"{trajectory.wall_seconds:.1f} s; {written}"
        )
    elif not diff:
        typer.echo(not_fixed_report(trajectory, run_dir), err=quiet)
    if not diff:
        raise typer.Exit(1)


def describe_step(step: Step) -> str:
    if step.candidate is None:
        outcome = f"no candidate: {step.error}"
    elif step.report is None:
        outcome = "not run"
    elif step.report.passed:
        outcome = "tests pass"
    else:
        outcome = step.report.reason or "tests fail"
    line = f"  #{step.index} {step.kind}" + (
        f" (from #{step.parent})" if step.parent is not None else ""
    )
    if step.finish_reason == "length":
        line += " [reply cut at the token limit]"
    elif step.finish_reason == "time":
        line += " [reply cut when the time budget ran out]"
    line += f": {outcome}"
    if step.report is not None and step.report.suspicious:
        line += " [suspicious: an attempt on the verdict]"
    if step.review is not None:
        line += f"; reviewer: {step.review.verdict} ({step.review.confidence:.2f})"
        if step.reviewer_error:
            line += " [reviewer error: accepted a failing candidate]"
    return line


def not_fixed_report(trajectory: Trajectory, run_dir: Path) -> str:
    """What an unsuccessful fix tried: why it stopped, its cost, and each step's outcome."""
    lines = [
        f"not fixed ({trajectory.outcome}: {trajectory.error or trajectory.metadata.get('stop_reason', '')})"
    ]
    lines.append(
        f"tried {len(trajectory.steps)} candidates, {trajectory.tokens:,} tokens; run directory {run_dir}"
    )
    lines.extend(describe_step(step) for step in trajectory.steps)
    return "\n".join(lines)
