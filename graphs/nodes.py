"""What every repair graph shares: its state, its runtime context, and the execute and review
nodes.

The state is only what must survive a kill: the Trajectory (and the baseline test report).
The model, the sandbox and the store are live objects, passed per run as LangGraph's runtime
context, never checkpointed. Nodes take the state and return a partial update; each one works
on a copy of the trajectory, adds its wall time to it and saves it to the store as it lands.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, NotRequired, TypedDict

from langgraph.runtime import Runtime

from selfrepair.agents.models import Model
from selfrepair.agents.reviewer import review as review_candidate
from selfrepair.graphs.budget import Budget, Sampling
from selfrepair.sandbox.core import Sandbox
from selfrepair.sandbox.testing import run_tests
from selfrepair.training.store import TrajectoryStore
from selfrepair.types import Step, TestReport, Trajectory


class RepairState(TypedDict):
    trajectory: Trajectory
    baseline: NotRequired[TestReport | None]  # the tests on the code as given, when the caller ran them


@dataclass
class RepairContext:
    model: Model
    sandbox: Sandbox
    budget: Budget = field(default_factory=Budget)
    sampling: Sampling = field(default_factory=Sampling)
    store: TrajectoryStore | None = None
    on_step: Callable[[Trajectory], None] | None = None  # progress display
    latest: Trajectory | None = None  # the last trajectory a node produced, for error reports


@contextmanager
def updating(state: RepairState, context: RepairContext) -> Iterator[Trajectory]:
    """A copy of the state's trajectory to change; afterwards it carries the node's wall
    time and is saved, so every step is in the store as soon as it exists."""
    started = time.perf_counter()
    trajectory = state["trajectory"].model_copy(deep=True)
    yield trajectory
    trajectory.wall_seconds += time.perf_counter() - started
    context.latest = trajectory
    if context.store is not None:
        context.store.save(trajectory)
    if context.on_step is not None:
        context.on_step(trajectory)


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


def finish(trajectory: Trajectory, solution: Step | None, reason: str) -> None:
    if solution is not None:
        trajectory.outcome = "solved"
        trajectory.solution_step = solution.index
    else:
        trajectory.outcome = "budget"
    trajectory.metadata["stop_reason"] = reason
