"""Repository mode of `selfrepair fix` (an issue in a git repository) and
`selfrepair bench swebench` (SWE-bench instances from local mirrors, predictions out).

Both check everything they can (the repository, the base commit, a clean working tree where
it matters, the branch name, the issue text, that the tests fail at all) before the run
directory is created, and neither ever writes to a user's working tree: the work happens in
a private checkout, and the fix lands as a patch file or, when asked, as a new branch.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import typer

from selfrepair.agents.models import load_model
from selfrepair.agents.repo import (
    check_new_branch,
    checkout,
    commit_to_branch,
    open_repository,
    require_clean,
    resolve_commit,
)
from selfrepair.cli_run import (
    Display,
    budget_config,
    check_reachable,
    command_line,
    describe_step,
    not_fixed_report,
    prepare_run_dir,
    read_spec,
    run_tasks,
    slug,
    write_atomically,
    write_results,
)
from selfrepair.errors import SelfRepairError
from selfrepair.graphs.budget import Budget, Sampling
from selfrepair.graphs.issue import repair_issue, run_candidate_tests
from selfrepair.graphs.run import open_checkpointer
from selfrepair.metrics import result_row
from selfrepair.sandbox.choose import open_sandbox
from selfrepair.types import Task, TestSpec, Trajectory

REPOSITORY_TEST_TIMEOUT_S = 600.0  # a repository's suite takes longer than one function's tests
REPLY_TOKENS = 1024  # edits with their context lines need more room than a one-function fix
PREDICTIONS = "predictions.jsonl"


def fix_repository(
    path: Path,
    issue: str | None,
    test_cmd: str,
    *,
    base: str | None,
    branch: str | None,
    model: str,
    budget: int,
    sandbox: str,
    out: Path | None,
    patch: bool,
    quiet: bool,
    json_output: bool,
) -> None:
    """Resolve ISSUE in the git repository at PATH until TEST_CMD passes; the fix is written to
    RUN_DIR/fix.patch (and committed on BRANCH when one is named). Exit 1 when not fixed."""
    issue_text = (read_spec(issue) or "").strip()
    if not issue_text:
        raise SelfRepairError("--issue is empty: give the issue's text or a file holding it")
    if not test_cmd.strip():
        raise SelfRepairError("--test-cmd is empty")
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
    limits = Budget(max_candidates=budget)
    box = open_sandbox(sandbox)
    try:
        with checkout(repository, commit) as work:
            baseline = run_candidate_tests(box, work, task, None)
            if baseline.passed:
                raise SelfRepairError(
                    f"nothing to repair: `{test_cmd}` already passes at {commit[:12]}; "
                    "add a test that shows the issue"
                )
            loaded = load_model(model)
            check_reachable(loaded)
            config = {
                "command": "fix", "mode": "issue", "path": str(root), "base": commit, "test_cmd": test_cmd,
                "issue": issue_text, "strategy": "issue", "model": model, "budget": budget_config(limits),
            }
            run_dir = out or Path("runs") / f"fix-{time.strftime('%Y%m%d-%H%M%S')}"
            store = prepare_run_dir(run_dir, config)
            with Display(not (quiet or json_output), f"fixing {root.name}", budget) as display:

                def on_step(trajectory: Trajectory) -> None:
                    display.update(completed=len(trajectory.steps), solved=int(trajectory.solved),
                                   tokens=trajectory.tokens)

                trajectory = repair_issue(
                    task, loaded, box, limits, store, checkpointer=open_checkpointer(run_dir),
                    sampling=Sampling(max_tokens=REPLY_TOKENS), work=work, baseline=baseline, on_step=on_step,
                )
            write_results(run_dir, [trajectory], config | {"command_line": command_line()})
            store.close()
    finally:
        box.close()

    diff = trajectory.metadata.get("patch", "") if trajectory.solved else ""
    branch_commit = None
    if diff:
        (run_dir / "fix.patch").write_text(diff, encoding="utf-8")
        if branch is not None:
            title = issue_text.splitlines()[0].lstrip("# ").strip()[:60]
            branch_commit = commit_to_branch(repository, commit, diff, branch, f"Fix: {title}\n\nMade by selfrepair.")
    if json_output:
        typer.echo(json.dumps({
            "solved": trajectory.solved, "outcome": trajectory.outcome, "error": trajectory.error,
            "run_dir": str(run_dir), "base": commit, "branch": branch if branch_commit else None,
            "commit": branch_commit, "patch": diff,
            "steps": [describe_step(trajectory, s.index).strip() for s in trajectory.steps],
            "result": result_row(trajectory),
        }))
    elif diff:
        if patch:
            typer.echo(diff, nl=False)
        elif not quiet:
            where = f"committed on branch {branch} ({branch_commit[:12]})" if branch_commit else (
                f"apply it with: git -C {root} apply {(run_dir / 'fix.patch').resolve()}")
            typer.echo(
                f"fixed in {len(trajectory.steps)} candidates, {trajectory.tokens:,} tokens, "
                f"{trajectory.wall_seconds:.1f} s; patch in {run_dir / 'fix.patch'}; {where}"
            )
    else:
        typer.echo(not_fixed_report(trajectory, run_dir), err=quiet)
    if not diff:
        raise typer.Exit(1)


def find_mirror(repos: Path, task: Task) -> Path:
    """The local mirror of a SWE-bench task's repository under `repos`: OWNER__NAME (the
    harness's own naming), OWNER/NAME or NAME, each with or without a .git suffix."""
    github = task.metadata.get("github_repo") or re.sub(r"^.*github\.com[/:]", "", task.repo or "").removesuffix(".git")
    owner, _, name = github.partition("/")
    tried = []
    for relative in (f"{owner}__{name}", f"{owner}/{name}", name):
        for candidate in (repos / relative, repos / f"{relative}.git"):
            tried.append(candidate)
            if candidate.is_dir():
                return candidate
    raise SelfRepairError(
        f"{task.task_id}: no local mirror of {github} under {repos} (looked for "
        + ", ".join(str(p.relative_to(repos)) for p in tried) + ")"
    )


def prediction(trajectory: Trajectory, model_name: str) -> dict[str, str]:
    """SWE-bench's prediction: the passing patch, else the last tested candidate's (the
    official harness judges it on its own environment, which may differ from ours), else
    nothing."""
    patch = trajectory.metadata.get("patch", "")
    if not patch:
        tested = [s for s in trajectory.steps if s.candidate is not None]
        patch = tested[-1].candidate.diff if tested else ""
    return {"instance_id": trajectory.task.task_id, "model_name_or_path": model_name, "model_patch": patch}


def bench_swebench(
    data: Path | None,
    repos: Path | None,
    *,
    limit: int | None,
    model: str,
    budget: int,
    jobs: int,
    sandbox: str,
    out: Path | None,
    quiet: bool,
    json_output: bool,
) -> dict[str, Any]:
    """SWE-bench instances through the issue graph; writes RUN_DIR/predictions.jsonl in
    SWE-bench's format beside results.jsonl and summary.json. Returns the summary."""
    from selfrepair.loaders import load_tasks

    if data is None or not data.is_file():
        raise SelfRepairError(f"--data: give the SWE-bench instances file (JSON or JSONL){f'; no such file: {data}' if data else ''}")
    if repos is None or not repos.is_dir():
        raise SelfRepairError("--repos: give the directory of local repository mirrors (nothing is cloned from the internet)")
    tasks = load_tasks("swebench", data)
    tasks = tasks[:limit] if limit else tasks
    if not tasks:
        raise SelfRepairError(f"{data}: no instances")
    local = []
    for task in tasks:
        mirror = find_mirror(repos, task)
        resolve_commit(open_repository(mirror), task.base_commit or "HEAD")  # a stale mirror is refused now
        local.append(task.model_copy(update={"repo": str(mirror.resolve())}))
    limits = Budget(max_candidates=budget)
    loaded = load_model(model)
    check_reachable(loaded)
    box = open_sandbox(sandbox, pool_size=jobs)
    config = {
        "command": "bench", "benchmark": "swebench", "data": str(data.resolve()), "repos": str(repos.resolve()),
        "limit": limit, "strategy": "issue", "model": model, "budget": budget_config(limits),
    }
    run_dir = out or Path("runs") / (f"bench-swebench-issue-{slug(model)}-b{budget}" + (f"-n{limit}" if limit else ""))
    try:
        store = prepare_run_dir(run_dir, config)
        checkpointer = open_checkpointer(run_dir)
        finished: list[Trajectory] = []
        with Display(not (quiet or json_output), "swebench (issue)", len(local)) as display:

            def work(task: Task) -> Trajectory:
                try:
                    return repair_issue(task, loaded, box, limits, store, checkpointer=checkpointer,
                                        sampling=Sampling(max_tokens=REPLY_TOKENS))
                except SelfRepairError as error:  # e.g. a test patch that does not apply
                    trajectory = Trajectory(task=task, strategy="issue", model=loaded.spec, outcome="error", error=str(error))
                    store.save(trajectory)
                    return trajectory

            def done(trajectory: Trajectory) -> None:
                finished.append(trajectory)
                display.update(completed=len(finished), solved=sum(t.solved for t in finished),
                               tokens=sum(t.tokens for t in finished))

            trajectories = []
            summary_config = config | {"command_line": command_line()}
            for trajectory in run_tasks(local, jobs, work, done):
                trajectories.append(trajectory)
                summary = write_results(run_dir, trajectories, summary_config)
                lines = [json.dumps(prediction(t, model)) + "\n" for t in trajectories]
                write_atomically(run_dir / PREDICTIONS, "".join(lines))
        store.close()
    finally:
        box.close()
    summary["predictions"] = str(run_dir / PREDICTIONS)
    return summary
