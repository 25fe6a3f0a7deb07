"""The issue graph: localise -> edit -> execute -> review -> refine -> ... -> finish.

A repository task (an issue, a repository, a base commit, a test command) is repaired in a
private checkout of the base commit (agents.repo), never in the user's working tree:

  localise  ranks the repository's definitions against the issue and its traceback
  edit      the model sees the issue, the repository map and the top candidates' code, and
            answers with SEARCH/REPLACE edits; edits that do not apply exactly or break the
            syntax become the step's error and go back to the model as feedback, untested
  execute   the candidate's diff on the base (plus the task's test patch, for SWE-bench)
            runs in the sandbox; the tests the task names (the failing ones that must pass
            and the passing ones that must keep passing) decide, or else the whole command
  review    the reviewer reads the diff and the test results; its critique feeds the refiner
  refine    new edits on top of the latest tested candidate, from its test feedback, the
            critique, or the problems of edits that did not apply

Budgets, checkpoints (RUN_DIR/run.sqlite) and the trajectory store are the repair loop's
(graphs.nodes, graphs.run); so are the routing functions, because the graph has the same
shape after its first node.
"""

from __future__ import annotations

import shlex
import weakref
from dataclasses import dataclass, field
from typing import Callable

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from pydantic.json_schema import SkipJsonSchema

from selfrepair.agents import localise as localisation
from selfrepair.agents.edits import FORMAT_HELP, apply_edits
from selfrepair.agents.feedback import describe_report
from selfrepair.agents.models import Model
from selfrepair.agents.prompts import render
from selfrepair.agents.repo import Checkout, checkout, mirror_repository
from selfrepair.agents.reviewer import parse_review
from selfrepair.errors import SelfRepairError
from selfrepair.graphs.budget import Budget, Sampling
from selfrepair.graphs.nodes import RepairContext, RepairState, baseline_of, executed, finish as finish_trajectory
from selfrepair.graphs.nodes import next_index, passing, pending_execution, updating
from selfrepair.graphs.repair import route_executed, route_generated, route_reviewed
from selfrepair.graphs.run import run_graph
from selfrepair.sandbox.core import Sandbox
from selfrepair.sandbox.testing import run_tests
from selfrepair.store import TrajectoryStore
from selfrepair.types import Candidate, Message, Step, StepKind, Task, TestCase, TestReport, Trajectory

STRATEGY = "issue"
LOCALISED_SHOWN = 10  # definitions recorded in the trajectory's metadata
DIFF_CHARS = 6000  # a diff in a prompt is cut beyond this


@dataclass(kw_only=True)
class IssueContext(RepairContext):
    # The private checkout every node works in; live, never checkpointed. Studio gives none:
    # `work` then makes one from the task's repository and base commit, removed with the context.
    checkout: SkipJsonSchema[Checkout | None] = None
    context_tokens: int = 3000  # the budget for the repository map and code in a prompt
    base_map: SkipJsonSchema[list[localisation.Definition] | None] = field(default=None, repr=False)

    def work(self, task: Task) -> Checkout:
        if self.checkout is None:
            if not task.repo:
                raise SelfRepairError(f"task {task.task_id}: not a repository task (no repo)")
            self.checkout = checkout(mirror_repository(task.repo), task.base_commit or "HEAD")
            weakref.finalize(self, self.checkout.close)
        return self.checkout


def prepare(work: Checkout, task: Task, diff: str, *, with_tests: bool) -> None:
    """The checkout at the base with `diff` applied (and the task's test patch, to run it)."""
    work.reset()
    work.apply_patch(diff, what="the candidate")
    if with_tests and task.metadata.get("test_patch"):
        work.apply_patch(task.metadata["test_patch"], what="the task's test patch")


def current_map(context: IssueContext, diff: str) -> list[localisation.Definition]:
    """The definitions of the checkout as it is now: the base's map (parsed once) with the
    files a diff touched parsed again."""
    work = context.checkout  # made by the caller's `context.work(task)`
    if context.base_map is None:
        context.base_map = localisation.repository_map(work.path)
    touched = {line[6:] for line in diff.splitlines() if line.startswith("+++ b/")}
    if not touched:
        return context.base_map
    fresh = [path for path in touched if path.endswith(".py") and (work.path / path).is_file()]
    return [d for d in context.base_map if d.path not in touched] + localisation.repository_map(work.path, fresh)


def judge(task: Task, report: TestReport) -> TestReport:
    """The report as the task's contract reads it. Where the task names tests (those that must
    start passing, `select`, and those that must keep passing), only they count, each one that
    did not run as an error: the suite may hold tests that failed at the base already, so the
    command's exit status alone would judge the wrong thing. Otherwise the whole run counts."""
    named = [*task.tests.select, *task.tests.must_keep_passing]
    if not named:
        return report
    cases = []
    for name in dict.fromkeys(named):
        found = next((c for c in report.tests if _same_test(c.name, name)), None)
        cases.append(found or TestCase(name=name, outcome="error", message="this test did not run"))
    failing = [c for c in cases if c.outcome in ("failed", "error")]
    trouble = report.timed_out or report.out_of_memory
    if trouble:
        reason = report.reason
    elif failing:
        names = ", ".join(c.name for c in failing[:5])
        reason = f"{len(failing)} of {len(cases)} required tests failed: {names}"
    else:
        reason = ""
    exit_code = report.exit_code if trouble or failing else 0
    return report.model_copy(update={"tests": cases, "exit_code": exit_code, "reason": reason})


def _same_test(reported: str, named: str) -> bool:
    """pytest ids match exactly or by a path suffix (a report's path may be relative to
    another root than the task's list)."""
    return reported == named or reported.endswith("/" + named) or named.endswith("/" + reported)


def run_candidate_tests(sandbox: Sandbox, work: Checkout, task: Task, candidate: Candidate | None) -> TestReport:
    """The task's tests on the base with the candidate's diff (None: the base as it is)."""
    try:
        prepare(work, task, candidate.diff if candidate else "", with_tests=True)
        report = run_tests(sandbox, workspace_tests(task), candidate, workspace=work.path)
    finally:
        work.reset()
    return judge(task, report)


def workspace_tests(task: Task) -> Task:
    """A pytest spec with no test files of its own (SWE-bench's: the tests arrive with the
    test patch) runs pytest in the checkout on the files that patch touches, as SWE-bench's
    harness does; every other spec is used as it is."""
    spec = task.tests
    if spec.kind != "pytest" or spec.files:
        return task
    patch = task.metadata.get("test_patch") or ""
    files = sorted({line[6:] for line in patch.splitlines() if line.startswith("+++ b/") and line.endswith(".py")})
    command = "python -m pytest -q -rA " + " ".join(shlex.quote(f) for f in files)
    return task.model_copy(update={"tests": spec.model_copy(update={"kind": "command", "command": command})})


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "\n... (cut)"


def _propose(trajectory: Trajectory, context: IssueContext, kind: StepKind, baseline: TestReport | None) -> Step:
    """One model reply turned into a step: a candidate diff, or the reason it is none."""
    task = trajectory.task
    runs = executed(trajectory)
    parent = runs[-1] if runs else None
    last = trajectory.steps[-1] if trajectory.steps else None
    edit_problems = last.error if last is not None and last.candidate is None else ""
    parent_diff = parent.candidate.diff if parent is not None else ""

    work = context.work(task)
    prepare(work, task, parent_diff, with_tests=False)
    try:
        ranked = localisation.rank(current_map(context, parent_diff), task.spec)
        code_context = localisation.render_context(work.path, ranked, context.context_tokens)
        if parent is None and not edit_problems:
            prompt = render(
                "issue_edit", issue=task.spec.strip(), context=code_context,
                feedback=describe_report(baseline) if baseline is not None and not baseline.passed else "",
            )
        else:
            prompt = render(
                "issue_refine", issue=task.spec.strip(), context=code_context,
                diff=_cut(parent_diff, DIFF_CHARS), edit_problems=edit_problems,
                feedback=describe_report(parent.report) if parent is not None and not edit_problems else "",
                critique=parent.review.critique.strip() if parent is not None and parent.review else "",
            )
        messages = [
            Message(role="system", content=render("issue_system", format_help=FORMAT_HELP)),
            Message(role="user", content=prompt),
        ]
        first = not trajectory.steps
        generation = context.model.generate(
            messages, n=1, temperature=0.0 if first else context.sampling.temperature,
            max_tokens=context.sampling.max_tokens,
        )
        reply = generation.completions[0].text
        step = Step(
            index=next_index(trajectory), kind=kind, parent=parent.index if parent else None,
            messages=messages, completion=reply, prompt_tokens=generation.prompt_tokens,
            completion_tokens=generation.completion_tokens, model_seconds=generation.seconds,
        )
        result = apply_edits(reply, work.read)
        if not result.ok:
            step.error = result.feedback()
            return step
        for path, text in result.files.items():
            work.write(path, text)
        diff = work.diff()
        if diff.strip():
            step.candidate = Candidate(diff=diff, explanation=reply.split("<<<<<<<")[0].strip()[:500])
        else:
            step.error = "Your edits undo every change: the code is back to the original, which fails."
        return step
    finally:
        work.reset()


def localise(state: RepairState, runtime: Runtime[IssueContext]) -> dict:
    """Rank the repository against the issue; the ranking is recorded, the prompts use it."""
    context = runtime.context
    with updating(state, context, strategy=STRATEGY) as trajectory:
        context.work(trajectory.task)
        ranked = localisation.rank(current_map(context, ""), trajectory.task.spec)
        trajectory.metadata["localisation"] = [
            {"path": r.definition.path, "name": r.definition.qualname,
             "lines": [r.definition.start_line, r.definition.end_line], "score": r.score}
            for r in ranked[:LOCALISED_SHOWN] if r.score > 0
        ]
    return {"trajectory": trajectory}


def edit(state: RepairState, runtime: Runtime[IssueContext]) -> dict:
    with updating(state, runtime.context) as trajectory:
        trajectory.steps.append(_propose(trajectory, runtime.context, "edit", baseline_of(state)))
    return {"trajectory": trajectory}


def refine(state: RepairState, runtime: Runtime[IssueContext]) -> dict:
    with updating(state, runtime.context) as trajectory:
        trajectory.steps.append(_propose(trajectory, runtime.context, "refine", baseline_of(state)))
    return {"trajectory": trajectory}


def execute(state: RepairState, runtime: Runtime[IssueContext]) -> dict:
    with updating(state, runtime.context) as trajectory:
        step = pending_execution(trajectory)
        context = runtime.context
        work = context.work(trajectory.task)
        step.report = run_candidate_tests(context.sandbox, work, trajectory.task, step.candidate)
        step.sandbox_seconds = step.report.wall_seconds
    return {"trajectory": trajectory}


def review(state: RepairState, runtime: Runtime[IssueContext]) -> dict:
    """The reviewer's verdict on the latest tested diff. Advice only: an "accept" of a
    failing candidate is a recorded reviewer error and the loop goes on."""
    context = runtime.context
    with updating(state, context) as trajectory:
        step = executed(trajectory)[-1]
        messages = [
            Message(role="system", content=render("review_system")),
            Message(role="user", content=render(
                "issue_review", issue=trajectory.task.spec.strip(),
                diff=_cut(step.candidate.diff, DIFF_CHARS), feedback=describe_report(step.report),
            )),
        ]
        generation = context.model.generate(
            messages, n=1, temperature=0.0, max_tokens=context.sampling.review_max_tokens
        )
        step.review = parse_review(generation.completions[0].text)
        step.review_messages = messages
        step.review_completion = generation.completions[0].text
        step.prompt_tokens += generation.prompt_tokens
        step.completion_tokens += generation.completion_tokens
        step.model_seconds += generation.seconds
        step.reviewer_error = step.review.verdict == "accept" and not step.report.passed
    return {"trajectory": trajectory}


def finish(state: RepairState, runtime: Runtime[IssueContext]) -> dict:
    with updating(state, runtime.context) as trajectory:
        solved = passing(trajectory)
        finish_trajectory(trajectory, solved[0] if solved else None, runtime.context.budget)
        if solved:
            trajectory.metadata["patch"] = solved[0].candidate.diff
    return {"trajectory": trajectory}


builder = StateGraph(RepairState, context_schema=IssueContext)
builder.add_node("localise", localise)
builder.add_node("edit", edit)
builder.add_node("execute", execute)
builder.add_node("review", review)
builder.add_node("refine", refine)
builder.add_node("finish", finish)
builder.add_edge(START, "localise")
builder.add_edge("localise", "edit")
builder.add_conditional_edges("edit", route_generated)
builder.add_conditional_edges("refine", route_generated)
builder.add_conditional_edges("execute", route_executed)
builder.add_conditional_edges("review", route_reviewed)
builder.add_edge("finish", END)

graph = builder.compile(name=STRATEGY)


def repair_issue(
    task: Task,
    model: Model,
    sandbox: Sandbox,
    budget: Budget | None = None,
    store: TrajectoryStore | None = None,
    *,
    checkpointer=None,
    sampling: Sampling | None = None,
    context_tokens: int = 3000,
    work: Checkout | None = None,
    baseline: TestReport | None = None,
    on_step: Callable[[Trajectory], None] | None = None,
) -> Trajectory:
    """Repair a repository task in a private checkout of its base commit (`work`, or one made
    here from `task.repo`); the trajectory's `metadata["patch"]` is the fix (a unified diff
    against the base) when it is solved.

    Without a `baseline`, the tests run once on the base first, so the first prompt shows
    how they fail.
    """
    if not task.spec.strip():
        raise SelfRepairError(f"task {task.task_id}: the issue text is empty")
    if work is None:
        if not task.repo:
            raise SelfRepairError(f"task {task.task_id}: not a repository task (no repo)")
        with checkout(mirror_repository(task.repo), task.base_commit or "HEAD") as work:
            return repair_issue(
                task, model, sandbox, budget, store, checkpointer=checkpointer, sampling=sampling,
                context_tokens=context_tokens, work=work, baseline=baseline, on_step=on_step,
            )
    context = IssueContext(
        model=model, sandbox=sandbox, budget=budget or Budget(), sampling=sampling or Sampling(),
        store=store, on_step=on_step, checkout=work, context_tokens=context_tokens,
    )
    if baseline is None:
        baseline = run_candidate_tests(sandbox, work, task, None)
    return run_graph(builder, STRATEGY, task, context, checkpointer=checkpointer, baseline=baseline)
