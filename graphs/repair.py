"""The refine loop: solve -> execute -> review -> (refine -> execute -> review)* -> end.

It stops when a candidate passes the tests or the budget is spent. The first candidate is
greedy (the model's single-shot answer); each refinement (CYCLE-style) sees the latest
executed candidate, its test feedback and the reviewer's critique. A reviewer "accept" of a
failing candidate is recorded as a reviewer error and the loop goes on: the tests decide.
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from selfrepair.agents.refiner import refine as refine_candidate
from selfrepair.agents.solver import solve as solve_task
from selfrepair.graphs.nodes import (
    RepairContext,
    RepairState,
    baseline_of,
    execute,
    executed,
    finish as finish_trajectory,
    next_index,
    passing,
    pending_execution,
    review_step,
    trajectory_of,
    updating,
)

STRATEGY = "refine"


def solve(state: RepairState, runtime: Runtime[RepairContext]) -> dict:
    context = runtime.context
    with updating(state, context, strategy=STRATEGY) as trajectory:
        trajectory.steps += solve_task(
            context.model,
            trajectory.task,
            first_index=next_index(trajectory),
            temperature=0.0,
            max_tokens=context.sampling.max_tokens,
            stop=context.sampling.stop,
            baseline=baseline_of(state),
        )
    return {"trajectory": trajectory}


def refine(state: RepairState, runtime: Runtime[RepairContext]) -> dict:
    """Refine the latest executed candidate; with none yet (no code in any reply so far),
    sample a fresh solution instead."""
    context = runtime.context
    with updating(state, context) as trajectory:
        runs = executed(trajectory)
        if runs:
            trajectory.steps += refine_candidate(
                context.model,
                trajectory.task,
                runs[-1],
                first_index=next_index(trajectory),
                temperature=context.sampling.temperature,
                max_tokens=context.sampling.max_tokens,
                stop=context.sampling.stop,
            )
        else:
            trajectory.steps += solve_task(
                context.model,
                trajectory.task,
                first_index=next_index(trajectory),
                temperature=context.sampling.temperature,
                max_tokens=context.sampling.max_tokens,
                stop=context.sampling.stop,
                baseline=baseline_of(state),
            )
    return {"trajectory": trajectory}


def review(state: RepairState, runtime: Runtime[RepairContext]) -> dict:
    with updating(state, runtime.context) as trajectory:
        review_step(trajectory, executed(trajectory)[-1], runtime.context)
    return {"trajectory": trajectory}


def finish(state: RepairState, runtime: Runtime[RepairContext]) -> dict:
    with updating(state, runtime.context) as trajectory:
        solved = passing(trajectory)
        finish_trajectory(trajectory, solved[0] if solved else None, runtime.context.budget)
    return {"trajectory": trajectory}


def route_generated(state: RepairState, runtime: Runtime[RepairContext]) -> Literal["execute", "refine", "finish"]:
    trajectory = trajectory_of(state)
    if pending_execution(trajectory) is not None:
        return "execute"
    return "finish" if runtime.context.budget.exhausted(trajectory) else "refine"


def route_executed(state: RepairState, runtime: Runtime[RepairContext]) -> Literal["execute", "review", "finish"]:
    """More to run -> run it; a pass or a spent budget -> stop; else ask the reviewer, whose
    critique the next refinement uses."""
    trajectory = trajectory_of(state)
    if pending_execution(trajectory) is not None:
        return "execute"
    if passing(trajectory) or runtime.context.budget.exhausted(trajectory):
        return "finish"
    return "review"


def route_reviewed(state: RepairState, runtime: Runtime[RepairContext]) -> Literal["refine", "finish"]:
    return "finish" if runtime.context.budget.exhausted(trajectory_of(state)) else "refine"


builder = StateGraph(RepairState, context_schema=RepairContext)
builder.add_node("solve", solve)
builder.add_node("execute", execute)
builder.add_node("review", review)
builder.add_node("refine", refine)
builder.add_node("finish", finish)
builder.add_edge(START, "solve")
builder.add_conditional_edges("solve", route_generated)
builder.add_conditional_edges("refine", route_generated)
builder.add_conditional_edges("execute", route_executed)
builder.add_conditional_edges("review", route_reviewed)
builder.add_edge("finish", END)

graph = builder.compile(name="repair")
