"""localise-repair: a repository issue repaired one suspect function at a time (Agentless-style).

A small model edits a repository badly (the issue graph asks for SEARCH/REPLACE blocks, and
0.5B-7B models answer in prose and pseudo-edits), but repairs a function it is shown well.
So this graph localises first and then repairs as for functions:

  localise   rank the repository's functions against the issue, the failing tests'
             tracebacks and what those tests call (agents.code.suspects), and first by what
             each test executes: the tests run once more on the base with a tracer
             (sandbox.spectrum; metadata "spectrum", with why not where it failed); no
             failing test ->
  reproduce  the tester writes a pytest test from the issue; kept only when it fails on the
             base, and then a candidate must make it pass and keep the suite passing; it is
             recorded in the trajectory (metadata "reproduction", and its step)
  sample     best-of-n for the current suspect: the model sees that function alone, as a
             function task of `synth` shows it (agents.code.focus: the issue, the names in
             scope, the failing tests where the issue does not show them), and answers with
             the whole function; the reply is extracted and merged as in function-level
             repair and spliced back into its file. Its calls are seeded within the suspect,
             as that function task's are.
  execute    the candidate's diff on the base (with the task's test patch and the
             reproduction) runs in the sandbox, judged as the issue graph judges
  refine     the best failing candidate of this suspect, from its test feedback
  escalate   this suspect's share of the budget is spent: on to the next suspect

The budget is the run's (candidates, tokens, seconds); each suspect gets an equal share of
the candidates (`function_budget`), so a wrong first suspect cannot eat it all.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from pydantic.json_schema import SkipJsonSchema
from selfrepair.agents import refiner, solver, tester
from selfrepair.agents.code import focus
from selfrepair.agents.code.localise import python_files
from selfrepair.agents.code.repo import Checkout
from selfrepair.agents.code.suspects import suspects as rank_suspects
from selfrepair.agents.models.protocol import Model
from selfrepair.graphs.issue import (
    base_checkout,
    prepare,
    run_candidate_tests,
    run_repository_graph,
)
from selfrepair.graphs.nodes import RepairContext, RepairState, run_pending
from selfrepair.graphs.search import rank
from selfrepair.sandbox.core import Sandbox
from selfrepair.sandbox.judging import workspace_tests
from selfrepair.sandbox.spectrum import trace_tests

from selfrepair.errors import SelfRepairError
from selfrepair.paths import is_test_file
from selfrepair.settings import Budget, Sampling
from selfrepair.store import TrajectoryStore
from selfrepair.types import Step, Task, TestReport, Trajectory

STRATEGY = "localise-repair"
SUSPECTS = 3  # functions tried, best first
SUSPECTS_RECORDED = 10
REPRODUCTION_FILE = "test_issue_reproduction.py"


@dataclass(kw_only=True)
class LocaliseContext(RepairContext):
    # The private checkout every node works in; live, never checkpointed. Studio gives none:
    # `work` then makes one from the task's repository and base commit.
    checkout: SkipJsonSchema[Checkout | None] = None
    suspects: int = SUSPECTS
    function_budget: int | None = None  # candidates per suspect; None: an equal share

    def work(self, task: Task) -> Checkout:
        if self.checkout is None:
            self.checkout = base_checkout(task)
            weakref.finalize(self, self.checkout.close)
        return self.checkout

    def share(self, found: int) -> int:
        """Candidates each suspect may spend."""
        if self.function_budget is not None:
            return self.function_budget
        return max(1, math.ceil(self.budget.max_candidates / max(1, min(found, self.suspects))))


# -- the task as tested, with its reproduction ---------------------------------------------


def tested_task(trajectory: Trajectory) -> Task:
    """The task whose tests judge a candidate: with a reproduction test, its file joins the
    test patch, the test must start passing and what passed on the base must keep passing."""
    task = trajectory.task
    reproduction = trajectory.metadata.get("reproduction")
    if not reproduction:
        return task
    patch = (task.metadata.get("test_patch") or "") + new_file_diff(
        reproduction["path"], reproduction["code"]
    )
    tests = task.tests.model_copy(
        update={
            "select": reproduction["tests"],
            "must_keep_passing": reproduction["keep_passing"],
        }
    )
    return task.model_copy(
        update={"tests": tests, "metadata": task.metadata | {"test_patch": patch}}
    )


def new_file_diff(path: str, text: str) -> str:
    lines = text.rstrip("\n").split("\n")
    body = "".join(f"+{line}\n" for line in lines)
    return f"--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{len(lines)} @@\n{body}"


def failing_report(trajectory: Trajectory, context: LocaliseContext) -> TestReport | None:
    """How the base fails: with the reproduction test where there is one."""
    reproduction = trajectory.metadata.get("reproduction")
    if reproduction:
        return TestReport.model_validate(reproduction["report"])
    return context.baseline


# -- nodes -----------------------------------------------------------------------------------


def localise(state: RepairState, runtime: Runtime[LocaliseContext]) -> dict:
    """Rank the functions; the ranking is recorded, the repair walks down it."""
    context = runtime.context
    with context.entering(state, strategy=STRATEGY) as trajectory:
        if context.baseline is None:  # from Studio: how the base fails is learnt here
            work = context.work(trajectory.task)
            context.baseline = run_candidate_tests(context.sandbox, work, trajectory.task, None)
        record_suspects(trajectory, context)
    return {"trajectory": trajectory}


def record_suspects(trajectory: Trajectory, context: LocaliseContext) -> None:
    work = context.work(trajectory.task)
    report = failing_report(trajectory, context)
    failing = report.failing if report is not None else []
    try:
        task = tested_task(trajectory)
        prepare(work, task, "")  # the failing tests' code, to read its calls
        spectrum = trace_tests(context.sandbox, workspace_tests(task), work.path)
        trajectory.metadata["spectrum"] = spectrum.summary()
        ranked = rank_suspects(
            work.path,
            trajectory.task.spec,
            failing,
            limit=SUSPECTS_RECORDED,
            # Without a usable spectrum (no traced failing test, tracing switched off) the
            # static ranking stands alone; the reason is in the summary.
            executed=None if spectrum.reason else spectrum.executed,
            failed=spectrum.failing,
        )
    finally:
        work.reset()
    trajectory.metadata["suspects"] = [
        {
            "path": r.definition.path,
            "name": r.definition.qualname,
            "lines": [r.definition.start_line, r.definition.end_line],
            "score": r.score,
            "reasons": list(r.reasons),
        }
        for r in ranked
    ]
    trajectory.metadata["suspect"] = 0
    trajectory.metadata["focus"] = {}  # step index -> the suspect it repairs


def reproduce(state: RepairState, runtime: Runtime[LocaliseContext]) -> dict:
    """Nothing fails yet: the tester writes a test from the issue, shown the top suspect. It is
    kept only when it fails on the base (it reproduces the issue)."""
    context = runtime.context
    with context.updating(state) as trajectory:
        work = context.work(trajectory.task)
        top = trajectory.metadata["suspects"][:1]
        path, code = "", ""
        if top:
            path = top[0]["path"]
            definition = focus.find(work.read(path) or "", path, top[0]["name"])
            if definition is not None:
                code, _ = focus.function_source(work.read(path), definition)
        first = len(trajectory.steps)
        step, test = tester.write_reproduction(
            context.model,
            trajectory.task.spec,
            index=first,
            path=path,
            code=code,
            module=module_of(path),
            temperature=context.sampling.temperature if first else 0.0,
            max_tokens=context.sampling.max_tokens,
            seed=context.sampling.call_seed(trajectory.task.task_id, first) if first else None,
            timeout=context.seconds_left(),
        )
        trajectory.steps.append(step)
        if test is not None:
            check_reproduction(trajectory, context, work, step, test)
    return {"trajectory": trajectory}


def module_of(path: str) -> str:
    """`pkg/sub/mod.py` -> `pkg.sub.mod` (`src/` dropped); "" for no path."""
    parts = Path(path).with_suffix("").parts
    parts = parts[1:] if parts[:1] == ("src",) else parts
    return ".".join(p for p in parts if p != "__init__")


def reproduction_path(work: Checkout) -> str:
    """Beside the repository's first test file, else in tests/."""
    tests = [p for p in python_files(work.path) if is_test_file(p) and p.endswith(".py")]
    folder = str(Path(tests[0]).parent) if tests else "tests"
    return REPRODUCTION_FILE if folder == "." else f"{folder}/{REPRODUCTION_FILE}"


def check_reproduction(
    trajectory: Trajectory, context: LocaliseContext, work: Checkout, step: Step, test: str
) -> None:
    """Run the test on the base: kept (metadata "reproduction") when one of its functions fails
    there; else the step's error says why. Then the suspects are ranked again, with its
    traceback."""
    path = reproduction_path(work)
    trial = trajectory.model_copy(
        update={
            "metadata": trajectory.metadata
            | {
                "reproduction": {
                    "path": path,
                    "code": test,
                    "tests": [],
                    "keep_passing": [],
                    "report": {},
                }
            }
        }
    )
    report = run_candidate_tests(context.sandbox, work, tested_task(trial), None)
    mine = [c for c in report.tests if Path(path).stem in c.name]
    # A test that fails; one that cannot even be collected or set up (an import of a name
    # that does not exist) shows nothing about the issue.
    failing = [c.name for c in mine if c.outcome == "failed" and "::" in c.name]
    if not failing:
        broken = next((c for c in mine if c.outcome == "error"), None)
        if broken is not None:
            step.error = (
                "the reproduction test does not run: "
                + (broken.message or "error").strip().splitlines()[0][:200]
            )
        elif mine:
            step.error = (
                "the reproduction test passes on the code as given: it does not show the issue"
            )
        else:
            step.error = f"the reproduction test did not run ({report.reason or 'not collected'})"
        return
    base = context.baseline
    keep = [c.name for c in (base.tests if base else []) if c.outcome == "passed"]
    trajectory.metadata["reproduction"] = {
        "path": path,
        "code": test,
        "step": step.index,
        "tests": failing,
        "keep_passing": keep or list(trajectory.task.tests.must_keep_passing),
        "report": report.model_dump(mode="json"),
    }
    record_suspects(trajectory, context)


def current_suspect(trajectory: Trajectory) -> dict:
    return trajectory.metadata["suspects"][trajectory.metadata["suspect"]]


def focus_on(trajectory: Trajectory, context: LocaliseContext, suspect: dict, base_text: str):
    """The function-level task for `suspect` in a file's `base_text`, and the definition."""
    definition = focus.find(base_text, suspect["path"], suspect["name"])
    if definition is None:
        raise SelfRepairError(f"{suspect['path']}: {suspect['name']} is gone")
    code, indent = focus.function_source(base_text, definition)
    reproduction = trajectory.metadata.get("reproduction") or {}
    task = focus.function_task(
        trajectory.task, definition, code, reproduction.get("code", ""), module=base_text
    )
    return task, definition, indent


def sample(state: RepairState, runtime: Runtime[LocaliseContext]) -> dict:
    """Best-of-n for the current suspect, from one batched call."""
    context = runtime.context
    with context.updating(state) as trajectory:
        suspect = current_suspect(trajectory)
        base_text = base_file(trajectory, context, suspect["path"])
        task, definition, indent = focus_on(trajectory, context, suspect, base_text)
        n = min(
            context.sampling.samples,
            context.budget.candidates_left(trajectory),
            suspect_left(trajectory, context),
        )
        steps = solver.solve(
            context.model,
            task,
            first_index=len(trajectory.steps),
            n=n,
            temperature=context.sampling.temperature,
            max_tokens=context.sampling.max_tokens,
            stop=context.sampling.stop,
            baseline=unshown_failures(trajectory, context),
            kind="sample",
            seed=suspect_seed(trajectory, context),
            timeout=context.seconds_left(),
        )
        trajectory.steps += splice_steps(steps, trajectory, task, base_text, definition, indent)
    return {"trajectory": trajectory}


def refine(state: RepairState, runtime: Runtime[LocaliseContext]) -> dict:
    """Refine this suspect's best tested candidate, shown as the function it made."""
    context = runtime.context
    with context.updating(state) as trajectory:
        suspect = current_suspect(trajectory)
        base_text = base_file(trajectory, context, suspect["path"])
        task, definition, indent = focus_on(trajectory, context, suspect, base_text)
        parent = max(suspect_steps(trajectory, tested=True), key=rank)
        changed = focus.find(
            parent.candidate.files[suspect["path"]], suspect["path"], suspect["name"]
        )
        files = task.files  # the candidate broke the function's syntax: start from the base
        if changed is not None:
            code, _ = focus.function_source(parent.candidate.files[suspect["path"]], changed)
            files = {task.entry_file: focus.shown(code, suspect["path"], suspect["name"])}
        shown = parent.model_copy(
            update={"candidate": parent.candidate.model_copy(update={"files": files})}
        )
        steps = refiner.refine(
            context.refiner_model or context.model,
            task,
            shown,
            first_index=len(trajectory.steps),
            n=min(context.sampling.children, suspect_left(trajectory, context)),
            temperature=context.sampling.temperature,
            max_tokens=context.sampling.max_tokens,
            stop=context.sampling.stop,
            seed=suspect_seed(trajectory, context),
            timeout=context.seconds_left(),
        )
        trajectory.steps += splice_steps(steps, trajectory, task, base_text, definition, indent)
    return {"trajectory": trajectory}


def base_file(trajectory: Trajectory, context: LocaliseContext, path: str) -> str:
    text = context.work(trajectory.task).read(path)
    if text is None:
        raise SelfRepairError(f"{path} is not in the repository at its base commit")
    return text


def unshown_failures(trajectory: Trajectory, context: LocaliseContext) -> TestReport | None:
    """How the base fails, for the first prompt; None when the issue already names failing
    tests: it shows how they fail then (a synthesized issue carries the first ten with their
    output), and the same again, with the rest of a long list, only made the prompt longer."""
    report = failing_report(trajectory, context)
    spec = trajectory.task.spec
    if report is None or not report.failing or any(c.name in spec for c in report.failing):
        return None
    return report


def suspect_seed(trajectory: Trajectory, context: LocaliseContext) -> int | None:
    """The seed of the current suspect's next model call, counted within that suspect: a
    suspect draws the samples the same function given as a function task would (the same
    task id and prompt), so the two strategies differ only in finding the function."""
    return context.sampling.call_seed(trajectory.task.task_id, len(suspect_steps(trajectory)))


def splice_steps(
    steps: list[Step], trajectory: Trajectory, task: Task, base_text: str, definition, indent
) -> list[Step]:
    """The function-level steps with their candidates spliced back into the file: each
    candidate becomes the whole file and its diff against the base."""
    path = definition.path
    for step in steps:
        trajectory.metadata["focus"][str(step.index)] = trajectory.metadata["suspect"]
        if step.candidate is None:
            continue
        code = focus.unshown(step.candidate.files[task.entry_file], path, definition.qualname)
        new = focus.splice(base_text, definition, code, indent)
        candidate = focus.repository_candidate(path, base_text, new)
        if candidate is None:
            step.candidate, step.error = None, "the repair leaves the file as it was"
        else:
            step.candidate = candidate
    return steps


def suspect_steps(trajectory: Trajectory, *, tested: bool = False) -> list[Step]:
    mine = trajectory.metadata["suspect"]
    return [
        s
        for s in trajectory.steps
        if trajectory.metadata["focus"].get(str(s.index)) == mine
        and (not tested or s.report is not None)
    ]


def suspect_left(trajectory: Trajectory, context: LocaliseContext) -> int:
    spent = len(suspect_steps(trajectory))
    return max(context.share(len(trajectory.metadata["suspects"])) - spent, 0)


def execute(state: RepairState, runtime: Runtime[LocaliseContext]) -> dict:
    context = runtime.context
    with context.updating(state) as trajectory:
        work = context.work(trajectory.task)
        task = tested_task(trajectory)
        expect = context.expected_tests()
        seconds = context.test_seconds(trajectory)
        run_pending(
            trajectory,
            lambda candidate: run_candidate_tests(
                context.sandbox, work, task, candidate, expect, seconds
            ),
        )
    return {"trajectory": trajectory}


def escalate(state: RepairState, runtime: Runtime[LocaliseContext]) -> dict:
    """This suspect's budget is spent: the next one."""
    with runtime.context.updating(state) as trajectory:
        trajectory.metadata["suspect"] += 1
    return {"trajectory": trajectory}


def finish(state: RepairState, runtime: Runtime[LocaliseContext]) -> dict:
    context = runtime.context
    with context.updating(state) as trajectory:
        solved = trajectory.passing()
        context.close(trajectory, solved[0] if solved else None)
        if solved:
            trajectory.metadata["patch"] = solved[0].candidate.diff
        elif (
            context.baseline is not None
            and context.baseline.passed
            and not (trajectory.metadata.get("reproduction"))
        ):
            trajectory.metadata["stop_reason"] = "no reproduction test fails on the code as given"
        elif not trajectory.metadata["stop_reason"]:
            tried = trajectory.metadata["suspect"]
            trajectory.metadata["stop_reason"] = (
                f"every suspect tried ({tried})" if tried else "no function to suspect"
            )
    return {"trajectory": trajectory}


# -- routes ----------------------------------------------------------------------------------


def has_suspect(trajectory: Trajectory, context: LocaliseContext) -> bool:
    index = trajectory.metadata["suspect"]
    return index < min(len(trajectory.metadata["suspects"]), context.suspects)


def route_localised(
    state: RepairState, runtime: Runtime[LocaliseContext]
) -> Literal["sample", "reproduce", "finish"]:
    trajectory, context = state["trajectory"], runtime.context
    nothing_fails = context.baseline is not None and context.baseline.passed
    if nothing_fails and not trajectory.metadata.get("reproduction"):
        return "finish" if context.budget.exhausted(trajectory) else "reproduce"
    return "sample" if has_suspect(trajectory, context) else "finish"


def route_sampled(
    state: RepairState, runtime: Runtime[LocaliseContext]
) -> Literal["execute", "refine", "sample", "escalate", "finish"]:
    """After a model call, or a test run: test what is untested; stop on a pass or when the
    budget is spent; escalate when this suspect's share is; else refine (or, while no reply
    for this suspect held code, sample again)."""
    trajectory, context = state["trajectory"], runtime.context
    if trajectory.pending() is not None:
        return "execute"
    if trajectory.passing() or context.budget.exhausted(trajectory):
        return "finish"
    if suspect_left(trajectory, context) == 0:
        return "escalate"
    return "refine" if suspect_steps(trajectory, tested=True) else "sample"


def route_escalated(
    state: RepairState, runtime: Runtime[LocaliseContext]
) -> Literal["sample", "finish"]:
    return "sample" if has_suspect(state["trajectory"], runtime.context) else "finish"


builder = StateGraph(RepairState, context_schema=LocaliseContext)
builder.add_node("localise", localise)
builder.add_node("reproduce", reproduce)
builder.add_node("sample", sample)
builder.add_node("execute", execute)
builder.add_node("refine", refine)
builder.add_node("escalate", escalate)
builder.add_node("finish", finish)
builder.add_edge(START, "localise")
builder.add_conditional_edges("localise", route_localised)
builder.add_conditional_edges("reproduce", route_localised)
builder.add_conditional_edges("sample", route_sampled)
builder.add_conditional_edges("refine", route_sampled)
builder.add_conditional_edges("execute", route_sampled)
builder.add_conditional_edges("escalate", route_escalated)
builder.add_edge("finish", END)

graph = builder.compile(name=STRATEGY)


def repair_localised(
    task: Task,
    model: Model,
    sandbox: Sandbox,
    budget: Budget | None = None,
    store: TrajectoryStore | None = None,
    *,
    checkpointer=None,
    sampling: Sampling | None = None,
    work: Checkout | None = None,
    baseline: TestReport | None = None,
    on_step: Callable[[Trajectory], None] | None = None,
    suspects: int = SUSPECTS,
    function_budget: int | None = None,
) -> Trajectory:
    """Repair a repository task one suspect function at a time, in a private checkout of its
    base commit (`work`, or one made here from `task.repo`); `metadata["patch"]` is the fix.
    At most `suspects` functions are tried, each with `function_budget` candidates (default:
    an equal share of the budget). Without a `baseline`, the tests run once on the base."""

    def make_context(work: Checkout, baseline: TestReport) -> LocaliseContext:
        return LocaliseContext(
            model=model,
            sandbox=sandbox,
            budget=budget or Budget(),
            sampling=sampling or Sampling(),  # as function-level repair samples
            store=store,
            on_step=on_step,
            checkout=work,
            suspects=suspects,
            function_budget=function_budget,
            baseline=baseline,
        )

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
