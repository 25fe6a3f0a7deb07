"""The refine loop (Self-Debugging, CYCLE): solve -> execute -> review -> refine -> execute ...

It stops when a candidate passes the tests or the budget is spent. The first candidate is
greedy (the model's single-shot answer); each refinement sees the latest tested candidate,
its test feedback and the reviewer's critique. The reviewer is asked only about candidates
that fail, and cannot end the loop: its critique feeds the next refinement, and its "accept"
(of a failing candidate) is recorded as a reviewer error. The tests decide.
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from selfrepair.graphs.nodes import (
    RepairContext,
    RepairState,
    execute,
    finish,
    route_generated,
    solve,
)

STRATEGY = "refine"


def refine(state: RepairState, runtime: Runtime[RepairContext]) -> dict:
    """Refine the latest tested candidate; while no reply has held code, solve afresh."""
    context = runtime.context
    with context.updating(state) as trajectory:
        tested = trajectory.executed()
        trajectory.steps += (
            context.refine(trajectory, tested[-1]) if tested else context.solve(trajectory)
        )
    return {"trajectory": trajectory}


def review(state: RepairState, runtime: Runtime[RepairContext]) -> dict:
    """The reviewer's critique of the latest tested candidate, for the next refinement."""
    with runtime.context.updating(state) as trajectory:
        runtime.context.review(trajectory, trajectory.executed()[-1])
    return {"trajectory": trajectory}


def execute_closing(state: RepairState, runtime: Runtime[RepairContext]) -> dict:
    """Test the next candidate; when that ends the episode (it passes, or the budget is spent),
    close it in this node rather than in a `finish` node after it, one graph step fewer a task."""
    return execute(state, runtime, closing=True)


def route_closing(
    state: RepairState, runtime: Runtime[RepairContext]
) -> Literal["execute", "review", "__end__"]:
    """The route out of `execute_closing`: the end once it closed the episode."""
    trajectory = state["trajectory"]
    if trajectory.outcome != "running":
        return END
    return "execute" if trajectory.pending() is not None else "review"


def route_executed(
    state: RepairState, runtime: Runtime[RepairContext]
) -> Literal["execute", "review", "finish"]:
    trajectory = state["trajectory"]
    if trajectory.pending() is not None:
        return "execute"
    return (
        "finish"
        if trajectory.passing() or runtime.context.budget.exhausted(trajectory)
        else "review"
    )


def route_reviewed(
    state: RepairState, runtime: Runtime[RepairContext]
) -> Literal["refine", "finish"]:
    return "finish" if runtime.context.budget.exhausted(state["trajectory"]) else "refine"


builder = StateGraph(RepairState, context_schema=RepairContext)
builder.add_node("solve", solve(STRATEGY))
builder.add_node("execute", execute_closing)
builder.add_node("review", review)
builder.add_node("refine", refine)
builder.add_node("finish", finish)
builder.add_edge(START, "solve")
builder.add_conditional_edges("solve", route_generated("refine"))
builder.add_conditional_edges("refine", route_generated("refine"))
builder.add_conditional_edges("execute", route_closing)
builder.add_conditional_edges("review", route_reviewed)
builder.add_edge("finish", END)

graph = builder.compile(name="repair")
