"""Label-free repair (LMSI's self-consistency, CodeT's execution agreement): what `improve
--unlabeled` runs on its train tasks. The task's tests never run.

sample -> inputs -> observe -> vote:

  sample   the budget's candidates from one batched call (as best-of-n's first call)
  inputs   the model writes calls of the function under repair (inputs only: agents.tester)
  observe  each candidate and the code as given run on those calls in the sandbox
           (sandbox.behaviour); what comes back is compared as strings
  vote     candidates are grouped by behaviour; the largest group that behaves unlike the
           code as given (a fix changes something) and not only by failing becomes the
           pseudo-label when it is a confident majority (`Sampling.voting`)

The trajectory records it all: the samples and the inputs call as steps, and under
metadata["consensus"] the calls, each program's outputs, the groups, and the chosen steps
(`label_steps`), which training.datasets turns into examples. Its outcome is "budget" (no
test said it passed: none ran).
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from selfrepair.agents.tester import under_repair, write_inputs
from selfrepair.graphs.nodes import RepairContext, RepairState
from selfrepair.sandbox.behaviour import observe

from selfrepair.settings import Voting
from selfrepair.types import Step, Trajectory

STRATEGY = "self-consistency"
ORIGINAL = "original"  # the key of the code as given among the observed programs
FAILURES = ("raise ", "timeout", "load: ", "no result", "out of memory")


def record(trajectory: Trajectory) -> dict[str, Any]:
    return trajectory.metadata.setdefault("consensus", {})


def sample(state: RepairState, runtime: Runtime[RepairContext]) -> dict:
    context = runtime.context
    with context.entering(state, strategy=STRATEGY) as trajectory:
        trajectory.steps += context.solve(
            trajectory, n=context.budget.max_candidates, kind="sample"
        )
    return {"trajectory": trajectory}


def inputs(state: RepairState, runtime: Runtime[RepairContext]) -> dict:
    context = runtime.context
    with context.updating(state) as trajectory:
        function = under_repair(trajectory.task)
        consensus = record(trajectory)
        consensus["function"] = function.name if function is not None else None
        consensus["calls"] = []
        if function is not None:
            first = len(trajectory.steps)
            steps, calls = write_inputs(
                context.model,
                trajectory.task,
                function,
                index=first,
                count=context.sampling.voting.inputs,
                n=context.sampling.voting.asks,
                temperature=0.0
                if context.sampling.voting.asks == 1
                else context.sampling.temperature,
                seed=context.sampling.call_seed(trajectory.task.task_id, first),
                timeout=context.seconds_left(),
            )
            trajectory.steps += steps
            consensus["calls"] = calls
    return {"trajectory": trajectory}


def observe_all(state: RepairState, runtime: Runtime[RepairContext]) -> dict:
    """Every candidate, and the code as given, on every call."""
    context = runtime.context
    with context.updating(state) as trajectory:
        consensus = record(trajectory)
        task, calls = trajectory.task, consensus["calls"]
        behaviour: dict[str, list[str]] = {}

        def run(files: dict[str, str]) -> tuple[list[str], float]:
            return observe(
                context.sandbox,
                files,
                task.entry_file,
                consensus["function"],
                calls,
                call_seconds=context.sampling.voting.call_seconds,
            )

        if calls:
            behaviour[ORIGINAL], _ = run(task.files)
            for step in trajectory.steps:
                if (
                    step.candidate is not None
                    and step.candidate.files
                    and not step.candidate.diff.strip()
                ):
                    behaviour[str(step.index)], step.sandbox_seconds = run(
                        {**task.files, **step.candidate.files}
                    )
        consensus["behaviour"] = behaviour
    return {"trajectory": trajectory}


def failing(outputs: list[str]) -> bool:
    return all(output.startswith(FAILURES) for output in outputs)


def choose(behaviour: dict[str, list[str]], candidates: int, voting: Voting) -> dict[str, Any]:
    """The vote: groups of candidate steps that behave alike, and the chosen group (with its
    share of the `candidates`) or why none was chosen."""
    original = behaviour.get(ORIGINAL)
    groups: dict[tuple[str, ...], list[int]] = {}
    for key, outputs in behaviour.items():
        if key != ORIGINAL:
            groups.setdefault(tuple(outputs), []).append(int(key))
    eligible = sorted(
        (
            steps
            for outputs, steps in groups.items()
            if list(outputs) != original and not failing(list(outputs))
        ),
        key=len,
        reverse=True,
    )
    result: dict[str, Any] = {
        "groups": sorted(groups.values(), key=len, reverse=True),
        "label_steps": [],
    }
    if not behaviour:
        return result | {"reason": "no calls to run the candidates on"}
    if not eligible:
        return result | {"reason": "every candidate behaves like the code as given, or only fails"}
    best = eligible[0]
    share = len(best) / max(candidates, 1)
    if len(best) < voting.min_votes or share < voting.min_share:
        return result | {
            "reason": f"no confident majority: the largest group has {len(best)} of {candidates}"
        }
    if len(eligible) > 1 and len(eligible[1]) == len(best):
        return result | {"reason": f"a tie: two groups of {len(best)}"}
    return result | {"label_steps": sorted(best), "confidence": share, "reason": "majority"}


def vote(state: RepairState, runtime: Runtime[RepairContext]) -> dict:
    context = runtime.context
    with context.updating(state) as trajectory:
        consensus = record(trajectory)
        candidates = sum(
            step.kind == "sample" for step in trajectory.steps
        )  # a reply without code votes for nothing
        consensus.update(
            choose(consensus.get("behaviour", {}), candidates, context.sampling.voting)
        )
        trajectory.outcome = "budget"
        trajectory.metadata["stop_reason"] = "label-free: no tests run; " + consensus["reason"]
    return {"trajectory": trajectory}


def label_steps(trajectory: Trajectory) -> list[Step]:
    """The steps a label-free run chose as its pseudo-label (none when it chose none)."""
    chosen = set((trajectory.metadata.get("consensus") or {}).get("label_steps", []))
    return [step for step in trajectory.steps if step.index in chosen]


builder = StateGraph(RepairState, context_schema=RepairContext)
builder.add_node("sample", sample)
builder.add_node("inputs", inputs)
builder.add_node("observe", observe_all)
builder.add_node("vote", vote)
builder.add_edge(START, "sample")
builder.add_edge("sample", "inputs")
builder.add_edge("inputs", "observe")
builder.add_edge("observe", "vote")
builder.add_edge("vote", END)

graph = builder.compile(name=STRATEGY)
