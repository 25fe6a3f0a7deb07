"""The issue graph: localise -> edit -> execute -> review -> refine -> ... -> finish.

A repository task (an issue, a repository, a base commit, a test command) is repaired in a
private checkout of the base commit (agents.code.repo), never in the user's working tree:

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

The editing and the reviewing are the agents' (agents.editor, agents.reviewer.review_diff);
budgets, checkpoints (RUN_DIR/run.sqlite) and the trajectory store are the repair loop's
(graphs.nodes, graphs.run); so are the routing functions, because the graph has the same
shape after its first node.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from pydantic.json_schema import SkipJsonSchema
from selfrepair.agents import editor
from selfrepair.agents.code import localise as localisation
from selfrepair.agents.code.repo import Checkout, checkout, mirror_repository
from selfrepair.agents.models.protocol import Model
from selfrepair.agents.reviewer import review_diff
from selfrepair.graphs.nodes import RepairContext, RepairState, route_generated, run_pending
from selfrepair.graphs.repair import route_executed, route_reviewed
from selfrepair.graphs.run import run_graph
from selfrepair.sandbox.core import Sandbox
from selfrepair.sandbox.judging import required, workspace_tests
from selfrepair.sandbox.testing import run_tests

from selfrepair.errors import SelfRepairError
from selfrepair.settings import Budget, Sampling
from selfrepair.store import TrajectoryStore
from selfrepair.types import Candidate, StepKind, Task, TestReport, Trajectory

STRATEGY = "issue"
LOCALISED_SHOWN = 10  # definitions recorded in the trajectory's metadata


def issue_sampling(seed: int | None = None) -> Sampling:
    """The issue graph's sampling: replies get editor.REPLY_TOKENS (edits are longer than a
    function)."""
    return Sampling(max_tokens=editor.REPLY_TOKENS, seed=seed)


@dataclass(kw_only=True)
class IssueContext(RepairContext):
    # The private checkout every node works in, and its repository map; live, never
    # checkpointed. Studio gives none: `work` then makes one from the task's repository and
    # base commit, removed with the context.
    checkout: SkipJsonSchema[Checkout | None] = None
    repository: SkipJsonSchema[editor.RepositoryMap | None] = field(default=None, repr=False)
    context_tokens: int = (
        editor.CONTEXT_TOKENS
    )  # the budget for the repository map and code in a prompt
    sampling: Sampling = field(default_factory=issue_sampling)

    def work(self, task: Task) -> Checkout:
        if self.checkout is None:
            self.checkout = base_checkout(task)
            weakref.finalize(self, self.checkout.close)
        if self.repository is None:
            self.repository = editor.RepositoryMap(self.checkout)
        return self.checkout


def base_checkout(task: Task) -> Checkout:
    """A private checkout of the task's base commit, made from its repository's mirror."""
    if not task.repo:
        raise SelfRepairError(f"task {task.task_id}: not a repository task (no repo)")
    return checkout(mirror_repository(task.repo), task.base_commit or "HEAD")


def run_repository_graph(
    builder: StateGraph,
    strategy: str,
    task: Task,
    sandbox: Sandbox,
    make_context: Callable[[Checkout, TestReport], RepairContext],
    *,
    work: Checkout | None = None,
    baseline: TestReport | None = None,
    checkpointer=None,
) -> Trajectory:
    """What every repository graph does before its first node: refuse an empty issue, work in
    `work` (or a private checkout of the base made here and removed after), learn how the
    tests fail on the base unless `baseline` says, then run the graph with the context
    `make_context(work, baseline)` gives."""
    if not task.spec.strip():
        raise SelfRepairError(f"task {task.task_id}: the issue text is empty")
    if work is None:
        with base_checkout(task) as made:
            return run_repository_graph(
                builder,
                strategy,
                task,
                sandbox,
                make_context,
                work=made,
                baseline=baseline,
                checkpointer=checkpointer,
            )
    context = make_context(work, baseline or run_candidate_tests(sandbox, work, task, None))
    return run_graph(builder, strategy, task, context, checkpointer=checkpointer)


def prepare(work: Checkout, task: Task, diff: str) -> None:
    """The checkout at the base with `diff` and the task's test patch (SWE-bench's) applied."""
    work.reset()
    work.apply_patch(diff, what="the candidate")
    if task.metadata.get("test_patch"):
        work.apply_patch(task.metadata["test_patch"], what="the task's test patch")


def run_candidate_tests(
    sandbox: Sandbox,
    work: Checkout,
    task: Task,
    candidate: Candidate | None,
    expect: Sequence[str] = (),
    seconds: float | None = None,
) -> TestReport:
    """The task's tests on the base with the candidate's diff (None: the base as it is);
    `expect`: the tests that ran on the base, which the candidate's run must report too;
    `seconds`: at most this long (sandbox.testing.run_tests)."""
    try:
        prepare(work, task, candidate.diff if candidate else "")
        report = run_tests(
            sandbox,
            workspace_tests(task),
            candidate,
            workspace=work.path,
            expect=expect,
            seconds=seconds,
        )
    finally:
        work.reset()
    return required(task, report)


def localise(state: RepairState, runtime: Runtime[IssueContext]) -> dict:
    """Rank the repository against the issue; the ranking is recorded, the prompts use it."""
    context = runtime.context
    with context.entering(state, strategy=STRATEGY) as trajectory:
        context.work(trajectory.task)
        ranked = localisation.rank(context.repository.current(""), trajectory.task.spec)
        trajectory.metadata["localisation"] = [
            {
                "path": r.definition.path,
                "name": r.definition.qualname,
                "lines": [r.definition.start_line, r.definition.end_line],
                "score": r.score,
            }
            for r in ranked[:LOCALISED_SHOWN]
            if r.score > 0
        ]
    return {"trajectory": trajectory}


def propose(state: RepairState, context: IssueContext, kind: StepKind) -> dict:
    """The editor's next step: greedy the first time, sampled after."""
    with context.updating(state) as trajectory:
        work = context.work(trajectory.task)  # made with its repository map on first use
        step = editor.edit(
            context.model,
            trajectory,
            work,
            context.repository,
            kind=kind,
            baseline=context.baseline,
            temperature=context.sampling.temperature if trajectory.steps else 0.0,
            max_tokens=context.sampling.max_tokens,
            context_tokens=context.context_tokens,
            seed=context.sampling.call_seed(trajectory.task.task_id, len(trajectory.steps)),
            timeout=context.seconds_left(),
        )
        trajectory.steps.append(step)
    return {"trajectory": trajectory}


def edit(state: RepairState, runtime: Runtime[IssueContext]) -> dict:
    return propose(state, runtime.context, "edit")


def refine(state: RepairState, runtime: Runtime[IssueContext]) -> dict:
    return propose(state, runtime.context, "refine")


def execute(state: RepairState, runtime: Runtime[IssueContext]) -> dict:
    context = runtime.context
    with context.updating(state) as trajectory:
        work = context.work(trajectory.task)
        expect = context.expected_tests()
        seconds = context.test_seconds(trajectory)
        run_pending(
            trajectory,
            lambda candidate: run_candidate_tests(
                context.sandbox, work, trajectory.task, candidate, expect, seconds
            ),
        )
    return {"trajectory": trajectory}


def review(state: RepairState, runtime: Runtime[IssueContext]) -> dict:
    """The reviewer's verdict on the latest tested diff. Advice only: an "accept" of a
    failing candidate is a recorded reviewer error and the loop goes on."""
    context = runtime.context
    with context.updating(state) as trajectory:
        step = trajectory.executed()[-1]
        review_diff(
            context.reviewer_model or context.model,
            trajectory.task,
            step,
            max_tokens=context.sampling.review_max_tokens,
            seed=context.sampling.call_seed(trajectory.task.task_id, step.index, "review"),
            timeout=context.seconds_left(),
        )
    return {"trajectory": trajectory}


def finish(state: RepairState, runtime: Runtime[IssueContext]) -> dict:
    with runtime.context.updating(state) as trajectory:
        solved = trajectory.passing()
        runtime.context.close(trajectory, solved[0] if solved else None)
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
builder.add_conditional_edges("edit", route_generated("refine"))
builder.add_conditional_edges("refine", route_generated("refine"))
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
    context_tokens: int = editor.CONTEXT_TOKENS,
    work: Checkout | None = None,
    baseline: TestReport | None = None,
    on_step: Callable[[Trajectory], None] | None = None,
) -> Trajectory:
    """Repair a repository task in a private checkout of its base commit (`work`, or one made
    here from `task.repo`); the trajectory's `metadata["patch"]` is the fix (a unified diff
    against the base) when it is solved. Replies get editor.REPLY_TOKENS unless `sampling`
    says otherwise.

    Without a `baseline`, the tests run once on the base first, so the first prompt shows
    how they fail.
    """

    def make_context(work: Checkout, baseline: TestReport) -> IssueContext:
        context = IssueContext(
            model=model,
            sandbox=sandbox,
            budget=budget or Budget(),
            store=store,
            on_step=on_step,
            checkout=work,
            context_tokens=context_tokens,
            baseline=baseline,
        )
        if sampling is not None:
            context.sampling = sampling
        return context

    return run_repository_graph(
        builder,
        STRATEGY,
        task,
        sandbox,
        make_context,
        work=work,
        baseline=baseline,
        checkpointer=checkpointer,
    )
