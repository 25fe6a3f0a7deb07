"""What every repair graph shares: its state, its runtime context, and the execute and review
nodes.

The state is only what must survive a kill: the task, the Trajectory (and the baseline test
report). The model, the sandbox and the store are live objects, passed per run as LangGraph's
runtime context, never checkpointed. Nodes take the state and return a partial update; each
one works on a copy of the trajectory, adds its wall time to it and saves it to the store as
it lands.

The graphs also run from LangGraph Studio / `langgraph dev`, where input and context arrive as
JSON: the state's pydantic values may come as plain dicts (read them through `task_of`,
`trajectory_of`, `baseline_of`), and the context's model and sandbox as strings (a model spec,
a sandbox kind) that `RepairContext` resolves to live objects.
"""

from __future__ import annotations

import atexit
import functools
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Iterator

from langgraph.runtime import Runtime
from pydantic import ConfigDict, TypeAdapter, WithJsonSchema
from pydantic.json_schema import SkipJsonSchema
from typing_extensions import NotRequired, TypedDict  # pydantic reads typing's TypedDict only on 3.12+

from selfrepair.agents.backends import load_model
from selfrepair.agents.reviewer import review as review_candidate
from selfrepair.graphs.budget import Budget, Sampling
from selfrepair.sandbox.choose import open_sandbox
from selfrepair.sandbox.core import Sandbox
from selfrepair.sandbox.testing import run_tests
from selfrepair.store import TrajectoryStore
from selfrepair.types import Step, Task, TestReport, Trajectory


class RepairState(TypedDict):
    task: Task
    trajectory: NotRequired[Trajectory]  # made by the first node when the input holds only the task
    baseline: NotRequired[TestReport | None]  # the tests on the code as given, when the caller ran them


MODEL_SCHEMA = WithJsonSchema(
    {"type": "string", "default": "smollm2",
     "description": "a model spec: smollm2, hf:PATH_OR_ID[+ADAPTER], openai:NAME@BASE_URL, vllm:NAME, scripted:FILE"}
)  # fmt: skip
SANDBOX_SCHEMA = WithJsonSchema(
    {"type": "string", "enum": ["auto", "docker", "local"], "default": "auto", "description": "where tests run"}
)


@dataclass
class RepairContext:
    """What a run uses and never checkpoints.

    Python callers pass live objects. From Studio the context is JSON, which LangGraph turns
    into this class with `RepairContext(**context)`: `model` is then a spec string (loaded by
    the first node, once per run), `sandbox` a kind (opened once per process and shared by its
    runs), and `budget` and `sampling` objects of numbers.
    """

    __pydantic_config__ = ConfigDict(arbitrary_types_allowed=True)  # for the JSON schema of the skipped fields

    model: Annotated[Any, MODEL_SCHEMA] = "smollm2"  # a Model, or a model spec
    sandbox: Annotated[Any, SANDBOX_SCHEMA] = "auto"  # a Sandbox, or a sandbox kind
    budget: Budget = field(default_factory=Budget)
    sampling: Sampling = field(default_factory=Sampling)
    store: SkipJsonSchema[TrajectoryStore | None] = None
    on_step: SkipJsonSchema[Callable[[Trajectory], None] | None] = None  # progress display
    latest: SkipJsonSchema[Trajectory | None] = None  # the last trajectory a node produced, for error reports

    def __post_init__(self) -> None:
        # Numbers only: LangGraph's server builds the context on its event loop, where loading
        # a model or opening a sandbox would hold up every other request (see `resolve`).
        if isinstance(self.budget, dict):
            self.budget = TypeAdapter(Budget).validate_python(self.budget)
        if isinstance(self.sampling, dict):
            self.sampling = TypeAdapter(Sampling).validate_python(self.sampling)

    def resolve(self) -> None:
        """A model spec and a sandbox kind made live; every node calls it (through `updating`),
        in the worker thread that runs the node."""
        if isinstance(self.model, str):
            self.model = load_model(self.model)
        if isinstance(self.sandbox, str):
            self.sandbox = shared_sandbox(self.sandbox)


@functools.cache
def shared_sandbox(kind: str) -> Sandbox:
    """One sandbox per kind for the process (a Docker sandbox keeps a warm pool: one per run
    would leave containers behind), closed when the process exits."""
    sandbox = open_sandbox(kind)
    atexit.register(sandbox.close)
    return sandbox


def task_of(state: RepairState) -> Task:
    return Task.model_validate(state["task"])  # a Task passes through as it is


def baseline_of(state: RepairState) -> TestReport | None:
    baseline = state.get("baseline")
    return None if baseline is None else TestReport.model_validate(baseline)


def trajectory_of(state: RepairState) -> Trajectory:
    return Trajectory.model_validate(state["trajectory"])


@contextmanager
def updating(state: RepairState, context: RepairContext, *, strategy: str = "") -> Iterator[Trajectory]:
    """A copy of the state's trajectory to change; afterwards it carries the node's wall
    time and is saved, so every step is in the store as soon as it exists. A graph's first
    node names its `strategy`: with only a task in the input, the trajectory starts there."""
    started = time.perf_counter()
    context.resolve()
    if "trajectory" in state:
        trajectory = editable_copy(trajectory_of(state))
    else:
        trajectory = Trajectory(task=task_of(state), strategy=strategy, model=context.model.spec)
    yield trajectory
    trajectory.wall_seconds += time.perf_counter() - started
    context.latest = trajectory
    if context.store is not None:
        context.store.save(trajectory)
    if context.on_step is not None:
        context.on_step(trajectory)


def editable_copy(trajectory: Trajectory) -> Trajectory:
    """A copy a node may change without touching the state it was given: the trajectory, its
    step list, each step and the metadata are new objects; what nodes never change in place
    (the task, messages, candidates, reports, reviews) is shared. A deep copy of the whole
    trajectory per node cost more than the rest of the node."""
    return trajectory.model_copy(
        update={"steps": [step.model_copy() for step in trajectory.steps], "metadata": dict(trajectory.metadata)}
    )


def next_index(trajectory: Trajectory) -> int:
    return len(trajectory.steps)


def pending_execution(trajectory: Trajectory) -> Step | None:
    return next((s for s in trajectory.steps if s.candidate is not None and s.report is None), None)


def passing(trajectory: Trajectory) -> list[Step]:
    return [s for s in trajectory.steps if s.report is not None and s.report.passed]


def executed(trajectory: Trajectory) -> list[Step]:
    return [s for s in trajectory.steps if s.report is not None]


def belief_correct(step: Step) -> float:
    """The reviewer's belief that the candidate is correct, from its verdict and confidence;
    0.5 (no opinion) when it was not reviewed."""
    if step.review is None:
        return 0.5
    return step.review.confidence if step.review.verdict == "accept" else 1.0 - step.review.confidence


def step_value(step: Step, sampling: Sampling) -> float:
    """Tests passed, blended with the reviewer's belief (SWE-Search's value)."""
    tests = step.report.fraction_passed if step.report is not None else 0.0
    return sampling.test_weight * tests + (1 - sampling.test_weight) * belief_correct(step)


def execute(state: RepairState, runtime: Runtime[RepairContext]) -> dict:
    """Run the tests of the next candidate that has not been run yet (one per node, so each
    test run is checkpointed on its own)."""
    context = runtime.context
    with updating(state, context) as trajectory:
        step = pending_execution(trajectory)
        started = time.perf_counter()
        step.report = run_tests(context.sandbox, trajectory.task, step.candidate)
        # The sandbox's whole cost as the host sees it: setup and cleanup besides the run.
        step.sandbox_seconds = time.perf_counter() - started
    return {"trajectory": trajectory}


def review_step(trajectory: Trajectory, step: Step, context: RepairContext) -> None:
    """Ask the reviewer about an executed step. An "accept" of a candidate whose tests fail is
    a reviewer error: recorded, and never allowed to end the loop."""
    result = review_candidate(
        context.model,
        trajectory.task,
        step.candidate,
        step.report,
        max_tokens=context.sampling.review_max_tokens,
    )
    step.review = result.review
    step.review_messages = result.messages
    step.review_completion = result.completion
    step.prompt_tokens += result.prompt_tokens
    step.completion_tokens += result.completion_tokens
    step.model_seconds += result.seconds
    step.reviewer_error = result.review.verdict == "accept" and not step.report.passed


def finish(trajectory: Trajectory, solution: Step | None, budget: Budget) -> None:
    """Close the episode: solved by `solution`, or stopped by the budget (and which part)."""
    if solution is not None:
        trajectory.outcome = "solved"
        trajectory.solution_step = solution.index
        trajectory.metadata["stop_reason"] = "tests pass"
    else:
        trajectory.outcome = "budget"
        trajectory.metadata["stop_reason"] = budget.exhausted(trajectory)
