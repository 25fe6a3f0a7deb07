"""Search over repairs: best-of-n and tree search. Same budget rules as the refine loop.

best-of-n (Agentless-style): n samples from ONE batched model call, every one executed; the
best is chosen by the tests first and the reviewer second (the reviewer is asked only when
several candidates pass, to break the tie). Rounds repeat while budget is left and none passes.
With a verifier (agents.verifier) each sample is scored before it is tested: the most
promising is tested first and the round stops at the first pass (fewer sandbox runs; the
rest stay untested), and where no candidate passes the score ranks those that pass as many tests.

tree (SWE-Search-style): the root is the greedy first candidate; every executed node is
reviewed and gets a value = w * fraction of tests passed + (1 - w) * the reviewer's belief
that it is correct; the node with the best UCT score is expanded by the refiner. Step.parent
and Step.value record the tree in the trajectory.
"""

from __future__ import annotations

import math
from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from selfrepair.graphs.nodes import RepairContext, RepairState, execute, route_generated, solve

from selfrepair.settings import Sampling
from selfrepair.types import Step, Trajectory


def belief_correct(step: Step) -> float:
    """The reviewer's belief that the candidate is correct, from its verdict and confidence;
    0.5 (no opinion) when it was not reviewed."""
    if step.review is None:
        return 0.5
    return (
        step.review.confidence if step.review.verdict == "accept" else 1.0 - step.review.confidence
    )


def rank(step: Step) -> tuple[bool, float, float, float, int]:
    """Tests first (all pass, then the share passed), then the verifier's score, then the
    reviewer, then the earliest."""
    report = step.report
    score = step.verifier_score if step.verifier_score is not None else 0.5
    return (report.passed, report.fraction_passed, score, belief_correct(step), -step.index)


# -- best-of-n ---------------------------------------------------------------------------


def sample(state: RepairState, runtime: Runtime[RepairContext]) -> dict:
    """n candidates from one batched call, n as many as the budget leaves (at most `samples`)."""
    context = runtime.context
    with context.entering(state, strategy="best-of-n") as trajectory:
        n = min(context.sampling.samples, context.budget.candidates_left(trajectory))
        steps = context.solve(trajectory, n=n, kind="sample")
        trajectory.steps += steps
        if context.verifier is not None:
            for step in steps:
                # A score is a forward pass per candidate: none once the time budget is spent.
                if step.candidate is not None and context.seconds_left() != 0:
                    step.verifier_score = context.verifier.score(trajectory, step)
    return {"trajectory": trajectory}


def unreviewed_passing(trajectory: Trajectory) -> list[Step]:
    """Passing candidates the reviewer still has to rank: only when more than one passes."""
    winners = trajectory.passing()
    return [s for s in winners if s.review is None] if len(winners) > 1 else []


def review_passing(state: RepairState, runtime: Runtime[RepairContext]) -> dict:
    with runtime.context.updating(state) as trajectory:
        runtime.context.review(trajectory, unreviewed_passing(trajectory)[0])
    return {"trajectory": trajectory}


def select(state: RepairState, runtime: Runtime[RepairContext]) -> dict:
    with runtime.context.updating(state) as trajectory:
        tested = trajectory.executed()
        best = max(tested, key=rank) if tested else None
        if best is not None:
            trajectory.metadata["best_step"] = best.index
        runtime.context.close(trajectory, best if best is not None and best.report.passed else None)
    return {"trajectory": trajectory}


def route_sample_executed(
    state: RepairState, runtime: Runtime[RepairContext]
) -> Literal["execute", "review", "sample", "select"]:
    trajectory = state["trajectory"]
    context = runtime.context
    # With a verifier, candidates are tested best first and the first pass ends the search.
    if trajectory.pending() is not None and not (context.verifier and trajectory.passing()):
        return "execute"
    if trajectory.passing():
        # The reviewer breaks ties between passing candidates while tokens are left.
        if (
            context.sampling.review_ties
            and unreviewed_passing(trajectory)
            and trajectory.tokens < context.budget.max_tokens
        ):
            return "review"
        return "select"
    return "select" if context.budget.exhausted(trajectory) else "sample"


best_of_n_builder = StateGraph(RepairState, context_schema=RepairContext)
best_of_n_builder.add_node("sample", sample)
best_of_n_builder.add_node("execute", execute)
best_of_n_builder.add_node("review", review_passing)
best_of_n_builder.add_node("select", select)
best_of_n_builder.add_edge(START, "sample")
best_of_n_builder.add_conditional_edges("sample", route_generated("sample", stop="select"))
best_of_n_builder.add_conditional_edges("execute", route_sample_executed)
best_of_n_builder.add_conditional_edges("review", route_sample_executed)
best_of_n_builder.add_edge("select", END)

best_of_n_graph = best_of_n_builder.compile(name="best-of-n")


# -- tree search -------------------------------------------------------------------------


def step_value(step: Step, sampling: Sampling) -> float:
    """Tests passed, blended with the reviewer's belief (SWE-Search's value)."""
    tests = step.report.fraction_passed if step.report is not None else 0.0
    return sampling.test_weight * tests + (1 - sampling.test_weight) * belief_correct(step)


def descendants(trajectory: Trajectory, index: int) -> int:
    children = [s.index for s in trajectory.steps if s.parent == index]
    return len(children) + sum(descendants(trajectory, c) for c in children)


def expandable(trajectory: Trajectory) -> list[Step]:
    """Executed, valued, failing nodes: the ones a refinement can start from."""
    return [s for s in trajectory.executed() if s.value is not None and not s.report.passed]


def uct(trajectory: Trajectory, step: Step, exploration: float) -> float:
    """Value plus an exploration bonus that shrinks as a node's subtree grows."""
    total = len(expandable(trajectory)) + 1
    visits = 1 + descendants(trajectory, step.index)
    return step.value + exploration * math.sqrt(math.log(total) / visits)


def expand(state: RepairState, runtime: Runtime[RepairContext]) -> dict:
    """Refine the node with the best UCT score; with no node to start from (no reply held
    code so far), sample a fresh root."""
    context = runtime.context
    with context.updating(state) as trajectory:
        nodes = expandable(trajectory)
        n = min(context.sampling.children, context.budget.candidates_left(trajectory))
        if nodes:
            chosen = max(nodes, key=lambda s: uct(trajectory, s, context.sampling.exploration))
            trajectory.steps += context.refine(trajectory, chosen, n=n, kind="expand")
        else:
            trajectory.steps += context.solve(trajectory, n=n)
    return {"trajectory": trajectory}


def value(state: RepairState, runtime: Runtime[RepairContext]) -> dict:
    """Review the next executed node without a value, and give it one."""
    context = runtime.context
    with context.updating(state) as trajectory:
        step = next(s for s in trajectory.executed() if s.value is None)
        context.review(trajectory, step)
        step.value = step_value(step, context.sampling)
    return {"trajectory": trajectory}


def finish_tree(state: RepairState, runtime: Runtime[RepairContext]) -> dict:
    with runtime.context.updating(state) as trajectory:
        for step in trajectory.executed():
            if step.value is None:  # executed after the budget ran out: valued by its tests alone
                step.value = step_value(step, runtime.context.sampling)
        solved = trajectory.passing()
        runtime.context.close(trajectory, solved[0] if solved else None)
    return {"trajectory": trajectory}


def route_tree_executed(
    state: RepairState, runtime: Runtime[RepairContext]
) -> Literal["execute", "value", "expand", "finish"]:
    trajectory = state["trajectory"]
    if trajectory.pending() is not None:
        return "execute"
    if trajectory.passing() or runtime.context.budget.exhausted(trajectory):
        return "finish"
    if any(s.value is None for s in trajectory.executed()):
        return "value"
    return "expand"


tree_builder = StateGraph(RepairState, context_schema=RepairContext)
tree_builder.add_node("root", solve("tree"))
tree_builder.add_node("execute", execute)
tree_builder.add_node("value", value)
tree_builder.add_node("expand", expand)
tree_builder.add_node("finish", finish_tree)
tree_builder.add_edge(START, "root")
tree_builder.add_conditional_edges("root", route_generated("expand"))
tree_builder.add_conditional_edges("expand", route_generated("expand"))
tree_builder.add_conditional_edges("execute", route_tree_executed)
tree_builder.add_conditional_edges("value", route_tree_executed)
tree_builder.add_edge("finish", END)

tree_graph = tree_builder.compile(name="tree")
