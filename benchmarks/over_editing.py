"""Over-editing on QuixBugs: how many lines a candidate changes beyond the reference fix,
with the reply's definitions taken whole (as the merge did before) and with what the reply
did not mean to change kept (docstrings, comments, lines of the same code; agents/code/extract.py).
Prints one JSON line.

The candidates are those a real model wrote: the replies recorded in a run directory of
`selfrepair bench quixbugs` are merged again both ways, each step against the code the model
was shown (the task's program, or for a refinement its parent's candidate, merged the same
way). The reference fix of each task is `solution` in the QuixBugs data.

    nice -n 15 selfrepair bench quixbugs --data ../shared/benchmarks/quixbugs_python.jsonl \\
        --limit 12 --out runs/smollm2-q12
    python benchmarks/over_editing.py --run runs/smollm2-q12 \\
        --data ../shared/benchmarks/quixbugs_python.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import mean

from selfrepair.agents.code.extract import ExtractionError, extract_candidate

from selfrepair.loaders import load_quixbugs
from selfrepair.metrics import lines_beyond_reference
from selfrepair.store import TrajectoryStore
from selfrepair.types import Candidate, Trajectory


def lines_beyond(trajectory: Trajectory, keep_original: bool) -> dict[int, int | None]:
    """Per step with a reply: the lines its candidate, merged again (keeping the original or
    not), changes beyond the reference fix. A reply that merges into the code it was shown
    changes nothing (0): merged the other way it may have been a candidate that only
    reformatted; one that yields no code at all is left out."""
    task = trajectory.task
    candidates: dict[int, Candidate] = {}
    beyond: dict[int, int | None] = {}
    for step in trajectory.steps:
        if not step.completion or step.kind == "localise":
            continue
        parent = candidates.get(step.parent) if step.parent is not None else None
        base = task.files | (parent.files if parent else {})
        try:
            candidates[step.index] = extract_candidate(
                step.completion, task.files, base, task.entry_file, keep_original=keep_original
            )
        except ExtractionError as error:
            if "same as" in str(error):
                beyond[step.index] = 0
            continue
        beyond[step.index] = lines_beyond_reference(task, candidates[step.index])
    return beyond


def figures(trajectories: list[Trajectory], keep_original: bool) -> dict:
    """Mean lines beyond the reference over the steps both merges read, and over the fixes."""
    every, fixes = [], []
    for trajectory in trajectories:
        this, other = (
            lines_beyond(trajectory, keep_original),
            lines_beyond(trajectory, not keep_original),
        )
        steps = {step.index: step for step in trajectory.steps}
        for index in sorted(set(this) & set(other)):
            every.append(this[index])
            report = steps[index].report
            if report is not None and report.passed:
                fixes.append(this[index])
    return {
        "candidates": len(every),
        "mean_lines_beyond_reference": round(mean(every), 3) if every else None,
        "fixes": len(fixes),
        "fixes_mean_lines_beyond_reference": round(mean(fixes), 3) if fixes else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run",
        type=Path,
        required=True,
        help="a run directory of `bench quixbugs` with a real model",
    )
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="QuixBugs' JSONL (its `solution` is the reference fix)",
    )
    args = parser.parse_args()

    references = {task.task_id: task.metadata["solution"] for task in load_quixbugs(args.data)}
    with TrajectoryStore(args.run, create=False) as store:
        trajectories = [
            t.model_copy(
                update={
                    "task": t.task.model_copy(
                        update={
                            "metadata": t.task.metadata | {"solution": references[t.task.task_id]}
                        }
                    )
                }
            )
            for t in store.trajectories()
            if t.task.task_id in references
        ]
    before, after = (
        figures(trajectories, keep_original=False),
        figures(trajectories, keep_original=True),
    )
    print(
        json.dumps(
            {
                "run": str(args.run),
                "model": trajectories[0].model if trajectories else None,
                "tasks": len(trajectories),
                "before_whole_definitions": before,
                "after_keeping_the_original": after,
            }
        )
    )


if __name__ == "__main__":
    main()
