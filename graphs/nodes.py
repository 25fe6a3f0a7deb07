"""What every repair graph shares: its state, its runtime context, and the nodes that are the
same in each.

The state is only what must survive a kill: the task and the Trajectory. The model, the
sandbox, the store and the baseline test report are the run's, passed as LangGraph's runtime
context and never checkpointed. A node works on a copy of the trajectory (`context.updating`),
which then carries the node's wall time, and returns it as its update: the trajectory is the
unit that is checkpointed, saved and resumed. A run's checkpointer (graphs.run) saves it to
the store with the node's checkpoint; with no such checkpointer, the node saves it itself. A route
runs right after a node, on the Trajectory object that node returned.

A graph's entry node uses `context.entering` instead: what a run from LangGraph Studio needs
(graphs.studio) happens there, once per run, and no later node pays for it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from langgraph.runtime import Runtime
from pydantic import ConfigDict
from pydantic.json_schema import SkipJsonSchema
from selfrepair.agents import refiner, reviewer, solver
from selfrepair.graphs import studio
from selfrepair.sandbox.judging import ran_tests
from selfrepair.sandbox.testing import run_tests
from typing_extensions import (
    NotRequired,
    TypedDict,
)  # pydantic reads typing's TypedDict only on 3.12+

from selfrepair.settings import Budget, Sampling
from selfrepair.store import TrajectoryStore
from selfrepair.types import Candidate, Step, StepKind, Task, TestReport, Trajectory

MIN_TEST_SECONDS = 1.0


class RepairState(TypedDict):
    task: Task
    trajectory: NotRequired[Trajectory]  # made by the first node when the input holds only the task


@dataclass
class RepairContext:
    """What a run uses and never checkpoints, and how its nodes ask the model: the agents
    called with this run's sampling settings, each candidate numbered after the last step.

    Python callers pass live objects. From Studio the context is JSON, which LangGraph turns
    into this class with `RepairContext(**context)`: `model` is then a spec string and
    `sandbox` a kind (made live by the first node; see graphs.studio), `budget` and
    `sampling` objects of numbers.
    """

    __pydantic_config__ = ConfigDict(
        arbitrary_types_allowed=True
    )  # for the JSON schema of the skipped fields

    model: Annotated[Any, studio.MODEL_SCHEMA] = "smollm2"  # a Model, or a model spec
    sandbox: Annotated[Any, studio.SANDBOX_SCHEMA] = "auto"  # a Sandbox, or a sandbox kind
    budget: Budget = field(default_factory=Budget)
    sampling: Sampling = field(default_factory=Sampling)
    baseline: SkipJsonSchema[TestReport | None] = (
        None  # the tests on the code as given, when the caller ran them
    )
    store: SkipJsonSchema[TrajectoryStore | None] = None
    on_step: SkipJsonSchema[Callable[[Trajectory], None] | None] = None  # progress display
    latest: SkipJsonSchema[Trajectory | None] = (
        None  # the last trajectory a node produced, for error reports
    )
    # Roles: the reviewer's and the refiner's models when they are not `model` (the solver's),
    # e.g. adapters of one base; and a verifier (agents.verifier.Scorer) that best-of-n asks
    # to order its candidates before they are tested.
    reviewer_model: SkipJsonSchema[Any] = None
    refiner_model: SkipJsonSchema[Any] = None
    verifier: SkipJsonSchema[Any] = None
    # When the running node's task runs out of time (time.perf_counter()): what is left of
    # the time budget as the node started, counted from then. One node runs at a time.
    deadline: SkipJsonSchema[float] = float("inf")

    def __post_init__(self) -> None:
        self.budget = studio.settings(self.budget, Budget)
        self.sampling = studio.settings(self.sampling, Sampling)

    @contextmanager
    def entering(self, state: RepairState, *, strategy: str) -> Iterator[Trajectory]:
        """`updating` for a graph's entry node, which also does, once per run, what a run
        from LangGraph Studio needs (graphs.studio): the context's model and sandbox arrive
        as a spec and a kind, made live here; the input arrives as JSON, read here, and with
        only a task in it the trajectory of `strategy` starts here. The nodes after it find
        live objects in the context and typed ones in the state."""
        started = time.perf_counter()
        self.model = studio.live_model(self.model)
        self.sandbox = studio.live_sandbox(self.sandbox)
        if "trajectory" in state:
            trajectory = studio.trajectory_of(state)
        else:
            trajectory = Trajectory(
                task=studio.task_of(state),
                strategy=strategy,
                model=self.model.spec,
                metadata={"roles": self.roles()} if self.roles() else {},
            )
        with self._node(trajectory, started) as copy:
            yield copy

    @contextmanager
    def updating(self, state: RepairState, *, closing: bool = False) -> Iterator[Trajectory]:
        """A copy of the state's trajectory for a node to change; afterwards it carries the
        node's wall time, is saved to `store` when the context has one (run_graph leaves that
        to a run's checkpointer) and goes to the progress display. `closing`: the node also
        ends the episode when it is over (`close_if_over`), counting its own time."""
        with self._node(state["trajectory"], time.perf_counter(), closing) as copy:
            yield copy

    @contextmanager
    def _node(
        self, trajectory: Trajectory, started: float, closing: bool = False
    ) -> Iterator[Trajectory]:
        copy = editable_copy(trajectory)
        self.deadline = started + self.budget.seconds_left(copy)
        yield copy
        copy.wall_seconds += time.perf_counter() - started
        if closing:
            self.close_if_over(copy)
        self.latest = copy
        if self.store is not None:
            self.store.save(copy)
        if self.on_step is not None:
            self.on_step(copy)

    def solve(
        self, trajectory: Trajectory, *, n: int = 1, greedy: bool = False, kind: StepKind = "solve"
    ) -> list[Step]:
        """n fresh candidates from one batched call (the greedy one: the single-shot answer)."""
        first = len(trajectory.steps)
        return solver.solve(
            self.model,
            trajectory.task,
            first_index=first,
            n=n,
            temperature=0.0 if greedy else self.sampling.temperature,
            max_tokens=self.sampling.max_tokens,
            stop=self.sampling.stop,
            baseline=self.baseline,
            kind=kind,
            seed=self.sampling.call_seed(trajectory.task.task_id, first),
            prompts=self.sampling.prompts,
            feedback=self.sampling.feedback,
            timeout=self.seconds_left(),
        )

    def refine(
        self, trajectory: Trajectory, parent: Step, *, n: int = 1, kind: StepKind = "refine"
    ) -> list[Step]:
        """n refinements of `parent`, a tested candidate, from one batched call."""
        first = len(trajectory.steps)
        return refiner.refine(
            self.refiner_model or self.model,
            trajectory.task,
            parent,
            first_index=first,
            n=n,
            temperature=self.sampling.temperature,
            max_tokens=self.sampling.max_tokens,
            stop=self.sampling.stop,
            kind=kind,
            seed=self.sampling.call_seed(trajectory.task.task_id, first),
            prompts=self.sampling.prompts,
            feedback=self.sampling.feedback,
            timeout=self.seconds_left(),
        )

    def roles(self) -> dict[str, str]:
        """The specs of the roles played by another model than the solver's."""
        roles = {
            "reviewer": self.reviewer_model,
            "refiner": self.refiner_model,
            "verifier": self.verifier,
        }
        return {name: role.spec for name, role in roles.items() if role is not None}

    def expected_tests(self) -> list[str]:
        """The tests that ran on the code as given: a candidate's run must report them all."""
        return ran_tests(self.baseline)

    def seconds_left(self) -> float | None:
        """How long the running node's next model call may take: what is left of the time
        budget (none left: the call returns at once, cut by "time"; None: no limit, as with
        `--max-seconds inf`)."""
        if math.isinf(self.deadline):
            return None
        return max(self.deadline - time.perf_counter(), 0.0)

    def test_seconds(self, trajectory: Trajectory) -> float:
        """How long the next test run may take: what is left of the time budget (a second at
        least, so a run the budget reaches mid-way is cut and counted as a timeout), to a tenth
        of a second, as its report says it."""
        return round(max(self.budget.seconds_left(trajectory), MIN_TEST_SECONDS), 1)

    def review(self, trajectory: Trajectory, step: Step) -> None:
        reviewer.review(
            self.reviewer_model or self.model,
            trajectory.task,
            step,
            max_tokens=self.sampling.review_max_tokens,
            seed=self.sampling.call_seed(trajectory.task.task_id, step.index, "review"),
            prompts=self.sampling.prompts,
            feedback=self.sampling.feedback,
            timeout=self.seconds_left(),
        )

    def close_if_over(self, trajectory: Trajectory) -> None:
        """Close the episode when no candidate waits for its tests and one passed or the
        budget is spent: what a `finish` node after the last test run would do, without the
        extra graph step (and checkpoint) that node costs every task."""
        if trajectory.pending() is None and (
            trajectory.passing() or self.budget.exhausted(trajectory)
        ):
            solved = trajectory.passing()
            self.close(trajectory, solved[0] if solved else None)

    def close(self, trajectory: Trajectory, solution: Step | None) -> None:
        """End the episode: solved by `solution`, or stopped by the budget (and which part)."""
        if solution is not None:
            trajectory.outcome = "solved"
            trajectory.solution_step = solution.index
            trajectory.metadata["stop_reason"] = "tests pass"
        else:
            trajectory.outcome = "budget"
            trajectory.metadata["stop_reason"] = self.budget.exhausted(trajectory)


Node = Callable[[RepairState, Runtime[RepairContext]], dict]
Route = Callable[[RepairState, Runtime[RepairContext]], str]


def editable_copy(trajectory: Trajectory) -> Trajectory:
    """A copy a node may change without touching the state it was given: the trajectory, its
    step list, each step and the metadata are new objects; what nodes never change in place
    (the task, messages, candidates, reports, reviews) is shared. A deep copy of the whole
    trajectory per node cost more than the rest of the node."""
    return trajectory.model_copy(
        update={
            "steps": [step.model_copy() for step in trajectory.steps],
            "metadata": dict(trajectory.metadata),
        }
    )


def solve(strategy: str) -> Node:
    """The first node of `strategy`'s graph: the greedy first candidate, the model's
    single-shot answer."""

    def solve(state: RepairState, runtime: Runtime[RepairContext]) -> dict:
        with runtime.context.entering(state, strategy=strategy) as trajectory:
            trajectory.steps += runtime.context.solve(trajectory, greedy=True)
        return {"trajectory": trajectory}

    return solve


def run_pending(trajectory: Trajectory, run: Callable[[Candidate], TestReport]) -> None:
    """Run the tests of the first untested candidate with `run`. Its seconds are the
    sandbox's whole cost as the host sees it, setup and cleanup included, in every graph."""
    step = trajectory.pending()
    started = time.perf_counter()
    step.report = run(step.candidate)
    step.sandbox_seconds = time.perf_counter() - started


def execute(state: RepairState, runtime: Runtime[RepairContext], *, closing: bool = False) -> dict:
    """Run the tests of the next candidate that has not been run yet (one per node, so each
    test run is checkpointed on its own). `closing`: end the episode here when it is over
    (RepairContext.close_if_over)."""
    context = runtime.context
    with context.updating(state, closing=closing) as trajectory:
        expect = context.expected_tests()
        seconds = context.test_seconds(trajectory)
        run_pending(
            trajectory,
            lambda candidate: run_tests(
                context.sandbox, trajectory.task, candidate, expect=expect, seconds=seconds
            ),
        )
    return {"trajectory": trajectory}


def finish(state: RepairState, runtime: Runtime[RepairContext]) -> dict:
    """Solved by the first candidate that passed, or stopped by the budget."""
    with runtime.context.updating(state) as trajectory:
        solved = trajectory.passing()
        runtime.context.close(trajectory, solved[0] if solved else None)
    return {"trajectory": trajectory}


def route_generated(more: str, stop: str = "finish") -> Route:
    """The route out of a node that asked the model for candidates, in a graph whose node
    `more` asks for more: test the first untested candidate; with none (no reply held code),
    go to `stop` when the budget is spent, else ask again."""

    def route(state: RepairState, runtime: Runtime[RepairContext]) -> str:
        trajectory = state["trajectory"]
        if trajectory.pending() is not None:
            return "execute"
        return stop if runtime.context.budget.exhausted(trajectory) else more

    # LangGraph reads a route's destinations from its Literal return type (and draws them).
    route.__annotations__["return"] = Literal["execute", more, stop]
    return route
